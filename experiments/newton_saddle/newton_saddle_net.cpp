// Claim 6's network half (section 8.2.3): on a small network started near a saddle point,
// Newton's method converges to the saddle while gradient descent and saddle-free Newton
// escape it. Prints one JSON object (experiments/newton_saddle/check.py reads it).
//
// The network: 2 inputs -> H tanh units -> 2 units -> tanh, no biases, then the softmax
// cross-entropy (descent's loss::cross_entropy), float64, on n points whose classes are drawn
// from a teacher of the same form with 2 hidden units. The last tanh is there because a softmax
// fed by a linear layer is unchanged when the same vector is added to every row of that layer
// (the logits all shift together): its Hessian is singular everywhere and Newton's dense solve
// refuses it. Squashing the logits breaks that shift.
//
// The saddle (a "dead unit", Fukumizu and Amari 2000): the minimum theta* of the same net with
// H - 1 units (L-BFGS, then Newton to |g| <= 1e-12; its dense Hessian positive definite), put
// into the H-unit net with the extra unit's weights all 0. The extra unit gets no gradient
// (its output tanh(0) = 0 and its outgoing weights are 0), so that is a critical point; the
// Hessian's block of the unit's incoming and outgoing weights is [[0, M], [M', 0]], whose
// eigenvalues come in pairs +-sigma(M): a saddle, nondegenerate when M (2 x 2) has full rank.
// From theta_s + r u (u a random unit vector, seed --seed):
//   newton       --newton-steps steps of d = -H^{-1} g, step 1 (optim::make_second_order "newton",
//                the dense Hessian of optim::NetworkObjective)
//   gd           --gd-steps steps of full-batch gradient descent at rate --lr
//   saddle_free  --sfn-steps steps of d = -(|H| + 1e-3 I)^{-1} g (Krylov = dim: exact |H|), step 1
// and for each end point: loss, |g|, distance to theta_s, and every eigenvalue of the dense
// Hessian (one exact Hessian-vector product per parameter, LAPACK dsyev: diag::symmetric_eigen).
//   experiment_newton_saddle [--hidden 3] [--n 2000] [--init 1] [--radius 0.01] [--seed 1]
//                            [--newton-steps 30] [--gd-steps 5000] [--lr 5] [--sfn-steps 100]
// NEWTON_SADDLE_VERBOSE=1 prints the search for theta* on stderr.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include <descent/diag/lapack.hpp>
#include <descent/init/rng.hpp>
#include <descent/nn/module.hpp>
#include <descent/optim/network_objective.hpp>
#include <descent/optim/second_order.hpp>

using namespace descent;

namespace {

double norm(const std::vector<double>& a) {
  double s = 0.0;
  for (double v : a) s += v * v;
  return std::sqrt(s);
}

double distance(std::span<const double> a, const std::vector<double>& b) {
  double s = 0.0;
  for (std::size_t i = 0; i < b.size(); ++i) s += (a[i] - b[i]) * (a[i] - b[i]);
  return std::sqrt(s);
}

struct Point {
  double loss = 0.0, grad_norm = 0.0, dist = 0.0;
  std::vector<double> eigenvalues;  // ascending
};

Point describe(optim::Objective& objective, const std::vector<double>& theta, const std::vector<double>& saddle) {
  Point p;
  const auto n = static_cast<std::size_t>(objective.dim());
  std::vector<double> g(n), h(n * n);
  p.loss = objective.evaluate(theta, g);
  p.grad_norm = norm(g);
  p.dist = saddle.empty() ? 0.0 : distance(theta, saddle);
  objective.hessian(theta, h);
  for (std::size_t i = 0; i < n; ++i)  // symmetrize the rounding of the products
    for (std::size_t j = i + 1; j < n; ++j) h[i * n + j] = h[j * n + i] = 0.5 * (h[i * n + j] + h[j * n + i]);
  p.eigenvalues = diag::symmetric_eigen(h, static_cast<std::int64_t>(n)).values;
  std::sort(p.eigenvalues.begin(), p.eigenvalues.end());
  return p;
}

std::string json_list(const std::vector<double>& v) {
  std::string s = "[";
  char buf[40];
  for (std::size_t i = 0; i < v.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%s%.10g", i ? ", " : "", v[i]);
    s += buf;
  }
  return s + "]";
}

std::string json_point(const Point& p) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "{\"loss\": %.15g, \"grad_norm\": %.6g, \"distance\": %.6g, \"eigenvalues\": ", p.loss,
                p.grad_norm, p.dist);
  return buf + json_list(p.eigenvalues) + "}";
}

struct Trace {
  std::vector<double> step, loss, grad_norm, dist;
  void add(double k, double f, double gn, double d) {
    step.push_back(k), loss.push_back(f), grad_norm.push_back(gn), dist.push_back(d);
  }
  std::string json() const {
    return "{\"step\": " + json_list(step) + ", \"loss\": " + json_list(loss) + ", \"grad_norm\": " + json_list(grad_norm) +
           ", \"distance\": " + json_list(dist) + "}";
  }
};

// A second-order method from x0 for `steps` iterations (or until |g| <= 1e-13).
std::vector<double> run_second_order(optim::Objective& objective, const std::string& method, const std::vector<double>& x0,
                                     int steps, const std::vector<double>& saddle, Trace& trace) {
  optim::SecondOrderOptions o{.method = method};
  if (method == "saddle_free") o.krylov = static_cast<int>(objective.dim());
  auto m = optim::make_second_order(o);
  m->start(objective, x0);
  trace.add(0, m->value(), norm({m->gradient().begin(), m->gradient().end()}), saddle.empty() ? 0.0 : distance(m->x(), saddle));
  for (int k = 1; k <= steps; ++k) {
    const optim::IterationRecord r = m->step(objective);
    if (!std::isfinite(r.f)) throw std::runtime_error(method + ": a non-finite loss at step " + std::to_string(k));
    trace.add(k, r.f, r.grad_norm, saddle.empty() ? 0.0 : distance(m->x(), saddle));
    if (r.grad_norm <= 1e-13 || r.stalled) break;
  }
  return {m->x().begin(), m->x().end()};
}

}  // namespace

int main(int argc, char** argv) {
  long long hidden = 3, n = 2000, seed = 1, newton_steps = 30, gd_steps = 5000, sfn_steps = 100;
  double init_scale = 1.0, radius = 0.01, lr = 5.0;
  for (int i = 1; i < argc; i += 2) {
    const std::string key = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "experiment_newton_saddle: error: %s needs a value\n", key.c_str());
      return 1;
    }
    const double value = std::atof(argv[i + 1]);
    if (!(value > 0.0)) {
      std::fprintf(stderr, "experiment_newton_saddle: error: %s must be a positive number, got '%s'\n", key.c_str(), argv[i + 1]);
      return 1;
    }
    const auto integer = static_cast<long long>(value);
    if (key == "--hidden") hidden = integer;
    else if (key == "--n") n = integer;
    else if (key == "--seed") seed = integer;
    else if (key == "--newton-steps") newton_steps = integer;
    else if (key == "--gd-steps") gd_steps = integer;
    else if (key == "--sfn-steps") sfn_steps = integer;
    else if (key == "--init") init_scale = value;
    else if (key == "--radius") radius = value;
    else if (key == "--lr") lr = value;
    else {
      std::fprintf(stderr,
                   "experiment_newton_saddle: error: unknown option %s (known: --hidden --n --init --radius --seed "
                   "--newton-steps --gd-steps --lr --sfn-steps)\n",
                   key.c_str());
      return 1;
    }
  }
  const bool verbose = std::getenv("NEWTON_SADDLE_VERBOSE") != nullptr;
  try {
    // The points: x uniform in [-1.5, 1.5]^2, the class drawn from a teacher of the small net's
    // form with 2 units and small weights (tanh outputs, no biases, softmax): with H = 3 the
    // small net is well specified, so its minimum is finite and nondegenerate near the teacher
    // (hard or unrealizable labels drove the tanh units to saturation, the weights to infinity).
    Rng data_rng(12345);
    std::vector<double> xs(static_cast<std::size_t>(2 * n));
    std::vector<std::int32_t> ys(static_cast<std::size_t>(n));
    for (long long i = 0; i < n; ++i) {
      const double a = data_rng.uniform(-1.5, 1.5), b = data_rng.uniform(-1.5, 1.5);
      xs[static_cast<std::size_t>(2 * i)] = a;
      xs[static_cast<std::size_t>(2 * i + 1)] = b;
      const double u0 = std::tanh(1.0 * a - 0.5 * b), u1 = std::tanh(0.3 * a + 1.0 * b);
      const double z0 = std::tanh(0.6 * u0 - 0.5 * u1), z1 = std::tanh(-0.4 * u0 + 0.7 * u1);
      const double p1 = 1.0 / (1.0 + std::exp(-(z1 - z0)));
      ys[static_cast<std::size_t>(i)] = data_rng.uniform() < p1 ? 1 : 0;
    }
    const Tensor x = Tensor::from<double>({n, 2}, xs);
    const Tensor labels = Tensor::from<std::int32_t>({n}, ys);

    // 1. The small net (hidden - 1 units) to a minimum: L-BFGS, then Newton to |g| <= 1e-12.
    ParameterArena small_arena(DType::f64);
    nn::Sequential small(small_arena);
    small.add(nn::Linear(2, hidden - 1, false));
    small.add(nn::Tanh());
    small.add(nn::Linear(hidden - 1, 2, false));
    small.add(nn::Tanh());
    small_arena.freeze();
    optim::NetworkObjective small_objective(small, small_arena, x, labels);
    const auto small_dim = static_cast<std::size_t>(small_objective.dim());
    std::vector<double> minimum;
    Point at_minimum;
    long long found_seed = 0;
    int tried = 0;
    for (long long s = 1; s <= 50 && minimum.empty(); ++s) {
      ++tried;
      Rng rng(static_cast<std::uint64_t>(s));
      std::vector<double> x0(small_dim);
      for (double& v : x0) v = rng.uniform(-init_scale, init_scale);
      try {
        Trace t1, t2;
        const std::vector<double> mid = run_second_order(small_objective, "lbfgs", x0, 500, {}, t1);
        if (verbose) {
          const Point q = describe(small_objective, mid, {});
          std::fprintf(stderr, "seed %lld: lbfgs %zu steps, loss %.6g, |g| %.3g, eigenvalues %.3g %.3g .. %.3g, |theta| %.3g\n", s,
                       t1.loss.size() - 1, q.loss, q.grad_norm, q.eigenvalues[0], q.eigenvalues[1], q.eigenvalues.back(), norm(mid));
        }
        const std::vector<double> end = run_second_order(small_objective, "newton", mid, 20, {}, t2);
        if (verbose) std::fprintf(stderr, "seed %lld: loss %.6g, |g| %.3g\n", s, t2.loss.back(), t2.grad_norm.back());
        if (!(t2.grad_norm.back() <= 1e-12)) continue;
        const Point p = describe(small_objective, end, {});
        if (verbose) std::fprintf(stderr, "  eigenvalues %.3g .. %.3g\n", p.eigenvalues.front(), p.eigenvalues.back());
        if (p.eigenvalues.front() > 1e-6 * p.eigenvalues.back()) {  // a nondegenerate minimum
          minimum = end;
          at_minimum = p;
          found_seed = s;
        }
      } catch (const std::exception& e) {
        if (verbose) std::fprintf(stderr, "seed %lld: %s\n", s, e.what());
      }
    }
    if (minimum.empty()) {
      std::fprintf(stderr, "experiment_newton_saddle: error: no nondegenerate minimum of the %lld-unit net from %d initializations\n",
                   hidden - 1, tried);
      return 2;
    }

    // 2. The saddle: the same function in the net with one more unit, whose weights are all 0.
    ParameterArena arena(DType::f64);
    nn::Sequential net(arena);
    net.add(nn::Linear(2, hidden, false));
    net.add(nn::Tanh());
    net.add(nn::Linear(hidden, 2, false));
    net.add(nn::Tanh());
    arena.freeze();
    optim::NetworkObjective objective(net, arena, x, labels);
    const auto dim = static_cast<std::size_t>(objective.dim());
    // Layouts: W1 [h, 2] row-major, then W2 [2, h] row-major (the arena's declaration order).
    const auto h1 = static_cast<std::size_t>(hidden - 1), h = static_cast<std::size_t>(hidden);
    std::vector<double> saddle(dim, 0.0);
    for (std::size_t k = 0; k < h1; ++k)
      for (std::size_t i = 0; i < 2; ++i) saddle[2 * k + i] = minimum[2 * k + i];
    for (std::size_t j = 0; j < 2; ++j)
      for (std::size_t k = 0; k < h1; ++k) saddle[2 * h + j * h + k] = minimum[2 * h1 + j * h1 + k];
    const Point at_saddle = describe(objective, saddle, saddle);
    // 2. From a point r away from it, in a random direction.
    Rng rng(static_cast<std::uint64_t>(seed) + 1000);
    std::vector<double> u(dim);
    for (double& v : u) v = rng.normal();
    const double un = norm(u);
    std::vector<double> start(dim);
    for (std::size_t i = 0; i < dim; ++i) start[i] = saddle[i] + radius * u[i] / un;
    const Point at_start = describe(objective, start, saddle);

    Trace newton_trace, sfn_trace, gd_trace;
    const std::vector<double> newton_end = run_second_order(objective, "newton", start, static_cast<int>(newton_steps), saddle, newton_trace);
    const std::vector<double> sfn_end = run_second_order(objective, "saddle_free", start, static_cast<int>(sfn_steps), saddle, sfn_trace);
    std::vector<double> theta = start, g(dim);
    const long long every = std::max(1LL, gd_steps / 300);
    for (long long k = 0;; ++k) {
      const double f = objective.evaluate(theta, g);
      if (!std::isfinite(f)) throw std::runtime_error("gd: a non-finite loss at step " + std::to_string(k));
      if (k % every == 0 || k == gd_steps) gd_trace.add(static_cast<double>(k), f, norm(g), distance(theta, saddle));
      if (k == gd_steps) break;
      for (std::size_t i = 0; i < dim; ++i) theta[i] -= lr * g[i];
    }
    const Point newton_point = describe(objective, newton_end, saddle);
    const Point sfn_point = describe(objective, sfn_end, saddle);
    const Point gd_point = describe(objective, theta, saddle);

    std::printf("{\"network\": \"2 -> %lld tanh -> 2 -> tanh, no biases, softmax cross-entropy, float64\", \"examples\": %lld, \"parameters\": %zu,\n",
                hidden, n, dim);
    std::printf(" \"minimum_seed\": %lld, \"initializations_tried\": %d, \"init\": %g, \"radius\": %g, \"seed\": %lld, \"lr\": %g,\n",
                found_seed, tried, init_scale, radius, seed, lr);
    std::printf(" \"small_minimum\": %s,\n", json_point(at_minimum).c_str());
    std::printf(" \"saddle\": %s,\n \"start\": %s,\n", json_point(at_saddle).c_str(), json_point(at_start).c_str());
    std::printf(" \"end\": {\"newton\": %s,\n  \"gd\": %s,\n  \"saddle_free\": %s},\n", json_point(newton_point).c_str(),
                json_point(gd_point).c_str(), json_point(sfn_point).c_str());
    std::printf(" \"steps\": {\"newton\": %lld, \"gd\": %lld, \"saddle_free\": %lld},\n", newton_steps, gd_steps, sfn_steps);
    std::printf(" \"trace\": {\"newton\": %s,\n  \"gd\": %s,\n  \"saddle_free\": %s}}\n", newton_trace.json().c_str(),
                gd_trace.json().c_str(), sfn_trace.json().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "experiment_newton_saddle: error: %s\n", e.what());
    return 2;
  }
  return 0;
}
