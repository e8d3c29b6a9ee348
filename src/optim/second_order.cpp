// Second-order and line-search methods: the equations are in second_order.hpp and
// docs/optimizers.md ("Second-order methods"); each class below cites its source.
#include "descent/optim/second_order.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <deque>
#include <sstream>

#include "descent/diag/lanczos.hpp"
#include "descent/diag/lapack.hpp"
#include "descent/error.hpp"

namespace descent::optim {
namespace {

using Vec = std::vector<double>;

// Eight running sums (a fixed order, so the same bits every time): one sum is bound by the
// latency of its additions, eight run at the speed of memory. On a network's vectors
// (dimension 10^4 to 10^6) L-BFGS's two-loop recursion is 4m + 2 of these.
double dot(std::span<const double> a, std::span<const double> b) {
  const std::size_t n = a.size();
  const double* pa = a.data();
  const double* pb = b.data();
  double s[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (std::size_t k = 0; k < 8; ++k) s[k] += pa[i + k] * pb[i + k];
  }
  double tail = 0.0;
  for (; i < n; ++i) tail += pa[i] * pb[i];
  return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7])) + tail;
}
double norm(std::span<const double> a) { return std::sqrt(dot(a, a)); }

}  // namespace

// ---- Objective --------------------------------------------------------------------------

void Objective::hessian_vector(std::span<const double> x, std::span<const double> v, std::span<double> out) {
  if (!has_hessian()) throw ConfigError("this objective has no Hessian (needed for Hessian-vector products)");
  const auto n = static_cast<std::size_t>(dim());
  Vec h(n * n);
  hessian(x, h);
  for (std::size_t i = 0; i < n; ++i) out[i] = dot(std::span<const double>(h).subspan(i * n, n), v);
}

void Objective::hessian(std::span<const double> x, std::span<double> h) {
  if (!has_hessian()) throw ConfigError("this objective has no Hessian");
  const auto n = static_cast<std::size_t>(dim());
  Vec e(n, 0.0), col(n);
  for (std::size_t j = 0; j < n; ++j) {
    e[j] = 1.0;
    hessian_vector(x, e, col);
    e[j] = 0.0;
    for (std::size_t i = 0; i < n; ++i) h[i * n + j] = col[i];
  }
}

namespace {

class LabObjective final : public Objective {
 public:
  explicit LabObjective(const TestFunction& f) : f_(f) {}
  std::int64_t dim() const override { return 2; }
  double evaluate(std::span<const double> x, std::span<double> g) override {
    const Point2 p{x[0], x[1]};
    const Point2 grad = f_.gradient(p);
    g[0] = grad[0];
    g[1] = grad[1];
    return f_.value(p);
  }
  void hessian(std::span<const double> x, std::span<double> h) override {
    const Matrix2 m = f_.hessian({x[0], x[1]});
    std::copy(m.begin(), m.end(), h.begin());
  }
  void hessian_vector(std::span<const double> x, std::span<const double> v, std::span<double> out) override {
    const Matrix2 m = f_.hessian({x[0], x[1]});
    out[0] = m[0] * v[0] + m[1] * v[1];
    out[1] = m[2] * v[0] + m[3] * v[1];
  }
  bool has_hessian() const override { return true; }

 private:
  const TestFunction& f_;
};

}  // namespace

std::unique_ptr<Objective> as_objective(const TestFunction& function) { return std::make_unique<LabObjective>(function); }

// ---- Line searches ----------------------------------------------------------------------

LineSearch parse_line_search(std::string_view name) {
  if (name == "none") return LineSearch::none;
  if (name == "armijo") return LineSearch::armijo;
  if (name == "strong_wolfe") return LineSearch::strong_wolfe;
  throw ConfigError("line search \"" + std::string(name) + "\" is unknown; expected strong_wolfe, armijo or none");
}

std::string_view line_search_name(LineSearch kind) {
  switch (kind) {
    case LineSearch::none: return "none";
    case LineSearch::armijo: return "armijo";
    case LineSearch::strong_wolfe: return "strong_wolfe";
  }
  return "?";
}

namespace {

// phi(a) = f(x + a d) and phi'(a) = g(x + a d)'d; each call leaves x + a d and its gradient
// in x_new, g_new.
struct Phi {
  Objective& objective;
  std::span<const double> x, d;
  std::span<double> x_new, g_new;
  int evaluations = 0;
  double operator()(double a, double& slope) {
    for (std::size_t i = 0; i < x.size(); ++i) x_new[i] = x[i] + a * d[i];
    const double f = objective.evaluate(x_new, g_new);
    ++evaluations;
    slope = dot(g_new, d);
    return f;
  }
};

// The minimizer of the cubic that interpolates phi and phi' at a and b (N&W eq. 3.59), or
// NaN when it has none.
double cubic_minimizer(double a, double fa, double da, double b, double fb, double db) {
  const double d1 = da + db - 3.0 * (fa - fb) / (a - b);
  const double disc = d1 * d1 - da * db;
  if (!(disc >= 0.0)) return std::nan("");
  const double d2 = std::copysign(std::sqrt(disc), b - a);
  return b - (b - a) * (db + d2 - d1) / (db - da + 2.0 * d2);
}

}  // namespace

LineSearchResult line_search(Objective& objective, std::span<const double> x, double f0, std::span<const double> g0,
                             std::span<const double> d, double alpha0, const LineSearchOptions& o,
                             std::span<double> x_new, std::span<double> g_new) {
  Phi phi{objective, x, d, x_new, g_new};
  const double slope0 = dot(g0, d);
  LineSearchResult result;
  const auto fail = [&] {
    std::copy(x.begin(), x.end(), x_new.begin());
    std::copy(g0.begin(), g0.end(), g_new.begin());
    result = {.alpha = 0.0, .f = f0, .evaluations = phi.evaluations, .ok = false};
    return result;
  };
  const auto done = [&](double a, double f, bool ok) {
    result = {.alpha = a, .f = f, .evaluations = phi.evaluations, .ok = ok};
    return result;
  };
  if (!(slope0 < 0.0)) return fail();  // not a descent direction
  const auto sufficient = [&](double a, double f) { return f <= f0 + o.c1 * a * slope0; };

  if (o.kind == LineSearch::none) {
    double s = 0.0;
    return done(alpha0, phi(alpha0, s), true);
  }
  if (o.kind == LineSearch::armijo) {
    double a = alpha0;
    while (phi.evaluations < o.max_evaluations) {
      double s = 0.0;
      const double f = phi(a, s);
      if (sufficient(a, f)) return done(a, f, true);
      a *= o.shrink;
    }
    return fail();
  }

  // Strong Wolfe: N&W Algorithm 3.6 (zoom) between lo (sufficient decrease, lowest phi so
  // far) and hi.
  double lo = 0.0, f_lo = f0, s_lo = slope0;
  double hi = 0.0, f_hi = f0, s_hi = slope0;
  const auto zoom = [&]() -> LineSearchResult {
    while (phi.evaluations < o.max_evaluations) {
      const double width = std::abs(hi - lo);
      if (!(width > 1e-16 * std::max(1.0, std::abs(lo)))) break;
      double a = std::isfinite(f_hi) && std::isfinite(s_hi) ? cubic_minimizer(lo, f_lo, s_lo, hi, f_hi, s_hi) : std::nan("");
      // Safeguard: at least a tenth of the interval away from either end, else bisect.
      const double left = std::min(lo, hi) + 0.1 * width, right = std::max(lo, hi) - 0.1 * width;
      if (!(a >= left && a <= right)) a = 0.5 * (lo + hi);
      double s = 0.0;
      const double f = phi(a, s);
      if (!sufficient(a, f) || f >= f_lo) {
        hi = a, f_hi = f, s_hi = s;
      } else {
        if (std::abs(s) <= -o.c2 * slope0) return done(a, f, true);
        if (s * (hi - lo) >= 0.0) hi = lo, f_hi = f_lo, s_hi = s_lo;
        lo = a, f_lo = f, s_lo = s;
      }
    }
    // Out of evaluations: the best step with sufficient decrease, if any.
    if (lo > 0.0) {
      double s = 0.0;
      const double f = phi(lo, s);
      return done(lo, f, false);
    }
    return fail();
  };

  double a_prev = 0.0, f_prev = f0, s_prev = slope0;
  double a = std::min(alpha0, o.alpha_max);
  for (int i = 1; phi.evaluations < o.max_evaluations; ++i) {
    double s = 0.0;
    const double f = phi(a, s);
    if (!sufficient(a, f) || (i > 1 && f >= f_prev)) {
      lo = a_prev, f_lo = f_prev, s_lo = s_prev;
      hi = a, f_hi = f, s_hi = s;
      return zoom();
    }
    if (std::abs(s) <= -o.c2 * slope0) return done(a, f, true);
    if (s >= 0.0) {
      lo = a, f_lo = f, s_lo = s;
      hi = a_prev, f_hi = f_prev, s_hi = s_prev;
      return zoom();
    }
    if (a >= o.alpha_max) return done(a, f, false);  // sufficient decrease, still descending
    a_prev = a, f_prev = f, s_prev = s;
    a = std::min(2.0 * a, o.alpha_max);
  }
  if (a_prev > 0.0) {
    double s = 0.0;
    const double f = phi(a_prev, s);
    return done(a_prev, f, false);
  }
  return fail();
}

// ---- Dense solve --------------------------------------------------------------------------

std::optional<std::vector<double>> solve_dense(std::vector<double> a, std::vector<double> b) {
  const std::size_t n = b.size();
  if (a.size() != n * n) throw ShapeError("solve_dense: the matrix has " + std::to_string(a.size()) + " entries, expected " + std::to_string(n * n));
  double scale = 0.0;
  for (double v : a) scale = std::max(scale, std::abs(v));
  for (std::size_t c = 0; c < n; ++c) {
    std::size_t p = c;
    for (std::size_t r = c + 1; r < n; ++r) {
      if (std::abs(a[r * n + c]) > std::abs(a[p * n + c])) p = r;
    }
    if (!(std::abs(a[p * n + c]) > 1e-14 * scale)) return std::nullopt;
    if (p != c) {
      for (std::size_t j = 0; j < n; ++j) std::swap(a[c * n + j], a[p * n + j]);
      std::swap(b[c], b[p]);
    }
    for (std::size_t r = c + 1; r < n; ++r) {
      const double m = a[r * n + c] / a[c * n + c];
      if (m == 0.0) continue;
      for (std::size_t j = c; j < n; ++j) a[r * n + j] -= m * a[c * n + j];
      b[r] -= m * b[c];
    }
  }
  std::vector<double> z(n);
  for (std::size_t i = n; i-- > 0;) {
    double s = b[i];
    for (std::size_t j = i + 1; j < n; ++j) s -= a[i * n + j] * z[j];
    z[i] = s / a[i * n + i];
  }
  return z;
}

// ---- The driver -------------------------------------------------------------------------

void SecondOrderMinimizer::start(Objective& objective, std::span<const double> x0) {
  const auto n = static_cast<std::size_t>(objective.dim());
  if (x0.size() != n) {
    throw ShapeError(std::string(options_.method) + ": the start point has " + std::to_string(x0.size()) +
                     " values, the objective " + std::to_string(n));
  }
  if (find_second_order(options_.method)->needs_hessian && !objective.has_hessian()) {
    throw ConfigError(options_.method + " needs Hessian-vector products, which this objective does not provide");
  }
  x_.assign(x0.begin(), x0.end());
  g_.assign(n, 0.0);
  d_.assign(n, 0.0);
  f_ = objective.evaluate(x_, g_);
  k_ = 0;
  last_alpha_ = last_slope_ = 0.0;
  reset();
}

void SecondOrderMinimizer::rebase(Objective& objective, bool keep_history) {
  if (x_.empty()) throw ConfigError(options_.method + ": start() was not called");
  if (objective.dim() != static_cast<std::int64_t>(x_.size())) {
    throw ShapeError(options_.method + ": the new objective has dimension " + std::to_string(objective.dim()) +
                     ", the iterate " + std::to_string(x_.size()));
  }
  f_ = objective.evaluate(x_, g_);
  if (!keep_history) {
    last_alpha_ = last_slope_ = 0.0;
    reset();
  }
}

LineSearchOptions SecondOrderMinimizer::line_search_options() const {
  const bool newton_like = options_.method == "newton" || options_.method == "damped_newton" || options_.method == "saddle_free";
  LineSearchOptions o;
  o.kind = options_.line_search.value_or(newton_like ? LineSearch::none : LineSearch::strong_wolfe);
  o.c1 = options_.c1.value_or(1e-4);
  o.c2 = options_.c2.value_or(options_.method == "cg" ? 0.1 : 0.9);
  o.max_evaluations = options_.max_evaluations;
  return o;
}

std::vector<double> SecondOrderMinimizer::direction(Objective& objective) { return compute_direction(objective).d; }

IterationRecord SecondOrderMinimizer::step(Objective& objective) { return iterate(objective, std::nullopt); }
IterationRecord SecondOrderMinimizer::step_with(Objective& objective, double alpha) { return iterate(objective, alpha); }

bool SecondOrderMinimizer::trust_region_step(Objective&, const Direction&, IterationRecord&) { return false; }

IterationRecord SecondOrderMinimizer::iterate(Objective& objective, std::optional<double> alpha) {
  if (x_.empty()) throw ConfigError(options_.method + ": start() was not called");
  Direction dir = compute_direction(objective);
  IterationRecord record;
  record.hessian_products = dir.hessian_products;
  record.inner_iterations = dir.inner_iterations;
  record.damping = dir.damping;
  record.restarted = dir.restarted;
  d_ = dir.d;
  if (!alpha && trust_region_step(objective, dir, record)) {
    ++k_;
    return record;
  }
  const LineSearchOptions search = line_search_options();
  const std::size_t n = x_.size();
  // Scratch vectors kept between iterations (no allocation per step on a network).
  Vec& x_new = scratch_[0];
  Vec& g_new = scratch_[1];
  x_new.resize(n);
  g_new.resize(n);
  double slope = dot(g_, d_);
  double a = 0.0, f_new = f_;
  if (alpha || search.kind == LineSearch::none) {
    a = alpha.value_or(options_.step);
    for (std::size_t i = 0; i < n; ++i) x_new[i] = x_[i] + a * d_[i];
    f_new = objective.evaluate(x_new, g_new);
    record.evaluations = 1;
  } else {
    if (!(slope < 0.0)) {  // not a descent direction: steepest descent, history forgotten
      for (std::size_t i = 0; i < n; ++i) d_[i] = -g_[i];
      slope = dot(g_, d_);
      dir.alpha0 = std::min(1.0, 1.0 / std::sqrt(-slope));
      record.restarted = true;
      reset();
    }
    const double alpha0 = k_ == 0 || options_.method != "cg" ? dir.alpha0
                          : std::min(1.0, 1.01 * last_alpha_ * last_slope_ / slope);  // N&W eq. 3.60
    const LineSearchResult r = line_search(objective, x_, f_, g_, d_, std::isfinite(alpha0) && alpha0 > 0 ? alpha0 : 1.0,
                                           search, x_new, g_new);
    record.evaluations = r.evaluations;
    record.search_ok = r.ok;
    if (r.alpha == 0.0) {
      record.stalled = true;
      record.f = f_;
      record.grad_norm = norm(g_);
      ++k_;
      return record;
    }
    a = r.alpha;
    f_new = r.f;
  }
  Vec& s = scratch_[2];
  Vec& y = scratch_[3];
  s.resize(n);
  y.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    s[i] = a * d_[i];
    y[i] = g_new[i] - g_[i];
  }
  if (update(s, y)) record.restarted = true;
  x_.swap(x_new);
  g_.swap(g_new);
  f_ = f_new;
  last_alpha_ = a;
  last_slope_ = slope;
  ++k_;
  record.f = f_;
  record.grad_norm = norm(g_);
  record.alpha = a;
  return record;
}

std::string SecondOrderMinimizer::describe() const {
  std::ostringstream s;
  s << options_.method;
  const LineSearchOptions o = line_search_options();
  s << " (line search " << line_search_name(o.kind);
  if (o.kind != LineSearch::none) s << ", c1 " << o.c1;
  if (o.kind == LineSearch::strong_wolfe) s << ", c2 " << o.c2;
  if (o.kind == LineSearch::none) s << ", step " << options_.step;
  if (options_.method == "lbfgs") s << ", history " << options_.history;
  if (options_.method == "cg") s << ", beta " << options_.beta;
  if (options_.method == "saddle_free") s << ", krylov " << options_.krylov;
  s << ")";
  return s.str();
}

SecondOrderState SecondOrderMinimizer::save_state() const {
  SecondOrderState st;
  st.names = {"x", "g", "d"};
  st.vectors = {x_, g_, d_};
  st.scalars = {f_, static_cast<double>(k_), last_alpha_, last_slope_};
  save_extra(st);
  return st;
}

void SecondOrderMinimizer::load_state(const SecondOrderState& st) {
  if (st.vectors.size() < 3 || st.names.size() != st.vectors.size() || st.scalars.size() < 4 || st.names[0] != "x") {
    throw DataError(options_.method + ": the saved state is not a second-order method's state");
  }
  x_ = st.vectors[0];
  g_ = st.vectors[1];
  d_ = st.vectors[2];
  f_ = st.scalars[0];
  k_ = static_cast<std::int64_t>(st.scalars[1]);
  last_alpha_ = st.scalars[2];
  last_slope_ = st.scalars[3];
  std::size_t vi = 3, si = 4;
  reset();
  load_extra(st, vi, si);
  if (vi != st.vectors.size() || si != st.scalars.size()) {
    throw DataError(options_.method + ": the saved state has " + std::to_string(st.vectors.size()) + " vectors and " +
                    std::to_string(st.scalars.size()) + " numbers; this method reads " + std::to_string(vi) + " and " +
                    std::to_string(si));
  }
}

namespace {

void expect_name(const SecondOrderState& st, std::size_t i, const std::string& name, const std::string& method) {
  if (i >= st.vectors.size() || st.names[i] != name) {
    throw DataError(method + ": the saved state lacks \"" + name + "\"" + (i < st.names.size() ? " (found \"" + st.names[i] + "\")" : ""));
  }
}
double next_scalar(const SecondOrderState& st, std::size_t& si, const std::string& method) {
  if (si >= st.scalars.size()) throw DataError(method + ": the saved state has too few numbers");
  return st.scalars[si++];
}

// ---- Newton: d = -H^{-1} g (dense) -------------------------------------------------------
class Newton final : public SecondOrderMinimizer {
 public:
  explicit Newton(SecondOrderOptions o) : SecondOrderMinimizer(std::move(o)) {}

 protected:
  Direction compute_direction(Objective& objective) override {
    const std::size_t n = x_.size();
    Vec h(n * n), minus_g(n);
    objective.hessian(x_, h);
    for (std::size_t i = 0; i < n; ++i) minus_g[i] = -g_[i];
    auto d = solve_dense(std::move(h), std::move(minus_g));
    if (!d) throw NumericError("newton: the Hessian is singular at iteration " + std::to_string(k_) + "; try saddle_free or damped_newton");
    Direction dir;
    dir.d = std::move(*d);
    dir.hessian_products = static_cast<int>(n);
    return dir;
  }
  bool update(std::span<const double>, std::span<const double>) override { return false; }
};

// Linear conjugate gradient on (H + lambda I) z = -g from z = 0 (N&W Alg. 5.2), stopped at
// |r| <= tolerance, after max_iterations, or at a direction of negative curvature
// (p'(H + lambda I)p <= 0: N&W Alg. 7.1; then the iterate so far, or -g on the first step).
struct LinearCgResult {
  Vec z;
  int iterations = 0;
  int products = 0;
  bool negative_curvature = false;
};
LinearCgResult linear_cg(Objective& objective, std::span<const double> x, std::span<const double> g, double lambda,
                         double tolerance, int max_iterations) {
  const std::size_t n = g.size();
  LinearCgResult out;
  out.z.assign(n, 0.0);
  Vec r(g.begin(), g.end()), p(n), hp(n);
  for (std::size_t i = 0; i < n; ++i) p[i] = -r[i];
  double rr = dot(r, r);
  for (int j = 0; j < max_iterations; ++j) {
    if (std::sqrt(rr) <= tolerance) break;
    objective.hessian_vector(x, p, hp);
    ++out.products;
    for (std::size_t i = 0; i < n; ++i) hp[i] += lambda * p[i];
    const double curvature = dot(p, hp);
    if (!(curvature > 0.0)) {
      out.negative_curvature = true;
      if (j == 0) {
        for (std::size_t i = 0; i < n; ++i) out.z[i] = -g[i];
      }
      break;
    }
    const double a = rr / curvature;
    for (std::size_t i = 0; i < n; ++i) {
      out.z[i] += a * p[i];
      r[i] += a * hp[i];
    }
    const double rr_new = dot(r, r);
    const double beta = rr_new / rr;
    rr = rr_new;
    for (std::size_t i = 0; i < n; ++i) p[i] = -r[i] + beta * p[i];
    ++out.iterations;
  }
  return out;
}

// ---- Newton-CG: truncated Newton with a line search (N&W Alg. 7.1) ------------------------
class NewtonCg final : public SecondOrderMinimizer {
 public:
  explicit NewtonCg(SecondOrderOptions o) : SecondOrderMinimizer(std::move(o)) {}

 protected:
  Direction compute_direction(Objective& objective) override {
    const double gn = norm(g_);
    const double tolerance = std::min(0.5, std::sqrt(gn)) * gn;  // forcing term eta_k |g|
    LinearCgResult cg = linear_cg(objective, x_, g_, 0.0, tolerance, options_.cg_iterations);
    Direction dir;
    dir.d = std::move(cg.z);
    dir.hessian_products = cg.products;
    dir.inner_iterations = cg.iterations;
    return dir;
  }
  bool update(std::span<const double>, std::span<const double>) override { return false; }
};

// ---- Damped Newton, Hessian-free (Martens 2010) -------------------------------------------
// (H + lambda I) d = -g by linear CG on exact Hv; the step x + d is taken when f decreases;
// rho = (f(x + d) - f(x)) / q(d), q(d) = g'd + d'Hd / 2:  rho > 3/4: lambda <- 2/3 lambda;
// rho < 1/4: lambda <- 3/2 lambda (the Levenberg-Marquardt rule of Martens 2010, section 4.1).
class DampedNewton final : public SecondOrderMinimizer {
 public:
  explicit DampedNewton(SecondOrderOptions o) : SecondOrderMinimizer(std::move(o)), lambda0_(options_.damping.value_or(1.0)) {}

 protected:
  void reset() override { lambda_ = lambda0_; }
  Direction compute_direction(Objective& objective) override {
    const double tolerance = 1e-10 * norm(g_);
    LinearCgResult cg = linear_cg(objective, x_, g_, lambda_, tolerance, options_.cg_iterations);
    Direction dir;
    dir.d = std::move(cg.z);
    dir.hessian_products = cg.products;
    dir.inner_iterations = cg.iterations;
    dir.damping = lambda_;
    return dir;
  }
  bool update(std::span<const double>, std::span<const double>) override { return false; }
  bool trust_region_step(Objective& objective, const Direction& dir, IterationRecord& record) override {
    if (line_search_options().kind != LineSearch::none) return false;
    const std::size_t n = x_.size();
    const Vec& d = dir.d;
    Vec x_new(n), g_new(n), hd(n);
    for (std::size_t i = 0; i < n; ++i) x_new[i] = x_[i] + options_.step * d[i];
    const double f_new = objective.evaluate(x_new, g_new);
    objective.hessian_vector(x_, d, hd);
    record.evaluations = 1;
    record.hessian_products += 1;
    const double step = options_.step;
    const double q = step * dot(g_, d) + 0.5 * step * step * dot(d, hd);
    const double rho = q < 0.0 && std::isfinite(f_new) ? (f_new - f_) / q : 0.0;
    if (options_.adapt_damping) {
      if (rho > 0.75) lambda_ *= 2.0 / 3.0;
      if (rho < 0.25) lambda_ *= 1.5;
    }
    record.accepted = f_new < f_;
    if (record.accepted) {
      x_ = std::move(x_new);
      g_ = std::move(g_new);
      f_ = f_new;
      record.alpha = step;
    }
    record.f = f_;
    record.grad_norm = norm(g_);
    return true;
  }
  void save_extra(SecondOrderState& st) const override { st.scalars.push_back(lambda_); }
  void load_extra(const SecondOrderState& st, std::size_t&, std::size_t& si) override {
    lambda_ = next_scalar(st, si, options_.method);
  }

 private:
  double lambda0_;
  double lambda_ = 1.0;
};

// ---- Saddle-free Newton (Dauphin et al. 2014) ---------------------------------------------
// k Lanczos steps from g give an orthonormal basis Q of the Krylov subspace and
// T = Q'HQ = U Theta U'. In that subspace |H| = Q U |Theta| U' Q', and
//   d = -Q U (|Theta| + lambda I)^{-1} U' Q' g.
// With k = dim (or at an invariant subspace) this is the exact -(|H| + lambda I)^{-1} g.
class SaddleFree final : public SecondOrderMinimizer {
 public:
  explicit SaddleFree(SecondOrderOptions o) : SecondOrderMinimizer(std::move(o)), lambda_(options_.damping.value_or(1e-3)) {}

 protected:
  Direction compute_direction(Objective& objective) override {
    const std::size_t n = x_.size();
    Direction dir;
    dir.d.assign(n, 0.0);
    dir.damping = lambda_;
    if (!(norm(g_) > 0.0)) return dir;  // at a critical point: nowhere to go
    diag::LinearOperator op;
    op.dim = static_cast<std::int64_t>(n);
    op.apply = [&](std::span<const double> v, std::span<double> out) { objective.hessian_vector(x_, v, out); };
    const int steps = static_cast<int>(std::min<std::int64_t>(options_.krylov, op.dim));
    const diag::LanczosRun run = diag::lanczos(op, g_, steps, true);
    const auto m = static_cast<std::size_t>(run.steps);
    const diag::Eigen eig = diag::tridiagonal_eigen(run.alpha, run.beta, true);
    Vec z(m);  // Q'g
    for (std::size_t j = 0; j < m; ++j) z[j] = dot(run.basis[j], g_);
    Vec w(m, 0.0);  // (|Theta| + lambda)^{-1} U' Q'g
    for (std::size_t k = 0; k < m; ++k) {
      double uz = 0.0;
      for (std::size_t j = 0; j < m; ++j) uz += eig.vectors[k * m + j] * z[j];
      w[k] = uz / (std::abs(eig.values[k]) + lambda_);
    }
    for (std::size_t j = 0; j < m; ++j) {
      double c = 0.0;  // (U w)_j
      for (std::size_t k = 0; k < m; ++k) c += eig.vectors[k * m + j] * w[k];
      for (std::size_t i = 0; i < n; ++i) dir.d[i] -= c * run.basis[j][i];
    }
    dir.hessian_products = run.steps;
    dir.inner_iterations = run.steps;
    return dir;
  }
  bool update(std::span<const double>, std::span<const double>) override { return false; }

 private:
  double lambda_;
};

// ---- Nonlinear conjugate gradient (N&W Alg. 5.4 FR, eq. 5.44 PR, 5.45 PR+) ---------------
//   beta_FR = g'g / g_prev'g_prev;  beta_PR = g'(g - g_prev) / g_prev'g_prev;  beta_PR+ = max(beta_PR, 0)
//   d = -g + beta d_prev; restart (d = -g) every `restart` iterations and whenever d is not
//   a descent direction.
class NonlinearCg final : public SecondOrderMinimizer {
 public:
  explicit NonlinearCg(SecondOrderOptions o) : SecondOrderMinimizer(std::move(o)) {}

 protected:
  void reset() override {
    have_prev_ = false;
    since_restart_ = 0;
  }
  Direction compute_direction(Objective&) override {
    const std::size_t n = x_.size();
    Direction dir;
    dir.d.assign(n, 0.0);
    const std::int64_t every = options_.restart == 0 ? static_cast<std::int64_t>(n) : options_.restart;
    bool restart = !have_prev_ || (every > 0 && since_restart_ >= every);
    double beta = 0.0;
    if (!restart) {
      const double gg = dot(g_, g_);
      if (options_.beta == "fr") {
        beta = gg / prev_gg_;
      } else {
        beta = dot(g_, y_) / prev_gg_;
        if (options_.beta == "pr+") beta = std::max(beta, 0.0);
      }
      if (!std::isfinite(beta)) restart = true;
    }
    for (std::size_t i = 0; i < n; ++i) dir.d[i] = -g_[i] + (restart ? 0.0 : beta * d_[i]);
    if (!restart && !(dot(dir.d, g_) < 0.0)) {
      restart = true;
      for (std::size_t i = 0; i < n; ++i) dir.d[i] = -g_[i];
    }
    if (restart) since_restart_ = 0;
    dir.restarted = restart && have_prev_;
    dir.alpha0 = std::min(1.0, 1.0 / norm(g_));
    return dir;
  }
  bool update(std::span<const double>, std::span<const double> y) override {
    y_.assign(y.begin(), y.end());
    prev_gg_ = dot(g_, g_);  // g_ is still the old gradient here
    have_prev_ = true;
    ++since_restart_;
    return false;
  }
  void save_extra(SecondOrderState& st) const override {
    st.names.push_back("cg.y");
    st.vectors.push_back(y_);
    st.scalars.insert(st.scalars.end(), {prev_gg_, static_cast<double>(since_restart_), have_prev_ ? 1.0 : 0.0});
  }
  void load_extra(const SecondOrderState& st, std::size_t& vi, std::size_t& si) override {
    expect_name(st, vi, "cg.y", options_.method);
    y_ = st.vectors[vi++];
    prev_gg_ = next_scalar(st, si, options_.method);
    since_restart_ = static_cast<std::int64_t>(next_scalar(st, si, options_.method));
    have_prev_ = next_scalar(st, si, options_.method) != 0.0;
  }

 private:
  Vec y_;
  double prev_gg_ = 0.0;
  std::int64_t since_restart_ = 0;
  bool have_prev_ = false;
};

// ---- BFGS (N&W Alg. 6.1, inverse update eq. 6.17) ------------------------------------------
//   H <- (I - rho s y') H (I - rho y s') + rho s s',  rho = 1 / y's
//      = H - rho (s (Hy)' + (Hy) s') + (rho^2 y'Hy + rho) s s'
// The update is skipped when y's <= 0 (H would lose positive definiteness; the strong Wolfe
// conditions guarantee y's > 0).
class Bfgs final : public SecondOrderMinimizer {
 public:
  explicit Bfgs(SecondOrderOptions o) : SecondOrderMinimizer(std::move(o)) {}
  std::vector<double> inverse_hessian() const override { return h_; }

 protected:
  void reset() override {
    const std::size_t n = x_.size();
    h_.assign(n * n, 0.0);
    for (std::size_t i = 0; i < n; ++i) h_[i * n + i] = 1.0;
    updates_ = 0;
  }
  Direction compute_direction(Objective&) override {
    const std::size_t n = x_.size();
    Direction dir;
    dir.d.assign(n, 0.0);
    for (std::size_t i = 0; i < n; ++i) dir.d[i] = -dot(std::span<const double>(h_).subspan(i * n, n), g_);
    dir.alpha0 = updates_ == 0 ? std::min(1.0, 1.0 / norm(g_)) : 1.0;
    return dir;
  }
  bool update(std::span<const double> s, std::span<const double> y) override {
    const std::size_t n = s.size();
    const double sy = dot(s, y);
    if (!(sy > 0.0) || !std::isfinite(sy)) return true;
    if (updates_ == 0 && options_.scale_initial) {
      const double gamma = sy / dot(y, y);
      for (std::size_t i = 0; i < n; ++i) h_[i * n + i] = gamma;
    }
    const double rho = 1.0 / sy;
    Vec hy(n);
    for (std::size_t i = 0; i < n; ++i) hy[i] = dot(std::span<const double>(h_).subspan(i * n, n), y);
    const double c = rho * rho * dot(y, hy) + rho;
    for (std::size_t i = 0; i < n; ++i) {  // the upper triangle, mirrored: H stays exactly symmetric
      for (std::size_t j = i; j < n; ++j) {
        h_[i * n + j] += -rho * (s[i] * hy[j] + hy[i] * s[j]) + c * (s[i] * s[j]);
        h_[j * n + i] = h_[i * n + j];
      }
    }
    ++updates_;
    return false;
  }
  void save_extra(SecondOrderState& st) const override {
    st.names.push_back("bfgs.H");
    st.vectors.push_back(h_);
    st.scalars.push_back(static_cast<double>(updates_));
  }
  void load_extra(const SecondOrderState& st, std::size_t& vi, std::size_t& si) override {
    expect_name(st, vi, "bfgs.H", options_.method);
    if (st.vectors[vi].size() != x_.size() * x_.size()) throw DataError("bfgs: the saved H has the wrong size");
    h_ = st.vectors[vi++];
    updates_ = static_cast<std::int64_t>(next_scalar(st, si, options_.method));
  }

 private:
  Vec h_;
  std::int64_t updates_ = 0;
};

// ---- L-BFGS: the two-loop recursion (N&W Alg. 7.4) -----------------------------------------
//   q = g; for i = newest..oldest: a_i = rho_i s_i'q; q -= a_i y_i
//   r = gamma q, gamma = s'y / y'y of the newest pair (N&W eq. 7.20)
//   for i = oldest..newest: b = rho_i y_i'r; r += s_i (a_i - b)
//   d = -r
// A pair with y's <= eps y'y (eps the machine epsilon) is not stored.
class Lbfgs final : public SecondOrderMinimizer {
 public:
  explicit Lbfgs(SecondOrderOptions o) : SecondOrderMinimizer(std::move(o)) {}

 protected:
  void reset() override {
    s_.clear();
    y_.clear();
    sy_.clear();
    yy_.clear();
  }
  Direction compute_direction(Objective&) override {
    const std::size_t n = x_.size(), m = s_.size();
    Direction dir;
    Vec q(g_);
    Vec a(m), rho(m);
    for (std::size_t i = m; i-- > 0;) {
      rho[i] = 1.0 / sy_[i];
      a[i] = rho[i] * dot(s_[i], q);
      const double ai = a[i];
      const double* yi = y_[i].data();
      for (std::size_t j = 0; j < n; ++j) q[j] -= ai * yi[j];
    }
    const double gamma = m > 0 ? sy_[m - 1] / yy_[m - 1] : 1.0;
    for (double& v : q) v *= gamma;
    for (std::size_t i = 0; i < m; ++i) {
      const double c = a[i] - rho[i] * dot(y_[i], q);
      const double* si = s_[i].data();
      for (std::size_t j = 0; j < n; ++j) q[j] += si[j] * c;
    }
    for (double& v : q) v = -v;
    dir.d = std::move(q);
    dir.alpha0 = m == 0 ? std::min(1.0, 1.0 / norm(g_)) : 1.0;
    return dir;
  }
  bool update(std::span<const double> s, std::span<const double> y) override {
    const double sy = dot(s, y), yy = dot(y, y);
    if (!(sy > DBL_EPSILON * yy) || !std::isfinite(sy)) return true;
    push(s, y, sy, yy);
    return false;
  }
  void save_extra(SecondOrderState& st) const override {
    st.scalars.push_back(static_cast<double>(s_.size()));
    for (std::size_t i = 0; i < s_.size(); ++i) {
      st.names.insert(st.names.end(), {"lbfgs.s", "lbfgs.y"});
      st.vectors.push_back(s_[i]);
      st.vectors.push_back(y_[i]);
    }
  }
  void load_extra(const SecondOrderState& st, std::size_t& vi, std::size_t& si) override {
    const auto pairs = static_cast<std::size_t>(next_scalar(st, si, options_.method));
    if (pairs > static_cast<std::size_t>(options_.history)) {
      throw DataError("lbfgs: the saved state has " + std::to_string(pairs) + " pairs, more than history = " +
                      std::to_string(options_.history));
    }
    for (std::size_t i = 0; i < pairs; ++i) {
      expect_name(st, vi, "lbfgs.s", options_.method);
      expect_name(st, vi + 1, "lbfgs.y", options_.method);
      const Vec& s = st.vectors[vi];
      const Vec& y = st.vectors[vi + 1];
      push(s, y, dot(s, y), dot(y, y));  // the same dots as at the update: the same bits
      vi += 2;
    }
  }

 private:
  // Appends a pair with its s'y and y'y; the oldest goes when there are more than m, its
  // vectors reused for the new pair (no allocation once the history is full).
  void push(std::span<const double> s, std::span<const double> y, double sy, double yy) {
    Vec s_new, y_new;
    if (static_cast<int>(s_.size()) >= options_.history) {
      s_new = std::move(s_.front());
      y_new = std::move(y_.front());
      s_.pop_front();
      y_.pop_front();
      sy_.pop_front();
      yy_.pop_front();
    }
    s_new.assign(s.begin(), s.end());
    y_new.assign(y.begin(), y.end());
    s_.push_back(std::move(s_new));
    y_.push_back(std::move(y_new));
    sy_.push_back(sy);
    yy_.push_back(yy);
  }

  std::deque<Vec> s_, y_;
  std::deque<double> sy_, yy_;  // s_i'y_i and y_i'y_i, kept with each pair
};

constexpr SecondOrderMethodEntry kMethods[] = {
    {"newton", "Newton's method, d = -H^{-1} g with the dense Hessian (N&W ch. 3.3; Goodfellow et al. 8.6.1)", true},
    {"damped_newton", "damped Newton / Hessian-free: (H + lambda I) d = -g by CG on Hv, Levenberg-Marquardt lambda (Martens 2010)", true},
    {"newton_cg", "truncated Newton-CG with a line search (N&W Alg. 7.1; scipy.optimize Newton-CG)", true},
    {"saddle_free", "saddle-free Newton, d = -(|H| + lambda I)^{-1} g in a Lanczos Krylov subspace (Dauphin et al. 2014)", true},
    {"cg", "nonlinear conjugate gradient, Fletcher-Reeves / Polak-Ribiere(+) with restarts (N&W Alg. 5.4; Goodfellow et al. 8.6.2)", false},
    {"bfgs", "BFGS with the dense inverse-Hessian update (N&W Alg. 6.1; Goodfellow et al. 8.6.3)", false},
    {"lbfgs", "limited-memory BFGS, two-loop recursion over m pairs (N&W Alg. 7.4, 7.5)", false},
};

}  // namespace

std::span<const SecondOrderMethodEntry> second_order_methods() { return kMethods; }

const SecondOrderMethodEntry* find_second_order(std::string_view name) {
  for (const auto& e : kMethods) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

std::unique_ptr<SecondOrderMinimizer> make_second_order(const SecondOrderOptions& o) {
  const std::string& m = o.method;
  if (!find_second_order(m)) {
    std::string names;
    for (const auto& e : kMethods) names += (names.empty() ? "" : ", ") + std::string(e.name);
    throw ConfigError("second-order method \"" + m + "\" is unknown; expected one of " + names);
  }
  const auto bad = [&](const std::string& what) { return ConfigError(m + ": " + what); };
  const double c1 = o.c1.value_or(1e-4), c2 = o.c2.value_or(m == "cg" ? 0.1 : 0.9);
  if (!(c1 > 0.0 && c1 < c2 && c2 < 1.0)) {
    throw bad("the line search needs 0 < c1 < c2 < 1, got c1 = " + std::to_string(c1) + ", c2 = " + std::to_string(c2));
  }
  if (!(o.step > 0.0) || !std::isfinite(o.step)) throw bad("step must be > 0, got " + std::to_string(o.step));
  if (o.max_evaluations < 1) throw bad("max_evaluations must be at least 1, got " + std::to_string(o.max_evaluations));
  if (o.history < 1) throw bad("history must be at least 1, got " + std::to_string(o.history));
  if (o.cg_iterations < 1) throw bad("cg_iterations must be at least 1, got " + std::to_string(o.cg_iterations));
  if (o.krylov < 1) throw bad("krylov must be at least 1, got " + std::to_string(o.krylov));
  if (o.damping && (!(*o.damping >= 0.0) || !std::isfinite(*o.damping))) {
    throw bad("damping must be >= 0, got " + std::to_string(*o.damping));
  }
  if (o.beta != "fr" && o.beta != "pr" && o.beta != "pr+") throw bad("beta must be fr, pr or pr+, got \"" + o.beta + "\"");
  if (m == "newton") return std::make_unique<Newton>(o);
  if (m == "damped_newton") return std::make_unique<DampedNewton>(o);
  if (m == "newton_cg") return std::make_unique<NewtonCg>(o);
  if (m == "saddle_free") return std::make_unique<SaddleFree>(o);
  if (m == "cg") return std::make_unique<NonlinearCg>(o);
  if (m == "bfgs") return std::make_unique<Bfgs>(o);
  return std::make_unique<Lbfgs>(o);
}

}  // namespace descent::optim
