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
#include <set>
#include <string>
#include <thread>
#include <vector>

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

  // The parameters of runs a and b differ by float rounding only: max |difference| at most
  // 1e-5 of max |theta|.
  void expect_rounding_only(const std::string& a_run, const std::string& b_run) const {
    const std::vector<float> a = parameters(model(a_run)), b = parameters(model(b_run));
    ASSERT_EQ(a.size(), b.size());
    double diff = 0, scale = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      diff = std::max(diff, std::abs(static_cast<double>(a[i]) - b[i]));
      scale = std::max(scale, std::abs(static_cast<double>(a[i])));
    }
    EXPECT_LE(diff, 1e-5 * scale) << "max |difference| " << diff << " of max |theta| " << scale;
  }
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

  Output resume(const std::string& launcher, const std::string& name) {
    return capture("TMPDIR=" + (dir_ / "tmp").string() + " " + launcher + " " + DESCENT_CLI + " resume " +
                   (dir_ / "runs" / name).string());
  }

  // Trains runs/<name> under mpirun -np 2 and SIGKILLs rank 1 once rank 0 has written a
  // checkpoint past step 20: the job must end with the resume advice and no model.
  void kill_rank1_mid_run(const std::string& name, const std::string& sets) {
    Output killed;
    std::thread job([&] { killed = train(mpirun(2), name, sets); });
    // Rank 1's scratch folder names its pid.
    const fs::path ckpts = dir_ / "runs" / name / "checkpoints";
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
    if (pid > 0) ::kill(pid, SIGKILL);
    job.join();
    ASSERT_GT(pid, 0) << "rank 1 not found running: " << killed.out;
    EXPECT_NE(killed.code, 0) << killed.out;
    EXPECT_NE(killed.out.find("rank 0 of 2 got a stop signal"), std::string::npos) << killed.out;
    EXPECT_NE(killed.out.find("descent resume " + (dir_ / "runs" / name).string()), std::string::npos) << killed.out;
    ASSERT_FALSE(fs::exists(model(name))) << "the job was meant to die before the end";
  }

  // The training part as a shard set: 2000 examples (the 2200 less 200 for validation),
  // shuffled once, in 7 shards of 300 (the last 200). With data.shard_groups = 4 the groups
  // are shards {0, 4}, {1, 5}, {2, 6}, {3}: 600, 600, 500 and 300 examples; batch 100 takes
  // 25 of each, so an epoch is 24 batches, the last 12 without group 3 and the last 4 with
  // groups 0 and 1 only (rank 1 of 2 has no rows there). 2 ranks: rank 0 reads shards 0, 1,
  // 4, 5 and rank 1 shards 2, 3, 6.
  std::string shard_set() {
    const fs::path set = dir_ / "set";
    const Output s = capture(std::string(DESCENT_CLI) + " shard " + (dir_ / "run.toml").string() + " --out " +
                             set.string() + " --shard-size 300 --seed 9");
    EXPECT_EQ(s.code, 0) << s.out;
    return "--set 'data.format=\"sharded\"' --set 'data.dir=\"" + set.string() +
           "\"' --set data.shard_groups=4 --set 'sampler.kind=\"shuffle_once\"'";
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
  // 20 updates of float32 sums in another order: far below any learning effect (the first
  // update alone moves the weights by about 1e-2).
  expect_rounding_only("p1", "p2");
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
  kill_rank1_mid_run("killed", sets);
  ASSERT_FALSE(HasFailure());
  const Output resumed = resume(mpirun(2), "killed");
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

// Lines of a trace file (DESCENT_SHARD_TRACE): ids or shard file names.
std::vector<std::string> lines(const fs::path& p) {
  std::vector<std::string> out;
  std::ifstream in(p);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// Issue 18, each rank its own shards: a sharded set in 4 shard groups, deterministic, trained
// by 1 process and by 2 ranks: the same model bit for bit and the same figures; each rank
// opened only the shard files of its own groups (the process all 7); across the ranks every
// example was used once per pass, and each rank's examples came in the order one process
// used them (the batches do not depend on the number of ranks).
TEST_F(DistributedCli, ShardedRanksReadOnlyTheirOwnShardGroupsAndMatchOneProcess) {
  const std::string sets = shard_set() + " --set deterministic=true --set epochs=2";
  ASSERT_FALSE(HasFailure());
  const Output one = train("DESCENT_SHARD_TRACE=" + (dir_ / "one.trace").string(), "one", sets);
  ASSERT_EQ(one.code, 0) << one.out;
  const std::vector<std::string> all = lines(dir_ / "one.trace");
  ASSERT_EQ(all.size(), 4000u);  // 2 passes of 2000
  std::vector<std::string> opened = lines(dir_ / "one.trace.opened");
  std::sort(opened.begin(), opened.end());
  opened.erase(std::unique(opened.begin(), opened.end()), opened.end());
  EXPECT_EQ(opened.size(), 7u);
  if (skip_without_mpi()) GTEST_SKIP() << kSkip;
  const fs::path trace = dir_ / "two.trace";
  const Output two = train("DESCENT_SHARD_TRACE=" + trace.string() + " " + mpirun(2), "two", sets);
  ASSERT_EQ(two.code, 0) << two.out;
  EXPECT_EQ(parameters(model("one")), parameters(model("two"))) << "1 process and 2 ranks differ";
  EXPECT_EQ(final_record("one"), final_record("two"));
  const std::vector<std::vector<std::string>> own = {{"train-00000.shard", "train-00001.shard", "train-00004.shard",
                                                      "train-00005.shard"},
                                                     {"train-00002.shard", "train-00003.shard", "train-00006.shard"}};
  std::vector<std::string> ids[2];
  for (int r = 0; r < 2; ++r) {
    const std::string suffix = ".rank" + std::to_string(r);
    std::vector<std::string> files = lines(fs::path(trace.string() + suffix + ".opened"));
    ASSERT_FALSE(files.empty()) << "rank " << r << " opened nothing";
    std::sort(files.begin(), files.end());
    files.erase(std::unique(files.begin(), files.end()), files.end());
    EXPECT_EQ(files, own[static_cast<std::size_t>(r)]) << "rank " << r << " opened another rank's shard";
    ids[r] = lines(fs::path(trace.string() + suffix));
  }
  EXPECT_EQ(ids[0].size(), 2u * (600 + 600));
  EXPECT_EQ(ids[1].size(), 2u * (500 + 300));
  // Once per pass across the ranks: every id of 0..1999 twice in the two ranks' traces together.
  std::vector<long> both;
  for (const auto& list : ids)
    for (const std::string& id : list) both.push_back(std::stol(id));
  std::sort(both.begin(), both.end());
  ASSERT_EQ(both.size(), 4000u);
  for (long i = 0; i < 4000; ++i) ASSERT_EQ(both[static_cast<std::size_t>(i)], i / 2) << "an example missing or used twice";
  // Rank r's ids are one process's ids of rank r's groups, in the same order.
  std::set<std::string> of0(ids[0].begin(), ids[0].end());
  std::vector<std::string> mine[2];
  for (const std::string& id : all) mine[of0.count(id) ? 0 : 1].push_back(id);
  EXPECT_TRUE(mine[0] == ids[0]);
  EXPECT_TRUE(mine[1] == ids[1]);
}

// Without deterministic mode 2 ranks on shard groups differ from one process by rounding only
// (each rank's rows are its groups' rows: a wrong assignment would read NaN rows).
TEST_F(DistributedCli, ShardedWithoutDeterminismDiffersByRoundingOnly) {
  if (skip_without_mpi()) GTEST_SKIP() << kSkip;
  const std::string sets = shard_set() + " --set epochs=1";
  ASSERT_FALSE(HasFailure());
  const Output one = train("", "one", sets);
  ASSERT_EQ(one.code, 0) << one.out;
  const Output two = train(mpirun(2), "two", sets);
  ASSERT_EQ(two.code, 0) << two.out;
  expect_rounding_only("one", "two");
}

// A 2-rank job on shard groups killed mid-run resumes at the exact example: resumed by 2
// ranks, and (a copy of the same folder) by 1 process, it ends bit-identical to one process
// never interrupted. The number of ranks may change at a resume (it must divide the groups).
TEST_F(DistributedCli, ShardedKilledJobResumesWithTheSameOrAnotherNumberOfRanks) {
  if (skip_without_mpi()) GTEST_SKIP() << kSkip;
  const std::string sets = shard_set() + " --set deterministic=true --set epochs=6 --set model.hidden=[64,32]";
  ASSERT_FALSE(HasFailure());
  const Output whole = train("", "whole", sets);
  ASSERT_EQ(whole.code, 0) << whole.out;
  kill_rank1_mid_run("killed", sets);
  ASSERT_FALSE(HasFailure());
  fs::copy(dir_ / "runs" / "killed", dir_ / "runs" / "copy", fs::copy_options::recursive);
  const Output resumed = resume(mpirun(2), "killed");
  ASSERT_EQ(resumed.code, 0) << resumed.out;
  EXPECT_NE(resumed.out.find("resuming"), std::string::npos) << resumed.out;
  EXPECT_EQ(parameters(model("whole")), parameters(model("killed"))) << "resumed by 2 ranks";
  const Output alone = resume("", "copy");
  ASSERT_EQ(alone.code, 0) << alone.out;
  EXPECT_EQ(parameters(model("whole")), parameters(model("copy"))) << "resumed by 1 process";
}

// Ranks that do not divide the groups, and groups that do not fit the set or the batch: one line.
TEST_F(DistributedCli, ShardGroupsThatDoNotFitAreOneClearLine) {
  const std::string sets = shard_set();
  ASSERT_FALSE(HasFailure());
  Output r = train("", "a", sets + " --set data.shard_groups=8");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("data.shard_groups = 8 is more than the 7 training shards"), std::string::npos) << r.out;
  r = train("", "b", sets + " --set data.shard_groups=3");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("sampler.batch_size = 100 is not a multiple of data.shard_groups = 3"), std::string::npos) << r.out;
  r = train("", "c", sets + " --set sampler.batch_size=60 --set data.shard_groups=6 --set deterministic=true");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("data.shard_groups = 6 with deterministic = true must be a power of two"), std::string::npos) << r.out;
  if (skip_without_mpi()) GTEST_SKIP() << kSkip;
  r = train(mpirun(2), "d", sets + " --set data.shard_groups=1");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("data.shard_groups = 1 cannot be shared out over 2 ranks"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir_ / "runs" / "d" / "checkpoints"));
}

}  // namespace
