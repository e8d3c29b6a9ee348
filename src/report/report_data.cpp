// The data of a report: a run folder's files read, checked and aggregated into one JSON
// object (report.hpp; the layout is in docs/report.md).
#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>

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

// ---- the monitors' records (docs/metrics.md) ---------------------------------------------

// Keeps at most `max_points` of `n` records: every stride-th, stride = ceil(n / max_points).
std::size_t stride_for(std::size_t n, std::size_t max_points) {
  return std::max<std::size_t>(1, (n + max_points - 1) / std::max<std::size_t>(1, max_points));
}

// A record's numeric fields rounded to 6 significant digits (drawn, not read back); absent
// fields stay absent, null stays null.
json pick_rounded(const Record& r, const char* kind, std::initializer_list<const char*> required,
                  std::initializer_list<const char*> optional) {
  json out = json::object();
  for (const char* f : required) out[f] = rounded(*number(r, kind, f, true));
  for (const char* f : optional) {
    if (const auto v = number(r, kind, f, false)) out[f] = rounded(*v);
  }
  for (const char* f : {"step", "epoch"}) {  // counters: every digit
    if (out.contains(f) && !out[f].is_null()) out[f] = *number(r, kind, f, false);
  }
  return out;
}

// A JSON object {name: number or null} of a record, checked.
const json& name_to_number(const Record& r, const char* kind, const char* field) {
  static const json empty = json::object();
  const auto it = r.value.find(field);
  if (it == r.value.end()) return empty;
  if (!it->is_object()) {
    throw DataError(r.where + kind + " record: \"" + field + "\" is a JSON " + std::string(it->type_name()) +
                    ", expected an object {parameter name: number}");
  }
  for (const auto& [name, v] : it->items()) {
    if (!v.is_number() && !v.is_null()) {
      throw DataError(r.where + kind + " record: \"" + field + "\"[\"" + printable_excerpt(name, 60) + "\"] is a JSON " +
                      std::string(v.type_name()) + ", expected a number");
    }
  }
  return *it;
}

// An array of numbers (null for non-finite) of a record, checked; empty when absent.
json number_array(const Record& r, const char* kind, const char* field) {
  json out = json::array();
  const auto it = r.value.find(field);
  if (it == r.value.end()) return out;
  if (!it->is_array()) {
    throw DataError(r.where + kind + " record: \"" + field + "\" is a JSON " + std::string(it->type_name()) +
                    ", expected an array of numbers");
  }
  for (const json& v : *it) {
    if (!v.is_number() && !v.is_null()) {
      throw DataError(r.where + kind + " record: \"" + field + "\" holds a JSON " + std::string(v.type_name()) +
                      ", expected numbers");
    }
    out.push_back(v.is_null() ? json(nullptr) : rounded(v.get<double>()));
  }
  return out;
}

json curvature_record(const Record& r) {
  // The fields drawn (the file has more: docs/metrics.md).
  return pick_rounded(r, "curvature", {"step"},
                      {"epoch", "gTg", "gHg", "lr", "ratio", "predicted_change", "observed_change", "update_predicted_change",
                       "lambda_max"});
}

json cliff_record(const Record& r) {
  json c = pick_rounded(r, "cliff", {"step"}, {"epoch", "wall_s", "grad_norm", "median", "factor"});
  const auto clipped = r.value.find("clipped");
  if (clipped != r.value.end() && !clipped->is_boolean()) {
    throw DataError(r.where + "cliff record: \"clipped\" is a JSON " + std::string(clipped->type_name()) +
                    ", expected a boolean");
  }
  c["clipped"] = clipped != r.value.end() && clipped->get<bool>();
  return c;
}

json recurrent_record(const Record& r) {
  json out = pick_rounded(r, "recurrent", {"step"}, {"epoch", "wall_s", "growth_rate"});
  out["time_grad_norms"] = number_array(r, "recurrent", "time_grad_norms");
  out["matrices"] = json::array();
  const auto m = r.value.find("matrices");
  if (m == r.value.end()) return out;
  if (!m->is_array()) {
    throw DataError(r.where + "recurrent record: \"matrices\" is a JSON " + std::string(m->type_name()) +
                    ", expected an array of objects");
  }
  for (const json& matrix : *m) {
    if (!matrix.is_object()) {
      throw DataError(r.where + "recurrent record: \"matrices\" holds a JSON " + std::string(matrix.type_name()) +
                      ", expected objects {name, gate, spectral_radius, ...}");
    }
    const Record one{matrix, r.where};
    json entry = pick_rounded(one, "recurrent record's matrix", {}, {"spectral_radius", "singular_max", "singular_min"});
    for (const char* f : {"name", "gate"}) {
      const auto it = matrix.find(f);
      if (it != matrix.end() && !it->is_string()) {
        throw DataError(r.where + "recurrent record: a matrix's \"" + f + "\" is a JSON " + std::string(it->type_name()) +
                        ", expected a string");
      }
      entry[f] = it == matrix.end() ? std::string() : it->get<std::string>();
    }
    out["matrices"].push_back(std::move(entry));
  }
  return out;
}

// Names in natural order: runs of digits compare as numbers ("layers.2" before "layers.10").
bool natural_less(const std::string& a, const std::string& b) {
  std::size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    const bool da = std::isdigit(static_cast<unsigned char>(a[i])) != 0, db = std::isdigit(static_cast<unsigned char>(b[j])) != 0;
    if (da && db) {
      std::size_t ie = i, je = j;
      while (ie < a.size() && std::isdigit(static_cast<unsigned char>(a[ie]))) ++ie;
      while (je < b.size() && std::isdigit(static_cast<unsigned char>(b[je]))) ++je;
      const std::string na = a.substr(i, ie - i), nb = b.substr(j, je - j);
      const std::string ta = na.substr(std::min(na.find_first_not_of('0'), na.size())),
                        tb = nb.substr(std::min(nb.find_first_not_of('0'), nb.size()));
      if (ta.size() != tb.size()) return ta.size() < tb.size();
      if (ta != tb) return ta < tb;
      i = ie, j = je;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i, ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

// The per-layer records as columns: steps, parameter names (natural order: "layers.2.bias"
// before "layers.10.bias"), and per name the gradient and weight norms (null where a record
// lacks the name).
json layer_columns(const std::vector<const Record*>& layers, std::size_t max_points) {
  const std::size_t stride = stride_for(layers.size(), max_points);
  json out = {{"count", layers.size()}, {"stride", stride}, {"step", json::array()}, {"names", json::array()},
              {"grad_norms", json::object()}, {"weight_norms", json::object()}};
  std::vector<std::string> names;
  std::vector<const Record*> kept;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const Record& r = *layers[i];
    number(r, "layers", "step", true);
    for (const char* field : {"grad_norms", "weight_norms"}) {
      for (const auto& [name, v] : name_to_number(r, "layers", field).items()) {
        (void)v;
        if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
      }
    }
    if (i % stride == 0) kept.push_back(&r);
  }
  std::sort(names.begin(), names.end(), natural_less);
  for (const std::string& name : names) {
    out["names"].push_back(name);
    out["grad_norms"][name] = json::array();
    out["weight_norms"][name] = json::array();
  }
  for (const Record* r : kept) {
    out["step"].push_back(*number(*r, "layers", "step", true));
    for (const char* field : {"grad_norms", "weight_norms"}) {
      const json& values = name_to_number(*r, "layers", field);
      for (const std::string& name : names) {
        const auto it = values.find(name);
        out[field][name].push_back(it == values.end() || it->is_null() ? json(nullptr) : rounded(it->get<double>()));
      }
    }
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
  std::vector<const Record*> curvature, layers, recurrent;
  std::vector<json> cliffs;
  json header = nullptr;
  std::string thread_rule_chosen;  // from the thread_rule record, shown beside the header's thread_rule
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
                           "cliffs", "wall_s"});
      // The monitors' cost: {"curvature", "layers", "cliff", "recurrent", "total"} seconds; the total drawn.
      if (const auto cost = r.value.find("monitor_seconds"); cost != r.value.end() && cost->is_object()) {
        const auto total = cost->find("total");
        if (total != cost->end() && total->is_number()) final_record["monitor_seconds"] = total->get<double>();
      }
      const auto early = r.value.find("stopped_early");
      if (early != r.value.end() && !early->is_boolean()) {
        throw DataError(r.where + "final record: \"stopped_early\" is a JSON " + std::string(early->type_name()) +
                        ", expected a boolean");
      }
      final_record["stopped_early"] = early != r.value.end() && early->get<bool>();
      const auto ended = r.value.find("ended");  // why the loop ended (absent in older files)
      if (ended != r.value.end() && ended->is_string()) final_record["ended"] = ended->get<std::string>();
    } else if (k == "curvature") {
      curvature.push_back(&r);
    } else if (k == "layers") {
      layers.push_back(&r);
    } else if (k == "cliff") {
      cliffs.push_back(cliff_record(r));
    } else if (k == "recurrent") {
      recurrent.push_back(&r);
    } else if (k == "header" && header.is_null()) {
      header = r.value;
      header.erase("kind");
    } else if (k == "thread_rule") {  // the rule thread_rule = "auto" chose on the first steps
      const auto rule = r.value.find("rule");
      if (rule != r.value.end() && rule->is_string()) {
        thread_rule_chosen = rule->get<std::string>();
        const auto medians = r.value.find("median_ms");
        if (medians != r.value.end() && medians->is_object() && !medians->empty()) {
          std::ostringstream text;
          text << " (median ms per step:";
          for (const auto& [rule_name, ms] : medians->items()) {
            if (ms.is_number()) text << " " << rule_name << " " << std::fixed << std::setprecision(3) << ms.get<double>();
          }
          thread_rule_chosen += text.str() + ")";
        }
      }
    }
    // Other kinds (written by later versions) are left out of the page.
  }
  // The monitors' records, at most max_points of each kind (every stride-th); the curvature
  // records that hold lambda_max are thinned on their own, so that none is lost to the stride.
  {
    std::size_t with_lambda = 0;
    for (const Record* r : curvature) with_lambda += r->value.contains("lambda_max") ? 1 : 0;
    const std::size_t stride = stride_for(curvature.size(), max_points), lambda_stride = stride_for(with_lambda, max_points);
    json kept = json::array();
    std::size_t lambda_index = 0;
    for (std::size_t i = 0; i < curvature.size(); ++i) {
      json c = curvature_record(*curvature[i]);  // every record checked
      const bool lambda = curvature[i]->value.contains("lambda_max") && lambda_index++ % lambda_stride == 0;
      if (i % stride == 0 || lambda) kept.push_back(std::move(c));
    }
    // As columns (the field names once, not once per record): a column per field that some
    // kept record has, null where a record lacks it.
    json columns = {{"count", curvature.size()}, {"stride", stride}, {"step", json::array()}};
    for (const json& c : kept) {
      for (const auto& [f, v] : c.items()) {
        (void)v;
        if (!columns.contains(f)) columns[f] = json::array();
      }
    }
    for (const json& c : kept) {
      for (auto& [f, column] : columns.items()) {
        if (f == "count" || f == "stride") continue;
        column.push_back(c.contains(f) ? c[f] : json(nullptr));
      }
    }
    run["curvature"] = std::move(columns);
  }
  run["layers"] = layer_columns(layers, max_points);
  {
    std::size_t clipped = 0;
    for (const json& c : cliffs) clipped += c["clipped"].get<bool>() ? 1 : 0;
    const std::size_t stride = stride_for(cliffs.size(), max_points);
    json kept = json::array();
    for (std::size_t i = 0; i < cliffs.size(); i += stride) kept.push_back(cliffs[i]);
    run["cliffs"] = {{"count", cliffs.size()}, {"clipped", clipped}, {"stride", stride}, {"records", std::move(kept)}};
  }
  {
    const std::size_t stride = stride_for(recurrent.size(), max_points);
    json kept = json::array();
    for (std::size_t i = 0; i < recurrent.size(); ++i) {
      json rec = recurrent_record(*recurrent[i]);
      if (i % stride == 0) kept.push_back(std::move(rec));
    }
    run["recurrent"] = {{"count", recurrent.size()}, {"stride", stride}, {"records", std::move(kept)}};
  }
  if (header.is_object() && !thread_rule_chosen.empty()) header["thread_rule_chosen"] = thread_rule_chosen;
  run["header"] = std::move(header);
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
    for (const fs::path& f : files) {
      json d = read_json_file(f);
      // Per-draw data no panel draws (noise.json's squared_errors: sizes x draws numbers).
      if (d.is_object()) d.erase("squared_errors");
      diagnostics[f.stem().string()] = std::move(d);
    }
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
