// descent diagnose --what interpolation,plane: diagnose_landscape.hpp, docs/diagnostics.md.
#include "diagnose_landscape.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <limits>
#include <ostream>
#include <sstream>

#include "descent/diag/landscape.hpp"
#include "descent/diag/lanczos.hpp"
#include "descent/error.hpp"
#include "descent/io/model_file.hpp"
#include "work_progress.hpp"

namespace descent::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string num(double x, int precision = 4) {
  std::ostringstream s;
  s << std::setprecision(precision) << x;
  return s.str();
}

// The weights of `path` (read through the arena, whose weights are put back).
diag::Weights load_weights(const fs::path& path, ParameterArena& arena) {
  const diag::Weights saved = diag::read_weights(arena);
  io::load_parameters(path, arena, {.model = "the model of this run"});
  diag::Weights w = diag::read_weights(arena);
  diag::write_weights(arena, saved.values, saved.buffers);
  return w;
}

// theta_0: RUN_DIR/init.safetensors, refused when it is theta* itself.
diag::Weights initial_weights(const LandscapeContext& c, const char* what) {
  const fs::path init = c.run_dir / "init.safetensors";
  if (!fs::exists(init)) {
    throw IoError(init.string() + ": missing; " + what +
                  " needs the run's initial weights, which runs keep since snapshots came in (train the run again)");
  }
  std::error_code ec;
  if (fs::equivalent(init, c.weights, ec)) {
    throw ConfigError(std::string("--weights init: ") + what + " goes from theta_0 (init.safetensors) to the --weights; "
                      "name other weights (model, the default, or a snapshot)");
  }
  return load_weights(init, *c.model.arena);
}

// The first n examples of a split, decoded.
diag::ExampleSet first_examples(const train::Split& split, std::int64_t n) {
  Tensor buffer;
  const std::int64_t m = std::min(n, split.size());
  return {split.rows(0, m, buffer).clone(), split.y.rows(0, m)};
}

std::string batch_norm_note(const ParameterArena& arena, bool along_path) {
  if (arena.buffer_size() == 0) return "none (the model has no running statistics)";
  return along_path ? "running statistics interpolated with the weights: running means linearly, running variances "
                      "geometrically (v0^(1-alpha) v*^alpha)"
                    : "running statistics of theta* (the --weights) at every point";
}

// The trajectory's length (trajectory.json, written by training) against |theta* - theta_0|.
json trajectory_length(const LandscapeContext& c, double straight) {
  json j = {{"straight_distance", straight}};
  const fs::path file = c.run_dir / "trajectory.json";
  if (!fs::exists(file)) {
    j["length"] = nullptr;
    j["ratio"] = nullptr;
    j["note"] = "no trajectory.json in the run folder";
    return j;
  }
  std::ifstream in(file);
  json t;
  try {
    t = json::parse(in);
    j["length"] = t.at("length").get<double>();
    j["steps"] = t.at("steps").get<std::int64_t>();
    j["complete"] = t.at("complete").get<bool>();
    j["last_iterate_distance"] = t.at("distance_from_init");
  } catch (const json::exception& e) {
    throw DataError(file.string() + ": " + e.what());
  }
  j["ratio"] = straight > 0 ? json(j["length"].get<double>() / straight) : json(nullptr);
  return j;
}

std::string length_summary(const json& t) {
  if (t["length"].is_null()) return "no trajectory length (no trajectory.json)";
  return "trajectory length " + num(t["length"].get<double>()) + " = " +
         (t["ratio"].is_null() ? std::string("?") : num(t["ratio"].get<double>(), 3)) + " x the straight distance " +
         num(t["straight_distance"].get<double>());
}

// n points from lo to hi, each (lo (n-1-i) + hi i) / (n-1): both ends exact, and on a
// symmetric range [-h, h] with n odd the middle point exactly 0 (lo + (hi - lo) i / (n-1)
// would give 1e-16 there, so the plane would miss theta_0 and theta* by a hair).
std::vector<double> linspace(double lo, double hi, int n) {
  std::vector<double> v;
  const double m = n - 1;
  for (int i = 0; i < n; ++i) v.push_back(i + 1 == n ? hi : (lo * (m - i) + hi * i) / m);
  return v;
}

// The shape of a curve on alpha in [0, 1]: monotone, the largest rise between neighbours,
// the largest height above the chord from alpha = 0 to 1 (a bump), the minimum.
json shape(const std::vector<double>& alpha, const std::vector<double>& loss) {
  std::size_t i0 = 0, i1 = 0;
  for (std::size_t i = 0; i < alpha.size(); ++i) {
    if (alpha[i] == 0.0) i0 = i;
    if (alpha[i] == 1.0) i1 = i;
  }
  double rise = 0.0, bump = 0.0, lowest = loss[i0];
  double at_lowest = 0.0;
  for (std::size_t i = i0; i <= i1; ++i) {
    if (i > i0) rise = std::max(rise, loss[i] - loss[i - 1]);
    const double a = alpha[i];
    bump = std::max(bump, loss[i] - ((1 - a) * loss[i0] + a * loss[i1]));
    if (loss[i] < lowest) {
      lowest = loss[i];
      at_lowest = a;
    }
  }
  return {{"at_0", loss[i0]},           {"at_1", loss[i1]}, {"monotone", rise <= 0.0}, {"largest_rise", rise},
          {"above_chord", bump},        {"minimum", lowest}, {"alpha_of_minimum", at_lowest}};
}

std::vector<std::pair<std::int64_t, fs::path>> snapshot_files(const fs::path& run_dir) {
  std::vector<std::pair<std::int64_t, fs::path>> out;
  const fs::path dir = run_dir / "snapshots";
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (!name.starts_with("step-") || !name.ends_with(".safetensors")) continue;
    const std::string digits = name.substr(5, name.size() - 5 - 12);
    if (digits.empty() || !std::all_of(digits.begin(), digits.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) continue;
    out.emplace_back(std::stoll(digits), e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

json grid_json(const diag::PlaneGrid& g, bool error) {
  json rows = json::array();
  for (const auto& row : g.values) {
    json r = json::array();
    for (const diag::LossAndError& v : row) r.push_back(error ? v.error : v.loss);
    rows.push_back(r);
  }
  return rows;
}

}  // namespace

fs::path weights_file(const fs::path& run_dir, const std::string& weights) {
  if (weights == "model") return run_dir / "model.safetensors";
  if (weights == "init") return run_dir / "init.safetensors";
  return weights;
}

nlohmann::json diagnose_interpolation(const LandscapeContext& c, std::ostream& out) {
  ParameterArena& arena = *c.model.arena;
  const diag::Weights theta_star = diag::read_weights(arena);
  const diag::Weights theta0 = initial_weights(c, "interpolation");
  std::vector<diag::ExampleSet> sets = {first_examples(c.data.train, c.args.examples)};
  const bool validation = c.data.validation.size() > 0;
  if (validation) sets.push_back(first_examples(c.data.validation, c.args.examples));

  diag::InterpolationOptions o{.points = c.args.points, .chunk = train::evaluation_chunk(*c.model.net)};
  WorkProgress progress("interpolation", static_cast<std::int64_t>(diag::alpha_grid(o).size()), "points");
  o.progress = [&](std::int64_t done, std::int64_t) { progress.update(done); };
  const diag::Interpolation r = diag::interpolate(*c.model.net, arena, theta0, theta_star, sets, o);
  progress.finish();

  auto column = [&](std::size_t set, bool error) {
    std::vector<double> v;
    for (const diag::LossAndError& p : r.curves[set]) v.push_back(error ? p.error : p.loss);
    return v;
  };
  std::vector<double> d(theta0.values.size());
  for (std::size_t i = 0; i < d.size(); ++i) d[i] = theta_star.values[i] - theta0.values[i];
  const json length = trajectory_length(c, diag::norm(d));
  json j = {{"alpha", r.alpha},
            {"train_loss", column(0, false)},
            {"train_error", column(0, true)},
            {"validation_loss", validation ? json(column(1, false)) : json(nullptr)},
            {"validation_error", validation ? json(column(1, true)) : json(nullptr)},
            {"train_examples", sets[0].x.dim(0)},
            {"validation_examples", validation ? sets[1].x.dim(0) : 0},
            {"theta_0", "init.safetensors"},
            {"theta_star", c.weights.string()},
            {"batch_norm", batch_norm_note(arena, true)},
            {"shape", {{"train_loss", shape(r.alpha, column(0, false))}}},
            {"trajectory_length", length}};
  if (validation) j["shape"]["validation_loss"] = shape(r.alpha, column(1, false));
  const json& st = j["shape"]["train_loss"];
  std::ostringstream s;
  s << "interpolation: " << r.alpha.size() << " points over alpha in [-0.25, 1.25], " << sets[0].x.dim(0) << " train"
    << (validation ? " + " + std::to_string(sets[1].x.dim(0)) + " validation" : std::string()) << " examples; train loss "
    << num(st["at_0"].get<double>()) << " (theta_0) -> " << num(st["at_1"].get<double>()) << " (theta*), "
    << (st["monotone"].get<bool>() ? "monotone on [0, 1]" : "not monotone on [0, 1] (largest rise " + num(st["largest_rise"].get<double>()) + ")")
    << ", height above the chord " << num(st["above_chord"].get<double>());
  if (validation) {
    const json& sv = j["shape"]["validation_loss"];
    s << "; validation loss " << num(sv["at_0"].get<double>()) << " -> " << num(sv["at_1"].get<double>()) << ", lowest " << num(sv["minimum"].get<double>())
      << " at alpha " << num(sv["alpha_of_minimum"].get<double>(), 3);
  }
  s << "; " << length_summary(length);
  out << s.str();
  return j;
}

nlohmann::json diagnose_plane(const LandscapeContext& c, std::ostream& out) {
  ParameterArena& arena = *c.model.arena;
  const diag::Weights theta_star = diag::read_weights(arena);
  const train::Split& split = c.args.split == "validation" ? c.data.validation : c.data.train;
  const diag::ExampleSet set = first_examples(split, c.args.examples);
  const int n = c.args.grid;
  std::ostringstream s;
  json j;
  diag::Plane plane;
  std::vector<double> xs, ys;
  json trajectory = {{"x", json::array()}, {"y", json::array()}, {"step", json::array()}, {"off_plane", json::array()}};
  json points = json::object();
  std::string xlabel, ylabel;

  if (c.args.plane == "line") {
    const diag::Weights theta0 = initial_weights(c, "the plane through theta_0 and theta*");
    const auto files = snapshot_files(c.run_dir);
    // The snapshots, read through the arena (the same checks as any weights file).
    auto snapshot = [&](std::size_t k) { return load_weights(files[k].second, arena).values; };
    const diag::Deviation dev = diag::main_deviation(theta0.values, theta_star.values, files.size(), snapshot);
    std::vector<double> e = dev.direction;
    std::string how;
    if (e.empty()) {
      Rng rng(c.args.seed);
      std::vector<double> d1(theta0.values.size());
      for (std::size_t i = 0; i < d1.size(); ++i) d1[i] = theta_star.values[i] - theta0.values[i];
      e = diag::random_orthogonal(d1, rng);
      how = files.empty() ? "random, orthogonal to theta* - theta_0 (the run has no snapshots: train with "
                            "snapshots.every_steps > 0 for the trajectory's main deviation)"
                          : "random, orthogonal to theta* - theta_0 (the snapshots lie on the line)";
    } else {
      how = "the trajectory's main deviation from the line (first principal direction of the " +
            std::to_string(files.size()) + " snapshots' residuals; Goodfellow et al. 2015)";
    }
    plane = diag::through_line(theta0, theta_star, e);
    // The trajectory: theta_0, then every snapshot.
    double largest = 0.0;
    auto add = [&](std::int64_t step, const std::vector<double>& theta) {
      const diag::Projection p = diag::project(plane, theta);
      trajectory["x"].push_back(p.x);
      trajectory["y"].push_back(p.y);
      trajectory["step"].push_back(step);
      trajectory["off_plane"].push_back(p.off_plane);
      largest = std::max(largest, std::abs(p.y));
    };
    add(0, theta0.values);
    for (std::size_t k = 0; k < files.size(); ++k) add(files[k].first, snapshot(k));
    const diag::Projection p0 = diag::project(plane, theta0.values), p1 = diag::project(plane, theta_star.values);
    points["theta_0"] = {{"x", p0.x}, {"y", p0.y}};
    points["theta_star"] = {{"x", p1.x}, {"y", p1.y}};
    const double half = files.empty() || dev.direction.empty() ? 0.75 : std::max(0.25, 1.25 * largest);
    xs = linspace(-0.25, 1.25, n);
    ys = linspace(-half, half, n);
    xlabel = "alpha: theta_0 + alpha (theta* - theta_0)";
    ylabel = "along the second direction, in units of |theta* - theta_0|";
    j["direction"] = how;
    j["explained"] = dev.explained;
    j["snapshots"] = files.size();
    j["distance"] = diag::norm(plane.d1);
    j["trajectory_length"] = trajectory_length(c, diag::norm(plane.d1));
    s << "plane through theta_0 and theta* (" << (dev.direction.empty() ? "random second direction" : "second direction: the trajectory's main deviation, " + num(100 * dev.explained, 3) + "% of its residual") << ")";
  } else {
    plane.origin = theta_star.values;
    plane.buffers0 = theta_star.buffers;
    double half = c.args.range;
    if (c.args.plane == "random") {
      Rng rng(c.args.seed);
      plane.d1 = diag::filter_normalized_direction(arena, theta_star.values, rng);
      plane.d2 = diag::filter_normalized_direction(arena, theta_star.values, rng);
      if (!(half > 0)) half = 1.0;
      xlabel = "filter-normalized random direction 1 (Li et al. 2018)";
      ylabel = "filter-normalized random direction 2";
      j["direction"] = "two Gaussian directions, each filter rescaled to the norm of theta*'s filter; biases and other "
                       "one-dimensional parameters 0";
      s << "plane around theta* along filter-normalized random directions";
    } else {
      const diag::Spectrum sp =
          diag::lanczos_extremes(c.hessian, {.steps = c.args.steps, .top = 2, .bottom = 0, .seed = c.args.seed, .eigenvectors = true});
      if (sp.top_vectors.size() < 2) throw NumericError("--plane hessian: Lanczos found fewer than two eigenvectors");
      plane.d1 = sp.top_vectors[0];
      plane.d2 = sp.top_vectors[1];
      if (!(half > 0)) half = sp.top[0] > 0 ? 2.0 / std::sqrt(sp.top[0]) : 1.0;
      xlabel = "top Hessian eigenvector (unit), parameter-space distance";
      ylabel = "second Hessian eigenvector (unit), parameter-space distance";
      j["direction"] = "the Hessian's top two eigenvectors at theta* (Lanczos, " + std::to_string(sp.steps) + " steps)";
      j["eigenvalues"] = sp.top;
      j["residuals"] = sp.top_residuals;
      s << "plane around theta* along the top Hessian eigenvectors (lambda " << num(sp.top[0]) << ", " << num(sp.top[1])
        << ")";
    }
    xs = linspace(-half, half, n);
    ys = linspace(-half, half, n);
    const diag::Projection p1 = diag::project(plane, theta_star.values);
    points["theta_star"] = {{"x", p1.x}, {"y", p1.y}};
    j["range"] = half;
  }

  WorkProgress progress("plane", static_cast<std::int64_t>(xs.size() * ys.size()), "points");
  const diag::PlaneGrid g = diag::evaluate_plane(*c.model.net, arena, plane, xs, ys, set, train::evaluation_chunk(*c.model.net),
                                                 [&](std::int64_t done, std::int64_t) { progress.update(done); });
  progress.finish();
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const auto& row : g.values) {
    for (const auto& v : row) {
      lo = std::min(lo, v.loss);
      hi = std::max(hi, v.loss);
    }
  }
  j["method"] = c.args.plane;
  j["axes"] = {{"x", {{"label", xlabel}, {"values", xs}}}, {"y", {{"label", ylabel}, {"values", ys}}}};
  j["loss"] = grid_json(g, false);
  j["error"] = grid_json(g, true);
  j["trajectory"] = trajectory;
  j["points"] = points;
  j["batch_norm"] = batch_norm_note(arena, c.args.plane == "line");
  j["loss_range"] = {lo, hi};
  s << ": " << n << " x " << n << " points on " << set.x.dim(0) << " " << c.args.split << " examples, loss from "
    << num(lo) << " to " << num(hi);
  if (c.args.plane == "line") s << "; " << trajectory["step"].size() << " trajectory points drawn; " << length_summary(j["trajectory_length"]);
  out << s.str();
  return j;
}

}  // namespace descent::cli
