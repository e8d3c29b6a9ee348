// The data of a report: a run folder's files read, checked and aggregated into one JSON
// object (report.hpp; the layout is in docs/report.md).
#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>

#include "descent/error.hpp"
#include "descent/io/atomic_file.hpp"
#include "descent/report/report.hpp"

namespace descent::report {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr std::size_t kMaxSideFile = std::size_t{64} << 20;  // config.toml, run.json, diagnostics

// One line of metrics.jsonl with where it came from, for messages.
struct Record {
  json value;
  std::string where;  // "PATH: line N: "
};

std::vector<Record> read_metrics(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    throw IoError(path.string() + ": missing; a run folder holds metrics.jsonl (is " + path.parent_path().string() +
                  " a run folder?)");
  }
  if (fs::is_directory(path, ec)) throw IoError(path.string() + ": is a directory, expected a JSON lines file");
  std::ifstream file(path, std::ios::binary);
  if (!file) throw IoError(path.string() + ": cannot open for reading: " + std::strerror(errno));
  std::vector<Record> records;
  std::string line;
  std::size_t number = 0;
  while (std::getline(file, line)) {
    ++number;
    if (std::all_of(line.begin(), line.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; })) continue;
    std::string where = path.string() + ": line " + std::to_string(number) + ": ";
    json value;
    try {
      value = json::parse(line);
    } catch (const json::parse_error& e) {
      throw DataError(where + "malformed JSON at byte " + std::to_string(e.byte) +
                      " of the line, expected one JSON object per line (docs/metrics.md)");
    } catch (const json::exception&) {  // e.g. a number beyond the range of a double
      throw DataError(where + "malformed JSON: a number out of range (docs/metrics.md)");
    }
    if (!value.is_object()) {
      throw DataError(where + "holds a JSON " + std::string(value.type_name()) + ", expected an object");
    }
    records.push_back({std::move(value), std::move(where)});
  }
  if (file.bad()) throw IoError(path.string() + ": read failed after line " + std::to_string(number));
  return records;
}

// A numeric field: NaN for null (non-finite values are written as null), nullopt when absent.
// Throws DataError when present with another type, or absent and `required`.
std::optional<double> number(const Record& r, const char* kind, const char* field, bool required) {
  const auto it = r.value.find(field);
  if (it == r.value.end()) {
    if (required) throw DataError(r.where + kind + " record lacks \"" + field + "\" (docs/metrics.md)");
    return std::nullopt;
  }
  if (it->is_null()) return std::numeric_limits<double>::quiet_NaN();
  if (!it->is_number()) {
    throw DataError(r.where + kind + " record: \"" + field + "\" is a JSON " + std::string(it->type_name()) +
                    ", expected a number");
  }
  return it->get<double>();
}

json as_json(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

// The step series are for looking: 6 significant digits (metrics.jsonl keeps every digit).
json rounded(double v) {
  if (!std::isfinite(v)) return nullptr;
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.6g", v);
  return std::strtod(buffer, nullptr);
}

// Copies the listed numeric fields of a record (checked) into a JSON object; absent fields
// stay absent, null stays null.
json pick(const Record& r, const char* kind, std::initializer_list<const char*> required,
          std::initializer_list<const char*> optional) {
  json out = json::object();
  for (const char* f : required) out[f] = as_json(*number(r, kind, f, true));
  for (const char* f : optional) {
    if (const auto v = number(r, kind, f, false)) out[f] = as_json(*v);
  }
  return out;
}

// min, mean and max of the finite values of v[begin, end); nulls when none.
void bucket_stats(const std::vector<double>& v, std::size_t begin, std::size_t end, json& series) {
  double lo = std::numeric_limits<double>::infinity(), hi = -lo, sum = 0.0;
  std::size_t n = 0;
  for (std::size_t i = begin; i < end; ++i) {
    if (!std::isfinite(v[i])) continue;
    lo = std::min(lo, v[i]);
    hi = std::max(hi, v[i]);
    sum += v[i];
    ++n;
  }
  series["mean"].push_back(n ? rounded(sum / static_cast<double>(n)) : json(nullptr));
  if (end - begin == 1) return;  // buckets of one update: min = mean = max, written once
  series["min"].push_back(n ? rounded(lo) : json(nullptr));
  series["max"].push_back(n ? rounded(hi) : json(nullptr));
}

// The step records aggregated (report.hpp), and the running mean of grad_norm: the mean of
// the finite gradient norms of the last W updates (W = max(1, round(steps / 100))), taken at
// each bucket's last update.
json aggregate_steps(const std::vector<const Record*>& steps, std::size_t max_points) {
  const std::size_t n = steps.size();
  std::vector<double> step(n), wall(n), loss(n), grad(n), lr(n);
  for (std::size_t i = 0; i < n; ++i) {
    const Record& r = *steps[i];
    step[i] = *number(r, "step", "step", true);
    number(r, "step", "epoch", false);  // checked, not drawn
    wall[i] = number(r, "step", "wall_s", false).value_or(std::numeric_limits<double>::quiet_NaN());
    loss[i] = *number(r, "step", "loss", true);
    grad[i] = *number(r, "step", "grad_norm", true);
    lr[i] = number(r, "step", "lr", false).value_or(std::numeric_limits<double>::quiet_NaN());
  }
  const std::size_t bucket = std::max<std::size_t>(1, (n + max_points - 1) / std::max<std::size_t>(1, max_points));
  const std::size_t window = std::max<std::size_t>(1, static_cast<std::size_t>(std::llround(static_cast<double>(n) / 100.0)));
  // Running mean over the trailing window of finite values.
  std::vector<double> running(n, std::numeric_limits<double>::quiet_NaN());
  double sum = 0.0;
  std::size_t count = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (std::isfinite(grad[i])) sum += grad[i], ++count;
    if (i >= window && std::isfinite(grad[i - window])) sum -= grad[i - window], --count;
    if (count) running[i] = sum / static_cast<double>(count);
  }
  json out = {{"count", n}, {"bucket", bucket}, {"window", window}, {"step", json::array()},
              {"wall_s", json::array()}, {"grad_norm_running", json::array()}};
  for (const char* f : {"loss", "grad_norm", "lr"}) {
    out[f] = {{"mean", json::array()}};
    if (bucket > 1) out[f]["min"] = out[f]["max"] = json::array();
  }
  for (std::size_t b = 0; b < n; b += bucket) {
    const std::size_t e = std::min(n, b + bucket);
    out["step"].push_back(as_json(step[b]));
    out["wall_s"].push_back(rounded(wall[e - 1]));
    out["grad_norm_running"].push_back(rounded(running[e - 1]));
    bucket_stats(loss, b, e, out["loss"]);
    bucket_stats(grad, b, e, out["grad_norm"]);
    bucket_stats(lr, b, e, out["lr"]);
  }
  return out;
}

// The early-stopping settings of config.toml (empty when it is missing or lacks them).
json early_stopping_config(const std::string& text, const fs::path& path) {
  json out = json::object();
  if (text.empty()) return out;
  toml::table root;
  try {
    root = toml::parse(text, std::string_view(path.string()));
  } catch (const toml::parse_error& e) {
    throw DataError(path.string() + ": line " + std::to_string(e.source().begin.line) + ": malformed TOML: " +
                    printable_excerpt(e.description(), 200));
  }
  if (auto v = root["early_stopping"]["monitor"].value<std::string>()) out["monitor"] = *v;
  if (auto v = root["early_stopping"]["patience"].value<std::int64_t>()) out["patience"] = *v;
  if (auto v = root["epochs"].value<std::int64_t>()) out["epochs"] = *v;
  if (auto v = root["name"].value<std::string>()) out["name"] = *v;
  return out;
}

// The sentence that says why the run ended (docs/report.md).
std::string decision(const json& final_record, const json& es) {
  if (final_record.is_null()) {
    return "No final record: the run is still going, or was stopped before its end (descent resume continues it).";
  }
  auto num = [&](const char* k) { return final_record.value(k, json()).is_number() ? final_record[k].get<double>() : NAN; };
  auto integer = [](double v) { return std::isfinite(v) ? std::to_string(static_cast<long long>(v)) : std::string("?"); };
  const std::string monitor = es.value("monitor", std::string("val_error"));
  const std::string best = integer(num("best_epoch")), epochs = integer(num("epochs"));
  std::string best_value;
  if (const double v = monitor == "val_loss" ? num("best_val_loss") : num("best_val_error"); std::isfinite(v)) {
    char buffer[64];
    if (monitor == "val_loss") std::snprintf(buffer, sizeof buffer, " (%.4f)", v);
    else std::snprintf(buffer, sizeof buffer, " (%.2f%%)", 100.0 * v);
    best_value = buffer;
  }
  const bool early = final_record.value("stopped_early", json(false)) == json(true);
  std::string s;
  if (final_record.value("ended", json("")) == json("sampler_exhausted")) {
    s = "The stream sampler ran out after " + integer(num("steps")) + " updates (" + epochs + " epoch" +
        (es.contains("epochs") ? " of epochs = " + std::to_string(es["epochs"].get<std::int64_t>()) : "") +
        "): a stream uses each training example once. The best " + monitor + " was at epoch " + best + best_value + ".";
  } else if (early) {
    s = "Stopped early after epoch " + epochs + ": " + monitor + " did not improve for " +
        (es.contains("patience") ? std::to_string(es["patience"].get<std::int64_t>()) : std::string("patience")) +
        " epochs after its best, epoch " + best + best_value + ".";
  } else {
    s = "Ran all " + epochs + " epochs" +
        (es.contains("epochs") ? " (epochs = " + std::to_string(es["epochs"].get<std::int64_t>()) + ")" : "") +
        " without an early stop; the best " + monitor + " was at epoch " + best + best_value + ".";
  }
  return s + " The parameters of epoch " + best + " were kept and evaluated on the test split.";
}

json read_json_file(const fs::path& path) {
  const std::string text = io::read_file(path, kMaxSideFile);
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    throw DataError(path.string() + ": malformed JSON at byte " + std::to_string(e.byte));
  } catch (const json::exception&) {
    throw DataError(path.string() + ": malformed JSON: a number out of range");
  }
}

json read_run(const fs::path& dir, std::size_t max_points) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw IoError(dir.string() + ": not a run folder (no such directory)");
  json run = json::object();
  run["dir"] = dir.string();
  const fs::path config_path = dir / "config.toml";
  std::string config_text;
  if (fs::exists(config_path, ec)) config_text = io::read_file(config_path, kMaxSideFile);
  run["config"] = config_text;
  const json es = early_stopping_config(config_text, config_path);
  run["early_stopping"] = es;
  const fs::path name = fs::weakly_canonical(dir, ec).filename();  // the run folder's name
  run["name"] = name.empty() ? dir.string() : name.string();

  const std::vector<Record> records = read_metrics(dir / "metrics.jsonl");
  std::vector<const Record*> steps;
  json epochs = json::array(), evals = json::array(), divergences = json::array(), final_record = nullptr;
  for (const Record& r : records) {
    const auto kind = r.value.find("kind");
    if (kind == r.value.end() || !kind->is_string()) {
      throw DataError(r.where + "lacks a string \"kind\" (header, step, eval, epoch, divergence or final; docs/metrics.md)");
    }
    const std::string k = kind->get<std::string>();
    if (k == "step") {
      steps.push_back(&r);
    } else if (k == "epoch") {  // epoch 0: the initial parameters (a point at step 0 of the curves)
      epochs.push_back(pick(r, "epoch", {"epoch", "step"},
                            {"train_loss", "train_error", "val_loss", "val_error", "lr", "grad_norm_mean",
                             "clip_count", "examples_per_s", "wall_s"}));
    } else if (k == "eval") {
      evals.push_back(pick(r, "eval", {"step"},
                           {"epoch", "wall_s", "train_loss", "train_error", "val_loss", "val_error"}));
    } else if (k == "divergence") {
      json d = pick(r, "divergence", {"step"}, {"epoch", "loss", "lr_scale", "wall_s"});
      const auto policy = r.value.find("policy");
      d["policy"] = policy != r.value.end() && policy->is_string() ? policy->get<std::string>() : std::string("?");
      divergences.push_back(d);
    } else if (k == "final") {
      final_record = pick(r, "final", {},
                          {"epochs", "steps", "best_epoch", "grad_norm_at_stop", "best_val_error", "best_val_loss",
                           "train_loss", "train_error", "test_loss", "test_error", "test_accuracy", "divergences",
                           "wall_s"});
      const auto early = r.value.find("stopped_early");
      if (early != r.value.end() && !early->is_boolean()) {
        throw DataError(r.where + "final record: \"stopped_early\" is a JSON " + std::string(early->type_name()) +
                        ", expected a boolean");
      }
      final_record["stopped_early"] = early != r.value.end() && early->get<bool>();
      const auto ended = r.value.find("ended");  // why the loop ended (absent in older files)
      if (ended != r.value.end() && ended->is_string()) final_record["ended"] = ended->get<std::string>();
    }
    // Other kinds (written by later versions) are left out of the page.
  }
  run["steps"] = aggregate_steps(steps, max_points);
  run["epochs"] = std::move(epochs);
  run["evals"] = std::move(evals);
  run["divergences"] = std::move(divergences);
  run["decision"] = decision(final_record, es);
  run["final"] = std::move(final_record);

  // The machine and the diagnostics, when the run has them (panels for diagnostics/*.json
  // are added by name in the page: docs/report.md).
  run["run_info"] = nullptr;
  if (fs::exists(dir / "run.json", ec)) run["run_info"] = read_json_file(dir / "run.json");
  json diagnostics = json::object();
  if (fs::is_directory(dir / "diagnostics", ec)) {
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(dir / "diagnostics", ec)) {
      if (entry.path().extension() == ".json" && entry.is_regular_file(ec)) files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    for (const fs::path& f : files) diagnostics[f.stem().string()] = read_json_file(f);
  }
  run["diagnostics"] = std::move(diagnostics);
  return run;
}

}  // namespace

fs::path chart_library_path() {
  if (const char* env = std::getenv("DESCENT_DYGRAPHS_JS"); env && *env) return env;
  return "/usr/share/javascript/dygraphs/dygraph.min.js";
}

std::string report_data(const std::vector<fs::path>& run_dirs, const Options& options) {
  if (run_dirs.empty()) throw Error("report: no run folder given");
  json data = {{"format", 1}, {"max_points", options.max_points}, {"runs", json::array()}};
  for (const fs::path& dir : run_dirs) data["runs"].push_back(read_run(dir, std::max<std::size_t>(1, options.max_points)));
  return data.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace descent::report
