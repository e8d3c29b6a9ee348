#pragma once
// Second-order and line-search methods (Goodfellow et al. 2016, section 8.6; Nocedal &
// Wright, Numerical Optimization, 2nd ed. 2006): Newton, damped Newton (Hessian-free,
// Levenberg-Marquardt damping), saddle-free Newton, Newton-CG, nonlinear conjugate
// gradient, BFGS and L-BFGS, with strong-Wolfe and backtracking (Armijo) line searches.
//
// They are not element-wise update rules (transform.hpp): each iteration evaluates the
// objective several times (a line search), solves a linear system or keeps a history of
// vectors. So they work on an abstract Objective (value + gradient, Hessian-vector
// products, a dense Hessian for small problems) in double precision, and have their own
// list of names (second_order_methods(), below), next to the first-order registry.
// `descent optimize --optimizer NAME` takes a name from either list.
//
//   newton          d = -H^{-1} g                      (dense H; unit step unless a line search is asked)
//   damped_newton   (H + lambda I) d = -g by linear CG on Hv, lambda adjusted by the
//                   reduction ratio rho = (f(x + d) - f(x)) / q(d)       (Martens 2010)
//   newton_cg       H d = -g by linear CG truncated at negative curvature, forcing term
//                   eta = min(0.5, sqrt|g|), then a line search          (N&W Alg. 7.1)
//   saddle_free     d = -|H|^{-1} g, |H| = V |Theta| V' in the Krylov subspace of Lanczos
//                   started at g, plus damping lambda          (Dauphin et al. 2014)
//   cg              nonlinear CG: d = -g + beta d_prev, beta by Fletcher-Reeves,
//                   Polak-Ribiere or PR+ (max(beta, 0)), restarts  (N&W Alg. 5.4, 5.5)
//   bfgs            d = -H_k g; H_{k+1} = (I - rho s y') H_k (I - rho y s') + rho s s'   (N&W eq. 6.17)
//   lbfgs           d = -H_k g by the two-loop recursion over the last m pairs (s, y),
//                   H_0 = (s'y / y'y) I                                  (N&W Alg. 7.4)
// Line searches on phi(alpha) = f(x + alpha d):
//   strong_wolfe    phi(a) <= phi(0) + c1 a phi'(0)  and  |phi'(a)| <= c2 |phi'(0)|
//                   (N&W Alg. 3.5 and zoom Alg. 3.6, cubic interpolation, bisection fallback)
//   armijo          a = a0, a0 rho, a0 rho^2, ... until phi(a) <= phi(0) + c1 a phi'(0)
//   none            a = the step (default 1)
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "descent/optim/test_functions.hpp"

namespace descent::optim {

// A twice differentiable f: R^n -> R.
class Objective {
 public:
  virtual ~Objective() = default;
  virtual std::int64_t dim() const = 0;
  // f(x); writes the gradient into g [dim].
  virtual double evaluate(std::span<const double> x, std::span<double> g) = 0;
  // out = H(x) v. Default: from the dense Hessian. Throws ConfigError when there is neither.
  virtual void hessian_vector(std::span<const double> x, std::span<const double> v, std::span<double> out);
  // The dense Hessian at x, row-major [dim * dim]. Default: dim Hessian-vector products;
  // throws ConfigError when neither is overridden.
  virtual void hessian(std::span<const double> x, std::span<double> h);
  // Whether hessian_vector or hessian is overridden (the methods that need H check it).
  virtual bool has_hessian() const = 0;
};

enum class LineSearch : std::uint8_t { none, armijo, strong_wolfe };
LineSearch parse_line_search(std::string_view name);  // ConfigError naming the value
std::string_view line_search_name(LineSearch kind);

struct LineSearchOptions {
  LineSearch kind = LineSearch::strong_wolfe;
  double c1 = 1e-4;          // sufficient decrease (Armijo), 0 < c1 < c2 < 1
  double c2 = 0.9;           // curvature (strong Wolfe)
  double shrink = 0.5;       // armijo: a <- a shrink
  double alpha_max = 1e10;   // strong Wolfe: the largest step tried
  int max_evaluations = 40;  // evaluations of f (with its gradient) per search
};

// One search along d from x (where f = f0, gradient g0, and g0'd < 0). On success x_new and
// g_new hold x + alpha d and its gradient.
struct LineSearchResult {
  double alpha = 0.0;
  double f = 0.0;
  int evaluations = 0;
  bool ok = false;  // false: no step met the conditions within max_evaluations (alpha = 0, x_new = x)
};
LineSearchResult line_search(Objective& objective, std::span<const double> x, double f0, std::span<const double> g0,
                             std::span<const double> d, double alpha0, const LineSearchOptions& options,
                             std::span<double> x_new, std::span<double> g_new);

// Hyperparameters; unset ones take the method's default (second_order_methods() lists them).
struct SecondOrderOptions {
  std::string method = "lbfgs";
  std::optional<LineSearch> line_search = std::nullopt;  // default: none for newton, damped_newton, saddle_free; strong_wolfe otherwise
  std::optional<double> c1 = std::nullopt;             // default 1e-4
  std::optional<double> c2 = std::nullopt;             // default 0.9 (cg: 0.1)
  int max_evaluations = 40;               // per line search
  double step = 1.0;                      // the step without line search; the first trial step otherwise
  int history = 10;                       // lbfgs: m pairs
  std::optional<double> damping = std::nullopt;        // lambda: damped_newton 1 (adapted), saddle_free 1e-3 (fixed)
  bool adapt_damping = true;              // damped_newton: Levenberg-Marquardt adjustment
  int cg_iterations = 250;                // damped_newton, newton_cg: linear CG steps at most
  int krylov = 20;                        // saddle_free: Lanczos steps (subspace dimension), at most dim
  std::string beta = "pr+";               // cg: "fr" (Fletcher-Reeves), "pr" (Polak-Ribiere), "pr+"
  std::int64_t restart = 0;               // cg: restart with -g every `restart` iterations; 0: every dim; < 0: never
  bool scale_initial = false;             // bfgs: H_0 = (s'y / y'y) I before the first update (N&W eq. 6.20)
};

struct SecondOrderMethodEntry {
  std::string_view name;
  std::string_view doc;     // one line
  bool needs_hessian;       // H or Hv products
};
std::span<const SecondOrderMethodEntry> second_order_methods();
const SecondOrderMethodEntry* find_second_order(std::string_view name);

// What one iteration did.
struct IterationRecord {
  double f = 0.0;          // at the new iterate
  double grad_norm = 0.0;  // |g| there
  double alpha = 0.0;      // step length along the direction (0: no move)
  int evaluations = 0;     // of f and g in this iteration
  int hessian_products = 0;
  int inner_iterations = 0;  // linear CG (damped_newton, newton_cg) or Lanczos (saddle_free) steps
  double damping = 0.0;    // lambda used (damped_newton, saddle_free)
  bool accepted = true;    // damped_newton: false when the step was rejected (lambda raised)
  bool restarted = false;  // cg: the direction was reset to -g; bfgs/lbfgs: the update was skipped
  bool stalled = false;    // the line search found no acceptable step: the iterate did not move
  bool search_ok = true;   // the line search's conditions hold at the step taken (false: its
                           // evaluations ran out and the best sufficient-decrease step was taken)
};

// The state that makes a run continue exactly (history, damping, counters).
struct SecondOrderState {
  std::vector<std::string> names;
  std::vector<std::vector<double>> vectors;
  std::vector<double> scalars;
};

class SecondOrderMinimizer {
 public:
  virtual ~SecondOrderMinimizer() = default;
  // Evaluates f and g at x0 and forgets any history.
  void start(Objective& objective, std::span<const double> x0);
  // Moves to another objective (a new minibatch) at the same x: evaluates f and g there and
  // keeps the history (L-BFGS pairs, BFGS matrix, damping) unless keep_history is false.
  void rebase(Objective& objective, bool keep_history = true);
  // One iteration: direction, line search (or damping test), history update.
  IterationRecord step(Objective& objective);
  // For tests that replay another implementation's trajectory: the same iteration with the
  // line search replaced by the given step length alpha (x <- x + alpha d).
  IterationRecord step_with(Objective& objective, double alpha);
  // The search direction the next step() would take from the current iterate.
  std::vector<double> direction(Objective& objective);

  std::span<const double> x() const { return x_; }
  std::span<const double> gradient() const { return g_; }
  double value() const { return f_; }
  std::int64_t iterations() const { return k_; }
  // The direction of the last iteration.
  std::span<const double> last_direction() const { return d_; }
  const SecondOrderOptions& options() const { return options_; }
  std::string describe() const;
  // bfgs: the inverse-Hessian estimate H_k, row-major [dim * dim]; empty for the others.
  virtual std::vector<double> inverse_hessian() const { return {}; }
  SecondOrderState save_state() const;
  // Into a minimizer made with the same options. Throws DataError when the state does not
  // fit (method, names, sizes).
  void load_state(const SecondOrderState& state);

 protected:
  explicit SecondOrderMinimizer(SecondOrderOptions options) : options_(std::move(options)) {}
  struct Direction {
    std::vector<double> d;
    double alpha0 = 1.0;  // first trial step of the line search
    int hessian_products = 0, inner_iterations = 0;
    double damping = 0.0;
    bool restarted = false;
  };
  virtual Direction compute_direction(Objective& objective) = 0;
  // After x moved by s = alpha d with gradient change y (history update). Returns true when
  // the update was skipped.
  virtual bool update(std::span<const double> s, std::span<const double> y) = 0;
  virtual void reset() {}
  // The method's own state (history, damping) for checkpoints.
  virtual void save_extra(SecondOrderState& state) const { (void)state; }
  virtual void load_extra(const SecondOrderState& state, std::size_t& vector_index, std::size_t& scalar_index) {
    (void)state;
    (void)vector_index;
    (void)scalar_index;
  }
  // damped_newton decides itself whether to take the step: default none of that.
  virtual bool trust_region_step(Objective& objective, const Direction& dir, IterationRecord& record);
  LineSearchOptions line_search_options() const;

  SecondOrderOptions options_;
  std::vector<double> x_, g_, d_;
  double f_ = 0.0;
  std::int64_t k_ = 0;
  double last_alpha_ = 0.0, last_slope_ = 0.0;  // for the next first trial step (cg)

 private:
  IterationRecord iterate(Objective& objective, std::optional<double> alpha);
  std::vector<double> scratch_[4];  // iterate(): x_new, g_new, s, y
};

// Throws ConfigError naming the method and the option for an unknown name or a bad value.
std::unique_ptr<SecondOrderMinimizer> make_second_order(const SecondOrderOptions& options);

// A lab function (test_functions.hpp) as an objective of dimension 2 with its exact Hessian.
std::unique_ptr<Objective> as_objective(const TestFunction& function);

// Small dense helpers (exposed for the tests): the solution of A z = b by Gaussian
// elimination with partial pivoting (A row-major n x n); nullopt when A is singular.
std::optional<std::vector<double>> solve_dense(std::vector<double> a, std::vector<double> b);

}  // namespace descent::optim
