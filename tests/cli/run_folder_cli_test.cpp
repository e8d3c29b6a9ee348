// Nothing lost (issue 19), with real processes: a run folder belongs to one run (training into
// one that holds a run is refused unless --overwrite or --fresh-name; resume refuses a
// checkpoint of another run and a metrics.jsonl shorter than its checkpoint says); resume
// says when it is pointed at a file or at a folder that is not a run folder; a failed run
// leaves no half-made folder; a run stopped by divergence or a signal ends metrics.jsonl with
// a "stopped" record; a full disk (a file size limit: RLIMIT_FSIZE with SIGXFSZ ignored, so
// writes fail with EFBIG) while a checkpoint, metrics.jsonl or model.safetensors is written is
// one error naming the file, leaves the earlier checkpoints valid, and the run resumes, once
// there is room, to the model of the run never stopped.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/process.hpp"
#include "support/synthetic_csv.hpp"

namespace {

namespace fs = std::filesystem;
using namespace descent::testing;  // support/process.hpp, support/synthetic_csv.hpp

// Every line of a JSON lines file, parsed (a line that does not parse fails the test).
std::vector<nlohmann::json> records(const fs::path& p) {
  std::vector<nlohmann::json> out;
  std::ifstream in(p, std::ios::binary);
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    EXPECT_TRUE(j.is_object()) << p << ": a line that is not a JSON object: " << line.substr(0, 80);
    out.push_back(std::move(j));
  }
  return out;
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> out;
  if (!fs::exists(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

class RunFolderCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fresh_test_dir("descent_run_folder_cli");
    write_three_class_csvs(dir_, {.seed = 5, .train = 600, .test = 200});
    std::ofstream c(dir_ / "run.toml");
    c << "name = \"exp\"\nseed = 9\nepochs = 3\nthreads = 1\nprogress = \"plain\"\n"
      << "[data]\nformat = \"csv\"\ntrain_features = \"" << (dir_ / "train.csv").string() << "\"\ntest_features = \""
      << (dir_ / "test.csv").string() << "\"\nscale = 1.0\nvalidation_size = 100\n"
      << "[model]\nhidden = [16]\n[optimizer]\nname = \"adam\"\nlr = 0.003\n"
      << "[sampler]\nbatch_size = 16\n[early_stopping]\npatience = 100\n[checkpoint]\nevery_steps = 9\nkeep = 1000\n";
    runs_ = dir_ / "runs";
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Starts `descent args...` with stdout and stderr to <log>.out and <log>.err in dir_; with
  // `file_size_limit` > 0 the child may write no file beyond that many bytes (RLIMIT_FSIZE, with
  // SIGXFSZ ignored so that the write fails with EFBIG as on a full disk). Returns the pid.
  pid_t start(const std::vector<std::string>& args, const std::string& log, rlim_t file_size_limit = 0) {
    return spawn(DESCENT_CLI, args, dir_ / (log + ".out"), dir_ / (log + ".err"),
                 {.env = {}, .file_size_limit = file_size_limit});
  }

  // `descent train run.toml --out runs args...`; the exit code (stderr in <log>.err).
  int train(const std::vector<std::string>& args, const std::string& log, rlim_t file_size_limit = 0) {
    std::vector<std::string> all{"train", (dir_ / "run.toml").string(), "--out", runs_.string()};
    all.insert(all.end(), args.begin(), args.end());
    return wait_for(start(all, log, file_size_limit));
  }
  int resume(const fs::path& run, const std::string& log, rlim_t file_size_limit = 0) {
    return wait_for(start({"resume", run.string()}, log, file_size_limit));
  }
  std::string err(const std::string& log) const { return slurp(dir_ / (log + ".err")); }

  static std::string run_id(const fs::path& run) {
    return nlohmann::json::parse(slurp(run / "run.json")).at("run_id").get<std::string>();
  }
  static nlohmann::json run_file(const fs::path& run) { return nlohmann::json::parse(slurp(run / "run.json")); }

  // The file sizes of the checkpoints of `run`, oldest first.
  static std::vector<std::uintmax_t> checkpoint_sizes(const fs::path& run) {
    std::vector<std::uintmax_t> out;
    for (const std::string& name : names_in(run / "checkpoints")) out.push_back(fs::file_size(run / "checkpoints" / name));
    return out;
  }

  fs::path dir_, runs_;
};

// ---- one run per folder --------------------------------------------------------------------

TEST_F(RunFolderCli, TrainingIntoAFolderThatHoldsARunIsRefusedAndLeavesItUntouched) {
  ASSERT_EQ(train({"--name", "exp"}, "first"), 0) << err("first");
  const fs::path exp = runs_ / "exp";
  const std::string config = slurp(exp / "config.toml"), metrics = slurp(exp / "metrics.jsonl");
  const std::vector<std::string> checkpoints = names_in(exp / "checkpoints");
  const std::string id = run_id(exp);

  ASSERT_EQ(train({"--name", "exp", "--set", "optimizer.lr=0.01", "--set", "epochs=4"}, "again"), 1);
  const std::string e = err("again");
  EXPECT_EQ(count(e, "\n"), 1u) << e;  // one line
  EXPECT_NE(e.find("descent: error: " + exp.string() + ": holds another run"), std::string::npos) << e;
  EXPECT_NE(e.find("--overwrite"), std::string::npos) << e;
  EXPECT_NE(e.find((runs_ / "exp-2").string() + " with --fresh-name"), std::string::npos) << e;
  EXPECT_NE(e.find("descent resume " + exp.string()), std::string::npos) << e;
  // The old run is as it was.
  EXPECT_EQ(slurp(exp / "config.toml"), config);
  EXPECT_EQ(slurp(exp / "metrics.jsonl"), metrics);
  EXPECT_EQ(names_in(exp / "checkpoints"), checkpoints);
  EXPECT_EQ(run_id(exp), id);
  EXPECT_FALSE(fs::exists(runs_ / "exp-2"));
}

TEST_F(RunFolderCli, FreshNameTrainsIntoTheNextFreeNumberedFolder) {
  ASSERT_EQ(train({"--name", "exp"}, "first"), 0) << err("first");
  ASSERT_EQ(train({"--name", "exp", "--fresh-name", "--set", "optimizer.lr=0.01"}, "second"), 0) << err("second");
  EXPECT_NE(err("second").find("goes to " + (runs_ / "exp-2").string()), std::string::npos) << err("second");
  EXPECT_NE(slurp(dir_ / "second.out").find((runs_ / "exp-2").string()), std::string::npos);
  ASSERT_EQ(train({"--name", "exp", "--fresh-name", "--set", "optimizer.lr=0.02"}, "third"), 0) << err("third");
  EXPECT_EQ(names_in(runs_), (std::vector<std::string>{"exp", "exp-2", "exp-3"}));
  EXPECT_NE(slurp(runs_ / "exp-2" / "config.toml").find("lr = 0.01"), std::string::npos);
  EXPECT_NE(slurp(runs_ / "exp-3" / "config.toml").find("lr = 0.02"), std::string::npos);
  EXPECT_NE(run_id(runs_ / "exp-2"), run_id(runs_ / "exp"));
  EXPECT_NE(run_id(runs_ / "exp-3"), run_id(runs_ / "exp-2"));
  // A name that is free is used as it is.
  ASSERT_EQ(train({"--name", "other", "--fresh-name"}, "fourth"), 0) << err("fourth");
  EXPECT_TRUE(fs::exists(runs_ / "other" / "model.safetensors"));
  // --overwrite and --fresh-name together: a usage error.
  EXPECT_NE(train({"--name", "exp", "--fresh-name", "--overwrite"}, "both"), 0);
}

// The scenario: a longer run with another rate trained over an old one, interrupted,
// resumed. With --overwrite the old run's checkpoints are gone, so the resume finishes the new
// run: its model is bit for bit that of the new run never interrupted.
TEST_F(RunFolderCli, OverwriteReplacesTheOldRunAndTheResumeFinishesTheNewOne) {
  const std::vector<std::string> longer{"--set", "optimizer.lr=0.01", "--set", "epochs=8", "--set",
                                        "model.hidden=[64]", "--set", "checkpoint.every_steps=3", "--set", "checkpoint.keep=5"};
  std::vector<std::string> reference_args{"--name", "reference"};
  reference_args.insert(reference_args.end(), longer.begin(), longer.end());
  ASSERT_EQ(train(reference_args, "reference"), 0) << err("reference");
  const std::string reference = slurp(runs_ / "reference" / "model.safetensors");

  ASSERT_EQ(train({"--name", "exp", "--set", "checkpoint.every_steps=1"}, "old"), 0) << err("old");
  const fs::path exp = runs_ / "exp";
  const std::string old_id = run_id(exp);
  const std::size_t old_checkpoints = names_in(exp / "checkpoints").size();
  { std::ofstream(exp / "notes.txt") << "mine\n"; }  // not the run's: stays

  std::vector<std::string> args{"train", (dir_ / "run.toml").string(), "--out", runs_.string(), "--name", "exp", "--overwrite"};
  args.insert(args.end(), longer.begin(), longer.end());
  const pid_t pid = start(args, "new");
  // Signal once the new run has written a few checkpoints of its own.
  const auto new_checkpoints = [&] {
    return fs::exists(exp / "run.json") && slurp(exp / "run.json").find(old_id) == std::string::npos
               ? names_in(exp / "checkpoints").size()
               : 0;
  };
  for (int i = 0; i < 2000 && new_checkpoints() < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  kill(pid, SIGTERM);
  const int code = wait_for(pid);
  EXPECT_TRUE(code == 128 + SIGTERM || code == 0) << err("new");
  EXPECT_NE(run_id(exp), old_id);
  EXPECT_EQ(slurp(exp / "notes.txt"), "mine\n");
  // Only the new run's checkpoints: the old one wrote one per step (more than the new one has).
  for (const std::string& name : names_in(exp / "checkpoints")) EXPECT_EQ(name.find(".tmp"), std::string::npos) << name;
  EXPECT_LT(names_in(exp / "checkpoints").size(), old_checkpoints);
  if (code != 0) {
    ASSERT_EQ(resume(exp, "resumed"), 0) << err("resumed");
  }
  EXPECT_NE(slurp(exp / "config.toml").find("lr = 0.01"), std::string::npos);
  EXPECT_TRUE(slurp(exp / "model.safetensors") == reference) << "the resumed run is not the new run";
  EXPECT_EQ(records(exp / "metrics.jsonl").size(), records(runs_ / "reference" / "metrics.jsonl").size());
  EXPECT_EQ(run_file(exp).at("status"), "finished");
}

TEST_F(RunFolderCli, ResumeRefusesACheckpointOfAnotherRun) {
  ASSERT_EQ(train({"--name", "a"}, "a"), 0) << err("a");
  ASSERT_EQ(train({"--name", "b", "--set", "optimizer.lr=0.01"}, "b"), 0) << err("b");
  const fs::path a = runs_ / "a", b = runs_ / "b";
  // b's newest checkpoint, dropped among a's under a newer step's name.
  const std::vector<std::string> theirs = names_in(b / "checkpoints");
  const fs::path foreign = a / "checkpoints" / "step-000000999999.ckpt";
  fs::copy_file(b / "checkpoints" / theirs.back(), foreign);
  const std::string metrics = slurp(a / "metrics.jsonl");
  ASSERT_EQ(resume(a, "mixed"), 1);
  const std::string e = err("mixed");
  EXPECT_EQ(count(e, "descent: error: "), 1u) << e;
  EXPECT_NE(e.find(foreign.string() + ": belongs to run " + run_id(b) + ", not to the run of " + (a / "run.json").string() +
                   " (run " + run_id(a) + ")"),
            std::string::npos)
      << e;
  EXPECT_EQ(slurp(a / "metrics.jsonl"), metrics);  // untouched
  // Without the foreign file, the run resumes.
  fs::remove(foreign);
  ASSERT_EQ(resume(a, "own"), 0) << err("own");
}

TEST_F(RunFolderCli, ResumeRefusesAMetricsFileShorterThanItsCheckpointSays) {
  ASSERT_EQ(train({"--name", "exp"}, "first"), 0) << err("first");
  const fs::path metrics = runs_ / "exp" / "metrics.jsonl";
  const std::string full = slurp(metrics);
  { std::ofstream(metrics, std::ios::binary | std::ios::trunc) << full.substr(0, 100); }
  ASSERT_EQ(resume(runs_ / "exp", "short"), 1);
  const std::string e = err("short");
  EXPECT_NE(e.find("descent: error: " + metrics.string() + ": holds 100 bytes, fewer than the "), std::string::npos) << e;
  EXPECT_NE(e.find("step-"), std::string::npos) << e;  // names the checkpoint
  // Nothing written into it: no NUL padding.
  EXPECT_EQ(slurp(metrics), full.substr(0, 100));
  // The whole file back: it resumes.
  { std::ofstream(metrics, std::ios::binary | std::ios::trunc) << full; }
  ASSERT_EQ(resume(runs_ / "exp", "back"), 0) << err("back");
}

TEST_F(RunFolderCli, ResumeOfAFileOrOfAFolderThatIsNoRunSaysSo) {
  ASSERT_EQ(train({"--name", "exp"}, "one"), 0) << err("one");
  ASSERT_EQ(train({"--name", "other"}, "two"), 0) << err("two");
  // The --out folder.
  ASSERT_EQ(resume(runs_, "parent"), 1);
  EXPECT_NE(err("parent").find(runs_.string() + ": not a run folder"), std::string::npos) << err("parent");
  EXPECT_NE(err("parent").find("the run folders in it: " + (runs_ / "exp").string() + ", " + (runs_ / "other").string()),
            std::string::npos)
      << err("parent");
  // An empty folder.
  fs::create_directories(dir_ / "empty");
  ASSERT_EQ(resume(dir_ / "empty", "empty"), 1);
  EXPECT_NE(err("empty").find("not a run folder"), std::string::npos) << err("empty");
  EXPECT_NE(err("empty").find("nor any run folder"), std::string::npos) << err("empty");
  // A file of a run folder, and a checkpoint.
  ASSERT_EQ(resume(runs_ / "exp" / "config.toml", "file"), 1);
  EXPECT_NE(err("file").find((runs_ / "exp" / "config.toml").string() +
                             ": is a file, not a run folder; resume takes the run folder: descent resume " +
                             (runs_ / "exp").string()),
            std::string::npos)
      << err("file");
  const fs::path checkpoint = runs_ / "exp" / "checkpoints" / names_in(runs_ / "exp" / "checkpoints").back();
  ASSERT_EQ(resume(checkpoint, "checkpoint"), 1);
  EXPECT_NE(err("checkpoint").find("is a file, not a run folder; resume takes the run folder: descent resume " +
                                   (runs_ / "exp").string()),
            std::string::npos)
      << err("checkpoint");
  // A file elsewhere.
  ASSERT_EQ(resume(dir_ / "run.toml", "toml"), 1);
  EXPECT_NE(err("toml").find("is a file, not a run folder"), std::string::npos) << err("toml");
}

// ---- failed and stopped runs -----------------------------------------------------------------

TEST_F(RunFolderCli, ARunThatFailsBeforeItsFirstCheckpointLeavesNoFolder) {
  // The step-0 checkpoint does not fit under a 4000-byte file size limit (config.toml and
  // run.json do): the run fails after its folder was made, before its first checkpoint.
  const rlim_t limit = 4000;
  ASSERT_EQ(train({"--name", "bad"}, "bad", limit), 1);
  EXPECT_NE(err("bad").find("step-000000000000.ckpt: cannot write"), std::string::npos) << err("bad");
  EXPECT_FALSE(fs::exists(runs_ / "bad"));
  // The same with --fresh-name over an existing run: the numbered folder it made goes too.
  ASSERT_EQ(train({"--name", "exp"}, "good"), 0) << err("good");
  ASSERT_EQ(train({"--name", "exp", "--fresh-name"}, "bad2", limit), 1);
  EXPECT_EQ(names_in(runs_), std::vector<std::string>{"exp"});
  // A folder that existed before keeps the files that are not the run's.
  fs::create_directories(runs_ / "mine");
  { std::ofstream(runs_ / "mine" / "notes.txt") << "x"; }
  ASSERT_EQ(train({"--name", "mine"}, "bad3", limit), 1);
  EXPECT_EQ(names_in(runs_ / "mine"), std::vector<std::string>{"notes.txt"});
}

TEST_F(RunFolderCli, DivergenceEndsTheMetricsWithAStoppedRecordAndMarksTheRunFailed) {
  for (const std::string policy : {"stop", "skip"}) {
    const std::string name = "div_" + policy;
    ASSERT_EQ(train({"--name", name, "--set", "optimizer.name=sgd", "--set", "optimizer.momentum=0", "--set",
                     "optimizer.lr=1e9", "--set", "divergence.policy=\"" + policy + "\"", "--set",
                     "divergence.max_events=2"},
                    name),
              1);
    const std::string e = err(name);
    EXPECT_NE(e.find("training diverged at step"), std::string::npos) << e;
    const std::vector<nlohmann::json> lines = records(runs_ / name / "metrics.jsonl");
    ASSERT_FALSE(lines.empty());
    const nlohmann::json& last = lines.back();
    ASSERT_EQ(last.value("kind", ""), "stopped") << last.dump();
    EXPECT_EQ(last.at("reason"), "diverged");
    EXPECT_EQ(last.at("policy"), policy);
    EXPECT_TRUE(last.at("loss").is_null());  // not finite
    // Where: the update after the last one made, as the step records count them.
    std::int64_t updates = 0, skipped = 0, epoch = 0;
    for (const nlohmann::json& r : lines) {
      if (r.at("kind") == "step") {
        ++updates;
        epoch = r.at("epoch").get<std::int64_t>();
      }
      if (r.at("kind") == "divergence") ++skipped;
    }
    EXPECT_EQ(last.at("step").get<std::int64_t>(), updates);
    EXPECT_EQ(last.at("epoch").get<std::int64_t>(), std::max<std::int64_t>(epoch, 1));
    EXPECT_EQ(last.at("divergences").get<std::int64_t>(), policy == "stop" ? 1 : 3);
    EXPECT_EQ(skipped, policy == "stop" ? 0 : 2);
    EXPECT_NE(e.find(last.at("message").get<std::string>()), std::string::npos) << e;
    const nlohmann::json run = run_file(runs_ / name);
    EXPECT_EQ(run.at("status"), "failed");
    EXPECT_EQ(run.at("message"), last.at("message"));
  }
}

TEST_F(RunFolderCli, AnInterruptedRunEndsWithAStoppedRecordThatTheResumeCutsAway) {
  ASSERT_EQ(train({"--name", "reference", "--set", "epochs=10"}, "reference"), 0) << err("reference");
  const fs::path run = runs_ / "exp";
  const pid_t pid = start({"train", (dir_ / "run.toml").string(), "--out", runs_.string(), "--set", "epochs=10"}, "sig");
  for (int i = 0; i < 2000 && names_in(run / "checkpoints").size() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  kill(pid, SIGINT);
  const int code = wait_for(pid);
  if (code == 0) GTEST_SKIP() << "the run ended before the signal";
  ASSERT_EQ(code, 128 + SIGINT) << err("sig");
  const std::vector<nlohmann::json> lines = records(run / "metrics.jsonl");
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.back().value("kind", ""), "stopped");
  EXPECT_EQ(lines.back().value("reason", ""), "interrupted");
  EXPECT_EQ(lines.back().value("signal", ""), "SIGINT");
  EXPECT_TRUE(fs::exists(lines.back().at("checkpoint").get<std::string>()));
  EXPECT_EQ(run_file(run).at("status"), "interrupted");
  ASSERT_EQ(resume(run, "resumed"), 0) << err("resumed");
  const std::vector<nlohmann::json> after = records(run / "metrics.jsonl");
  for (const nlohmann::json& r : after) EXPECT_NE(r.value("kind", ""), "stopped");
  EXPECT_EQ(after.size(), records(runs_ / "reference" / "metrics.jsonl").size());
  EXPECT_TRUE(slurp(run / "model.safetensors") == slurp(runs_ / "reference" / "model.safetensors"));
  EXPECT_EQ(run_file(run).at("status"), "finished");
}

// ---- a full disk -----------------------------------------------------------------------------

// A checkpoint that does not fit: the step-0 checkpoint (no optimizer state yet) fits under the
// limit, the next one (with Adam's two moment vectors) does not.
TEST_F(RunFolderCli, AFullDiskWhileACheckpointIsWrittenLeavesTheEarlierOnesAndTheRunResumes) {
  const std::vector<std::string> big{"--set", "model.hidden=[256, 256]"};
  std::vector<std::string> args{"--name", "reference"};
  args.insert(args.end(), big.begin(), big.end());
  ASSERT_EQ(train(args, "reference"), 0) << err("reference");
  const std::vector<std::uintmax_t> sizes = checkpoint_sizes(runs_ / "reference");
  ASSERT_GE(sizes.size(), 3u);
  ASSERT_LT(sizes[0] + 1000, sizes[1]);
  ASSERT_GT(sizes[0], fs::file_size(runs_ / "reference" / "metrics.jsonl"));
  const rlim_t limit = (sizes[0] + sizes[1]) / 2;

  args[1] = "exp";
  ASSERT_EQ(train(args, "full", limit), 1) << err("full");
  const fs::path exp = runs_ / "exp";
  const std::string e = err("full");
  EXPECT_EQ(count(e, "descent: error: "), 1u) << e;
  EXPECT_NE(e.find("descent: error: " + (exp / "checkpoints" / "step-000000000009.ckpt").string() + ": cannot write"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("File too large"), std::string::npos) << e;
  EXPECT_NE(e.find("continue with: descent resume " + exp.string()), std::string::npos) << e;
  // The step-0 checkpoint stays, and no temporary file.
  EXPECT_EQ(names_in(exp / "checkpoints"), std::vector<std::string>{"step-000000000000.ckpt"});
  EXPECT_EQ(run_file(exp).at("status"), "failed");
  for (const nlohmann::json& r : records(exp / "metrics.jsonl")) EXPECT_TRUE(r.is_object());

  // Room again: the resume ends where the run never stopped would have.
  ASSERT_EQ(resume(exp, "resumed"), 0) << err("resumed");
  EXPECT_TRUE(slurp(exp / "model.safetensors") == slurp(runs_ / "reference" / "model.safetensors"));
  EXPECT_EQ(records(exp / "metrics.jsonl").size(), records(runs_ / "reference" / "metrics.jsonl").size());
  EXPECT_EQ(run_file(exp).at("status"), "finished");
}

// metrics.jsonl outgrows the limit while every checkpoint (a small model) fits under it.
TEST_F(RunFolderCli, AFullDiskWhileTheMetricsAreWrittenLeavesWholeLinesAndTheRunResumes) {
  const std::vector<std::string> small{"--set", "model.hidden=[4]", "--set", "sampler.batch_size=4", "--set",
                                       "checkpoint.every_steps=50", "--set", "epochs=4"};
  std::vector<std::string> args{"--name", "reference"};
  args.insert(args.end(), small.begin(), small.end());
  ASSERT_EQ(train(args, "reference"), 0) << err("reference");
  const std::vector<std::uintmax_t> sizes = checkpoint_sizes(runs_ / "reference");
  const std::uintmax_t largest = *std::max_element(sizes.begin(), sizes.end());
  const std::uintmax_t metrics = fs::file_size(runs_ / "reference" / "metrics.jsonl");
  ASSERT_LT(2 * largest, metrics);
  const rlim_t limit = (largest + metrics) / 2;

  args[1] = "exp";
  ASSERT_EQ(train(args, "full", limit), 1) << err("full");
  const fs::path exp = runs_ / "exp";
  const std::string e = err("full");
  EXPECT_EQ(count(e, "descent: error: "), 1u) << e;
  EXPECT_NE(e.find("descent: error: " + (exp / "metrics.jsonl").string() + ": cannot write JSON line: File too large"),
            std::string::npos)
      << e;
  // Whole lines only: the line that did not fit was taken back.
  const std::string text = slurp(exp / "metrics.jsonl");
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  EXPECT_LE(text.size(), limit);
  EXPECT_EQ(text.find('\0'), std::string::npos);
  for (const nlohmann::json& r : records(exp / "metrics.jsonl")) EXPECT_TRUE(r.is_object());
  EXPECT_FALSE(names_in(exp / "checkpoints").empty());

  ASSERT_EQ(resume(exp, "resumed"), 0) << err("resumed");
  EXPECT_TRUE(slurp(exp / "model.safetensors") == slurp(runs_ / "reference" / "model.safetensors"));
  const std::vector<nlohmann::json> got = records(exp / "metrics.jsonl"), want = records(runs_ / "reference" / "metrics.jsonl");
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].value("kind", ""), want[i].value("kind", "")) << "line " << i;
    if (want[i].contains("loss")) {
      EXPECT_EQ(got[i]["loss"], want[i]["loss"]) << "line " << i;
    }
  }
}

// model.safetensors (written after the loop's last checkpoint) does not fit: a resume, once
// there is room, only redoes the final evaluation and writes it.
TEST_F(RunFolderCli, AFullDiskWhileTheModelIsWrittenLeavesTheRunResumable) {
  const std::vector<std::string> big{"--set", "model.hidden=[256, 256]"};
  std::vector<std::string> args{"--name", "reference"};
  args.insert(args.end(), big.begin(), big.end());
  ASSERT_EQ(train(args, "reference"), 0) << err("reference");
  const std::string reference = slurp(runs_ / "reference" / "model.safetensors");
  // The run, its loop finished, before the model was written.
  const fs::path exp = runs_ / "exp";
  fs::copy(runs_ / "reference", exp, fs::copy_options::recursive);
  fs::remove(exp / "model.safetensors");
  const auto metrics_lines = records(exp / "metrics.jsonl").size();
  const rlim_t limit = reference.size() / 2;
  ASSERT_GT(limit, fs::file_size(exp / "metrics.jsonl"));

  ASSERT_EQ(resume(exp, "full", limit), 1) << err("full");
  const std::string e = err("full");
  EXPECT_EQ(count(e, "descent: error: "), 1u) << e;
  EXPECT_NE(e.find("descent: error: " + (exp / "model.safetensors").string() + ": cannot write"), std::string::npos) << e;
  EXPECT_NE(e.find("File too large"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(exp / "model.safetensors"));
  for (const std::string& name : names_in(exp)) EXPECT_EQ(name.find(".tmp"), std::string::npos) << name;
  EXPECT_EQ(run_file(exp).at("status"), "failed");

  ASSERT_EQ(resume(exp, "resumed"), 0) << err("resumed");
  EXPECT_TRUE(slurp(exp / "model.safetensors") == reference);
  EXPECT_EQ(records(exp / "metrics.jsonl").size(), metrics_lines);
}

// A real full disk: a 1 MiB tmpfs (in a mount namespace of its own, `unshare -rm`; skipped
// where that is not allowed) holds the step-0 checkpoint but not the next one: ENOSPC. The
// tmpfs is then grown and the run resumed, in the same namespace.
TEST_F(RunFolderCli, ARealFullDiskIsOneErrorAndTheRunResumesOnceThereIsRoom) {
  if (std::system("unshare -rm true >/dev/null 2>&1") != 0) GTEST_SKIP() << "no mount namespace here (unshare -rm)";
  ASSERT_EQ(train({"--name", "reference", "--set", "model.hidden=[256, 256]"}, "reference"), 0) << err("reference");
  const fs::path mnt = dir_ / "mnt", script = dir_ / "full.sh";
  {
    std::ofstream s(script);
    s << "mkdir -p '" << mnt.string() << "'\n"
      << "mount -t tmpfs -o size=1m tmpfs '" << mnt.string() << "' || exit 77\n"
      << "'" << DESCENT_CLI << "' train '" << (dir_ / "run.toml").string() << "' --out '" << mnt.string()
      << "' --set 'model.hidden=[256, 256]' > '" << (dir_ / "full.out").string() << "' 2> '" << (dir_ / "full.err").string()
      << "'\necho $? > '" << (dir_ / "full.code").string() << "'\n"
      << "ls '" << (mnt / "exp" / "checkpoints").string() << "' > '" << (dir_ / "full.ls").string() << "'\n"
      << "mount -o remount,size=64m '" << mnt.string() << "' || exit 78\n"
      << "'" << DESCENT_CLI << "' resume '" << (mnt / "exp").string() << "' > '" << (dir_ / "resumed.out").string()
      << "' 2> '" << (dir_ / "resumed.err").string() << "'\necho $? > '" << (dir_ / "resumed.code").string() << "'\n"
      << "cp '" << (mnt / "exp" / "model.safetensors").string() << "' '" << (dir_ / "model.safetensors").string() << "'\n";
  }
  const int status = std::system(("unshare -rm sh '" + script.string() + "'").c_str());
  if (WIFEXITED(status) && WEXITSTATUS(status) == 77) GTEST_SKIP() << "cannot mount a tmpfs here";
  ASSERT_EQ(slurp(dir_ / "full.code"), "1\n") << err("full");
  const std::string e = err("full");
  EXPECT_EQ(count(e, "descent: error: "), 1u) << e;
  EXPECT_NE(e.find("descent: error: " + (mnt / "exp" / "checkpoints" / "step-000000000009.ckpt").string() + ": cannot write"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("No space left on device"), std::string::npos) << e;
  EXPECT_EQ(slurp(dir_ / "full.ls"), "step-000000000000.ckpt\n");
  ASSERT_EQ(slurp(dir_ / "resumed.code"), "0\n") << err("resumed");
  EXPECT_TRUE(slurp(dir_ / "model.safetensors") == slurp(runs_ / "reference" / "model.safetensors"));
}

}  // namespace
