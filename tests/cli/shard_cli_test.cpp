// descent shard and data.format = "sharded" (issue 18, data larger than memory), with real
// processes: a sharded run equals the in-memory run bit for bit, a stream pass uses each
// example once, a run killed mid-epoch resumes to the uninterrupted result, malformed sets
// are one clear error, and a training process stays far below the size of its data.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>


#include "support/synthetic_csv.hpp"

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitizedBuild = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kSanitizedBuild = true;
#else
constexpr bool kSanitizedBuild = false;
#endif
#else
constexpr bool kSanitizedBuild = false;
#endif

namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::uintmax_t folder_bytes(const fs::path& dir) {
  std::uintmax_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.file_size();
  return n;
}

class ShardCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("descent_shard_cli_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    descent::testing::write_three_class_csvs(dir_, {.seed = 5, .train = 1200, .test = 200});
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A config over the CSV files (data = "") or over the shard set `data`.
  fs::path config(const std::string& name, const std::string& data, const std::string& sampler, int epochs,
                  const std::string& extra = "") {
    const fs::path path = dir_ / (name + ".toml");
    std::ofstream c(path);
    c << "name = \"run\"\nseed = 3\nepochs = " << epochs << "\nthreads = 1\nprogress = \"plain\"\n[data]\n";
    if (data.empty()) {
      c << "format = \"csv\"\ntrain_features = \"" << (dir_ / "train.csv").string() << "\"\ntest_features = \""
        << (dir_ / "test.csv").string() << "\"\n";
    } else {
      c << "format = \"sharded\"\ndir = \"" << data << "\"\n";
    }
    c << "scale = 0.5\nvalidation_size = 200\n"
      << "[model]\ntype = \"sequential\"\nlayers = [{type = \"linear\", units = 32}, {type = \"relu\"},"
         " {type = \"dropout\", p = 0.1}, {type = \"linear\"}]\n"
      << "[optimizer]\nname = \"adam\"\nlr = 0.003\n[sampler]\nkind = \"" << sampler << "\"\nbatch_size = 16\n"
      << "[early_stopping]\npatience = 100\n" << extra;
    return path;
  }

  struct Result {
    int code;
    std::string out, err;
  };
  pid_t start(const std::vector<std::string>& args, const std::string& log,
              const std::vector<std::pair<std::string, std::string>>& env = {}) {
    const pid_t pid = fork();
    if (pid == 0) {
      std::freopen((dir_ / (log + ".out")).c_str(), "w", stdout);
      std::freopen((dir_ / (log + ".err")).c_str(), "w", stderr);
      for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
      std::vector<char*> argv;
      std::string program = DESCENT_CLI;
      argv.push_back(program.data());
      std::vector<std::string> copy = args;
      for (std::string& a : copy) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(program.c_str(), argv.data());
      _exit(127);
    }
    return pid;
  }
  // The exit code (or -signal), and the child's peak RSS in kB when `max_rss_kb` is given.
  static int wait_for(pid_t pid, long* max_rss_kb = nullptr) {
    int status = 0;
    rusage usage{};
    wait4(pid, &status, 0, &usage);
    if (max_rss_kb != nullptr) *max_rss_kb = usage.ru_maxrss;
    if (WIFSIGNALED(status)) return -WTERMSIG(status);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1000;
  }
  Result run(const std::vector<std::string>& args, const std::string& log = "run",
             const std::vector<std::pair<std::string, std::string>>& env = {}) {
    const int code = wait_for(start(args, log, env));
    return {code, slurp(dir_ / (log + ".out")), slurp(dir_ / (log + ".err"))};
  }
  void shard(const fs::path& out, const std::vector<std::string>& extra) {
    std::vector<std::string> args = {"shard", config("source", "", "stream", 1).string(), "--out", out.string()};
    args.insert(args.end(), extra.begin(), extra.end());
    const Result r = run(args, "shard");
    ASSERT_EQ(r.code, 0) << r.err;
  }

  fs::path dir_;
};

// Sharded without shuffling and read sequentially, the run sees the examples in the CSV's
// order: its model file must equal the in-memory run's bit for bit (an independent path: the
// CSV reader, the validation split and data::scale of load_data). Two epochs: each is a pass.
TEST_F(ShardCli, UnshuffledShardsTrainExactlyAsTheInMemoryData) {
  shard(dir_ / "set", {"--shard-size", "97", "--no-shuffle"});
  const std::string index = slurp(dir_ / "set" / "index.json");
  EXPECT_NE(index.find("\"train\": 1000"), std::string::npos) << index;  // 1200 - 200 validation
  EXPECT_EQ(std::count_if(fs::directory_iterator(dir_ / "set"), {}, [](const auto& e) {
              return e.path().filename().string().starts_with("train-");
            }),
            11);  // ceil(1000 / 97)
  const Result a = run({"train", config("mem", "", "sequential", 2).string(), "--out", (dir_ / "a").string()}, "a");
  ASSERT_EQ(a.code, 0) << a.err;
  const Result b =
      run({"train", config("sh", (dir_ / "set").string(), "sequential", 2).string(), "--out", (dir_ / "b").string()}, "b");
  ASSERT_EQ(b.code, 0) << b.err;
  const std::string ma = slurp(dir_ / "a" / "run" / "model.safetensors");
  ASSERT_FALSE(ma.empty());
  EXPECT_TRUE(ma == slurp(dir_ / "b" / "run" / "model.safetensors"));
  EXPECT_NE(b.err.find("1000 train / 200 validation / 200 test"), std::string::npos) << b.err;
}

// A shuffled set read by the stream sampler: one pass, every example once, in the set's order
// (which is a permutation of the source: ids 0..999, not in increasing order).
TEST_F(ShardCli, StreamUsesEachExampleOnceInTheShuffledOrder) {
  shard(dir_ / "set", {"--shard-size", "128", "--seed", "4"});
  const fs::path trace = dir_ / "trace.txt";
  const Result r = run({"train", config("sh", (dir_ / "set").string(), "stream", 3).string(), "--out", (dir_ / "r").string()},
                       "r", {{"DESCENT_SHARD_TRACE", trace.string()}});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<long> ids;
  std::ifstream in(trace);
  for (long id = 0; in >> id;) ids.push_back(id);
  ASSERT_EQ(ids.size(), 1000u);
  EXPECT_FALSE(std::is_sorted(ids.begin(), ids.end()));
  std::vector<long> sorted = ids;
  std::sort(sorted.begin(), sorted.end());
  for (long i = 0; i < 1000; ++i) ASSERT_EQ(sorted[static_cast<std::size_t>(i)], i);
  // The same seed gives the same set; another seed another order.
  shard(dir_ / "again", {"--shard-size", "128", "--seed", "4"});
  EXPECT_EQ(slurp(dir_ / "set" / "index.json"), slurp(dir_ / "again" / "index.json"));
  shard(dir_ / "other", {"--shard-size", "128", "--seed", "5"});
  EXPECT_NE(slurp(dir_ / "set" / "train-00000.shard"), slurp(dir_ / "other" / "train-00000.shard"));
}

TEST_F(ShardCli, ErrorsAreOneClearLine) {
  shard(dir_ / "set", {"--shard-size", "300"});
  // A non-empty --out without --force; with it the set is replaced.
  Result r = run({"shard", config("source", "", "stream", 1).string(), "--out", (dir_ / "set").string()});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("not empty; pass --force"), std::string::npos) << r.err;
  shard(dir_ / "set", {"--shard-size", "300", "--force"});
  // A sampler that draws at random, and standardization.
  r = run({"train", config("bad", (dir_ / "set").string(), "reshuffle", 1).string(), "--out", (dir_ / "x").string()});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("sampler.kind = \"reshuffle\""), std::string::npos) << r.err;
  r = run({"train", config("bad2", (dir_ / "set").string(), "stream", 1, "").string(), "--out", (dir_ / "x").string(),
           "--set", "data.standardize=global"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("data.standardize = \"global\""), std::string::npos) << r.err;
  // One flipped byte in a shard: the run stops with the file's name, no model.
  std::string bytes = slurp(dir_ / "set" / "train-00001.shard");
  bytes[bytes.size() / 2] ^= 0x10;
  std::ofstream(dir_ / "set" / "train-00001.shard", std::ios::binary) << bytes;
  r = run({"train", config("sh", (dir_ / "set").string(), "stream", 1).string(), "--out", (dir_ / "y").string()});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("train-00001.shard: checksum mismatch"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), std::count(r.err.begin(), r.err.end(), '\n'));
  // A truncated shard is found when the set is opened.
  std::ofstream(dir_ / "set" / "train-00001.shard", std::ios::binary) << bytes.substr(0, 100);
  r = run({"train", config("sh", (dir_ / "set").string(), "stream", 1).string(), "--out", (dir_ / "z").string()});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("train-00001.shard: holds 100 bytes"), std::string::npos) << r.err;
  // No index: not a shard set.
  fs::remove(dir_ / "set" / "index.json");
  r = run({"train", config("sh", (dir_ / "set").string(), "stream", 1).string(), "--out", (dir_ / "w").string()});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("index.json: missing"), std::string::npos) << r.err;
}

// SIGKILL mid-epoch (several times), resumed each time: the stream continues at the exact next
// example, and the model equals the uninterrupted run's bit for bit.
TEST_F(ShardCli, KilledMidStreamAndResumedEndsBitIdentical) {
  shard(dir_ / "set", {"--shard-size", "64", "--augment-shifts", "0"});
  // Several epochs' worth of data in one stream pass: 1000 examples, batch 4 = 250 steps.
  const fs::path cfg = config("sh", (dir_ / "set").string(), "stream", 1,
                              "[checkpoint]\nevery_steps = 7\nkeep = 2\n");
  {
    std::string text = slurp(cfg);
    text.replace(text.find("batch_size = 16"), 15, "batch_size = 4");
    std::ofstream(cfg) << text;
  }
  const auto t0 = std::chrono::steady_clock::now();
  const fs::path ref_trace = dir_ / "ref.trace";
  ASSERT_EQ(wait_for(start({"train", cfg.string(), "--out", (dir_ / "ref").string()}, "ref",
                           {{"DESCENT_SHARD_TRACE", ref_trace.string()}})),
            0)
      << slurp(dir_ / "ref.err");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string reference = slurp(dir_ / "ref" / "run" / "model.safetensors");
  ASSERT_FALSE(reference.empty());
  std::mt19937 gen(7);
  std::uniform_real_distribution<double> when(0.15, 0.5);
  const fs::path run_dir = dir_ / "killed" / "run";
  int kills = 0, code = -1;
  for (int attempt = 0; attempt < 30; ++attempt) {
    // Fresh until a checkpoint is complete: a kill during the first write leaves only the
    // hidden temporary file (".step-...tmp-..."), which resume rightly refuses.
    bool fresh = true;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(run_dir / "checkpoints", ec))
      if (e.path().filename().string().rfind("step-", 0) == 0) fresh = false;
    const std::vector<std::string> args = fresh ? std::vector<std::string>{"train", cfg.string(), "--out",
                                                                           (dir_ / "killed").string(), "--overwrite"}
                                                : std::vector<std::string>{"resume", run_dir.string()};
    const pid_t pid = start(args, "attempt" + std::to_string(attempt));
    if (kills < 3) {
      std::this_thread::sleep_for(std::chrono::duration<double>(when(gen) * seconds));
      kill(pid, SIGKILL);
    }
    code = wait_for(pid);
    if (code == -SIGKILL) {
      ++kills;
      continue;
    }
    ASSERT_EQ(code, 0) << slurp(dir_ / ("attempt" + std::to_string(attempt) + ".err"));
    break;
  }
  ASSERT_EQ(code, 0);
  EXPECT_GE(kills, 2) << "the kills should land while the run trains (reference: " << seconds << " s)";
  EXPECT_TRUE(slurp(run_dir / "model.safetensors") == reference) << "model.safetensors differs after " << kills << " kills";
}

// Data larger than memory: Fashion-MNIST's first 2500 images less 500 for validation, each
// with its 48 copies shifted by up to 3 pixels, written as shards of 2000 (2000 x 49 = 98,000
// examples, 77 MB of u8 features). One stream pass trains a small MLP. The training process's
// peak RSS (ru_maxrss of the child) is compared with the same run on the unaugmented set
// (2000 examples, one shard): memory that grew with the data would add about 75 MB; the
// stream may add a few shards (each 1.6 MB), and the set must be over 6 times what it adds,
// and larger than the whole process's peak (about 40 MB, most of it the libraries: with 25
// copies, 40.6 MB, that margin went when oneDNN's matmul primitives came in, session 11).
// The trace must hold every example id exactly once.
TEST_F(ShardCli, StreamPassOverASetSixTimesLargerThanTheMemoryItUses) {
  if (!fs::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "Fashion-MNIST not installed (dataset-fashion-mnist)";
  const fs::path src = dir_ / "fmnist.toml";
  std::ofstream(src) << "seed = 1\n[data]\nformat = \"mnist\"\ndir = \"/usr/share/datasets/fashion-mnist\"\n"
                        "limit_train = 2500\nlimit_test = 500\nvalidation_size = 500\n";
  struct Pass {
    std::uintmax_t bytes = 0, shard_bytes = 0;
    double rss = 0, seconds = 0;
    std::vector<long> ids;
  };
  const auto pass = [&](const std::string& name, int shifts) {
    Pass p;
    const fs::path set = dir_ / name;
    const Result s = run({"shard", src.string(), "--out", set.string(), "--shard-size", "2000", "--augment-shifts",
                          std::to_string(shifts)},
                         name);
    EXPECT_EQ(s.code, 0) << s.err;
    p.bytes = folder_bytes(set);
    p.shard_bytes = fs::file_size(set / "train-00000.shard");
    const fs::path cfg = dir_ / (name + ".toml");
    std::ofstream(cfg) << "name = \"run\"\nseed = 1\nepochs = 1\nthreads = 1\nprogress = \"none\"\n"
                          "[data]\nformat = \"sharded\"\ndir = \"" << set.string() << "\"\n"
                       << "[model]\ntype = \"mlp\"\nhidden = [32]\n[optimizer]\nname = \"sgd\"\nlr = 0.05\n"
                          "[sampler]\nkind = \"stream\"\nbatch_size = 250\n";
    const fs::path trace = dir_ / (name + ".trace");
    long rss_kb = 0;
    const auto t0 = std::chrono::steady_clock::now();
    const int code = wait_for(start({"train", cfg.string(), "--out", (dir_ / (name + "-run")).string()}, name + "-run",
                                    {{"DESCENT_SHARD_TRACE", trace.string()}}),
                              &rss_kb);
    p.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(code, 0) << slurp(dir_ / (name + "-run.err"));
    p.rss = static_cast<double>(rss_kb) * 1024.0;
    std::ifstream in(trace);
    for (long id = 0; in >> id;) p.ids.push_back(id);
    return p;
  };
  const Pass small = pass("small", 0);
  const Pass big = pass("big", 3);
  ASSERT_FALSE(HasFailure());
  ASSERT_GT(big.bytes, 75u << 20);
  const double added = big.rss - small.rss;
  std::printf("shard set %.1f MB (%.1f MB per shard): peak RSS %.1f MB, %.1f MB above the same run on %.1f MB, "
              "%.1f s per pass with the evaluations\n",
              static_cast<double>(big.bytes) / 1e6, static_cast<double>(big.shard_bytes) / 1e6, big.rss / 1e6,
              added / 1e6, static_cast<double>(small.bytes) / 1e6, big.seconds);
  // Under AddressSanitizer freed blocks wait in its quarantine (256 MB by default) instead of
  // returning to the allocator, so the peak RSS measures the quarantine, not the stream: the
  // memory bound is checked in the Release tree only (scripts/test runs both); the
  // once-per-pass check below runs in both.
  if (!kSanitizedBuild) {
    EXPECT_LT(added, 4.0 * static_cast<double>(big.shard_bytes) + 4e6) << "peak RSS grew with the data";
    EXPECT_GT(static_cast<double>(big.bytes), 6.0 * std::max(added, 0.0) + 6.0 * static_cast<double>(big.shard_bytes));
    EXPECT_LT(big.rss, static_cast<double>(big.bytes));
  }
  // Every example id 0..97999 (source row r < 2000 of the training part, copy c: 49 r + c) once.
  std::vector<long> ids = big.ids;
  ASSERT_EQ(ids.size(), 98000u);
  std::sort(ids.begin(), ids.end());
  for (long i = 0; i < 98000; ++i) ASSERT_EQ(ids[static_cast<std::size_t>(i)], i) << "an example missing or used twice";
  EXPECT_EQ(small.ids.size(), 2000u);
}

}  // namespace
