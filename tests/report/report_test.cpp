// The HTML report (descent/report/report.hpp, docs/report.md): its data against
// metrics.jsonl, the aggregation rule recomputed here, no network reference, malformed input,
// the CLI, and the page in a real browser (headless Chromium; skipped without it).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>

#include "descent/error.hpp"
#include "descent/init/rng.hpp"
#include "descent/report/report.hpp"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void spit(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

struct Result {
  int code = -1;
  std::string out, err;
};

// Runs a shell command with stdout and stderr to files in `dir`.
Result shell(const std::string& command, const fs::path& dir) {
  const fs::path out = dir / "stdout.txt", err = dir / "stderr.txt";
  const int status = std::system((command + " >" + out.string() + " 2>" + err.string() + " </dev/null").c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(out), slurp(err)};
}

// The JSON the page embeds, parsed back.
json embedded(const std::string& page) {
  const std::string open = "<script type=\"application/json\" id=\"descent-data\">";
  const auto b = page.find(open);
  EXPECT_NE(b, std::string::npos);
  const auto e = page.find("</script>", b);
  return json::parse(page.substr(b + open.size(), e - b - open.size()));
}

// The records of metrics.jsonl of one kind, read here independently of the report code.
std::vector<json> records(const fs::path& metrics, const std::string& kind) {
  std::vector<json> out;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    json j = json::parse(line);
    if (j["kind"] == kind) out.push_back(j);
  }
  return out;
}

// Equal to 6 significant digits (the page rounds its step series).
bool close6(const json& page, const json& metrics) {
  const double a = page.get<double>(), b = metrics.get<double>();
  return std::abs(a - b) <= 5e-6 * std::abs(b);
}

// A real run of the CLI on a small CSV problem (validation split, clipping that fires),
// made once for the suite.
class Report : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Each test process (ctest runs them in parallel) works in its own folder; the
    // screenshots and their pages are kept in build/report-test/screenshots.
    root_ = fs::path(DESCENT_BINARY_DIR) / "report-test" / ("work-" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
    descent::Rng rng(7);
    for (const char* name : {"train.csv", "test.csv"}) {
      std::ofstream f(root_ / name);
      for (int i = 0; i < 600; ++i) {
        const int c = static_cast<int>(rng.below(2));
        f << c << "," << (c ? 0.6 : -0.6) + rng.normal() << "," << rng.normal() << "," << (c ? -0.3 : 0.3) + rng.normal() << "\n";
      }
    }
    std::ofstream c(root_ / "tiny.toml");
    // progress = "plain": "none" prints nothing, not even the report's path.
    c << "name = \"tiny\"\nepochs = 6\nprogress = \"plain\"\neval_every_steps = 7\nout_dir = \"" << (root_ / "runs").string()
      << "\"\n[data]\nformat = \"csv\"\ntrain_features = \"" << (root_ / "train.csv").string() << "\"\ntest_features = \""
      << (root_ / "test.csv").string() << "\"\nscale = 1.0\nvalidation_size = 100\n[model]\nhidden = [8]\n"
      << "[optimizer]\nname = \"momentum\"\nlr = 0.1\n[schedule]\nname = \"linear\"\n[clip]\nglobal_norm = 0.3\n"
      << "[sampler]\nbatch_size = 16\n";
    c.close();
    for (const char* name : {"a", "b"}) {
      const Result r = shell(std::string(DESCENT_CLI) + " train " + (root_ / "tiny.toml").string() + " --name " + name +
                                 (std::string(name) == "b" ? " --set optimizer.lr=0.02" : ""),
                             root_);
      train_output_[name] = r;
    }
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }
  static fs::path run(const char* name) { return root_ / "runs" / name; }

  static inline fs::path root_;
  static inline std::map<std::string, Result> train_output_;
};

TEST_F(Report, TrainWritesTheReportAndPrintsItsPath) {
  const Result& r = train_output_["a"];
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("report " + (run("a") / "report.html").string() + "\n"), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(run("a") / "report.html"));
  EXPECT_EQ(r.err.find("warning"), std::string::npos) << r.err;
}

TEST_F(Report, EmbeddedDataMatchMetrics) {
  const fs::path metrics = run("a") / "metrics.jsonl";
  const json data = embedded(slurp(run("a") / "report.html"));
  ASSERT_EQ(data["runs"].size(), 1u);
  const json& r = data["runs"][0];
  EXPECT_EQ(r["name"], "a");
  EXPECT_EQ(r["config"], slurp(run("a") / "config.toml"));
  // Epoch records, field by field.
  const auto epochs = records(metrics, "epoch");
  ASSERT_EQ(r["epochs"].size(), epochs.size());
  ASSERT_GT(epochs.size(), 1u);
  for (std::size_t i = 0; i < epochs.size(); ++i) {
    for (const char* f : {"epoch", "step", "train_loss", "train_error", "val_loss", "val_error", "lr", "clip_count", "wall_s"}) {
      EXPECT_EQ(r["epochs"][i][f], epochs[i][f]) << "epoch " << i << " " << f;
    }
  }
  EXPECT_GT(epochs.back()["clip_count"].get<int>(), 0);  // the clipping panel has data
  const auto evals = records(metrics, "eval");
  ASSERT_EQ(r["evals"].size(), evals.size());
  ASSERT_FALSE(evals.empty());
  for (std::size_t i = 0; i < evals.size(); ++i) EXPECT_EQ(r["evals"][i]["val_error"], evals[i]["val_error"]);
  // Every step kept (the run is shorter than max_points): the values themselves.
  const auto steps = records(metrics, "step");
  const json& s = r["steps"];
  ASSERT_EQ(s["bucket"], 1);
  ASSERT_EQ(s["step"].size(), steps.size());
  EXPECT_FALSE(s["loss"].contains("min"));  // buckets of one: the mean alone
  for (std::size_t i = 0; i < steps.size(); ++i) {
    EXPECT_EQ(s["step"][i], steps[i]["step"]);
    for (const char* f : {"loss", "grad_norm", "lr"}) EXPECT_TRUE(close6(s[f]["mean"][i], steps[i][f])) << i << " " << f;
    EXPECT_TRUE(close6(s["wall_s"][i], steps[i]["wall_s"])) << i;
  }
  const json final_record = records(metrics, "final").at(0);
  for (const char* f : {"test_error", "test_loss", "best_epoch", "epochs", "steps", "stopped_early", "best_val_error"}) {
    EXPECT_EQ(r["final"][f], final_record[f]) << f;
  }
  const std::string decision = r["decision"];
  EXPECT_NE(decision.find("epoch " + std::to_string(final_record["best_epoch"].get<int>())), std::string::npos) << decision;
}

// 10007 synthetic updates in at most 100 points: buckets of ceil(10007/100) = 101 updates,
// min/mean/max and the running mean (W = round(10007/100) = 100) recomputed here by brute force.
TEST_F(Report, LongRunsAreAggregatedByTheStatedRule) {
  const fs::path dir = root_ / "long";
  const int n = 10007;
  std::ostringstream m;
  std::vector<double> loss(n), grad(n);
  for (int i = 0; i < n; ++i) {
    loss[i] = 2.0 / (1.0 + 0.01 * i) + 0.1 * std::sin(i * 0.37);
    grad[i] = 1.0 + 0.5 * std::cos(i * 0.11) + i * 1e-4;
    m << json{{"kind", "step"}, {"step", i}, {"epoch", 1 + i / 1000}, {"loss", loss[i]}, {"grad_norm", grad[i]},
              {"lr", 0.1 * (1.0 - i / double(n))}, {"wall_s", i * 0.001}}.dump()
      << "\n";
  }
  spit(dir / "metrics.jsonl", m.str());
  descent::report::Options options;
  options.max_points = 100;
  const json s = json::parse(descent::report::report_data({dir}, options))["runs"][0]["steps"];
  const int bucket = 101, window = 100;
  ASSERT_EQ(s["bucket"], bucket);
  ASSERT_EQ(s["window"], window);
  ASSERT_EQ(s["step"].size(), static_cast<std::size_t>((n + bucket - 1) / bucket));
  for (std::size_t k = 0; k < s["step"].size(); ++k) {
    const int b = static_cast<int>(k) * bucket, e = std::min(n, b + bucket);
    double lo = 1e300, hi = -1e300, sum = 0;
    for (int i = b; i < e; ++i) lo = std::min(lo, loss[i]), hi = std::max(hi, loss[i]), sum += loss[i];
    EXPECT_EQ(s["step"][k], b);
    EXPECT_TRUE(close6(s["loss"]["min"][k], lo)) << k;
    EXPECT_TRUE(close6(s["loss"]["max"][k], hi)) << k;
    EXPECT_TRUE(close6(s["loss"]["mean"][k], sum / (e - b))) << k;
    EXPECT_TRUE(close6(s["wall_s"][k], (e - 1) * 0.001)) << k;
    double running = 0;
    const int from = std::max(0, e - window);
    for (int i = from; i < e; ++i) running += grad[i];
    EXPECT_TRUE(close6(s["grad_norm_running"][k], running / (e - from))) << k;
  }
}

// Nothing in the page but the inlined library may name a URL, and no element may load
// anything; a Content-Security-Policy forbids every request.
TEST_F(Report, NoNetworkReference) {
  std::string page = slurp(run("a") / "report.html");
  ASSERT_FALSE(page.empty());
  std::string library = slurp(descent::report::chart_library_path());
  library.erase(library.rfind("//# sourceMappingURL="));
  const auto at = page.find(library);
  ASSERT_NE(at, std::string::npos) << "the chart library is inlined";
  page.erase(at, library.size());
  for (const char* bad : {"http:", "https:", "ftp:", "ws:", "wss:", "//#", "<link", "@import", "url(", "src=", "href=", "<iframe",
                          "<img", "fetch(", "XMLHttpRequest"}) {
    EXPECT_EQ(page.find(bad), std::string::npos) << bad;
  }
  EXPECT_NE(page.find("content=\"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:\""),
            std::string::npos);
  // The library's only URL is in its license comment.
  for (const char* scheme : {"http://", "https://"}) {
    for (std::size_t url_at = library.find(scheme); url_at != std::string::npos; url_at = library.find(scheme, url_at + 1)) {
      const std::size_t after = url_at + std::string_view(scheme).size();
      constexpr std::string_view allowed = "github.com/danvk/dygraphs/blob/";
      EXPECT_EQ(library.compare(after, allowed.size(), allowed), 0) << library.substr(url_at, 60);
    }
  }
}

// A malformed line: one error naming the file and the line.
TEST_F(Report, MalformedMetricsNameFileAndLine) {
  const fs::path dir = root_ / "bad";
  const std::string good = "{\"kind\":\"step\",\"step\":0,\"epoch\":1,\"loss\":1.0,\"grad_norm\":2.0,\"lr\":0.1,\"wall_s\":0.1}\n";
  struct Case {
    std::string line, expect;
  };
  const Case cases[] = {
      {"{\"kind\":\"step\",\"step\":1,", "line 3: malformed JSON"},
      {"[1,2]", "line 3: holds a JSON array, expected an object"},
      {"{\"kind\":\"step\",\"step\":1e999}", "line 3: malformed JSON: a number out of range"},
      {"{\"step\":1}", "line 3: lacks a string \"kind\""},
      {"{\"kind\":\"step\",\"step\":1,\"loss\":\"x\",\"grad_norm\":1}", "line 3: step record: \"loss\" is a JSON string, expected a number"},
      {"{\"kind\":\"step\",\"step\":1,\"loss\":1}", "line 3: step record lacks \"grad_norm\""},
      {"{\"kind\":\"epoch\",\"epoch\":1}", "line 3: epoch record lacks \"step\""},
      {"{\"kind\":\"final\",\"stopped_early\":1}", "line 3: final record: \"stopped_early\" is a JSON number, expected a boolean"},
      {"{\"kind\":\"eval\",\"step\":true}", "line 3: eval record: \"step\" is a JSON boolean"},
  };
  for (const Case& c : cases) {
    spit(dir / "metrics.jsonl", good + "\n" + c.line + "\n" + good);
    try {
      descent::report::report_data({dir});
      ADD_FAILURE() << "accepted " << c.line;
    } catch (const descent::DataError& e) {
      EXPECT_EQ(std::string(e.what()).rfind((dir / "metrics.jsonl").string() + ": " + c.expect, 0), 0u) << e.what();
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
    }
  }
  fs::remove(dir / "metrics.jsonl");
  EXPECT_THROW(descent::report::report_data({dir}), descent::IoError);
  EXPECT_THROW(descent::report::report_data({root_ / "no-such-run"}), descent::IoError);
  spit(dir / "metrics.jsonl", good);
  spit(dir / "run.json", "{not json");
  try {
    descent::report::report_data({dir});
    ADD_FAILURE();
  } catch (const descent::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("run.json: malformed JSON"), std::string::npos) << e.what();
  }
}

// Fuzz-style: 400 random corruptions of a real metrics.jsonl (bytes flipped, cut, duplicated,
// spliced). Each either reads or fails with a descent::Error naming the file; never a crash
// or another exception.
TEST_F(Report, RandomlyCorruptedMetricsFailCleanly) {
  const std::string original = slurp(run("a") / "metrics.jsonl");
  ASSERT_GT(original.size(), 1000u);
  const fs::path dir = root_ / "fuzz";
  descent::Rng rng(2024);
  int accepted = 0, rejected = 0;
  for (int round = 0; round < 400; ++round) {
    std::string text = original;
    const int edits = 1 + static_cast<int>(rng.below(4));
    for (int e = 0; e < edits; ++e) {
      const std::size_t at = rng.below(text.size());
      switch (rng.below(5)) {
        case 0: text[at] = static_cast<char>(rng.below(256)); break;
        case 1: text.resize(at); break;
        case 2: text.insert(at, text.substr(rng.below(text.size()), rng.below(40))); break;
        case 3: text.erase(at, rng.below(30)); break;
        default: text.insert(at, std::string(1, "{}[]\",:0-e.n\\"[rng.below(13)])); break;
      }
      if (text.empty()) text = "x";
    }
    spit(dir / "metrics.jsonl", text);
    try {
      const json d = json::parse(descent::report::report_data({dir}));
      ASSERT_EQ(d["runs"].size(), 1u);
      ++accepted;
    } catch (const descent::Error& e) {
      ++rejected;
      ASSERT_EQ(std::string(e.what()).rfind((dir / "metrics.jsonl").string() + ": line ", 0), 0u) << e.what();
    }
  }
  EXPECT_GT(rejected, 100);
  EXPECT_GT(accepted, 0);  // e.g. a cut at a line end
}

TEST_F(Report, CommandLine) {
  const std::string cli = DESCENT_CLI;
  fs::remove(run("b") / "report.html");
  Result r = shell(cli + " report " + run("b").string(), root_);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, (run("b") / "report.html").string() + "\n");
  EXPECT_TRUE(fs::exists(run("b") / "report.html"));
  const fs::path overlay = root_ / "overlay.html";
  r = shell(cli + " report " + run("a").string() + " " + run("b").string() + " --out " + overlay.string(), root_);
  EXPECT_EQ(r.code, 0) << r.err;
  const json data = embedded(slurp(overlay));
  ASSERT_EQ(data["runs"].size(), 2u);
  EXPECT_EQ(data["runs"][1]["name"], "b");
  r = shell(cli + " report " + run("a").string() + " " + run("b").string(), root_);
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "descent: error: report: 2 run folders overlay into one page: say where with --out FILE\n");
  r = shell(cli + " report " + (root_ / "nowhere").string(), root_);
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "descent: error: " + (root_ / "nowhere").string() + ": not a run folder (no such directory)\n");
  r = shell("DESCENT_DYGRAPHS_JS=/nonexistent/dygraph.min.js " + cli + " report " + run("b").string(), root_);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("install libjs-dygraphs"), std::string::npos) << r.err;
}

// ---- in a real browser ------------------------------------------------------

// Debian's chromium, or $DESCENT_CHROMIUM when set (a path that is not there: the skip).
std::string chromium() {
  if (const char* env = std::getenv("DESCENT_CHROMIUM"); env != nullptr) {
    return ::access(env, X_OK) == 0 ? env : "";
  }
  for (const char* p : {"/usr/bin/chromium", "/usr/bin/chromium-browser"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  return {};
}

// Loads `page` in headless Chromium: the DOM after the scripts ran (and a screenshot to
// `png`). Fails on any console message.
std::string browse(const fs::path& page, const fs::path& png) {
  const fs::path work = png.parent_path() / (png.stem().string() + "-chromium");
  fs::remove_all(work);
  fs::create_directories(work);
  const std::string base = chromium() + " --headless --no-sandbox --disable-gpu --no-first-run --disable-extensions "
                           "--disable-background-networking --hide-scrollbars --enable-logging=stderr --v=0 "
                           "--user-data-dir=" + (work / "profile").string() + " ";
  const Result dom = shell(base + "--dump-dom file://" + fs::absolute(page).string(), work);
  EXPECT_EQ(dom.code, 0) << dom.err;
  // Console messages (errors included) are logged as "...:CONSOLE(line)] ..." on stderr.
  EXPECT_EQ(dom.err.find("CONSOLE"), std::string::npos) << dom.err;
  const Result shot = shell(base + "--window-size=1400,2600 --screenshot=" + fs::absolute(png).string() + " file://" +
                                fs::absolute(page).string(),
                            work);
  EXPECT_EQ(shot.code, 0) << shot.err;
  EXPECT_TRUE(fs::exists(png) && fs::file_size(png) > 10000) << png;
  fs::remove_all(work / "profile");  // keep the browser's logs, not its profile
  return dom.out;
}

int attribute(const std::string& dom, const std::string& name) {
  // <body ... NAME="digits" ...>: the attribute of the body tag, or -1.
  const std::size_t body = dom.find("<body");
  if (body == std::string::npos) return -1;
  const std::size_t end = dom.find('>', body);
  const std::string tag = dom.substr(body, end == std::string::npos ? std::string::npos : end - body);
  const std::string key = name + "=\"";
  for (std::size_t at = tag.find(key); at != std::string::npos; at = tag.find(key, at + 1)) {
    if (at == 0 || std::isspace(static_cast<unsigned char>(tag[at - 1])) == 0) continue;
    const std::size_t first = at + key.size();
    const std::size_t last = tag.find('"', first);
    if (last == std::string::npos || last == first) return -1;
    const std::string digits = tag.substr(first, last - first);
    if (digits.find_first_not_of("0123456789") != std::string::npos) return -1;
    return std::stoi(digits);
  }
  return -1;
}

class Browser : public Report {
 protected:
  void SetUp() override {
    if (chromium().empty()) GTEST_SKIP() << "SKIP: chromium not installed (scripts/install-deps installs it)";
  }
  // Every chart of the page drawn with data, no error; `charts` expected.
  static void check(const fs::path& page, const std::string& shot, int charts) {
    const fs::path png = fs::path(DESCENT_BINARY_DIR) / "report-test" / "screenshots" / (shot + ".png");
    fs::create_directories(png.parent_path());
    fs::copy_file(page, png.parent_path() / (shot + ".html"), fs::copy_options::overwrite_existing);
    const std::string dom = browse(page, png);
    EXPECT_EQ(attribute(dom, "data-errors"), 0) << shot;
    EXPECT_EQ(attribute(dom, "data-charts"), charts) << shot;
    EXPECT_EQ(attribute(dom, "data-drawn"), charts) << shot << ": charts without data";
    std::cout << "screenshot " << png.string() << "\n";
  }
};

// Loss and error against step and wall time (4), Fig. 8.1 (2), learning rate, clipping.
TEST_F(Browser, OneRun) { check(run("a") / "report.html", "mlp", 8); }

TEST_F(Browser, Overlay) {
  const fs::path page = root_ / "overlay-browser.html";
  descent::report::write_report({run("a"), run("b")}, page);
  check(page, "overlay", 8);
}

// 30000 updates aggregated, a divergence, no clipping (a note instead of the chart), no
// validation split, a diagnostics file without a panel yet, and run.json.
TEST_F(Browser, LongRunWithoutValidation) {
  const fs::path dir = root_ / "long-browser";
  std::ostringstream m;
  descent::Rng rng(3);
  const int n = 30000, per_epoch = 1000;
  for (int i = 0; i < n; ++i) {
    m << json{{"kind", "step"}, {"step", i}, {"epoch", 1 + i / per_epoch}, {"loss", 2.3 * std::exp(-i / 8000.0) + 0.2 * rng.uniform()},
              {"grad_norm", 1.0 + 0.3 * rng.normal() + i / 20000.0}, {"lr", 0.1 * std::pow(0.5, i / 10000)}, {"wall_s", i * 0.002}}.dump()
      << "\n";
    if ((i + 1) % per_epoch == 0) {
      const double t = 2.3 * std::exp(-i / 8000.0);
      m << json{{"kind", "epoch"}, {"epoch", (i + 1) / per_epoch}, {"step", i + 1}, {"train_loss", t}, {"train_error", t / 5},
                {"lr", 0.1}, {"grad_norm_mean", 1.0}, {"clip_count", 0}, {"examples_per_s", 1e4}, {"wall_s", i * 0.002}}.dump()
        << "\n";
    }
    if (i == 12345) {
      m << json{{"kind", "divergence"}, {"step", i}, {"epoch", 13}, {"policy", "skip"}, {"loss", nullptr}, {"wall_s", 1.0}}.dump() << "\n";
    }
  }
  m << json{{"kind", "final"}, {"epochs", 30}, {"steps", n}, {"best_epoch", 30}, {"stopped_early", false}, {"test_error", 0.1},
            {"test_loss", 0.3}, {"test_accuracy", 0.9}, {"wall_s", 60.0}}.dump()
    << "\n";
  spit(dir / "metrics.jsonl", m.str());
  spit(dir / "run.json", "{\"host\": \"test\", \"threads\": 2}");
  spit(dir / "diagnostics" / "future_panel.json", "{\"values\": [1, 2, 3]}");
  const fs::path page = dir / "report.html";
  descent::report::write_report({dir}, page);
  EXPECT_LT(fs::file_size(page), 600000u);
  check(page, "long", 7);
}

}  // namespace
