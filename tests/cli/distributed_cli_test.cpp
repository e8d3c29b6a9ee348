// Data-parallel training under mpirun and the deterministic mode (train/distributed.hpp,
// docs/distributed.md), with real processes: `mpirun -np 2 descent train` on loopback.
//   - deterministic = true: 1 thread, 2 threads and 2 ranks give bit-identical parameters;
//   - without it, 2 ranks differ from 1 process by float rounding only (a bound);
//   - a rank killed with SIGKILL ends the job with a message naming the run folder and how
//     to resume, and `mpirun -np 2 descent resume` then ends bit-identical to the run never
//     killed;
//   - deterministic with 3 ranks is refused with one clear line;
//   - the bucketed all-reduce (allreduce_bucket_kb) gives the one all-reduce's parameters, and
//     the evaluations shared out over the ranks give one process's figures.
// The tests that need mpirun skip (saying so) where it is absent or descent was built
// without MPI; scripts/install-deps installs openmpi-bin and libopenmpi-dev.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "descent/io/safetensors.hpp"
#include "descent/train/distributed.hpp"
#include "support/process.hpp"
#include "support/synthetic_csv.hpp"

namespace {

namespace fs = std::filesystem;
using namespace descent::testing;  // support/process.hpp, support/synthetic_csv.hpp
using Output = ProcessResult;

bool have_mpirun() { return capture("command -v mpirun").code == 0; }

// mpirun on this machine only: loopback TCP, more ranks than cores allowed, root allowed.
std::string mpirun(int ranks) {
  std::string m = "mpirun --oversubscribe -np " + std::to_string(ranks) +
                  " --mca btl self,tcp --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo --mca pml ob1";
  if (::geteuid() == 0) m += " --allow-run-as-root";
  // Under the sanitizer run (scripts/test sets ASAN_OPTIONS): OpenMPI keeps allocations past
  // MPI_Finalize, some in components it has already unloaded, which LeakSanitizer reports and
  // its suppressions cannot name. Leak checking stays on in every other test; the ranks keep
  // the rest of ASan's and UBSan's checks.
  if (const char* asan = std::getenv("ASAN_OPTIONS"); asan != nullptr && *asan != '\0')
    m += std::string(" -x ASAN_OPTIONS=") + asan + ":detect_leaks=0";
  return m;
}

std::vector<float> parameters(const fs::path& model) {
  const descent::io::Safetensors s = descent::io::read_safetensors(model);
  std::vector<float> out;
  for (const auto& t : s.tensors) {
    EXPECT_EQ(t.dtype, "F32") << t.name;
    const std::size_t n = t.data.size() / sizeof(float);
    const std::size_t at = out.size();
    out.resize(at + n);
    std::memcpy(out.data() + at, t.data.data(), t.data.size());
  }
  return out;
}

class DistributedCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fresh_test_dir("descent_distributed_cli");
    fs::create_directories(dir_ / "tmp");
    write_three_class_csvs(dir_, {.seed = 5, .train = 2200, .test = 300});
    // 2000 training examples (8 features, 3 classes), an MLP 8-256-256-3 (products large
    // enough for BLAS to use both threads: 1 and 2 threads differ without the tiles), batch 100 (not a multiple of the block: blocks of 16 and one
    // of 4), 20 steps per epoch; the last batch of each epoch is whole.
    std::ofstream c(dir_ / "run.toml");
    c << "name = \"run\"\nseed = 3\nepochs = 3\nthreads = 1\nprogress = \"plain\"\ndeterministic_block = 16\n"
      << "[data]\nformat = \"csv\"\ntrain_features = \"" << (dir_ / "train.csv").string() << "\"\ntest_features = \""
      << (dir_ / "test.csv").string() << "\"\nscale = 1.0\nvalidation_size = 200\n"
      << "[model]\ntype = \"mlp\"\nhidden = [256, 256]\n"
      << "[optimizer]\nname = \"momentum\"\nlr = 0.05\nmomentum = 0.9\n"
      << "[sampler]\nbatch_size = 100\n[early_stopping]\nenabled = false\n"
      << "[tensorboard]\nenabled = false\n[checkpoint]\nevery_steps = 5\nkeep = 2\n";
  }
  void TearDown() override { fs::remove_all(dir_); }

  // descent train under `launcher` (empty: one process) into runs/<name>.
  Output train(const std::string& launcher, const std::string& name, const std::string& sets) {
    return capture("TMPDIR=" + (dir_ / "tmp").string() + " " + launcher + " " + DESCENT_CLI + " train " +
                       (dir_ / "run.toml").string() + " --out " + (dir_ / "runs").string() + " --name " + name + " " +
                       sets);
  }
  fs::path model(const std::string& name) const { return dir_ / "runs" / name / "model.safetensors"; }
  // metrics.jsonl's final record: the train and test figures, as written (full precision).
  std::string final_record(const std::string& name) const {
    std::ifstream f(dir_ / "runs" / name / "metrics.jsonl");
    std::string line, last;
    while (std::getline(f, line)) {
      if (line.find("\"kind\":\"final\"") != std::string::npos) last = line;
    }
    EXPECT_FALSE(last.empty()) << name << ": no final record";
    // The figures only (the record also holds wall seconds).
    std::string figures;
    for (const char* key : {"\"best_val_loss\":", "\"train_loss\":", "\"train_error\":", "\"test_loss\":", "\"test_error\":"}) {
      const auto at = last.find(key);
      EXPECT_NE(at, std::string::npos) << key << " in " << last;
      if (at != std::string::npos) figures += last.substr(at, last.find_first_of(",}", at) - at) + " ";
    }
    return figures;
  }

  bool skip_without_mpi() {
    if (!descent::train::built_with_mpi()) return true;
    return !have_mpirun();
  }

  fs::path dir_;
};

constexpr const char* kSkip = "SKIP: mpirun or MPI missing (scripts/install-deps installs openmpi-bin and libopenmpi-dev)";

TEST_F(DistributedCli, DeterministicIsBitIdenticalAcrossThreadsAndRanks) {
  const Output t1 = train("", "t1", "--set deterministic=true --set threads=1 --set epochs=1");
  ASSERT_EQ(t1.code, 0) << t1.out;
  const Output t2 = train("", "t2", "--set deterministic=true --set threads=2 --set epochs=1");
  ASSERT_EQ(t2.code, 0) << t2.out;
  const std::vector<float> a = parameters(model("t1"));
  ASSERT_GT(a.size(), 600u);
  EXPECT_EQ(a, parameters(model("t2"))) << "deterministic: 1 and 2 threads differ";
  if (skip_without_mpi()) GTEST_SKIP() << kSkip;
  const Output r2 = train(mpirun(2), "r2", "--set deterministic=true --set threads=1 --set epochs=1");
  ASSERT_EQ(r2.code, 0) << r2.out;
  EXPECT_EQ(a, parameters(model("r2"))) << "deterministic: 1 and 2 ranks differ";
  // The evaluations, shared out over the ranks, give one process's figures bit for bit.
  EXPECT_EQ(final_record("t1"), final_record("r2"));
  // Rank 0 alone writes: one run folder, and the other rank's scratch folder is gone.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_ / "runs"), fs::directory_iterator()), 3);
  for (const auto& e : fs::directory_iterator(dir_ / "tmp")) {
    EXPECT_EQ(e.path().filename().string().rfind("descent-rank", 0), std::string::npos) << e.path();
  }
  // The summary line once (rank 0), not twice.
  const auto first = r2.out.find("test accuracy");
  ASSERT_NE(first, std::string::npos) << r2.out;
  EXPECT_EQ(r2.out.find("test accuracy", first + 1), std::string::npos) << r2.out;
}

TEST_F(DistributedCli, WithoutDeterminismTwoRanksDifferByRoundingOnly) {
  if (skip_without_mpi()) GTEST_SKIP() << kSkip;
  const Output p1 = train("", "p1", "--set epochs=1");
  ASSERT_EQ(p1.code, 0) << p1.out;
  const Output p2 = train(mpirun(2), "p2", "--set epochs=1");
  ASSERT_EQ(p2.code, 0) << p2.out;
  const std::vector<float> a = parameters(model("p1")), b = parameters(model("p2"));
  ASSERT_EQ(a.size(), b.size());
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::abs(static_cast<double>(a[i])));
  }
  // 20 updates of float32 sums in another order: far below any learning effect (the first
  // update alone moves the weights by about 1e-2).
  EXPECT_LE(diff, 1e-5 * scale) << "max |difference| " << diff << " of max |theta| " << scale;
}

// allreduce_bucket_kb: the gradient's all-reduce in buckets started during the backward pass.
// With 2 ranks each element is the same sum a + b as with one all-reduce after the pass, so
// the parameters are bit-identical (a bucket not scaled by the rank's share, scaled twice,
// started before its gradient was final, or never reduced changes them). 16 KiB buckets
// over the MLP 8-256-256-3's 269 KiB: the 256 KiB weight matrix alone, and smaller ones.
TEST_F(DistributedCli, BucketedAllReduceEqualsOneAllReduce) {
  if (skip_without_mpi()) GTEST_SKIP() << kSkip;
  const Output one = train(mpirun(2), "one", "--set epochs=1");
  ASSERT_EQ(one.code, 0) << one.out;
  const Output buckets = train(mpirun(2), "buckets", "--set epochs=1 --set allreduce_bucket_kb=16");
  ASSERT_EQ(buckets.code, 0) << buckets.out;
  EXPECT_NE(buckets.out.find("gradient all-reduce"), std::string::npos) << buckets.out;
  const std::vector<float> a = parameters(model("one"));
  ASSERT_GT(a.size(), 600u);
  EXPECT_EQ(a, parameters(model("buckets")));
}

TEST_F(DistributedCli, KilledRankLeavesAResumableFolder) {
  if (skip_without_mpi()) GTEST_SKIP() << kSkip;
  const std::string sets = "--set deterministic=true --set epochs=10 --set model.hidden=[64,32]";
  const Output whole = train("", "whole", sets);
  ASSERT_EQ(whole.code, 0) << whole.out;
  Output killed;
  std::thread job([&] { killed = train(mpirun(2), "killed", sets); });
  // Rank 1's scratch folder names its pid; kill it once rank 0 has written a checkpoint
  // past step 20.
  const fs::path ckpts = dir_ / "runs" / "killed" / "checkpoints";
  int pid = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (pid == 0 && std::chrono::steady_clock::now() < deadline) {
    bool past = false;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(ckpts, ec)) {
      const std::string f = e.path().filename().string();
      if (f.rfind("step-", 0) == 0 && std::stoll(f.substr(5, 12)) >= 20) past = true;
    }
    if (past) {
      for (const auto& e : fs::directory_iterator(dir_ / "tmp")) {
        const std::string f = e.path().filename().string();
        if (f.rfind("descent-rank1-", 0) == 0) pid = std::stoi(f.substr(14));
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_GT(pid, 0) << "rank 1 not found running";
  ::kill(pid, SIGKILL);
  job.join();
  EXPECT_NE(killed.code, 0) << killed.out;
  EXPECT_NE(killed.out.find("rank 0 of 2 got a stop signal"), std::string::npos) << killed.out;
  EXPECT_NE(killed.out.find("descent resume " + (dir_ / "runs" / "killed").string()), std::string::npos)
      << killed.out;
  ASSERT_FALSE(fs::exists(model("killed"))) << "the job was meant to die before the end";
  const Output resumed = capture("TMPDIR=" + (dir_ / "tmp").string() + " " + mpirun(2) + " " + DESCENT_CLI +
                                     " resume " + (dir_ / "runs" / "killed").string());
  ASSERT_EQ(resumed.code, 0) << resumed.out;
  EXPECT_NE(resumed.out.find("resuming"), std::string::npos) << resumed.out;
  EXPECT_EQ(parameters(model("whole")), parameters(model("killed")));
}

TEST_F(DistributedCli, DeterministicRefusesThreeRanks) {
  if (skip_without_mpi()) GTEST_SKIP() << kSkip;
  const Output r3 = train(mpirun(3), "r3", "--set deterministic=true");
  EXPECT_NE(r3.code, 0);
  EXPECT_NE(r3.out.find("deterministic: needs a power-of-two number of processes, not mpirun -np 3"),
            std::string::npos)
      << r3.out;
  EXPECT_FALSE(fs::exists(dir_ / "runs" / "r3" / "checkpoints"));
}

}  // namespace
