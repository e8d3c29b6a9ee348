#include "descent/diag/landscape.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "descent/autodiff/tape.hpp"
#include "descent/diag/lapack.hpp"
#include "descent/error.hpp"
#include "descent/loss/loss.hpp"

namespace descent::diag {
namespace {

double dot(std::span<const double> a, std::span<const double> b) {
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

std::vector<double> to_doubles(const Tensor& t) {
  std::vector<double> out(static_cast<std::size_t>(t.numel()));
  if (t.dtype() == DType::f64) {
    std::copy(t.data<double>(), t.data<double>() + out.size(), out.begin());
  } else if (t.dtype() == DType::f32) {
    std::copy(t.data<float>(), t.data<float>() + out.size(), out.begin());
  } else {
    throw ShapeError("landscape: weights must be f32 or f64");
  }
  return out;
}

void from_doubles(std::span<const double> v, const Tensor& t, const char* what) {
  if (static_cast<std::int64_t>(v.size()) != t.numel()) {
    throw ShapeError(std::string("landscape: ") + what + " of " + std::to_string(v.size()) + " values for a model of " +
                     std::to_string(t.numel()));
  }
  if (t.dtype() == DType::f64) {
    std::copy(v.begin(), v.end(), t.data<double>());
  } else {
    float* p = t.data<float>();
    for (std::size_t i = 0; i < v.size(); ++i) p[i] = static_cast<float>(v[i]);
  }
}

// Puts the arena's weights back when it goes out of scope.
struct RestoreWeights {
  ParameterArena& arena;
  Weights saved;
  explicit RestoreWeights(ParameterArena& a) : arena(a), saved(read_weights(a)) {}
  ~RestoreWeights() { write_weights(arena, saved.values, saved.buffers); }
  RestoreWeights(const RestoreWeights&) = delete;
  RestoreWeights& operator=(const RestoreWeights&) = delete;
};

void check_sets(std::span<const ExampleSet> sets) {
  for (const ExampleSet& s : sets) {
    if (!s.x.defined() || s.x.dim(0) == 0) throw ShapeError("landscape: an empty example set");
  }
}

}  // namespace

double norm(std::span<const double> v) { return std::sqrt(dot(v, v)); }

Weights read_weights(ParameterArena& arena) {
  Weights w;
  w.values = to_doubles(arena.values());
  if (arena.buffer_size() > 0) w.buffers = to_doubles(arena.buffers());
  return w;
}

void write_weights(ParameterArena& arena, std::span<const double> values, std::span<const double> buffers) {
  from_doubles(values, arena.values(), "parameters");
  if (!buffers.empty()) from_doubles(buffers, arena.buffers(), "buffers");
}

LossAndError evaluate(nn::Module& net, const ExampleSet& set, std::int64_t chunk) {
  if (!set.x.defined() || set.x.dim(0) == 0) throw ShapeError("landscape: evaluate on an empty example set");
  if (chunk < 1) throw ShapeError("landscape: chunk must be >= 1");
  const std::int64_t n = set.x.dim(0);
  const bool was_training = net.training();
  net.set_training(false);
  struct Restore {
    nn::Module& net;
    bool mode;
    ~Restore() { net.set_training(mode); }
  } restore{net, was_training};
  autodiff::Tape tape;
  double loss_sum = 0.0;
  std::int64_t errors = 0;
  for (std::int64_t begin = 0; begin < n; begin += chunk) {
    const std::int64_t end = std::min(n, begin + chunk);
    tape.clear();
    const Tensor y = set.labels.rows(begin, end);
    autodiff::Var logits = net.forward(tape, tape.constant(set.x.rows(begin, end)));
    loss_sum += loss::cross_entropy(logits, y).value().item() * static_cast<double>(end - begin);
    errors += loss::count_errors(logits.value(), y);
  }
  return {loss_sum / static_cast<double>(n), static_cast<double>(errors) / static_cast<double>(n)};
}

std::vector<double> interpolate_buffers(const ParameterArena& arena, std::span<const double> b0, std::span<const double> b1,
                                        double alpha) {
  if (b0.size() != b1.size() || static_cast<std::int64_t>(b0.size()) != arena.buffer_size()) {
    throw ShapeError("landscape: buffers of " + std::to_string(b0.size()) + " and " + std::to_string(b1.size()) +
                     " values for a model of " + std::to_string(arena.buffer_size()));
  }
  std::vector<double> out(b0.size());
  for (const BufferEntry& e : arena.buffer_entries()) {
    const bool variance = e.name.ends_with("running_var");
    const auto begin = static_cast<std::size_t>(e.offset);
    const auto end = begin + static_cast<std::size_t>(e.shape.numel());
    for (std::size_t i = begin; i < end; ++i) {
      // Exact at the ends: (1 - 0) a + 0 b = a, and pow(v, 1) pow(w, 0) = v.
      const double linear = (1.0 - alpha) * b0[i] + alpha * b1[i];
      if (variance && b0[i] > 0 && b1[i] > 0) {
        out[i] = std::pow(b0[i], 1.0 - alpha) * std::pow(b1[i], alpha);
      } else {
        out[i] = variance ? std::max(0.0, linear) : linear;
      }
    }
  }
  return out;
}

std::vector<double> alpha_grid(const InterpolationOptions& o) {
  if (o.points < 2) throw ShapeError("interpolation: points must be >= 2, got " + std::to_string(o.points));
  if (!(o.to > o.from)) throw ShapeError("interpolation: the alpha range is empty");
  std::vector<double> alpha;
  for (int i = 0; i < o.points; ++i) {
    alpha.push_back(i + 1 == o.points ? o.to : o.from + (o.to - o.from) * i / (o.points - 1));
  }
  for (const double end : {0.0, 1.0}) {
    if (end < o.from || end > o.to) continue;
    // A grid value within rounding of 0 or 1 becomes it exactly; otherwise it is added.
    auto near = std::find_if(alpha.begin(), alpha.end(), [&](double a) { return std::abs(a - end) < 1e-12; });
    if (near != alpha.end()) {
      *near = end;
    } else {
      alpha.insert(std::upper_bound(alpha.begin(), alpha.end(), end), end);
    }
  }
  return alpha;
}

Interpolation interpolate(nn::Module& net, ParameterArena& arena, const Weights& theta0, const Weights& theta1,
                          std::span<const ExampleSet> sets, const InterpolationOptions& options) {
  check_sets(sets);
  if (theta0.values.size() != theta1.values.size() || theta0.buffers.size() != theta1.buffers.size()) {
    throw ShapeError("interpolation: the two ends have different sizes");
  }
  Interpolation out;
  out.alpha = alpha_grid(options);
  out.curves.assign(sets.size(), {});
  RestoreWeights restore(arena);
  std::vector<double> theta(theta0.values.size());
  const auto total = static_cast<std::int64_t>(out.alpha.size());
  for (std::int64_t p = 0; p < total; ++p) {
    const double a = out.alpha[static_cast<std::size_t>(p)];
    for (std::size_t i = 0; i < theta.size(); ++i) theta[i] = (1.0 - a) * theta0.values[i] + a * theta1.values[i];
    write_weights(arena, theta,
                  theta0.buffers.empty() ? std::vector<double>() : interpolate_buffers(arena, theta0.buffers, theta1.buffers, a));
    for (std::size_t s = 0; s < sets.size(); ++s) out.curves[s].push_back(evaluate(net, sets[s], options.chunk));
    if (options.progress) options.progress(p + 1, total);
  }
  return out;
}

Plane through_line(const Weights& theta0, const Weights& theta1, std::span<const double> unit_deviation) {
  if (theta0.values.size() != theta1.values.size() || unit_deviation.size() != theta0.values.size()) {
    throw ShapeError("plane: the points and the direction have different sizes");
  }
  Plane p;
  p.origin = theta0.values;
  p.d1.resize(theta0.values.size());
  for (std::size_t i = 0; i < p.d1.size(); ++i) p.d1[i] = theta1.values[i] - theta0.values[i];
  const double length = norm(p.d1);
  if (!(length > 0)) throw NumericError("plane: theta_0 and theta* are the same point");
  p.d2.resize(p.d1.size());
  for (std::size_t i = 0; i < p.d2.size(); ++i) p.d2[i] = length * unit_deviation[i];
  p.buffers0 = theta0.buffers;
  p.buffers1 = theta1.buffers;
  p.buffers_along_x = true;
  return p;
}

Projection project(const Plane& plane, std::span<const double> theta) {
  const std::size_t n = plane.origin.size();
  if (theta.size() != n || plane.d1.size() != n || plane.d2.size() != n) throw ShapeError("project: sizes differ");
  std::vector<double> r(n);
  for (std::size_t i = 0; i < n; ++i) r[i] = theta[i] - plane.origin[i];
  // Normal equations [a b; b c] (x, y) = (p, q).
  const double a = dot(plane.d1, plane.d1), b = dot(plane.d1, plane.d2), c = dot(plane.d2, plane.d2);
  const double p = dot(plane.d1, r), q = dot(plane.d2, r);
  const double det = a * c - b * b;
  if (!(det > 0)) throw NumericError("project: the plane's directions are parallel or zero");
  Projection out;
  out.x = (c * p - b * q) / det;
  out.y = (a * q - b * p) / det;
  for (std::size_t i = 0; i < n; ++i) r[i] -= out.x * plane.d1[i] + out.y * plane.d2[i];
  out.off_plane = norm(r);
  return out;
}

PlaneGrid evaluate_plane(nn::Module& net, ParameterArena& arena, const Plane& plane, std::span<const double> xs,
                         std::span<const double> ys, const ExampleSet& set, std::int64_t chunk, const ProgressFn& progress) {
  check_sets(std::span<const ExampleSet>(&set, 1));
  const std::size_t n = plane.origin.size();
  if (plane.d1.size() != n || plane.d2.size() != n) throw ShapeError("plane: the directions and the origin differ in size");
  PlaneGrid grid;
  grid.xs.assign(xs.begin(), xs.end());
  grid.ys.assign(ys.begin(), ys.end());
  RestoreWeights restore(arena);
  std::vector<double> theta(n);
  const auto total = static_cast<std::int64_t>(xs.size() * ys.size());
  std::int64_t done = 0;
  for (const double y : ys) {
    std::vector<LossAndError> row;
    for (const double x : xs) {
      for (std::size_t i = 0; i < n; ++i) theta[i] = plane.origin[i] + x * plane.d1[i] + y * plane.d2[i];
      std::vector<double> buffers;
      if (!plane.buffers0.empty()) {
        buffers = plane.buffers_along_x ? interpolate_buffers(arena, plane.buffers0, plane.buffers1, x) : plane.buffers0;
      }
      write_weights(arena, theta, buffers);
      row.push_back(evaluate(net, set, chunk));
      if (progress) progress(++done, total);
    }
    grid.values.push_back(std::move(row));
  }
  return grid;
}

Deviation main_deviation(std::span<const double> theta0, std::span<const double> theta1, std::size_t count,
                         const std::function<std::vector<double>(std::size_t)>& snapshot) {
  const std::size_t n = theta0.size();
  if (theta1.size() != n) throw ShapeError("main_deviation: the ends differ in size");
  std::vector<double> u(n);
  for (std::size_t i = 0; i < n; ++i) u[i] = theta1[i] - theta0[i];
  const double length = norm(u);
  if (!(length > 0)) throw NumericError("main_deviation: theta_0 and theta* are the same point");
  for (double& x : u) x /= length;

  std::vector<std::vector<float>> residuals;
  std::vector<double> r(n);
  Deviation out;
  for (std::size_t k = 0; k < count; ++k) {
    const std::vector<double> t = snapshot(k);
    if (t.size() != n) throw ShapeError("main_deviation: snapshot " + std::to_string(k) + " differs in size");
    for (std::size_t i = 0; i < n; ++i) r[i] = t[i] - theta0[i];
    const double along = dot(r, u);
    for (std::size_t i = 0; i < n; ++i) r[i] -= along * u[i];
    out.largest_residual = std::max(out.largest_residual, norm(r));
    residuals.emplace_back(r.begin(), r.end());
  }
  const std::size_t m = residuals.size();
  if (m == 0 || !(out.largest_residual > 0)) return out;
  // G = R R' (K x K); its top eigenvector c gives the top right singular vector R' c of R.
  std::vector<double> gram(m * m);
  double total = 0.0;
  for (std::size_t a = 0; a < m; ++a) {
    for (std::size_t b = a; b < m; ++b) {
      double s = 0.0;
      for (std::size_t i = 0; i < n; ++i) s += static_cast<double>(residuals[a][i]) * static_cast<double>(residuals[b][i]);
      gram[a * m + b] = gram[b * m + a] = s;
    }
    total += gram[a * m + a];
  }
  const Eigen e = symmetric_eigen(gram, static_cast<std::int64_t>(m), true);
  const double* c = e.vectors.data() + (m - 1) * m;  // the largest eigenvalue's eigenvector
  std::vector<double> d(n, 0.0);
  for (std::size_t k = 0; k < m; ++k) {
    for (std::size_t i = 0; i < n; ++i) d[i] += c[k] * static_cast<double>(residuals[k][i]);
  }
  const double along = dot(d, u);  // zero up to rounding: every residual is orthogonal to u
  for (std::size_t i = 0; i < n; ++i) d[i] -= along * u[i];
  const double dn = norm(d);
  if (!(dn > 0)) return out;
  // Orientation: the residuals' mean projection is >= 0 (the trajectory drawn above the line).
  double mean = 0.0;
  for (std::size_t k = 0; k < m; ++k) {
    for (std::size_t i = 0; i < n; ++i) mean += d[i] * static_cast<double>(residuals[k][i]);
  }
  const double sign = mean < 0 ? -1.0 : 1.0;
  for (double& x : d) x *= sign / dn;
  out.direction = std::move(d);
  out.explained = total > 0 ? e.values.back() / total : 0.0;
  return out;
}

std::vector<double> random_orthogonal(std::span<const double> u, Rng& rng) {
  const double un = norm(u);
  if (!(un > 0)) throw NumericError("random_orthogonal: zero direction");
  std::vector<double> d(u.size());
  for (double& x : d) x = rng.normal();
  for (int pass = 0; pass < 2; ++pass) {
    const double along = dot(d, u) / (un * un);
    for (std::size_t i = 0; i < d.size(); ++i) d[i] -= along * u[i];
  }
  const double dn = norm(d);
  for (double& x : d) x /= dn;
  return d;
}

void filter_normalize(const ParameterArena& arena, std::span<const double> theta, std::span<double> d) {
  if (static_cast<std::int64_t>(theta.size()) != arena.size() || d.size() != theta.size()) {
    throw ShapeError("filter_normalize: vectors of " + std::to_string(theta.size()) + " and " + std::to_string(d.size()) +
                     " values for a model of " + std::to_string(arena.size()));
  }
  for (const ParamEntry& e : arena.entries()) {
    const auto begin = static_cast<std::size_t>(e.offset);
    const auto size = static_cast<std::size_t>(e.shape.numel());
    if (e.shape.ndim() < 2) {
      std::fill(d.begin() + static_cast<std::ptrdiff_t>(begin), d.begin() + static_cast<std::ptrdiff_t>(begin + size), 0.0);
      continue;
    }
    const auto filters = static_cast<std::size_t>(e.shape.dims()[0]);
    const std::size_t per = size / filters;
    for (std::size_t f = 0; f < filters; ++f) {
      const std::size_t at = begin + f * per;
      const double tn = norm(theta.subspan(at, per));
      const double dn = norm(std::span<const double>(d).subspan(at, per));
      const double scale = dn > 0 ? tn / dn : 0.0;
      for (std::size_t i = at; i < at + per; ++i) d[i] *= scale;
    }
  }
}

std::vector<double> filter_normalized_direction(const ParameterArena& arena, std::span<const double> theta, Rng& rng) {
  std::vector<double> d(theta.size());
  for (double& x : d) x = rng.normal();
  filter_normalize(arena, theta, d);
  return d;
}

}  // namespace descent::diag
