// descent optimize --function NAME --optimizer NAME [--lr ...] [--start x,y] [--steps N] [--trace out.csv]
//
// The optimization lab: runs the library's optimizers (the same code the trainer runs) on
// an analytic function of two variables with exact gradients and Hessians, and prints the
// trajectory as CSV (step, x, y, f, grad_norm) followed by two summary lines: where the
// run ended, and which critical point of the function it ended near (with the Hessian's
// eigenvalues there). --optimizer takes a first-order name (optim/registry.hpp) or a
// second-order method (optim/second_order.hpp: newton, saddle_free, bfgs, lbfgs, ...).
#include <cmath>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <limits>
#include <optional>
#include <sstream>
#include <utility>

#include "commands.hpp"
#include "descent/error.hpp"
#include "descent/optim/optimizer.hpp"
#include "descent/optim/registry.hpp"
#include "descent/optim/second_order.hpp"
#include "descent/suggest.hpp"
#include "descent/optim/test_functions.hpp"

namespace descent::cli {
namespace {

optim::Point2 parse_point(const std::string& text) {
  const auto comma = text.find(',');
  const auto fail = [&] { return ConfigError("--start: expected two numbers x,y (e.g. --start -1.2,1), got \"" + text + "\""); };
  if (comma == std::string::npos) throw fail();
  try {
    std::size_t used_x = 0, used_y = 0;
    const std::string xs = text.substr(0, comma), ys = text.substr(comma + 1);
    const double x = std::stod(xs, &used_x), y = std::stod(ys, &used_y);
    if (used_x != xs.size() || used_y != ys.size() || !std::isfinite(x) || !std::isfinite(y)) throw fail();
    return {x, y};
  } catch (const std::logic_error&) {
    throw fail();
  }
}

void write_row(std::ostream& out, std::int64_t k, const optim::Point2& p, const optim::TestFunction& f) {
  const auto g = f.gradient(p);
  out << k << ',' << p[0] << ',' << p[1] << ',' << f.value(p) << ',' << std::hypot(g[0], g[1]) << '\n';
}

std::string second_order_names() {
  std::string names;
  for (const auto& e : optim::second_order_methods()) names += (names.empty() ? "" : ", ") + std::string(e.name);
  return names;
}

// The second summary line: the listed critical point nearest to the end point, whether the
// run ended there, and the Hessian's eigenvalues at it.
std::string critical_point_line(const optim::TestFunction& f, const optim::Point2& end) {
  const auto points = f.critical_points();
  std::ostringstream s;
  s << std::setprecision(6);
  if (points.empty()) {
    s << "# no critical point: " << f.name() << " has none (ended at distance " << std::hypot(end[0], end[1])
      << " from the origin)";
    return s.str();
  }
  std::size_t best = 0;
  double best_distance = std::numeric_limits<double>::infinity();
  for (std::size_t i = 0; i < points.size(); ++i) {
    const double d = std::hypot(end[0] - points[i][0], end[1] - points[i][1]);
    if (d < best_distance || (i == 0 && !std::isfinite(d))) best = i, best_distance = d;
  }
  const auto& p = points[best];
  const auto h = f.hessian(p);
  const auto eig = optim::eigenvalues(h);
  const std::string kind = optim::classify_critical_point(h);
  const bool near = best_distance <= 1e-3 * std::max(1.0, std::hypot(p[0], p[1]));
  s << "# " << (near ? "ended near the " : "ended near no critical point; the nearest is the ") << kind
    << (kind == "degenerate" ? " critical point (" : " (")
    << p[0] << ", " << p[1] << ") at distance " << best_distance << ", Hessian eigenvalues there " << eig[0] << ", "
    << eig[1];
  return s.str();
}

}  // namespace

void add_optimize(CLI::App& app, OptimizeArgs& args) {
  CLI::App* cmd = app.add_subcommand("optimize", "Run an optimizer on an analytic 2-D function (the optimization lab)");
  cmd->add_option("--function", args.function, "quadratic, rosenbrock, beale, saddle, monkey_saddle or no_minimum")
      ->required();
  cmd->add_option("--optimizer", args.spec.name,
                  "One of " + join(optim::optimizer_name_list()) + "; or a second-order method: " + second_order_names())
      ->required();
  cmd->add_option("--form", args.spec.form, "textbook (Goodfellow et al. 2016) or pytorch (torch.optim's formulas)");
  cmd->add_option("--lr", args.lr,
                  "Learning rate eps (default: the algorithm's); second-order methods: the step without a line search (default 1)");
  cmd->add_option("--momentum", args.momentum, "Momentum alpha");
  cmd->add_option("--rho", args.rho, "Decay rate rho (rmsprop, adadelta)");
  cmd->add_option("--rho1", args.rho1, "First-moment decay rho1 (adam family)");
  cmd->add_option("--rho2", args.rho2, "Second-moment decay rho2 (adam family)");
  cmd->add_option("--delta", args.delta, "Small constant delta");
  cmd->add_option("--weight-decay", args.spec.weight_decay, "Weight decay lambda (L2; decoupled for adamw)");
  cmd->add_option("--clip-norm", args.spec.clip_global_norm, "Clip the gradient's norm to this value (0: off)");
  cmd->add_option("--condition", args.condition, "Condition number kappa of the quadratic");
  cmd->add_option("--start", args.start, "Start point x,y (default: the function's)");
  cmd->add_option("--steps", args.steps, "Number of updates")->check(CLI::Range(0, 100000000));
  cmd->add_option("--trace", args.trace, "Write the trajectory CSV here instead of to standard output");
  const std::string so = "Second-order methods: ";
  cmd->add_option("--line-search", args.line_search,
                  so + "strong_wolfe, armijo or none (default: none for newton, damped_newton, saddle_free)");
  cmd->add_option("--c1", args.c1, so + "sufficient-decrease constant c1 (default 1e-4)");
  cmd->add_option("--c2", args.c2, so + "curvature constant c2 of strong Wolfe (default 0.9; cg 0.1)");
  cmd->add_option("--damping", args.damping, so + "lambda (damped_newton: initial, default 1; saddle_free: 1e-3)");
  cmd->add_option("--history", args.history, so + "L-BFGS pairs m (default 10)");
  cmd->add_option("--cg-iterations", args.cg_iterations, so + "linear CG steps at most (damped_newton, newton_cg; default 250)");
  cmd->add_option("--krylov", args.krylov, so + "Lanczos steps of saddle_free (default 20, at most the dimension)");
  cmd->add_option("--beta", args.beta, so + "cg's beta: fr, pr or pr+ (default pr+)");
  cmd->add_option("--restart", args.restart, so + "cg restarts every N iterations (0: every n; negative: never)");
}

namespace {

// The first-order flags a second-order method does not read, and the other way round.
void check_flags(const OptimizeArgs& a, bool second_order) {
  const auto given = [](double v) { return !std::isnan(v); };
  const std::string name = a.spec.name;
  if (second_order) {
    const std::pair<const char*, bool> first_only[] = {
        {"--momentum", given(a.momentum)}, {"--rho", given(a.rho)},          {"--rho1", given(a.rho1)},
        {"--rho2", given(a.rho2)},         {"--delta", given(a.delta)},      {"--weight-decay", a.spec.weight_decay != 0.0},
        {"--clip-norm", a.spec.clip_global_norm != 0.0}, {"--form", a.spec.form != "textbook"}};
    for (const auto& [flag, set] : first_only) {
      if (set) throw ConfigError(std::string(flag) + ": the second-order method " + name + " does not read it");
    }
    return;
  }
  const OptimizeArgs d;
  const std::pair<const char*, bool> second_only[] = {
      {"--line-search", !a.line_search.empty()}, {"--c1", given(a.c1)},          {"--c2", given(a.c2)},
      {"--damping", given(a.damping)},          {"--history", a.history != d.history},
      {"--cg-iterations", a.cg_iterations != d.cg_iterations}, {"--krylov", a.krylov != d.krylov},
      {"--beta", a.beta != d.beta},             {"--restart", a.restart != d.restart}};
  for (const auto& [flag, set] : second_only) {
    if (set) throw ConfigError(std::string(flag) + ": only the second-order methods (" + second_order_names() + ") read it, not " + name);
  }
}

void write_summary(const optim::TestFunction& f, const std::string& described, std::int64_t k, const optim::Point2& start,
                   const optim::Point2& end, const std::string& extra) {
  const auto grad = f.gradient(end);
  const auto eig = optim::eigenvalues(f.hessian(end));
  std::ostringstream s;
  s << std::setprecision(6) << "# " << f.name() << " with " << described << ": " << k << " steps from (" << start[0]
    << ", " << start[1] << ") to (" << end[0] << ", " << end[1] << ")  f " << f.value(end) << "  |g| "
    << std::hypot(grad[0], grad[1]) << "  Hessian eigenvalues " << eig[0] << ", " << eig[1];
  if (const auto m = f.minimizer()) s << "  distance to the minimum " << std::hypot(end[0] - (*m)[0], end[1] - (*m)[1]);
  s << extra;
  std::cout << s.str() << "\n" << critical_point_line(f, end) << "\n";
}

int run_second_order(const OptimizeArgs& args, const optim::TestFunction& f, const optim::Point2& start, std::ostream& out) {
  optim::SecondOrderOptions o;
  o.method = args.spec.name;
  if (!args.line_search.empty()) o.line_search = optim::parse_line_search(args.line_search);
  if (!std::isnan(args.c1)) o.c1 = args.c1;
  if (!std::isnan(args.c2)) o.c2 = args.c2;
  if (!std::isnan(args.damping)) o.damping = args.damping;
  if (!std::isnan(args.lr)) o.step = args.lr;
  o.history = args.history;
  o.cg_iterations = args.cg_iterations;
  o.krylov = args.krylov;
  o.beta = args.beta;
  o.restart = args.restart;
  auto method = optim::make_second_order(o);
  auto objective = optim::as_objective(f);
  const double x0[2] = {start[0], start[1]};
  method->start(*objective, x0);
  write_row(out, 0, start, f);
  std::int64_t k = 0, evaluations = 1, products = 0, rejected = 0, stalled_at = -1;
  bool diverged = false;
  std::string stopped;
  for (; k < args.steps; ++k) {
    if (method->gradient()[0] == 0.0 && method->gradient()[1] == 0.0) {  // a critical point: nothing moves any more
      stopped = "  gradient exactly 0 after step " + std::to_string(k) + ": stopped";
      break;
    }
    optim::IterationRecord r;
    try {
      r = method->step(*objective);
    } catch (const NumericError& e) {
      stopped = std::string("  STOPPED at step ") + std::to_string(k) + ": " + e.what();
      break;
    }
    evaluations += r.evaluations;
    products += r.hessian_products;
    if (!r.accepted) ++rejected;
    const optim::Point2 p{method->x()[0], method->x()[1]};
    write_row(out, k + 1, p, f);
    if (!std::isfinite(f.value(p))) {
      diverged = true;
      ++k;
      break;
    }
    if (r.stalled) {  // the line search found no step: the iterate cannot move any more
      stalled_at = k + 1;
      ++k;
      break;
    }
  }
  std::ostringstream extra;
  extra << "  evaluations " << evaluations << "  Hessian-vector products " << products;
  if (rejected > 0) extra << "  rejected steps " << rejected;
  if (stalled_at >= 0) extra << "  line search stalled at step " << stalled_at;
  if (diverged) extra << "  DIVERGED at step " << k;
  extra << stopped;
  write_summary(f, method->describe(), k, start, {method->x()[0], method->x()[1]}, extra.str());
  return 0;
}

}  // namespace

int run_optimize(const OptimizeArgs& args) {
  const bool second_order = optim::find_second_order(args.spec.name) != nullptr;
  if (!second_order && !optim::find_optimizer(args.spec.name)) {
    throw ConfigError(optim::unknown_optimizer(args.spec.name) + " (or a second-order method: " + second_order_names() + ")");
  }
  check_flags(args, second_order);
  auto f = optim::make_test_function(args.function, {.condition = args.condition});
  const optim::Point2 start = args.start.empty() ? f->default_start() : parse_point(args.start);

  std::ofstream file;
  if (!args.trace.empty()) {
    file.open(args.trace);
    if (!file) throw IoError(args.trace + ": cannot open for writing (--trace)");
  }
  std::ostream& out = args.trace.empty() ? std::cout : file;
  out << std::setprecision(17) << "step,x,y,f,grad_norm\n";
  const auto close_trace = [&] {
    if (!args.trace.empty()) {
      file.close();
      if (!file) throw IoError(args.trace + ": write failed (--trace)");
    }
  };
  if (second_order) {
    const int code = run_second_order(args, *f, start, out);
    close_trace();
    return code;
  }

  optim::OptimizerSpec spec = args.spec;
  // Unset (NaN) hyperparameters take the algorithm's default.
  const auto given = [](double v) { return std::isnan(v) ? std::nullopt : std::optional<double>(v); };
  spec.lr = given(args.lr);
  spec.momentum = given(args.momentum);
  spec.rho = given(args.rho);
  spec.rho1 = given(args.rho1);
  spec.rho2 = given(args.rho2);
  spec.delta = given(args.delta);
  auto optimizer = optim::make_optimizer(spec, nullptr);

  ParameterArena arena(DType::f64);
  arena.add("xy", {2});
  double* theta = arena.values().data<double>();
  double* g = arena.grads().data<double>();
  theta[0] = start[0];
  theta[1] = start[1];
  write_row(out, 0, start, *f);
  std::int64_t k = 0;
  bool diverged = false;
  for (; k < args.steps; ++k) {
    optimizer->prepare(arena, k);  // Nesterov: the gradient at theta + alpha v
    const auto grad = f->gradient({theta[0], theta[1]});
    g[0] = grad[0];
    g[1] = grad[1];
    optimizer->step(arena, k);
    const optim::Point2 p{theta[0], theta[1]};
    write_row(out, k + 1, p, *f);
    if (!std::isfinite(f->value(p))) {
      diverged = true;
      ++k;
      break;
    }
  }
  close_trace();
  write_summary(*f, optimizer->describe(), k, start, {theta[0], theta[1]},
                diverged ? "  DIVERGED at step " + std::to_string(k) : std::string());
  return 0;
}

}  // namespace descent::cli
