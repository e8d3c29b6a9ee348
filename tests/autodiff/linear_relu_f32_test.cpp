// The float32 fused linear + ReLU node (autodiff/linear_relu.hpp, kernels::linear: one oneDNN
// matmul primitive with the bias and the ReLU in it) against the same network recorded as
// separate linear and relu nodes (dnnl_sgemm after the bias rows, then the ReLU pass): the
// loss, the gradient and a Hessian-vector product agree to float32 rounding (the product's
// terms are summed in another order, nothing else differs), and the fused node really ran.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "descent/autodiff/linear_relu.hpp"
#include "descent/autodiff/ops.hpp"
#include "descent/autodiff/tape.hpp"
#include "descent/loss/loss.hpp"
#include "descent/nn/initialize.hpp"
#include "descent/nn/module.hpp"
#include "descent/tensor/arena.hpp"
#include "descent/tensor/kernels.hpp"
#include "support/distance.hpp"

namespace descent {
namespace {

using kernels::GemmBackend;

struct BackendGuard {
  ~BackendGuard() { kernels::set_gemm_backend(GemmBackend::automatic); }
};

struct Result {
  std::size_t nodes = 0;
  double loss = 0;
  std::vector<float> grad, hv;
};

// An MLP with two ReLU hidden layers through nn::Sequential (which calls linear_relu) at the
// given backend: loss, gradient, H v.
Result run(GemmBackend backend, std::int64_t batch) {
  kernels::set_gemm_backend(backend);
  ParameterArena arena{DType::f32};
  nn::Sequential net = nn::mlp(arena, {40, 64, 32, 5}, nn::Activation::relu);
  nn::initialize(arena, {.weights = init::Scheme::glorot_uniform, .seed = 5});
  Tensor x = Tensor::empty({batch, 40}, DType::f32), y = Tensor::empty({batch}, DType::i32);
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = std::sin(0.37f * static_cast<float>(i + 1));
  for (std::int64_t i = 0; i < batch; ++i) y.data<std::int32_t>()[i] = static_cast<std::int32_t>((i * 7) % 5);
  Result r;
  {
    autodiff::Tape tape;
    autodiff::Var loss = loss::cross_entropy(net.forward(tape, tape.constant(x)), y);
    r.nodes = tape.size();
    r.loss = loss.value().at(0);
    tape.backward(loss);
    const Tensor& g = arena.grads();
    r.grad.assign(g.data<float>(), g.data<float>() + g.numel());
  }
  autodiff::Tape tape;
  autodiff::Var loss = loss::cross_entropy(net.forward(tape, tape.constant(x)), y);
  Tensor v = Tensor::empty({arena.size()}, DType::f32), hv = Tensor::empty({arena.size()}, DType::f32);
  for (std::int64_t i = 0; i < v.numel(); ++i) v.data<float>()[i] = std::cos(0.13f * static_cast<float>(i));
  tape.hvp(loss, v, hv);
  r.hv.assign(hv.data<float>(), hv.data<float>() + hv.numel());
  return r;
}

using testing::relative_distance;

TEST(LinearReluF32, FusedNodeGivesTheUnfusedLossGradientAndHvToRounding) {
  if (!kernels::gemm_backend_has_onednn()) GTEST_SKIP() << "descent was built without oneDNN";
  BackendGuard guard;
  for (std::int64_t batch : {std::int64_t{7}, std::int64_t{48}, std::int64_t{130}}) {
    const Result fused = run(GemmBackend::onednn_matmul, batch);
    const Result separate = run(GemmBackend::onednn, batch);
    // input, 6 parameters, then 2 fused nodes and the last linear, or 2 x (linear, relu) and it
    EXPECT_EQ(separate.nodes, fused.nodes + 2) << "the fused node did not run, batch " << batch;
    EXPECT_NEAR(fused.loss, separate.loss, 1e-6 * std::abs(separate.loss)) << "batch " << batch;
    ASSERT_EQ(fused.grad.size(), separate.grad.size());
    // float32 rounding is ~1e-7 per sum; a gradient without the ReLU mask (or the bias
    // gradient left out) is off by O(1)
    EXPECT_LT(relative_distance(fused.grad, separate.grad), 1e-5) << "batch " << batch;
    EXPECT_LT(relative_distance(fused.hv, separate.hv), 1e-5) << "batch " << batch;
    EXPECT_GT(relative_distance(fused.hv, std::vector<float>(fused.hv.size(), 0.0f)), 0.5) << "H v is not 0";
  }
}

TEST(LinearReluF32, AutomaticFusesLargeBatchesOnly) {
  if (!kernels::gemm_backend_has_onednn()) GTEST_SKIP() << "descent was built without oneDNN";
  BackendGuard guard;
  const std::size_t separate = run(GemmBackend::onednn, 32).nodes;
  const Result small = run(GemmBackend::automatic, 32), large = run(GemmBackend::automatic, 128);
  EXPECT_EQ(small.nodes, separate);
  // on an AVX-512 CPU (the rule's other condition) the two hidden layers fuse at 128 rows
  EXPECT_EQ(large.nodes, kernels::fused_linear(DType::f32, 128, 64) ? separate - 2 : separate);
}

TEST(LinearReluF32, WithoutFusionItIsLinearThenReluBitForBit) {
  BackendGuard guard;
  kernels::set_gemm_backend(GemmBackend::openblas);
  Tensor xv = Tensor::empty({130, 7}, DType::f32), wv = Tensor::empty({5, 7}, DType::f32);
  Tensor bv = Tensor::empty({5}, DType::f32);
  for (std::int64_t i = 0; i < xv.numel(); ++i) xv.data<float>()[i] = std::sin(0.37f * static_cast<float>(i + 1));
  for (std::int64_t i = 0; i < wv.numel(); ++i) wv.data<float>()[i] = std::sin(0.11f * static_cast<float>(i + 1));
  for (std::int64_t i = 0; i < bv.numel(); ++i) bv.data<float>()[i] = std::sin(0.7f * static_cast<float>(i + 1));
  autodiff::Tape a, b;
  autodiff::Var ha = autodiff::linear_relu(a.constant(xv), a.constant(wv), a.constant(bv));
  autodiff::Var hb = autodiff::relu(autodiff::linear(b.constant(xv), b.constant(wv), b.constant(bv)));
  EXPECT_EQ(a.size(), b.size());
  EXPECT_EQ(std::vector<float>(ha.value().data<float>(), ha.value().data<float>() + ha.value().numel()),
            std::vector<float>(hb.value().data<float>(), hb.value().data<float>() + hb.value().numel()));
}

}  // namespace
}  // namespace descent
