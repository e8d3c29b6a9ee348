// descent optimize --function NAME --optimizer NAME [--lr ...] [--start x,y] [--steps N] [--trace out.csv]
//
// The optimization lab: runs the library's optimizers (the same code the trainer runs) on
// an analytic function of two variables with exact gradients and Hessians, and prints the
// trajectory as CSV (step, x, y, f, grad_norm) followed by one summary line.
#include <cmath>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>

#include "commands.hpp"
#include "descent/error.hpp"
#include "descent/optim/optimizer.hpp"
#include "descent/optim/registry.hpp"
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

}  // namespace

void add_optimize(CLI::App& app, OptimizeArgs& args) {
  CLI::App* cmd = app.add_subcommand("optimize", "Run an optimizer on an analytic 2-D function (the optimization lab)");
  cmd->add_option("--function", args.function, "quadratic, rosenbrock, beale, saddle, monkey_saddle or no_minimum")
      ->required();
  cmd->add_option("--optimizer", args.spec.name, "One of " + join(optim::optimizer_name_list()))->required();
  cmd->add_option("--form", args.spec.form, "textbook (Goodfellow et al. 2016) or pytorch (torch.optim's formulas)");
  cmd->add_option("--lr", args.lr, "Learning rate eps (default: the algorithm's)");
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
}

int run_optimize(const OptimizeArgs& args) {
  optim::OptimizerSpec spec = args.spec;
  // Unset (NaN) hyperparameters take the algorithm's default.
  const auto given = [](double v) { return std::isnan(v) ? std::nullopt : std::optional<double>(v); };
  spec.lr = given(args.lr);
  spec.momentum = given(args.momentum);
  spec.rho = given(args.rho);
  spec.rho1 = given(args.rho1);
  spec.rho2 = given(args.rho2);
  spec.delta = given(args.delta);
  auto f = optim::make_test_function(args.function, {.condition = args.condition});
  auto optimizer = optim::make_optimizer(spec, nullptr);
  const optim::Point2 start = args.start.empty() ? f->default_start() : parse_point(args.start);

  std::ofstream file;
  if (!args.trace.empty()) {
    file.open(args.trace);
    if (!file) throw IoError(args.trace + ": cannot open for writing (--trace)");
  }
  std::ostream& out = args.trace.empty() ? std::cout : file;
  out << std::setprecision(17) << "step,x,y,f,grad_norm\n";

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
  if (!args.trace.empty()) {
    file.close();
    if (!file) throw IoError(args.trace + ": write failed (--trace)");
  }

  const optim::Point2 end{theta[0], theta[1]};
  const auto grad = f->gradient(end);
  const auto eig = optim::eigenvalues(f->hessian(end));
  std::ostringstream s;
  s << std::setprecision(6) << "# " << f->name() << " with " << optimizer->describe() << ": " << k << " steps from ("
    << start[0] << ", " << start[1] << ") to (" << end[0] << ", " << end[1] << ")  f " << f->value(end) << "  |g| "
    << std::hypot(grad[0], grad[1]) << "  Hessian eigenvalues " << eig[0] << ", " << eig[1];
  if (const auto m = f->minimizer()) s << "  distance to the minimum " << std::hypot(end[0] - (*m)[0], end[1] - (*m)[1]);
  if (diverged) s << "  DIVERGED at step " << k;
  std::cout << s.str() << "\n";
  return 0;
}

}  // namespace descent::cli
