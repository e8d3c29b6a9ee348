// descent diagnose RUN_DIR [--what spectrum,trace,density,noise,symmetry,critical,interpolation,plane]
//                  [--examples N] [--split train|validation] [--weights model|init|PATH] [--top K] [--steps M]
//                  [--probes P] [--draws D] [--trials T] [--seed S] [--points P] [--grid N]
//                  [--plane line|random|hessian] [--range R]
// The Hessian of the mean loss of a run's saved model (model.safetensors, built from the run's
// config.toml) over the first N examples of a split, in file order, after the config's
// preprocessing: its extreme eigenvalues (Lanczos), trace (Hutchinson) and spectral density
// (stochastic Lanczos quadrature); gradient noise against the batch size, weight-space
// symmetries, and whether the point is critical; the loss along the line from the run's initial
// weights and on a plane (8.2.7). Writes RUN_DIR/diagnostics/<what>.json and prints a
// summary. docs/diagnostics.md says what each figure means.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "diagnose_landscape.hpp"
#include "descent/diag/critical.hpp"
#include "descent/diag/density.hpp"
#include "descent/diag/hessian.hpp"
#include "descent/diag/lanczos.hpp"
#include "descent/diag/noise.hpp"
#include "descent/diag/symmetry.hpp"
#include "descent/io/atomic_file.hpp"
#include "descent/io/model_file.hpp"
#include "descent/tensor/parallel.hpp"
#include "descent/train/data.hpp"
#include "descent/train/trainer.hpp"

namespace descent::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const std::vector<std::string> known_diagnostics = {"spectrum", "trace", "density", "noise", "symmetry", "critical", "interpolation", "plane"};

std::string known_list() {
  std::string s;
  for (std::size_t i = 0; i < known_diagnostics.size(); ++i) {
    s += (i == 0 ? "" : i + 1 == known_diagnostics.size() ? " and " : ", ") + known_diagnostics[i];
  }
  return s;
}

std::vector<std::string> parse_what(const std::string& what) {
  std::vector<std::string> items;
  std::stringstream in(what);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.empty()) continue;
    if (std::find(known_diagnostics.begin(), known_diagnostics.end(), item) == known_diagnostics.end()) {
      throw ConfigError("--what: unknown diagnostic '" + printable_excerpt(item, 40) + "'; the diagnostics are " + known_list());
    }
    if (std::find(items.begin(), items.end(), item) == items.end()) items.push_back(item);
  }
  if (items.empty()) throw ConfigError("--what: no diagnostic named; the diagnostics are " + known_list());
  return items;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string number(double x, int precision = 6) {
  std::ostringstream s;
  s << std::setprecision(precision) << x;
  return s.str();
}

}  // namespace

void add_diagnose(CLI::App& app, DiagnoseArgs& args) {
  CLI::App* cmd = app.add_subcommand(
      "diagnose", "Diagnostics of a run's model: Hessian extreme eigenvalues, trace, spectral density; the loss from the initial weights and on a plane (docs/diagnostics.md)");
  cmd->add_option("run_dir", args.run_dir, "A run folder (holding config.toml and model.safetensors)")->required();
  cmd->add_option("--what", args.what, "Comma-separated: spectrum, trace, density, noise, symmetry, critical, interpolation, plane")->capture_default_str();
  cmd->add_option("--examples", args.examples, "The first N examples of the split, in file order")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--split", args.split, "Which examples")->check(CLI::IsMember({"train", "validation"}))->capture_default_str();
  cmd->add_option("--top", args.top, "Largest and smallest eigenvalues to report")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--steps", args.steps, "Lanczos steps (spectrum; and per probe, density)")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--probes", args.probes, "Random probes (default: trace 100, density 10)")->check(CLI::Range(2, 100000));
  cmd->add_option("--draws", args.draws, "Minibatches drawn per batch size (noise)")->check(CLI::Range(2, 100000))->capture_default_str();
  cmd->add_option("--trials", args.trials, "Random permutations and rescalings (symmetry)")->check(CLI::Range(1, 100000))->capture_default_str();
  cmd->add_option("--seed", args.seed, "Seed of the random start vector and probes")->capture_default_str();
  cmd->add_option("--weights", args.weights, "The weights: model (model.safetensors), init (init.safetensors) or a PATH to a weights file")
      ->capture_default_str();
  cmd->add_option("--points", args.points, "interpolation: alpha values over [-0.25, 1.25] (0 and 1 added)")->check(CLI::Range(2, 100000))->capture_default_str();
  cmd->add_option("--grid", args.grid, "plane: N x N points")->check(CLI::Range(2, 1000))->capture_default_str();
  cmd->add_option("--plane", args.plane, "plane: line (theta_0, theta* and the trajectory), random (filter-normalized), hessian (top eigenvectors)")
      ->check(CLI::IsMember({"line", "random", "hessian"}))->capture_default_str();
  cmd->add_option("--range", args.range, "plane random/hessian: half-width of the axes (default: random 1, hessian 2/sqrt(lambda_max))")
      ->check(CLI::PositiveNumber);
}

int run_diagnose(const DiagnoseArgs& args) {
  const std::vector<std::string> what = parse_what(args.what);
  const fs::path run_dir = args.run_dir;
  if (!fs::is_directory(run_dir)) {
    throw ConfigError(args.run_dir + ": not a folder (descent diagnose takes a run folder holding config.toml and model.safetensors)");
  }
  const train::TrainConfig config = train::load_train_config(run_dir / "config.toml");
  if (config.threads > 0) set_num_threads(config.threads);
  const fs::path weights = weights_file(run_dir, args.weights);
  const io::Safetensors file = io::read_model_file(weights);
  train::Data data = train::load_data(config);
  train::Model model = train::build_model(config.model, data.dim, data.num_classes, config.seed);
  io::load_parameters(file, weights.string(), *model.arena, {.model = "the model of " + (run_dir / "config.toml").string()});

  const train::Split& split = args.split == "validation" ? data.validation : data.train;
  if (split.size() == 0) throw ConfigError("the " + args.split + " split of " + args.run_dir + " is empty");
  const std::int64_t n = std::min<std::int64_t>(args.examples, split.size());
  Tensor buffer;
  const Tensor x = split.rows(0, n, buffer);
  const Tensor y = split.y.rows(0, n);

  auto t0 = std::chrono::steady_clock::now();
  diag::HessianOperator hessian(*model.net, *model.arena, x, y);
  double gnorm = 0.0;
  for (double g : hessian.gradient()) gnorm += g * g;
  gnorm = std::sqrt(gnorm);
  std::cout << args.run_dir << ": " << n << " " << args.split << " examples (of " << split.size() << "), " << hessian.dim()
            << " parameters, loss " << number(hessian.loss()) << ", gradient norm " << number(gnorm) << "\n";
  const std::string weights_name = args.weights == "model" ? "model.safetensors" : args.weights == "init" ? "init.safetensors" : args.weights;
  const json common = {{"run", args.run_dir},         {"weights", weights_name},
                       {"split", args.split},         {"examples", n},
                       {"parameters", hessian.dim()}, {"loss", hessian.loss()},
                       {"gradient_norm", gnorm},      {"seed", args.seed},
                       {"threads", num_threads()}};
  const fs::path out_dir = run_dir / "diagnostics";
  fs::create_directories(out_dir);
  // `own`: common fields the file holds with another meaning (plane.json's `loss` is the grid).
  auto write = [&](const std::string& name, json j, const std::vector<std::string>& own = {}) {
    for (const auto& [k, v] : common.items()) {
      if (std::find(own.begin(), own.end(), k) != own.end()) continue;
      if (j.contains(k)) throw Error("diagnose: internal error: field '" + k + "' written twice in " + name + ".json");
      j[k] = v;
    }
    io::write_file_atomic(out_dir / (name + ".json"), j.dump(1) + "\n");
    return (out_dir / (name + ".json")).string();
  };
  const double setup_seconds = seconds_since(t0);

  for (const std::string& item : what) {
    t0 = std::chrono::steady_clock::now();
    const std::int64_t products_before = hessian.products();
    if (item == "spectrum") {
      const diag::Spectrum s =
          diag::lanczos_extremes(hessian, {.steps = args.steps, .top = args.top, .bottom = args.top, .seed = args.seed});
      const double secs = seconds_since(t0) + setup_seconds;
      const std::string path = write(
          "spectrum", {{"eigenvalues_top", s.top},
                       {"eigenvalues_bottom", s.bottom},
                       {"residuals", {{"top", s.top_residuals}, {"bottom", s.bottom_residuals}}},
                       {"lambda_max", s.lambda_max},
                       {"lambda_min", s.lambda_min},
                       {"negative_mass", s.negative_mass},
                       {"zero_mass", s.zero_mass},
                       {"zero_tolerance", s.zero_tolerance},
                       {"lanczos_steps", s.steps},
                       {"hessian_vector_products", hessian.products() - products_before},
                       {"seconds", secs}});
      std::cout << "spectrum: lambda_max " << number(s.lambda_max) << " (residual " << number(s.top_residuals.front(), 2)
                << "), lambda_min " << number(s.lambda_min) << " (residual " << number(s.bottom_residuals.front(), 2)
                << "), negative mass " << number(s.negative_mass, 3) << ", zero mass " << number(s.zero_mass, 3) << "; " << s.steps << " Lanczos steps, "
                << number(secs, 3) << " s -> " << path << "\n";
    } else if (item == "trace") {
      const diag::TraceEstimate e = diag::hutchinson_trace(hessian, {.probes = args.probes > 0 ? args.probes : 100, .seed = args.seed});
      const double secs = seconds_since(t0) + setup_seconds;
      const std::string path = write("trace", {{"trace", e.trace},
                                               {"stderr", e.standard_error},
                                               {"mean_eigenvalue", e.trace / static_cast<double>(hessian.dim())},
                                               {"probes", e.probes},
                                               {"samples", e.samples},
                                               {"hessian_vector_products", hessian.products() - products_before},
                                               {"seconds", secs}});
      std::cout << "trace: " << number(e.trace) << " +- " << number(e.standard_error, 3) << " (standard error, " << e.probes
                << " probes), " << number(secs, 3) << " s -> " << path << "\n";
    } else if (item == "interpolation" || item == "plane") {
      const LandscapeContext lc{args, run_dir, data, model, weights, hessian};
      std::ostringstream summary;
      json j = item == "interpolation" ? diagnose_interpolation(lc, summary) : diagnose_plane(lc, summary);
      const double secs = seconds_since(t0) + setup_seconds;
      j["seconds"] = secs;
      if (item == "plane") j["loss_at_weights"] = hessian.loss();  // the common `loss`; plane.json's is the grid
      const std::string path = write(item, std::move(j), item == "plane" ? std::vector<std::string>{"loss"} : std::vector<std::string>{});
      std::cout << summary.str() << "; " << number(secs, 3) << " s -> " << path << "\n";
    } else if (item == "density") {
      const diag::Density d =
          diag::spectral_density(hessian, {.probes = args.probes > 0 ? args.probes : 10, .steps = args.steps, .seed = args.seed});
      const double secs = seconds_since(t0) + setup_seconds;
      const std::string path = write("density", {{"grid", d.grid},
                                                 {"density", d.density},
                                                 {"sigma", d.sigma},
                                                 {"ritz_values", d.nodes},
                                                 {"ritz_weights", d.weights},
                                                 {"negative_mass", d.negative_mass},
                                                 {"zero_mass", d.zero_mass},
                                                 {"zero_tolerance_relative", diag::as_operator(hessian).zero_tolerance},
                                                 {"trace", d.trace},
                                                 {"trace_stderr", d.trace_stderr},
                                                 {"probes", d.probes},
                                                 {"lanczos_steps", d.steps},
                                                 {"hessian_vector_products", hessian.products() - products_before},
                                                 {"seconds", secs}});
      std::cout << "density: " << d.probes << " probes x " << d.steps << " Lanczos steps, sigma " << number(d.sigma, 3)
                << ", negative mass " << number(d.negative_mass, 3) << ", zero mass " << number(d.zero_mass, 3) << ", trace " << number(d.trace) << " +- "
                << number(d.trace_stderr, 3) << ", " << number(secs, 3) << " s -> " << path << "\n";
    } else if (item == "noise") {
      const diag::NoiseResult r = diag::gradient_noise(*model.net, *model.arena, x, y, {.draws = args.draws, .seed = args.seed});
      const double secs = seconds_since(t0) + setup_seconds;
      const std::string path = write("noise", {{"batch_sizes", r.batch_sizes},
                                               {"stderr", r.standard_error},
                                               {"stderr_predicted", r.predicted},
                                               {"stderr_corrected", r.corrected},
                                               {"squared_errors", r.squared_errors},
                                               {"slope", r.slope},
                                               {"slope_uncorrected", r.slope_uncorrected},
                                               {"trace_sigma", r.trace_sigma},
                                               {"noise_scale", r.noise_scale},
                                               {"draws", r.draws},
                                               {"draws_per_size", r.draws_per_size},
                                               {"seconds", secs}});
      std::cout << "noise: standard error slope " << number(r.slope, 3) << " (finite-population corrected; uncorrected "
                << number(r.slope_uncorrected, 3) << "), noise scale B = tr(Sigma)/|G|^2 = " << number(r.noise_scale, 4) << " (tr(Sigma) "
                << number(r.trace_sigma, 4) << "), batch sizes 1.." << r.batch_sizes.back() << " x " << r.draws << " draws, " << number(secs, 3)
                << " s -> " << path << "\n";
    } else if (item == "symmetry") {
      const diag::SymmetryResult r = diag::weight_space_symmetry(*model.net, *model.arena, x, y, {.trials = args.trials, .seed = args.seed});
      hessian.refresh();  // the parameters are back; the tapes are recorded again from them
      json layers = json::array();
      for (const auto& l : r.layers) {
        layers.push_back({{"name", l.name}, {"kind", l.kind}, {"units", l.units}, {"rescaling", l.rescaling}, {"between", l.between},
                          {"log10_permutations", std::lgamma(static_cast<double>(l.units) + 1.0) / std::log(10.0)}});
      }
      const double secs = seconds_since(t0) + setup_seconds;
      const std::string path = write("symmetry", {{"permutation_max_change", r.permutation_max_change},
                                                  {"rescaling_max_change", r.rescaling_max_change},
                                                  {"permutation_distance", r.permutation_distance},
                                                  {"rescaling_distance", r.rescaling_distance},
                                                  {"log10_equivalent_models", r.log10_equivalent_models},
                                                  {"rescaling_dimensions", r.rescaling_dimensions},
                                                  {"layers", layers},
                                                  {"not_covered", r.skipped},
                                                  {"trials", r.trials},
                                                  {"seconds", secs}});
      std::string kinds;
      for (const auto& l : r.layers) kinds += std::string(kinds.empty() ? "" : ", ") + l.name + " (" + l.kind + ", " + std::to_string(l.units) + ")";
      std::cout << "symmetry: " << r.layers.size() << " hidden layers" << (kinds.empty() ? "" : " [" + kinds + "]")
                << "; largest relative loss change " << number(r.permutation_max_change, 3) << " under permutations, "
                << (r.rescaling_dimensions > 0 ? number(r.rescaling_max_change, 3) + " under rescalings" : std::string("no layer allows a rescaling"))
                << " (" << r.trials
                << " trials; parameters moved up to " << number(std::max(r.permutation_distance, r.rescaling_distance), 3)
                << " of their norm); 10^" << number(r.log10_equivalent_models, 5) << " equivalent permutations";
      if (r.rescaling_dimensions > 0) std::cout << " times a " << r.rescaling_dimensions << "-dimensional continuum of rescalings";
      std::cout << ", " << number(secs, 3) << " s -> " << path << "\n";
      for (const auto& s : r.skipped) std::cout << "  " << s << "\n";
    } else if (item == "critical") {
      const diag::CriticalPoint c = diag::critical_point(hessian, {.steps = args.steps, .seed = args.seed});
      const double secs = seconds_since(t0) + setup_seconds;
      const std::string path = write("critical", {{"lambda_min", c.lambda_min},
                                                  {"lambda_max", c.lambda_max},
                                                  {"residual_min", c.residual_min},
                                                  {"residual_max", c.residual_max},
                                                  {"gradient_gap", c.gap},
                                                  {"gap_threshold", c.gap_threshold},
                                                  {"curvature_threshold", c.curvature_threshold},
                                                  {"critical", c.critical},
                                                  {"verdict", c.verdict},
                                                  {"reason", c.reason},
                                                  {"lanczos_steps", c.lanczos_steps},
                                                  {"hessian_vector_products", hessian.products() - products_before},
                                                  {"seconds", secs}});
      std::cout << "critical: " << c.verdict << " (" << c.reason << "); gradient norm " << number(c.gradient_norm) << ", lambda_min "
                << number(c.lambda_min) << ", lambda_max " << number(c.lambda_max) << ", " << number(secs, 3) << " s -> " << path << "\n";
    }
  }
  return 0;
}

}  // namespace descent::cli
