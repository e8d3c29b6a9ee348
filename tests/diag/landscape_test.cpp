// The loss landscape (diag/landscape.hpp) against independent computations: the curve's ends
// and every plane point against the loss of one plain tape at weights set here by hand,
// projections against the coordinates a point was built from, filter normalization and the
// trajectory's main deviation against values worked out by hand, batch norm's buffers along
// the path against their formulas.
#include <gtest/gtest.h>

#include <cmath>

#include "descent/diag/landscape.hpp"
#include "descent/loss/loss.hpp"
#include "descent/nn/normalization.hpp"
#include "diag/problem.hpp"

namespace descent {
namespace {

using diag_testing::Problem;

// Loss and error of the problem's network at `theta` over all its examples, on one tape.
diag::LossAndError direct(Problem& p, const std::vector<double>& theta) {
  for (std::int64_t i = 0; i < p.arena.size(); ++i) {
    if (p.arena.dtype() == DType::f64) {
      p.arena.values().data<double>()[i] = theta[static_cast<std::size_t>(i)];
    } else {
      p.arena.values().data<float>()[i] = static_cast<float>(theta[static_cast<std::size_t>(i)]);
    }
  }
  autodiff::Tape tape;
  autodiff::Var logits = p.net.forward(tape, tape.constant(p.x));
  const double loss = loss::cross_entropy(logits, p.labels).value().item();
  const double errors = static_cast<double>(loss::count_errors(logits.value(), p.labels));
  return {loss, errors / static_cast<double>(p.x.dim(0))};
}

std::vector<double> random_vector(std::size_t n, std::uint64_t seed, double scale) {
  Rng rng(seed);
  std::vector<double> v(n);
  for (double& x : v) x = scale * rng.normal();
  return v;
}

TEST(AlphaGrid, HoldsZeroAndOneExactly) {
  const std::vector<double> a = diag::alpha_grid({});  // 41 points over [-0.25, 1.25]: step 0.0375
  ASSERT_EQ(a.size(), 43u);                           // 0 and 1 are not among them: added
  EXPECT_EQ(a.front(), -0.25);
  EXPECT_EQ(a.back(), 1.25);
  EXPECT_TRUE(std::is_sorted(a.begin(), a.end()));
  EXPECT_EQ(std::count(a.begin(), a.end(), 0.0), 1);
  EXPECT_EQ(std::count(a.begin(), a.end(), 1.0), 1);
  const std::vector<double> b = diag::alpha_grid({.points = 7});  // step 0.25: 0 and 1 on the grid
  EXPECT_EQ(b, (std::vector<double>{-0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25}));
  EXPECT_THROW(diag::alpha_grid({.points = 1}), ShapeError);
}

TEST(Interpolation, EndsAndEveryPointEqualTheLossOfOneTape) {
  Problem p(DType::f64, {4, 6, 3}, nn::Activation::tanh, 37, 11);
  const std::size_t n = static_cast<std::size_t>(p.arena.size());
  const diag::Weights t0{random_vector(n, 1, 0.5), {}}, t1{random_vector(n, 2, 0.5), {}};
  const diag::ExampleSet set{p.x, p.labels};
  std::vector<diag::ExampleSet> sets = {set, {p.x.rows(0, 10), p.labels.rows(0, 10)}};
  const diag::Interpolation r = diag::interpolate(p.net, p.arena, t0, t1, sets, {.points = 7, .chunk = 5});
  ASSERT_EQ(r.alpha.size(), 7u);
  ASSERT_EQ(r.curves.size(), 2u);
  const std::vector<double> kept = diag::read_weights(p.arena).values;
  for (std::size_t i = 0; i < r.alpha.size(); ++i) {
    const double a = r.alpha[i];
    std::vector<double> theta(n);
    for (std::size_t j = 0; j < n; ++j) theta[j] = (1 - a) * t0.values[j] + a * t1.values[j];
    const diag::LossAndError d = direct(p, theta);
    EXPECT_NEAR(r.curves[0][i].loss, d.loss, 1e-13 * d.loss) << a;
    EXPECT_EQ(r.curves[0][i].error, d.error) << a;
  }
  // alpha = 0 and 1 are theta_0 and theta_1 themselves.
  EXPECT_NEAR(r.curves[0][1].loss, direct(p, t0.values).loss, 1e-13);
  EXPECT_NEAR(r.curves[0][5].loss, direct(p, t1.values).loss, 1e-13);
  // The second set: the first 10 examples only.
  Problem q(DType::f64, {4, 6, 3}, nn::Activation::tanh, 37, 11);
  q.x = q.x.rows(0, 10);
  q.labels = q.labels.rows(0, 10);
  EXPECT_NEAR(r.curves[1][5].loss, direct(q, t1.values).loss, 1e-13);
  (void)kept;
}

TEST(Interpolation, PutsTheModelsWeightsBack) {
  Problem p(DType::f32, {4, 5, 3}, nn::Activation::relu, 20, 3);
  const diag::Weights before = diag::read_weights(p.arena);
  const std::size_t n = before.values.size();
  const diag::ExampleSet set{p.x, p.labels};
  diag::interpolate(p.net, p.arena, {random_vector(n, 4, 1), {}}, {random_vector(n, 5, 1), {}},
                    std::span<const diag::ExampleSet>(&set, 1), {.points = 3});
  EXPECT_EQ(diag::read_weights(p.arena).values, before.values);
}

TEST(Plane, EveryGridPointEqualsTheLossAtItsWeights) {
  Problem p(DType::f64, {4, 6, 3}, nn::Activation::tanh, 29, 21);
  const std::size_t n = static_cast<std::size_t>(p.arena.size());
  diag::Plane plane{random_vector(n, 7, 0.5), random_vector(n, 8, 0.3), random_vector(n, 9, 0.3), {}, {}, false};
  const std::vector<double> xs = {-1.0, 0.0, 0.5, 2.0}, ys = {-0.5, 0.0, 1.0};
  const diag::ExampleSet set{p.x, p.labels};
  std::int64_t calls = 0;
  const diag::PlaneGrid g = diag::evaluate_plane(p.net, p.arena, plane, xs, ys, set, 4, [&](std::int64_t done, std::int64_t total) {
    ++calls;
    EXPECT_EQ(done, calls);
    EXPECT_EQ(total, 12);
  });
  EXPECT_EQ(calls, 12);
  ASSERT_EQ(g.values.size(), ys.size());
  for (std::size_t iy = 0; iy < ys.size(); ++iy) {
    ASSERT_EQ(g.values[iy].size(), xs.size());
    for (std::size_t ix = 0; ix < xs.size(); ++ix) {
      std::vector<double> theta(n);
      for (std::size_t j = 0; j < n; ++j) theta[j] = plane.origin[j] + xs[ix] * plane.d1[j] + ys[iy] * plane.d2[j];
      const diag::LossAndError d = direct(p, theta);
      EXPECT_NEAR(g.values[iy][ix].loss, d.loss, 1e-13 * d.loss) << xs[ix] << " " << ys[iy];
      EXPECT_EQ(g.values[iy][ix].error, d.error);
    }
  }
}

TEST(Plane, ThroughTheLineProjectsItsPointsWhereTheyWereBuilt) {
  const std::size_t n = 50;
  const diag::Weights t0{random_vector(n, 1, 1.0), {}}, t1{random_vector(n, 2, 1.0), {}};
  std::vector<double> d1(n);
  for (std::size_t i = 0; i < n; ++i) d1[i] = t1.values[i] - t0.values[i];
  Rng rng(3);
  const std::vector<double> e = diag::random_orthogonal(d1, rng);
  double along = 0.0;
  for (std::size_t i = 0; i < n; ++i) along += e[i] * d1[i];
  EXPECT_NEAR(along, 0.0, 1e-12);
  EXPECT_NEAR(diag::norm(e), 1.0, 1e-14);
  const diag::Plane plane = diag::through_line(t0, t1, e);
  EXPECT_NEAR(diag::norm(plane.d2), diag::norm(d1), 1e-12);  // both axes on the same scale
  const diag::Projection p0 = diag::project(plane, t0.values), p1 = diag::project(plane, t1.values);
  EXPECT_NEAR(p0.x, 0.0, 1e-14);
  EXPECT_NEAR(p0.y, 0.0, 1e-14);
  EXPECT_NEAR(p1.x, 1.0, 1e-14);
  EXPECT_NEAR(p1.y, 0.0, 1e-14);
  EXPECT_NEAR(p1.off_plane, 0.0, 1e-12);
  // theta_0 + 0.3 d1 - 0.7 |d1| e + w, w orthogonal to the plane with |w| = 2.
  std::vector<double> w = diag::random_orthogonal(d1, rng);
  double we = 0.0;
  for (std::size_t i = 0; i < n; ++i) we += w[i] * e[i];
  for (std::size_t i = 0; i < n; ++i) w[i] -= we * e[i];
  const double wn = diag::norm(w);
  std::vector<double> theta(n);
  for (std::size_t i = 0; i < n; ++i) theta[i] = t0.values[i] + 0.3 * d1[i] - 0.7 * plane.d2[i] + 2.0 * w[i] / wn;
  const diag::Projection q = diag::project(plane, theta);
  EXPECT_NEAR(q.x, 0.3, 1e-12);
  EXPECT_NEAR(q.y, -0.7, 1e-12);
  EXPECT_NEAR(q.off_plane, 2.0, 1e-12);
  // Directions that are not orthogonal: the Gram system still gives the coordinates.
  diag::Plane skew{t0.values, d1, std::vector<double>(n), {}, {}, false};
  for (std::size_t i = 0; i < n; ++i) skew.d2[i] = d1[i] + e[i];
  for (std::size_t i = 0; i < n; ++i) theta[i] = t0.values[i] + 1.5 * skew.d1[i] + 0.25 * skew.d2[i];
  const diag::Projection s = diag::project(skew, theta);
  EXPECT_NEAR(s.x, 1.5, 1e-11);
  EXPECT_NEAR(s.y, 0.25, 1e-11);
}

TEST(MainDeviation, IsTheDirectionTheTrajectoryLeavesTheLineIn) {
  // theta_0 = 0, theta* = (2, 0, 0, 0). Snapshots leave the line along (0, 3, 1, 0) / sqrt(10),
  // with one small wobble along the fourth axis: by hand, the residual matrix
  //   R = [0 3 1 0; 0 6 2 0; 0 3 1 0.5]
  // has R'R = [[0,0,0,0],[0,54,18,1.5],[0,18,6,0.5],[0,1.5,0.5,0.25]]; its top eigenvector is
  // close to (0, 3, 1, 0)/sqrt(10); with the wobble removed exactly that, and explained = 1.
  const std::vector<double> t0(4, 0.0), t1 = {2, 0, 0, 0};
  std::vector<std::vector<double>> snaps = {{0.5, 3, 1, 0}, {1.0, 6, 2, 0}, {1.5, 3, 1, 0}};
  diag::Deviation d = diag::main_deviation(t0, t1, snaps.size(), [&](std::size_t k) { return snaps[k]; });
  ASSERT_EQ(d.direction.size(), 4u);
  EXPECT_NEAR(d.direction[0], 0.0, 1e-12);
  EXPECT_NEAR(d.direction[1], 3 / std::sqrt(10.0), 1e-7);  // residuals are kept in float32
  EXPECT_NEAR(d.direction[2], 1 / std::sqrt(10.0), 1e-7);
  EXPECT_NEAR(d.direction[3], 0.0, 1e-7);
  EXPECT_NEAR(d.explained, 1.0, 1e-7);
  EXPECT_NEAR(d.largest_residual, std::sqrt(40.0), 1e-6);
  // The same trajectory on the other side of the line: the direction flips so the mean
  // projection stays >= 0.
  for (auto& s : snaps) s[1] = -s[1], s[2] = -s[2];
  d = diag::main_deviation(t0, t1, snaps.size(), [&](std::size_t k) { return snaps[k]; });
  EXPECT_NEAR(d.direction[1], -3 / std::sqrt(10.0), 1e-7);
  // With the wobble: the top eigenvector of R'R, checked by its Rayleigh quotient
  // against the largest eigenvalue computed here by power iteration.
  snaps[2][3] = 0.5;
  d = diag::main_deviation(t0, t1, snaps.size(), [&](std::size_t k) { return snaps[k]; });
  const double m[4][4] = {{0, 0, 0, 0}, {0, 54, 18, -1.5}, {0, 18, 6, -0.5}, {0, -1.5, -0.5, 0.25}};
  std::vector<double> v = {0, 1, 1, 1};
  for (int it = 0; it < 500; ++it) {
    std::vector<double> w(4, 0.0);
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) w[static_cast<std::size_t>(i)] += m[i][j] * v[static_cast<std::size_t>(j)];
    const double wn = diag::norm(w);
    for (auto& x : w) x /= wn;
    v = w;
  }
  double overlap = 0.0;
  for (std::size_t i = 0; i < 4; ++i) overlap += v[i] * d.direction[i];
  EXPECT_NEAR(std::abs(overlap), 1.0, 1e-7);
  EXPECT_LT(d.explained, 1.0);
  // On the line: no direction.
  std::vector<std::vector<double>> on_line = {{0.5, 0, 0, 0}, {1.7, 0, 0, 0}};
  d = diag::main_deviation(t0, t1, on_line.size(), [&](std::size_t k) { return on_line[k]; });
  EXPECT_TRUE(d.direction.empty());
  EXPECT_TRUE(diag::main_deviation(t0, t1, 0, [&](std::size_t) { return t0; }).direction.empty());
}

TEST(FilterNormalize, RescalesEachFilterToTheWeightsFilterAndZeroesBiases) {
  ParameterArena arena(DType::f64);
  arena.add("w", {2, 3});
  arena.add("b", {2}, {.role = ParamRole::bias});
  arena.add("k", {2, 1, 2, 1});  // a "convolution": 2 output channels of 2 weights each
  arena.freeze();
  // theta: rows of w (3, 4, 0) and (1, 2, 2) (norms 5 and 3); b; channels of k (0, 2), (6, 8) (norms 2, 10).
  const std::vector<double> theta = {3, 4, 0, 1, 2, 2, 9, 9, 0, 2, 6, 8};
  std::vector<double> d = {1, 0, 0, 0, 0, -2, 5, 5, 3, 4, 0, 0};
  diag::filter_normalize(arena, theta, d);
  // Row 1 of w: (1,0,0) scaled to norm 5; row 2: (0,0,-2) to norm 3; b: 0; channel 1: (3,4) to
  // norm 2 = (1.2, 1.6); channel 2: a zero filter stays zero.
  const std::vector<double> expected = {5, 0, 0, 0, 0, -3, 0, 0, 1.2, 1.6, 0, 0};
  ASSERT_EQ(d.size(), expected.size());
  for (std::size_t i = 0; i < d.size(); ++i) EXPECT_NEAR(d[i], expected[i], 1e-15) << i;
  // A random direction comes out with each filter's norm equal to theta's.
  Rng rng(4);
  const std::vector<double> r = diag::filter_normalized_direction(arena, theta, rng);
  EXPECT_NEAR(std::hypot(r[0], r[1], r[2]), 5.0, 1e-12);
  EXPECT_NEAR(std::hypot(r[3], r[4], r[5]), 3.0, 1e-12);
  EXPECT_EQ(r[6], 0.0);
  EXPECT_NEAR(std::hypot(r[8], r[9]), 2.0, 1e-12);
  EXPECT_NEAR(std::hypot(r[10], r[11]), 10.0, 1e-12);
}

TEST(InterpolateBuffers, MeansLinearlyVariancesGeometricallyExactAtTheEnds) {
  ParameterArena arena(DType::f32);
  arena.add("w", {1});
  arena.add_buffer("layers.1.running_mean", {2});
  arena.add_buffer("layers.1.running_var", {2}, 1.0);
  arena.freeze();
  const std::vector<double> b0 = {0.0, 1.0, 1.0, 0.3}, b1 = {2.0, -1.0, 0.04, 0.7};
  EXPECT_EQ(diag::interpolate_buffers(arena, b0, b1, 0.0), b0);
  EXPECT_EQ(diag::interpolate_buffers(arena, b0, b1, 1.0), b1);
  const std::vector<double> h = diag::interpolate_buffers(arena, b0, b1, 0.5);
  EXPECT_DOUBLE_EQ(h[0], 1.0);
  EXPECT_DOUBLE_EQ(h[1], 0.0);
  EXPECT_NEAR(h[2], 0.2, 1e-15);  // sqrt(1 * 0.04)
  EXPECT_NEAR(h[3], std::sqrt(0.21), 1e-15);
  // Beyond the ends a variance stays positive: 1^(-0.25) 0.04^1.25 > 0, where the linear
  // 1.25 * 0.04 - 0.25 * 1 < 0.
  const std::vector<double> far = diag::interpolate_buffers(arena, b0, b1, 1.25);
  EXPECT_NEAR(far[2], std::pow(0.04, 1.25), 1e-15);
  EXPECT_DOUBLE_EQ(far[0], 2.5);
}

TEST(Interpolation, BatchNormBuffersMoveWithTheWeights) {
  // Linear(3 -> 4), BatchNorm(4), Linear(4 -> 2): at alpha = 0.5 the evaluation uses the
  // interpolated running statistics (checked by evaluating with them set here by hand).
  ParameterArena arena(DType::f64);
  nn::Sequential net(arena);
  net.add(nn::Linear(3, 4));
  net.add(nn::BatchNorm(4));
  net.add(nn::Linear(4, 2));
  arena.freeze();
  const std::size_t n = static_cast<std::size_t>(arena.size()), nb = static_cast<std::size_t>(arena.buffer_size());
  ASSERT_EQ(nb, 8u);
  diag::Weights t0{random_vector(n, 1, 0.7), std::vector<double>(nb)}, t1{random_vector(n, 2, 0.7), std::vector<double>(nb)};
  for (std::size_t i = 0; i < 4; ++i) t0.buffers[i] = 0.0, t1.buffers[i] = 0.5 + static_cast<double>(i);        // means
  for (std::size_t i = 4; i < 8; ++i) t0.buffers[i] = 1.0, t1.buffers[i] = 0.25 * static_cast<double>(i - 3);  // variances
  const Tensor x = testing::random_tensor({9, 3}, DType::f64, 5, -1, 1);
  const Tensor y = Tensor::from<std::int32_t>({9}, {0, 1, 1, 0, 1, 0, 0, 1, 1});
  const diag::ExampleSet set{x, y};
  const diag::Interpolation r =
      diag::interpolate(net, arena, t0, t1, std::span<const diag::ExampleSet>(&set, 1), {.points = 5, .chunk = 9});
  ASSERT_EQ(r.alpha[3], 0.5);  // -0.25, 0 (added), 0.125, 0.5, ...
  std::vector<double> theta(n);
  for (std::size_t i = 0; i < n; ++i) theta[i] = 0.5 * t0.values[i] + 0.5 * t1.values[i];
  std::vector<double> b(nb);
  for (std::size_t i = 0; i < 4; ++i) b[i] = 0.5 * t1.buffers[i];
  for (std::size_t i = 4; i < 8; ++i) b[i] = std::sqrt(t1.buffers[i]);
  diag::write_weights(arena, theta, b);
  net.set_training(false);
  autodiff::Tape tape;
  const double expected = loss::cross_entropy(net.forward(tape, tape.constant(x)), y).value().item();
  EXPECT_NEAR(r.curves[0][3].loss, expected, 1e-13);
}

}  // namespace
}  // namespace descent
