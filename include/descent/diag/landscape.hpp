#pragma once
// The loss landscape between and around two points of weight space: section 8.2.7 of the
// chapter ("poor correspondence between local and global structure", Fig. 8.2), measured as
// Goodfellow, Vinyals & Saxe (2015, "Qualitatively characterizing neural network optimization
// problems") and Li, Xu, Taylor, Studer & Goldstein (2018, "Visualizing the loss landscape of
// neural nets") do:
//
//   interpolate()     J(theta(alpha)), theta(alpha) = (1 - alpha) theta_0 + alpha theta*,
//                     alpha on a grid over [-0.25, 1.25]: is the straight path from the
//                     initial to the final weights downhill all the way (no barrier), or does
//                     it meet a bump?
//   evaluate_plane()  J(origin + x d1 + y d2) on a grid: the plane through theta_0 and theta*
//                     and the trajectory's main deviation from that line (through_line(),
//                     main_deviation(): Goodfellow's projection), or around theta* along
//                     filter-normalized random directions (filter_normalize(), Li et al.) or
//                     the Hessian's top eigenvectors (lanczos_extremes' eigenvectors)
//   project()         where a point of weight space lands on a plane (the trajectory drawn on it)
//
// J is the mean cross-entropy (no regularization term) and the 0-1 error over fixed examples,
// the model in evaluation mode (dropout off, batch normalization on its running statistics).
// Batch normalization's running statistics move with the weights: interpolate_buffers()
// takes running means (and every other buffer) linearly and running variances (buffers whose
// name ends in "running_var") geometrically, v0^(1-alpha) v1^alpha, which equals each end at
// alpha = 0 and 1 and stays positive when alpha leaves [0, 1]. docs/diagnostics.md says more.
//
// Cost: one forward pass over the examples per point (41 points x n examples for the default
// curve), in chunks of `chunk` examples; the kernels use the threads (tensor/parallel.hpp).
// Vectors of weights are double precision; a float32 model gets them rounded to float32.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "descent/init/rng.hpp"
#include "descent/nn/module.hpp"
#include "descent/tensor/arena.hpp"
#include "descent/tensor/tensor.hpp"

namespace descent::diag {

struct LossAndError {
  double loss = 0.0;   // mean cross-entropy
  double error = 0.0;  // 0-1 error
};

// Examples: x [n, ...] of the arena's dtype, labels i32 [n].
struct ExampleSet {
  Tensor x, labels;
};

// A point of weight space: the parameters (arena.values()' layout) and the buffers
// (arena.buffers()' layout; empty for a model without any).
struct Weights {
  std::vector<double> values, buffers;
};
Weights read_weights(ParameterArena& arena);
// Sets the arena's parameters (and its buffers, when `buffers` is not empty). Throws ShapeError
// for a size that is not the arena's.
void write_weights(ParameterArena& arena, std::span<const double> values, std::span<const double> buffers = {});

// J and the 0-1 error of `net` at the arena's current weights over `set`, in chunks of `chunk`
// examples, in evaluation mode (the mode is put back afterwards). The loss is summed in double
// in chunk order. Throws ShapeError for an empty set.
LossAndError evaluate(nn::Module& net, const ExampleSet& set, std::int64_t chunk = 1000);

// The buffers at alpha between b0 (alpha = 0) and b1 (alpha = 1): running variances
// geometrically (a non-positive end gives its linear interpolation clamped at 0), the rest
// linearly.
std::vector<double> interpolate_buffers(const ParameterArena& arena, std::span<const double> b0, std::span<const double> b1,
                                        double alpha);

// Called after each point: (points done, points in all).
using ProgressFn = std::function<void(std::int64_t, std::int64_t)>;

struct InterpolationOptions {
  double from = -0.25, to = 1.25;
  int points = 41;           // evenly spaced over [from, to]; 0 and 1 are added when missing
  std::int64_t chunk = 1000;  // examples per forward pass
  ProgressFn progress = nullptr;
};

struct Interpolation {
  std::vector<double> alpha;                      // ascending
  std::vector<std::vector<LossAndError>> curves;  // [set][point]
};

// The alpha grid of `options`: `points` values from `from` to `to`, with 0 and 1 inserted
// when they are inside [from, to] and not on it. Throws ShapeError for points < 2 or to <= from.
std::vector<double> alpha_grid(const InterpolationOptions& options);

// J and the error of each set along theta(alpha) = (1 - alpha) theta_0 + alpha theta_1 (buffers
// by interpolate_buffers). The arena's weights are put back afterwards.
Interpolation interpolate(nn::Module& net, ParameterArena& arena, const Weights& theta0, const Weights& theta1,
                          std::span<const ExampleSet> sets, const InterpolationOptions& options = {});

// theta(x, y) = origin + x d1 + y d2; the buffers are buffers0 everywhere, or, with
// buffers_along_x, interpolate_buffers(buffers0, buffers1, x) (the plane through theta_0 at
// x = 0 and theta* at x = 1).
struct Plane {
  std::vector<double> origin, d1, d2;
  std::vector<double> buffers0, buffers1;
  bool buffers_along_x = false;
};

// The plane through theta_0 (0, 0) and theta_1 (1, 0): d1 = theta_1 - theta_0,
// d2 = |d1| e with `unit_deviation` e (orthogonal to d1), so both axes have the same scale.
Plane through_line(const Weights& theta0, const Weights& theta1, std::span<const double> unit_deviation);

// Where `theta` lands: the least-squares coordinates (x, y) on the plane and its distance from
// it (Gram system of d1 and d2; they need not be orthogonal).
struct Projection {
  double x = 0.0, y = 0.0, off_plane = 0.0;
};
Projection project(const Plane& plane, std::span<const double> theta);

struct PlaneGrid {
  std::vector<double> xs, ys;
  std::vector<std::vector<LossAndError>> values;  // [y][x]
};
// Evaluates every (x, y) of xs x ys, rows of constant y in turn. The arena's weights are put
// back afterwards.
PlaneGrid evaluate_plane(nn::Module& net, ParameterArena& arena, const Plane& plane, std::span<const double> xs,
                         std::span<const double> ys, const ExampleSet& set, std::int64_t chunk = 1000,
                         const ProgressFn& progress = {});

// Goodfellow's projection: the first principal direction of the trajectory's residuals from
// the line through theta_0 and theta_1. For each snapshot theta_k (`snapshot(k)`, k < count)
// the residual r_k = (theta_k - theta_0) - ((theta_k - theta_0)' u) u, u = (theta_1 -
// theta_0) / |theta_1 - theta_0|; the direction is the top eigenvector of sum_k r_k r_k'
// (uncentered: deviations measured from the line), computed from the K x K Gram matrix
// (LAPACK dsyev), oriented so that the residuals' mean projection is >= 0, and orthogonalized
// against u once more. `explained`: its share of sum_k |r_k|^2. Empty direction when every
// residual is zero (or count = 0). Memory: the K residuals in float32.
struct Deviation {
  std::vector<double> direction;  // unit, orthogonal to theta_1 - theta_0; empty when none
  double explained = 0.0;
  double largest_residual = 0.0;  // max_k |r_k|
};
Deviation main_deviation(std::span<const double> theta0, std::span<const double> theta1, std::size_t count,
                         const std::function<std::vector<double>(std::size_t)>& snapshot);

// A unit Gaussian direction orthogonal to `u` (u need not be a unit vector; nonzero).
std::vector<double> random_orthogonal(std::span<const double> u, Rng& rng);

// Li et al.'s filter normalization, in place: for each parameter of two or more dimensions, each
// filter (a slice along dimension 0: an output unit's incoming weights, a convolution's output
// channel) of d is rescaled to the norm of the same filter of theta,
//   d_{i,j} <- d_{i,j} |theta_{i,j}| / |d_{i,j}|      (i: parameter, j: filter)
// (a zero filter of d stays zero); parameters of one dimension (biases, normalization scales
// and shifts) get d = 0, as Li et al.'s figures do (their "ignore biasbn").
void filter_normalize(const ParameterArena& arena, std::span<const double> theta, std::span<double> d);

// A Gaussian direction, filter-normalized against theta.
std::vector<double> filter_normalized_direction(const ParameterArena& arena, std::span<const double> theta, Rng& rng);

double norm(std::span<const double> v);

}  // namespace descent::diag
