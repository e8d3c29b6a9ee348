// The chunked Hessian operator: its dense Hessian against central differences of gradients
// taken on one plain tape, its loss and gradient against that tape, chunk-size and
// thread-count independence, float32 models, refresh() and bad inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "descent/diag/hessian.hpp"
#include "descent/diag/lanczos.hpp"
#include "descent/init/rng.hpp"
#include "descent/nn/normalization.hpp"
#include "descent/tensor/parallel.hpp"
#include "problem.hpp"
#include "support/finite_hessian.hpp"

namespace descent {
namespace {

using diag::HessianOperator;
using diag_testing::Problem;
using diag_testing::relative_difference;

std::vector<double> random_vector(std::int64_t n, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<double> v(static_cast<std::size_t>(n));
  for (double& x : v) x = rng.normal();
  return v;
}

void expect_dense_hessian_matches_finite_differences(nn::Activation act) {
  Problem p(DType::f64, {4, 6, 3}, act, 23, 7);
  const std::int64_t n = p.arena.size();
  ASSERT_EQ(n, 4 * 6 + 6 + 6 * 3 + 3);
  HessianOperator h(p.net, p.arena, p.x, p.labels, {.chunk = 5});
  ASSERT_EQ(h.chunks(), 5);
  const std::vector<double> dense = diag::dense_hessian(h);
  EXPECT_EQ(h.products(), n);
  // Column j by central differences of the plain tape's gradient: (g(theta + h e_j) - g(theta - h e_j)) / 2h.
  const testing::HessianAgreement a = testing::compare_hessians(
      dense, testing::central_difference_hessian(p.arena.values().data<double>(), n, [&] { return p.gradient(); }), n);
  EXPECT_GT(a.scale, 1e-2);
  EXPECT_LT(a.worst, 1e-7);
  EXPECT_LT(a.asym, 1e-14 * a.scale);  // exact products: symmetric to rounding
}

TEST(HessianOperator, DenseTanhHessianMatchesFiniteDifferencesOfGradients) {
  expect_dense_hessian_matches_finite_differences(nn::Activation::tanh);
}
TEST(HessianOperator, DenseSigmoidHessianMatchesFiniteDifferencesOfGradients) {
  expect_dense_hessian_matches_finite_differences(nn::Activation::sigmoid);
}

TEST(HessianOperator, LossAndGradientAreThoseOfAllExamples) {
  Problem p(DType::f64, {5, 7, 4}, nn::Activation::tanh, 31, 3);
  std::vector<double> g;
  const double loss = p.loss_and_gradient(g);
  for (std::int64_t chunk : {1, 4, 31, 100}) {
    HessianOperator h(p.net, p.arena, p.x, p.labels, {.chunk = chunk});
    EXPECT_NEAR(h.loss(), loss, 1e-14 * loss) << "chunk " << chunk;
    EXPECT_LT(relative_difference(h.gradient(), g), 1e-13) << "chunk " << chunk;
    EXPECT_EQ(h.examples(), 31);
  }
}

TEST(HessianOperator, ChunkSizeDoesNotChangeTheProduct) {
  Problem p(DType::f64, {5, 7, 4}, nn::Activation::tanh, 31, 4);
  const std::int64_t n = p.arena.size();
  const std::vector<double> v = random_vector(n, 9);
  // The product of one tape over all examples (the tape's own hvp).
  autodiff::Tape tape;
  autodiff::Var loss = loss::cross_entropy(p.net.forward(tape, tape.constant(p.x)), p.labels);
  Tensor hv_full = Tensor::empty({n}, DType::f64);
  tape.hvp(loss, Tensor::from<double>({n}, v), hv_full);
  std::vector<double> expected(hv_full.span<double>().begin(), hv_full.span<double>().end());
  // Chunks of unequal sizes (31 = 4 * 7 + 3) are weighted by their sizes.
  for (std::int64_t chunk : {1, 7, 8, 31}) {
    HessianOperator h(p.net, p.arena, p.x, p.labels, {.chunk = chunk, .parallel_chunks = 3});
    EXPECT_LT(relative_difference(h.apply(v), expected), 1e-13) << "chunk " << chunk;
  }
}

TEST(HessianOperator, FiguresDoNotDependOnTheThreadCount) {
  Problem p(DType::f64, {12, 16, 5}, nn::Activation::tanh, 61, 5);
  std::vector<std::vector<double>> directions;
  for (std::uint64_t seed = 10; seed < 42; ++seed) directions.push_back(random_vector(p.arena.size(), seed));
  const int saved = num_threads();
  std::vector<std::vector<double>> reference_hv;
  std::vector<double> reference_g;
  double reference_loss = 0.0;
  for (int threads : {1, 2, 3, 4}) {
    set_num_threads(threads);
    // Chunks in parallel whatever their size (parallel_threshold 0). Thirty-two products per
    // thread count: a sum in the order the threads finish would differ in some of them.
    HessianOperator h(p.net, p.arena, p.x, p.labels, {.chunk = 4, .parallel_chunks = 16, .parallel_threshold = 0});
    for (std::size_t k = 0; k < directions.size(); ++k) {
      const std::vector<double> hv = h.apply(directions[k]);
      if (threads == 1) {
        reference_hv.push_back(hv);
        continue;
      }
      // Bit for bit.
      EXPECT_EQ(std::memcmp(hv.data(), reference_hv[k].data(), hv.size() * sizeof(double)), 0) << threads << " threads, product " << k;
    }
    if (threads == 1) {
      reference_g = h.gradient();
      reference_loss = h.loss();
      continue;
    }
    EXPECT_EQ(std::memcmp(h.gradient().data(), reference_g.data(), reference_g.size() * sizeof(double)), 0) << threads << " threads";
    EXPECT_EQ(h.loss(), reference_loss) << threads << " threads";
  }
  set_num_threads(saved);
}

TEST(HessianOperator, Float32ModelAgreesWithItsFloat64Copy) {
  Problem p64(DType::f64, {6, 8, 3}, nn::Activation::tanh, 40, 6);
  Problem p32(DType::f32, {6, 8, 3}, nn::Activation::tanh, 40, 6);
  // Exactly the same parameters and inputs (the float32 values, widened).
  p64.arena.values().copy_from(p32.arena.values().to(DType::f64));
  p64.x.copy_from(p32.x.to(DType::f64));
  HessianOperator h64(p64.net, p64.arena, p64.x, p64.labels, {.chunk = 16});
  HessianOperator h32(p32.net, p32.arena, p32.x, p32.labels, {.chunk = 16});
  const std::vector<double> v = random_vector(h64.dim(), 11);
  const double err = relative_difference(h32.apply(v), h64.apply(v));
  EXPECT_LT(err, 1e-5);
  EXPECT_GT(err, 0.0);  // it really ran in float32
  EXPECT_LT(relative_difference(h32.gradient(), h64.gradient()), 1e-5);
  EXPECT_NEAR(h32.loss(), h64.loss(), 1e-5 * h64.loss());
  EXPECT_EQ(h32.dtype(), DType::f32);
  EXPECT_EQ(diag::as_operator(h32).zero_tolerance, diag::zero_tolerance_f32);
  EXPECT_EQ(diag::as_operator(h64).zero_tolerance, diag::zero_tolerance_f64);
}

TEST(HessianOperator, RefreshFollowsTheParameters) {
  Problem p(DType::f64, {4, 5, 3}, nn::Activation::tanh, 17, 8);
  HessianOperator h(p.net, p.arena, p.x, p.labels, {.chunk = 6});
  const std::vector<double> v = random_vector(h.dim(), 12);
  const std::vector<double> before = h.apply(v);
  kernels::axpby(0.5, testing::random_tensor({h.dim()}, DType::f64, 99), 1.0, p.arena.values());
  h.refresh();
  std::vector<double> g;
  const double loss = p.loss_and_gradient(g);
  EXPECT_NEAR(h.loss(), loss, 1e-14 * loss);
  EXPECT_LT(relative_difference(h.gradient(), g), 1e-13);
  HessianOperator fresh(p.net, p.arena, p.x, p.labels, {.chunk = 6});
  const std::vector<double> after = h.apply(v);
  EXPECT_LT(relative_difference(after, fresh.apply(v)), 1e-14);
  EXPECT_GT(relative_difference(after, before), 1e-3);
}

TEST(HessianOperator, UsesEvaluationModeAndRestoresTheModelsMode) {
  // Batch normalization in evaluation mode normalizes with its running statistics, so the
  // loss over chunks is the loss over all examples; the model stays in training mode.
  ParameterArena arena(DType::f64);
  nn::Sequential net(arena);
  net.add(nn::Linear(3, 4));
  net.add(nn::BatchNorm(4));
  net.add(nn::Tanh());
  net.add(nn::Linear(4, 2));
  arena.values().copy_from(testing::random_tensor({arena.size()}, DType::f64, 1, -0.9, 0.9));
  Tensor x = testing::random_tensor({10, 3}, DType::f64, 2, -1.0, 1.0);
  Tensor y = Tensor::from<std::int32_t>({10}, {0, 1, 1, 0, 1, 0, 0, 1, 1, 1});
  ASSERT_TRUE(net.training());
  HessianOperator small(net, arena, x, y, {.chunk = 3});
  HessianOperator whole(net, arena, x, y, {.chunk = 10});
  EXPECT_TRUE(net.training());
  EXPECT_NEAR(small.loss(), whole.loss(), 1e-14);
  const std::vector<double> v = random_vector(small.dim(), 3);
  EXPECT_LT(relative_difference(small.apply(v), whole.apply(v)), 1e-13);
}

TEST(HessianOperator, RejectsBadInputs) {
  Problem p(DType::f64, {4, 5, 3}, nn::Activation::tanh, 10, 8);
  auto message = [&](const Tensor& x, const Tensor& y, diag::HessianOptions o) -> std::string {
    try {
      HessianOperator h(p.net, p.arena, x, y, o);
    } catch (const ShapeError& e) {
      return e.what();
    }
    return "(no error)";
  };
  EXPECT_EQ(message(p.x.to(DType::f32), p.labels, {}), "Hessian: the inputs are f32, the parameters are f64");
  EXPECT_EQ(message(p.x, p.labels.rows(0, 9), {}), "Hessian: expects i32 labels [10], got i32 [9]");
  EXPECT_EQ(message(p.x, p.labels, {.chunk = 0}), "Hessian: chunk must be at least 1, got 0");
  EXPECT_EQ(message(p.x.rows(0, 0), p.labels.rows(0, 0), {}), "Hessian: needs at least one example, got inputs [0, 4]");
  HessianOperator h(p.net, p.arena, p.x, p.labels);
  std::vector<double> v(3), hv(3);
  EXPECT_THROW(h.apply(v, hv), ShapeError);
}

}  // namespace
}  // namespace descent
