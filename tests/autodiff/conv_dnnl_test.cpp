// The two float32 convolution backends (oneDNN's direct convolutions and descent's im2col +
// sgemm, autodiff::ConvBackend) agree: values, gradients of x, w and b, tangents and R(grad)
// of an exact Hessian-vector product, on several geometries (stride, padding, no bias, one
// example, channels not a multiple of a SIMD width). Both against float64 too.
#include <gtest/gtest.h>

#include <vector>

#include "descent/autodiff/conv.hpp"
#include "descent/autodiff/ops.hpp"
#include "support/gradcheck.hpp"

namespace descent {
namespace {

using autodiff::Tape;
using autodiff::Var;

struct Case {
  std::int64_t batch, c_in, h, w, c_out, k, stride, pad;
  bool bias;
};

struct Outputs {
  std::vector<Tensor> all;  // y, gx, gw, gb, y', R(gx), R(gw), R(gb)
};

// L = sum(c (.) y) + 1/2 sum(y^2) on y = conv(x, w, b), its gradient, and its Hv along tangents.
Outputs run(const Case& c, DType dtype) {
  const Tensor x = testing::random_tensor({c.batch, c.c_in, c.h, c.w}, DType::f64, 1).to(dtype);
  const Tensor w = testing::random_tensor({c.c_out, c.c_in, c.k, c.k}, DType::f64, 2).to(dtype);
  const Tensor b = testing::random_tensor({c.c_out}, DType::f64, 3).to(dtype);
  const autodiff::Conv2dOptions o{.stride = c.stride, .padding = c.pad};
  const std::int64_t ho = (c.h + 2 * c.pad - c.k) / c.stride + 1, wo = (c.w + 2 * c.pad - c.k) / c.stride + 1;
  const Tensor coef = testing::random_tensor({c.batch, c.c_out, ho, wo}, DType::f64, 4).to(dtype);
  Tape t;
  Var xv = t.variable(x), wv = t.variable(w), bv = c.bias ? t.variable(b) : Var{};
  t.set_tangent(xv, testing::random_tensor(x.shape(), DType::f64, 5).to(dtype));
  t.set_tangent(wv, testing::random_tensor(w.shape(), DType::f64, 6).to(dtype));
  if (c.bias) t.set_tangent(bv, testing::random_tensor(b.shape(), DType::f64, 7).to(dtype));
  Var y = autodiff::conv2d(xv, wv, bv, o);
  Var loss = autodiff::add(autodiff::sum(autodiff::mul(t.constant(coef), y)),
                           autodiff::scale(autodiff::sum(autodiff::square(y)), 0.5));
  t.hvp(loss, Tensor(), Tensor());
  Outputs out;
  out.all = {y.value().clone(), t.grad(xv).clone(), t.grad(wv).clone()};
  if (c.bias) out.all.push_back(t.grad(bv).clone());
  out.all.push_back(t.grad_tangent(xv).clone());
  out.all.push_back(t.grad_tangent(wv).clone());
  if (c.bias) out.all.push_back(t.grad_tangent(bv).clone());
  return out;
}

TEST(ConvBackends, OneDnnAndIm2colAgreeInFloat32) {
  if (!autodiff::conv_backend_has_onednn()) GTEST_SKIP() << "built without oneDNN (libdnnl-dev)";
  // oneDNN runs the layers with >= 8 input channels (conv_ops.cpp, use_dnnl)
  const Case cases[] = {{4, 8, 9, 9, 5, 3, 1, 1, true},    {2, 16, 14, 14, 32, 5, 1, 2, true},
                        {3, 9, 11, 7, 4, 3, 2, 0, false},  {1, 12, 28, 28, 8, 5, 1, 2, true},
                        {5, 10, 6, 6, 3, 2, 2, 1, true},   {2, 3, 8, 8, 4, 3, 1, 1, true}};
  const char* names[] = {"y", "gx", "gw", "gb", "R(gx)", "R(gw)", "R(gb)"};
  for (const Case& c : cases) {
    SCOPED_TRACE("batch " + std::to_string(c.batch) + ", " + std::to_string(c.c_in) + " -> " + std::to_string(c.c_out) +
                 ", kernel " + std::to_string(c.k) + ", stride " + std::to_string(c.stride) + ", pad " + std::to_string(c.pad));
    autodiff::set_conv_backend(autodiff::ConvBackend::im2col);
    const Outputs im2col = run(c, DType::f32);
    const Outputs exact = run(c, DType::f64);
    autodiff::set_conv_backend(autodiff::ConvBackend::automatic);
    const Outputs onednn = run(c, DType::f32);
    ASSERT_EQ(onednn.all.size(), im2col.all.size());
    for (std::size_t i = 0; i < onednn.all.size(); ++i) {
      const std::string what = c.bias ? names[i] : std::vector<const char*>{"y", "gx", "gw", "R(gx)", "R(gw)"}[i];
      EXPECT_LT(testing::relative_difference(onednn.all[i].to(DType::f64), exact.all[i]), 2e-5) << what;
      EXPECT_LT(testing::relative_difference(im2col.all[i].to(DType::f64), exact.all[i]), 2e-5) << what;
      EXPECT_GT(testing::relative_difference(exact.all[i], Tensor::zeros(exact.all[i].shape(), DType::f64)), 0.0) << what;
    }
  }
  autodiff::set_conv_backend(autodiff::ConvBackend::automatic);
}

// Accumulation: two convolutions of one input add their gradients into the same sink
// (beta = 1 on the oneDNN path), and the value is the same as computing them apart.
TEST(ConvBackends, GradientsAccumulateIntoOneSink) {
  const Tensor x = testing::random_tensor({2, 8, 8, 8}, DType::f64, 11).to(DType::f32);
  const Tensor w1 = testing::random_tensor({4, 8, 3, 3}, DType::f64, 12).to(DType::f32);
  const Tensor w2 = testing::random_tensor({4, 8, 3, 3}, DType::f64, 13).to(DType::f32);
  std::vector<Tensor> grads;
  for (const auto backend : {autodiff::ConvBackend::automatic, autodiff::ConvBackend::im2col}) {
    autodiff::set_conv_backend(backend);
    Tape t;
    Var xv = t.variable(x);
    Var y = autodiff::add(autodiff::sum(autodiff::square(autodiff::conv2d(xv, t.constant(w1), Var{}, {.padding = 1}))),
                          autodiff::sum(autodiff::conv2d(xv, t.constant(w2), Var{}, {.stride = 2})));
    t.backward(y);
    grads.push_back(t.grad(xv).clone().to(DType::f64));
  }
  autodiff::set_conv_backend(autodiff::ConvBackend::automatic);
  EXPECT_LT(testing::relative_difference(grads[0], grads[1]), 1e-5);
}

}  // namespace
}  // namespace descent
