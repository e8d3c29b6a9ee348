// `descent compare` end to end with real processes on a tiny CSV problem: the summary's
// figures recomputed here from the runs' own metrics.jsonl, the ranking rule recomputed, a
// killed grid resumed without redoing finished runs, another grid refused in the same folder,
// malformed input as one line, and compare.html in headless Chromium (skipped without it).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "descent/init/rng.hpp"
#include "support/process.hpp"

namespace {

namespace fs = std::filesystem;
using namespace descent::testing;  // support/process.hpp
using Result = ProcessResult;
using nlohmann::json;

std::vector<json> records(const fs::path& metrics) {
  std::vector<json> out;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(json::parse(line));
  }
  return out;
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}
double sd_of(const std::vector<double>& v) {
  if (v.size() < 2) return 0.0;
  const double m = mean_of(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

// The CSV fields of a line (quoted fields without commas inside, as summary.csv writes names).
std::vector<std::string> fields(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false;
  for (const char c : line) {
    if (c == '"') quoted = !quoted;
    else if (c == ',' && !quoted) { out.push_back(cur); cur.clear(); }
    else cur += c;
  }
  out.push_back(cur);
  return out;
}

class Compare : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = fs::path(DESCENT_BINARY_DIR) / "compare-test" / ("cli-" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
    descent::Rng rng(11);
    for (const char* name : {"train.csv", "test.csv"}) {
      std::ofstream f(root_ / name);
      for (int i = 0; i < 500; ++i) {
        const int c = static_cast<int>(rng.below(2));
        f << c << "," << (c ? 0.5 : -0.5) + rng.normal() << "," << rng.normal() << "," << (c ? -0.4 : 0.4) + rng.normal() << "\n";
      }
    }
    std::ofstream(root_ / "tiny.toml") << "name = \"tiny\"\nepochs = 4\nprogress = \"none\"\n[data]\nformat = \"csv\"\n"
                                       << "train_features = \"" << (root_ / "train.csv").string() << "\"\ntest_features = \""
                                       << (root_ / "test.csv").string() << "\"\nscale = 1.0\nvalidation_size = 100\n"
                                       << "[model]\nhidden = [8]\n[sampler]\nbatch_size = 16\n[tensorboard]\nenabled = false\n";
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }
  static std::string cli() { return DESCENT_CLI; }
  static inline fs::path root_;
};

// 2 optimizers x 2 rates x 2 seeds; every figure of summary.json and summary.csv recomputed
// from the runs' own metrics.jsonl.
TEST_F(Compare, SummaryMatchesTheRunsOwnMetrics) {
  const fs::path dir = root_ / "grid";
  const double target = 0.35;
  const Result r = shell(cli() + " compare " + (root_ / "tiny.toml").string() +
                             " --vary optimizer.name=sgd,adam --vary optimizer.lr=0.3,0.01 --seeds 1,2 --jobs 2 --target " +
                             std::to_string(target) + " --out " + dir.string(),
                         root_);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("4 grid points x 2 seeds = 8 runs; 0 done (kept), 0 to resume, 8 to train; 2 at a time"), std::string::npos)
      << r.out;
  const json s = json::parse(slurp(dir / "summary.json"));
  ASSERT_EQ(s["runs"].size(), 8u);
  ASSERT_EQ(s["points"].size(), 4u);
  std::map<std::string, std::vector<double>> best, test, time, steps;
  for (const json& run : s["runs"]) {
    const fs::path metrics = dir / "runs" / run["name"].get<std::string>() / "metrics.jsonl";
    ASSERT_TRUE(fs::exists(metrics)) << metrics;
    // Independently: the lowest validation error over epochs >= 1, the final record's test
    // error, the first epoch record at or below the target.
    double lowest = 2.0, test_error = -1.0;
    std::optional<double> t, k;
    for (const json& rec : records(metrics)) {
      if (rec["kind"] == "epoch") {
        const double v = rec["val_error"].get<double>();
        if (rec["epoch"].get<int>() >= 1) lowest = std::min(lowest, v);
        if (!t && v <= target) { t = rec["wall_s"].get<double>(); k = rec["step"].get<double>(); }
      }
      if (rec["kind"] == "final") test_error = rec["test_error"].get<double>();
    }
    ASSERT_EQ(run["status"], "finished");
    EXPECT_DOUBLE_EQ(run["best_val_error"].get<double>(), lowest) << run["name"];
    EXPECT_DOUBLE_EQ(run["test_error"].get<double>(), test_error) << run["name"];
    if (t) {
      EXPECT_DOUBLE_EQ(run["time_to_target_s"].get<double>(), *t);
      EXPECT_DOUBLE_EQ(run["steps_to_target"].get<double>(), *k);
    } else {
      EXPECT_TRUE(run["time_to_target_s"].is_null());
    }
    const std::string point = run["point"];
    best[point].push_back(lowest);
    test[point].push_back(test_error);
    if (t) { time[point].push_back(*t); steps[point].push_back(*k); }
  }
  std::map<std::string, std::vector<std::string>> csv;
  {
    std::istringstream in(slurp(dir / "summary.csv"));
    std::string line;
    std::getline(in, line);
    EXPECT_EQ(line.rfind("row,name,method,lr,seed,status,n,best_val_error,best_val_error_std,test_error,test_error_std", 0), 0u);
    while (std::getline(in, line)) {
      const auto f = fields(line);
      csv[f[0] + ":" + f[1]] = f;
    }
  }
  EXPECT_EQ(csv.size(), 12u);  // 8 run rows, 4 point rows
  for (const json& p : s["points"]) {
    const std::string name = p["name"];
    ASSERT_EQ(best[name].size(), 2u) << name;
    EXPECT_NEAR(p["best_val_error"]["mean"].get<double>(), mean_of(best[name]), 1e-12);
    EXPECT_NEAR(p["best_val_error"]["std"].get<double>(), sd_of(best[name]), 1e-12);
    EXPECT_NEAR(p["test_error"]["mean"].get<double>(), mean_of(test[name]), 1e-12);
    EXPECT_NEAR(p["test_error"]["std"].get<double>(), sd_of(test[name]), 1e-12);
    if (!time[name].empty()) {
      EXPECT_NEAR(p["time_to_target_s"]["mean"].get<double>(), mean_of(time[name]), 1e-9);
      EXPECT_NEAR(p["steps_to_target"]["mean"].get<double>(), mean_of(steps[name]), 1e-9);
    }
    const auto& row = csv["point:" + name];
    ASSERT_GE(row.size(), 11u);
    EXPECT_NEAR(std::stod(row[7]), mean_of(best[name]), 1e-5 * mean_of(best[name]) + 1e-12);
    EXPECT_NEAR(std::stod(row[8]), sd_of(best[name]), 1e-5 * sd_of(best[name]) + 1e-12);
    EXPECT_NEAR(std::stod(row[9]), mean_of(test[name]), 1e-5 * mean_of(test[name]) + 1e-12);
  }
  // The ranking rule recomputed: each method at its lowest mean; ties within the sum of the
  // standard errors.
  std::map<std::string, std::pair<double, double>> chosen;  // method -> (mean, se)
  for (const json& p : s["points"]) {
    const std::string m = p["method"];
    const double mean = mean_of(best[p["name"]]), se = sd_of(best[p["name"]]) / std::sqrt(2.0);
    if (!chosen.count(m) || mean < chosen[m].first) chosen[m] = {mean, se};
  }
  ASSERT_EQ(s["ranking"].size(), 2u);
  const json& first = s["ranking"][0];
  const json& second = s["ranking"][1];
  EXPECT_LE(chosen[first["method"]].first, chosen[second["method"]].first);
  const auto a = chosen[first["method"]], b = chosen[second["method"]];
  const bool tie = std::abs(a.first - b.first) <= a.second + b.second;
  EXPECT_EQ(first["within_noise_of"].size(), tie ? 1u : 0u);
  EXPECT_EQ(second["rank"].get<int>(), tie ? 1 : 2);
  EXPECT_NE(r.out.find("ranking"), std::string::npos);
  // Each run is a normal run folder: report.html, model, config with the grid's values.
  const fs::path one = dir / "runs" / s["runs"][0]["name"].get<std::string>();
  EXPECT_TRUE(fs::exists(one / "report.html"));
  EXPECT_TRUE(fs::exists(one / "model.safetensors"));
  EXPECT_NE(slurp(one / "config.toml").find("seed = 1"), std::string::npos);
  EXPECT_TRUE(fs::exists(dir / "compare.html"));

  // The same command again: every run kept, nothing trained.
  const auto before = fs::last_write_time(one / "metrics.jsonl");
  const Result again = shell(cli() + " compare " + (root_ / "tiny.toml").string() +
                                 " --vary optimizer.name=sgd,adam --vary optimizer.lr=0.3,0.01 --seeds 1,2 --out " + dir.string(),
                             root_);
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_NE(again.out.find("8 done (kept), 0 to resume, 0 to train"), std::string::npos) << again.out;
  EXPECT_EQ(fs::last_write_time(one / "metrics.jsonl"), before);

  // Another grid in the same folder is refused, naming the folder.
  const Result other = shell(cli() + " compare " + (root_ / "tiny.toml").string() +
                                 " --vary optimizer.name=sgd,adam --vary optimizer.lr=0.3,0.02 --seeds 1,2 --out " + dir.string(),
                             root_);
  EXPECT_EQ(other.code, 1);
  EXPECT_EQ(other.err.rfind("descent: error: " + dir.string() + " holds a comparison of another grid", 0), 0u) << other.err;
  EXPECT_EQ(std::count(other.err.begin(), other.err.end(), '\n'), 1) << other.err;
}

bool finished(const fs::path& run) {
  return slurp(run / "run.json").find("\"finished\"") != std::string::npos;
}
bool has_ckpt(const fs::path& run) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(run / "checkpoints", ec)) {
    if (e.path().extension() == ".ckpt") return true;
  }
  return false;
}

// SIGTERM while the grid runs: the run in progress checkpoints and stops; the rerun keeps the
// finished runs untouched and resumes the stopped one from its checkpoint (same run id).
TEST_F(Compare, KilledGridResumesWithoutRedoingFinishedRuns) {
  const fs::path dir = root_ / "killed";
  const std::string args = " compare " + (root_ / "tiny.toml").string() +
                           " --vary optimizer.name=sgd,momentum --set epochs=60 --set early_stopping.enabled=false --set sampler.batch_size=4 --seeds 1,2 "
                           "--jobs 1 --out " + dir.string();
  const fs::path log = root_ / "killed.txt";
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string cmd = cli() + args + " >" + log.string() + " 2>&1";
    ::execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Wait until one run has finished and the next one has a checkpoint, then stop the grid.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  std::set<std::string> done;
  std::string stopped;
  while (std::chrono::steady_clock::now() < deadline) {
    done.clear();
    stopped.clear();
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir / "runs", ec)) {
      if (finished(e.path())) done.insert(e.path().filename().string());
      else if (has_ckpt(e.path())) stopped = e.path().filename().string();
    }
    if (!done.empty() && !stopped.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_FALSE(done.empty());
  ASSERT_FALSE(stopped.empty());
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << slurp(log);
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGTERM) << slurp(log);
  EXPECT_NE(slurp(log).find("run the same command again to continue"), std::string::npos) << slurp(log);
  // What the kill left: the finished runs (their files), the stopped one's run id.
  std::map<std::string, std::pair<std::string, fs::file_time_type>> kept;
  for (const auto& e : fs::directory_iterator(dir / "runs")) {
    if (finished(e.path())) kept[e.path().filename().string()] = {slurp(e.path() / "metrics.jsonl"), fs::last_write_time(e.path() / "metrics.jsonl")};
  }
  ASSERT_GE(kept.size(), 1u);
  ASSERT_FALSE(finished(dir / "runs" / stopped));
  const std::string id = json::parse(slurp(dir / "runs" / stopped / "run.json"))["run_id"];

  const Result r = shell(cli() + args, root_);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find(std::to_string(kept.size()) + " done (kept), 1 to resume"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("resume " + stopped), std::string::npos) << r.out;
  for (const auto& [name, files] : kept) {
    EXPECT_EQ(r.out.find("train  " + name), std::string::npos) << name << " was trained again";
    EXPECT_EQ(slurp(dir / "runs" / name / "metrics.jsonl"), files.first) << name;
    EXPECT_EQ(fs::last_write_time(dir / "runs" / name / "metrics.jsonl"), files.second) << name;
  }
  EXPECT_EQ(json::parse(slurp(dir / "runs" / stopped / "run.json"))["run_id"], id);
  const json s = json::parse(slurp(dir / "summary.json"));
  for (const json& run : s["runs"]) EXPECT_EQ(run["status"], "finished") << run["name"];
  EXPECT_EQ(s["runs"].size(), 4u);
}

TEST_F(Compare, MalformedInputIsOneLine) {
  const std::string base = cli() + " compare " + (root_ / "tiny.toml").string();
  for (const auto& [args, message] : std::vector<std::pair<std::string, std::string>>{
           {" --vary optimizer.lr=log:1:2", "--vary optimizer.lr=log:1:2: expected a range"},
           {" --vary optimizer.lrate=0.1", "optimizer.lrate: not a config key"},
           {" --vary optimizer.lr=0.1 --seeds 1,x", "--seeds 1,x: expected integers"},
           {" --vary optimizer.lr=0.1,-2", "point p01 optimizer.lr=-2"},
       }) {
    const Result r = shell(base + args + " --out " + (root_ / "bad").string(), root_);
    EXPECT_EQ(r.code, 1) << args;
    EXPECT_EQ(r.err.rfind("descent: error: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  // A config given without --vary is read as a grid: it has no `config` key.
  const Result r = shell(base, root_);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("tiny.toml: not a grid: no config key"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(root_ / "bad"));
}

// ---- compare.html in a real browser ----------------------------------------

int attribute(const std::string& dom, const std::string& name) {
  const std::size_t body = dom.find("<body");
  if (body == std::string::npos) return -1;
  const std::string tag = dom.substr(body, dom.find('>', body) - body);
  const std::string key = " " + name + "=\"";
  const std::size_t at = tag.find(key);
  if (at == std::string::npos) return -1;
  const std::size_t first = at + key.size(), last = tag.find('"', first);
  const std::string digits = tag.substr(first, last - first);
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoi(digits);
}

// Grid of 3 optimizers x 2 rates x 2 seeds: the ranking,
// the sensitivity plot, the per-method curves; no console message, every chart drawn; the
// screenshot is kept in build/report-test/screenshots/compare.png.
TEST_F(Compare, PageInChromium) {
  if (chromium().empty()) GTEST_SKIP() << "SKIP: chromium not installed (scripts/install-deps installs it)";
  const fs::path dir = root_ / "page";
  const Result r = shell(cli() + " compare " + (root_ / "tiny.toml").string() +
                             " --vary optimizer.name=sgd,momentum,adam --vary optimizer.lr=0.1,0.01 --seeds 1,2 --jobs 2"
                             " --target 0.3 --out " + dir.string(),
                         root_);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const fs::path shots = fs::path(DESCENT_BINARY_DIR) / "report-test" / "screenshots";
  fs::create_directories(shots);
  const fs::path png = shots / "compare.png", work = shots / "compare-chromium";
  fs::copy_file(dir / "compare.html", shots / "compare.html", fs::copy_options::overwrite_existing);
  fs::remove_all(work);
  fs::create_directories(work);
  const std::string base = chromium() + " --headless --no-sandbox --disable-gpu --no-first-run --disable-extensions "
                           "--disable-background-networking --hide-scrollbars --enable-logging=stderr --v=0 "
                           "--user-data-dir=" + (work / "profile").string() + " ";
  const Result dom = shell(base + "--dump-dom file://" + fs::absolute(dir / "compare.html").string(), work);
  ASSERT_EQ(dom.code, 0) << dom.err;
  EXPECT_EQ(dom.err.find("CONSOLE"), std::string::npos) << dom.err;
  EXPECT_EQ(attribute(dom.out, "data-errors"), 0);
  // Sensitivity, best points' curves, one chart per method (3).
  EXPECT_EQ(attribute(dom.out, "data-charts"), 5);
  EXPECT_EQ(attribute(dom.out, "data-drawn"), 5) << dom.out.substr(dom.out.find("data-empty"), 300);
  EXPECT_NE(dom.out.find("within each other's noise"), std::string::npos);
  const Result shot = shell(base + "--window-size=1400,2400 --screenshot=" + fs::absolute(png).string() + " file://" +
                                fs::absolute(dir / "compare.html").string(),
                            work);
  EXPECT_EQ(shot.code, 0) << shot.err;
  EXPECT_TRUE(fs::exists(png) && fs::file_size(png) > 10000);
  fs::remove_all(work / "profile");
  std::cout << "screenshot " << png.string() << "\n";
}

}  // namespace
