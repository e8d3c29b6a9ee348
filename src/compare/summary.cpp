// The summary of a comparison: per run, per point, the ranking (compare/summary.hpp).
#include "descent/compare/summary.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>

#include "descent/error.hpp"
#include "descent/io/json_lines.hpp"

namespace descent::compare {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::optional<double> number(const json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}
std::optional<std::int64_t> integer(const json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return std::nullopt;
  return it->get<std::int64_t>();
}
template <class T>
json opt(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}
json stat_json(const Stat& s) {
  if (s.n == 0) return json(nullptr);
  return json{{"mean", s.mean}, {"std", s.std}, {"n", s.n}};
}

}  // namespace

RunOutcome read_run(const fs::path& run_dir, std::optional<double> target) {
  RunOutcome out;
  out.name = run_dir.filename().string();
  const fs::path metrics = run_dir / "metrics.jsonl";
  std::error_code ec;
  if (!fs::exists(metrics, ec)) return out;
  out.status = "interrupted";
  std::optional<double> best;
  for (const json& r : io::read_json_lines(metrics)) {
    const std::string kind = r.value("kind", "");
    if (kind == "epoch") {
      CurvePoint c;
      c.epoch = integer(r, "epoch").value_or(0);
      c.step = integer(r, "step").value_or(0);
      c.wall_s = number(r, "wall_s").value_or(0.0);
      c.val_error = number(r, "val_error");
      c.train_loss = number(r, "train_loss");
      out.curve.push_back(c);
      if (c.epoch >= 1 && c.val_error && (!best || *c.val_error < *best)) {
        best = c.val_error;
        out.best_epoch = c.epoch;
      }
      if (target && c.val_error && *c.val_error <= *target && !out.time_to_target_s) {
        out.time_to_target_s = c.wall_s;
        out.steps_to_target = c.step;
      }
      out.wall_s = c.wall_s;
      out.steps = c.step;
    } else if (kind == "final") {
      out.status = "finished";
      if (const auto v = number(r, "best_val_error")) best = v;
      if (const auto e = integer(r, "best_epoch")) out.best_epoch = e;
      out.test_error = number(r, "test_error");
      out.divergences = integer(r, "divergences").value_or(0);
      if (const auto w = number(r, "wall_s")) out.wall_s = w;
      if (const auto s = integer(r, "steps")) out.steps = s;
    } else if (kind == "stopped") {
      const std::string reason = r.value("reason", "");
      out.status = reason == "diverged" ? "diverged" : "interrupted";
      if (reason == "diverged") out.divergences = integer(r, "divergences").value_or(1);
      if (const auto w = number(r, "wall_s")) out.wall_s = w;
    }
  }
  out.best_val_error = best;
  if (out.status == "interrupted") {
    // run.json "failed" without a stopped record: an error other than a divergence.
    try {
      const json run = json::parse(std::ifstream(run_dir / "run.json"));
      if (run.value("status", "") == "failed") out.status = "failed";
    } catch (const std::exception&) {
    }
  }
  return out;
}

Stat stat_of(const std::vector<double>& values) {
  Stat s;
  s.n = values.size();
  if (s.n == 0) return s;
  double sum = 0.0;
  for (const double v : values) sum += v;
  s.mean = sum / static_cast<double>(s.n);
  if (s.n > 1) {
    double ss = 0.0;
    for (const double v : values) ss += (v - s.mean) * (v - s.mean);
    s.std = std::sqrt(ss / static_cast<double>(s.n - 1));
  }
  return s;
}

json summarize(const Grid& grid, const fs::path& runs_dir) {
  const std::optional<double> target = grid.spec.target_val_error;
  json runs = json::array(), points = json::array();
  std::vector<std::vector<RunOutcome>> by_point(grid.points.size());
  for (const Run& run : grid.runs) {
    RunOutcome o = read_run(runs_dir / run.name, target);
    o.name = run.name;
    const Point& p = grid.points[run.point];
    json curve = json::array();
    for (const CurvePoint& c : o.curve) {
      curve.push_back({{"epoch", c.epoch}, {"step", c.step}, {"wall_s", c.wall_s}, {"val_error", opt(c.val_error)},
                       {"train_loss", opt(c.train_loss)}});
    }
    runs.push_back({{"name", run.name},
                    {"point", p.name},
                    {"method", p.method},
                    {"lr", p.lr},
                    {"seed", run.seed},
                    {"status", o.status},
                    {"best_val_error", opt(o.best_val_error)},
                    {"best_epoch", opt(o.best_epoch)},
                    {"test_error", opt(o.test_error)},
                    {"time_to_target_s", opt(o.time_to_target_s)},
                    {"steps_to_target", opt(o.steps_to_target)},
                    {"divergences", o.divergences},
                    {"wall_s", opt(o.wall_s)},
                    {"steps", opt(o.steps)},
                    {"curve", curve}});
    by_point[run.point].push_back(std::move(o));
  }
  for (const Point& p : grid.points) {
    std::vector<double> best, test, time, steps, wall;
    std::int64_t divergences = 0, diverged = 0, finished = 0;
    for (const RunOutcome& o : by_point[p.index]) {
      // Figures of the runs that finished; a diverged run counts in divergences only.
      if (o.status == "finished") {
        ++finished;
        if (o.best_val_error) best.push_back(*o.best_val_error);
        if (o.test_error) test.push_back(*o.test_error);
        if (o.wall_s) wall.push_back(*o.wall_s);
      }
      if (o.time_to_target_s) time.push_back(*o.time_to_target_s);
      if (o.steps_to_target) steps.push_back(static_cast<double>(*o.steps_to_target));
      divergences += o.divergences;
      if (o.status == "diverged") ++diverged;
    }
    json settings = json::object();
    for (const auto& [k, v] : p.values) settings[k] = v.text;
    points.push_back({{"name", p.name},
                      {"method", p.method},
                      {"lr", p.lr},
                      {"settings", settings},
                      {"runs", by_point[p.index].size()},
                      {"finished", finished},
                      {"diverged_runs", diverged},
                      {"divergences", divergences},
                      {"reached_target", time.size()},
                      {"best_val_error", stat_json(stat_of(best))},
                      {"test_error", stat_json(stat_of(test))},
                      {"time_to_target_s", stat_json(stat_of(time))},
                      {"steps_to_target", stat_json(stat_of(steps))},
                      {"wall_s", stat_json(stat_of(wall))}});
  }
  // The ranking: each method at its best point (lowest mean best validation error among the
  // points whose every seed finished), ordered by that mean; two methods are within each
  // other's noise when their means differ by no more than the sum of their standard errors.
  struct Entry {
    std::string method;
    const json* point = nullptr;
    double mean = 0, se = 0;
  };
  std::vector<Entry> entries;
  std::vector<std::string> unranked;
  std::vector<std::string> methods;
  for (const Point& p : grid.points) {
    if (std::find(methods.begin(), methods.end(), p.method) == methods.end()) methods.push_back(p.method);
  }
  for (const std::string& m : methods) {
    Entry e;
    e.method = m;
    for (const json& pt : points) {
      if (pt["method"] != m || pt["finished"] != pt["runs"] || pt["best_val_error"].is_null()) continue;
      const double mean = pt["best_val_error"]["mean"].get<double>();
      if (e.point == nullptr || mean < e.mean) {
        e.point = &pt;
        e.mean = mean;
        e.se = pt["best_val_error"]["std"].get<double>() / std::sqrt(pt["best_val_error"]["n"].get<double>());
      }
    }
    if (e.point == nullptr) unranked.push_back(m);
    else entries.push_back(e);
  }
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.mean < b.mean; });
  json ranking = json::array();
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    json tied = json::array();
    std::size_t rank = 1;
    for (std::size_t j = 0; j < entries.size(); ++j) {
      if (j == i) continue;
      const bool within = std::abs(entries[j].mean - e.mean) <= entries[j].se + e.se;
      if (within) tied.push_back(entries[j].method);
      else if (entries[j].mean < e.mean) ++rank;
    }
    const json& pt = *e.point;
    ranking.push_back({{"method", e.method},
                       {"rank", rank},
                       {"point", pt["name"]},
                       {"lr", pt["lr"]},
                       {"best_val_error", pt["best_val_error"]},
                       {"standard_error", e.se},
                       {"test_error", pt["test_error"]},
                       {"within_noise_of", tied}});
  }
  json out;
  out["format"] = "descent-compare-summary/1";
  out["digest"] = grid.digest;
  out["source"] = grid.spec.source;
  out["target_val_error"] = opt(grid.spec.target_val_error);
  out["rule"] =
      "Each method is taken at its best grid point: the lowest mean best validation error over the seeds, among the "
      "points where every seed finished (no divergence). Methods are ranked by that mean; a method's rank is 1 + the "
      "number of methods with a lower mean outside its noise. Two methods are within each other's noise when their "
      "means differ by no more than the sum of their standard errors (standard deviation over seeds / sqrt(seeds)).";
  out["runs"] = runs;
  out["points"] = points;
  out["ranking"] = ranking;
  out["unranked"] = unranked;
  return out;
}

std::string summary_csv(const json& summary) {
  std::string out =
      "row,name,method,lr,seed,status,n,best_val_error,best_val_error_std,test_error,test_error_std,time_to_target_s,"
      "time_to_target_s_std,steps_to_target,steps_to_target_std,divergences,diverged_runs,wall_s,wall_s_std,best_epoch,"
      "steps,settings\n";
  const auto num = [](const json& v) -> std::string {
    if (v.is_null()) return "";
    if (v.is_number_integer() || v.is_number_unsigned()) return std::to_string(v.get<std::int64_t>());
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", v.get<double>());
    return buf;
  };
  const auto pair = [&](const json& s) -> std::string {
    if (s.is_null()) return ",";
    return num(s["mean"]) + "," + num(s["std"]);
  };
  const auto csv_text = [](const std::string& s) {
    std::string q = "\"";
    for (const char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
  };
  for (const json& r : summary["runs"]) {
    out += "run," + csv_text(r["name"]) + "," + csv_text(r["method"]) + "," + num(r["lr"]) + "," + num(r["seed"]) + "," +
           r["status"].get<std::string>() + ",1," + num(r["best_val_error"]) + ",," + num(r["test_error"]) + ",," +
           num(r["time_to_target_s"]) + ",," + num(r["steps_to_target"]) + ",," + num(r["divergences"]) + "," +
           (r["status"] == "diverged" ? "1" : "0") + "," + num(r["wall_s"]) + ",," + num(r["best_epoch"]) + "," +
           num(r["steps"]) + ",\n";
  }
  for (const json& p : summary["points"]) {
    std::string settings;
    for (const auto& [k, v] : p["settings"].items()) settings += (settings.empty() ? "" : ";") + k + "=" + v.get<std::string>();
    const std::string n = p["best_val_error"].is_null() ? "0" : num(p["best_val_error"]["n"]);
    out += "point," + csv_text(p["name"]) + "," + csv_text(p["method"]) + "," + num(p["lr"]) + ",,," + n + "," +
           pair(p["best_val_error"]) + "," + pair(p["test_error"]) + "," + pair(p["time_to_target_s"]) + "," +
           pair(p["steps_to_target"]) + "," + num(p["divergences"]) + "," + num(p["diverged_runs"]) + "," +
           pair(p["wall_s"]) + ",,," + csv_text(settings) + "\n";
  }
  return out;
}

}  // namespace descent::compare
