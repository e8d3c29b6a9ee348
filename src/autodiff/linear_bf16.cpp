#include "linear_bf16.hpp"

#include <algorithm>
#include <limits>
#include <memory>
#include <string>

#include "descent/autodiff/linear_relu.hpp"
#include "descent/autodiff/ops.hpp"
#include "descent/error.hpp"
#include "descent/tensor/kernels.hpp"
#include "descent/tensor/parallel.hpp"
#include "descent/tensor/precision.hpp"
#include "node_util.hpp"

namespace descent::autodiff {

namespace bf = kernels::bf16;

bool LinearBf16::wanted(const Tensor& x) {
  return precision::products() == precision::Products::bf16 && x.dtype() == DType::f32;
}

void LinearBf16::convert_inputs(const Tensor& x, const Tensor& w, const bf::Buffer* x16) {
  on_ = true;
  batch_ = x.dim(0);
  in_ = x.dim(1);
  out_ = w.dim(0);
  if (x16 != nullptr) {
    x_ = *x16;  // shares the buffer
  } else {
    bf::convert(x.data<float>(), batch_ * in_, x_.resize(batch_ * in_));
  }
  bf::convert(w.data<float>(), out_ * in_, w_.resize(out_ * in_));
}

void LinearBf16::forward_relu(const Tensor& x, const Tensor& w, const Tensor& b, bf::Buffer& h16,
                              const bf::Buffer* x16) {
  convert_inputs(x, w, x16);
  bf::gemm_bias_relu(false, true, batch_, out_, in_, x_.data(), in_, w_.data(), in_,
                     b.defined() ? b.data<float>() : nullptr, h16.resize(batch_ * out_), out_);
}

void LinearBf16::forward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y, const bf::Buffer* x16) {
  convert_inputs(x, w, x16);
  const std::uint16_t* xb = x_.data();
  const std::uint16_t* wb = w_.data();
  // y [B, out] = x [B, in] . (w [out, in])^T (+ b on every row)
  if (b.defined()) {
    bf::gemm_bias(false, true, batch_, out_, in_, xb, in_, wb, in_, b.data<float>(), y.data<float>(), out_);
  } else {
    bf::gemm(false, true, batch_, out_, in_, xb, in_, wb, in_, 0.0f, y.data<float>(), out_);
  }
}

LinearBf16::Grad LinearBf16::convert_grad(const Tensor& gy) const {
  Grad g;
  bf::convert(gy.data<float>(), batch_ * out_, g.gy.resize(batch_ * out_));
  return g;
}

void LinearBf16::input_grad(const Grad& g, const Tensor& gx, double beta) const {
  // gx [B, in] = gy [B, out] . w [out, in]
  bf::gemm(false, false, batch_, in_, out_, g.gy.data(), out_, w_.data(), in_, static_cast<float>(beta),
           gx.data<float>(), in_);
}

void LinearBf16::weight_grad(const Grad& g, const Tensor& gw, double beta) const {
  // gw [out, in] = gy^T [out, B] . x [B, in]; gy^T read from gy [B, out] through its strides
  bf::gemm(true, false, out_, in_, batch_, g.gy.data(), out_, x_.data(), in_, static_cast<float>(beta),
           gw.data<float>(), in_);
}

}  // namespace descent::autodiff

namespace descent::autodiff {
namespace {

// ============================================================================
// linear_relu: h = relu(y), y = x w^T + b; m = (h > 0)
// ============================================================================
// The tangent rules, shared by the bf16 node and the float32 one (both in float32).
class LinearReluTangents : public Node {
 public:
  const char* name() const override { return "linear_relu"; }
  bool has_bias() const { return num_inputs == 3; }

  // m ⊙ a, float32 (the tangent rules run in float32, as the linear node's do)
  Tensor masked(const Tensor& a) const {
    Tensor out = Tensor::empty(a.shape(), DType::f32);
    const float* h = value.data<float>();
    const float* s = a.data<float>();
    // both loads unconditional: a select the compiler vectorizes (a conditional load of s[i]
    // stays a branch per element, mispredicted on about half of a ReLU mask)
    detail::store<float>(out, 0.0, [=](std::int64_t i) {
      const float si = s[i];
      return h[i] > 0.0f ? si : 0.0f;
    });
    return out;
  }

  // y' = x' w^T + x w'^T + b' ;  h' = m y'
  void tangent_forward(Tape& t) override {
    Node& x = t.node(input[0]);
    Node& w = t.node(input[1]);
    Tensor y = Tensor::zeros(value.shape(), DType::f32);
    if (has_bias() && t.has_tangent(input[2])) {
      const float* bt = t.node(input[2]).tangent.data<float>();
      float* d = y.data<float>();
      const std::int64_t rows = y.dim(0), cols = y.dim(1);
      for (std::int64_t r = 0; r < rows; ++r) {
        for (std::int64_t c = 0; c < cols; ++c) d[r * cols + c] = bt[c];
      }
    }
    if (x.tangent.defined()) kernels::gemm(x.tangent, false, w.value, true, y, 1.0, 1.0);
    if (w.tangent.defined()) kernels::gemm(x.value, false, w.tangent, true, y, 1.0, 1.0);
    tangent = masked(y);
  }

  // R(gy) = m R(gh) (ReLU's second derivative is 0) ;  R(gx) += R(gy) w + gy w' ;
  // R(gw) += R(gy)^T x + gy^T x' ;  R(gb) += sum_rows(R(gy))
  void tangent_backward(Tape& t) override {
    Node& x = t.node(input[0]);
    Node& w = t.node(input[1]);
    const bool rg = grad_tangent.defined();
    const Tensor gy = masked(grad);
    const Tensor rgy = rg ? masked(grad_tangent) : Tensor();
    double beta = 0.0;
    if (x.requires_grad && (rg || w.tangent.defined())) {
      detail::Sink s(t, input[0], true);
      if (rg) {
        Tensor d = s.next(beta);
        kernels::gemm(rgy, false, w.value, false, d, 1.0, beta);
      }
      if (w.tangent.defined()) {
        Tensor d = s.next(beta);
        kernels::gemm(gy, false, w.tangent, false, d, 1.0, beta);
      }
    }
    if (w.requires_grad && (rg || x.tangent.defined())) {
      detail::Sink s(t, input[1], true);
      if (rg) {
        Tensor d = s.next(beta);
        kernels::gemm(rgy, true, x.value, false, d, 1.0, beta);
      }
      if (x.tangent.defined()) {
        Tensor d = s.next(beta);
        kernels::gemm(gy, true, x.tangent, false, d, 1.0, beta);
      }
    }
    if (has_bias() && t.requires_grad(input[2]) && rg) {
      detail::Sink s(t, input[2], true);
      Tensor gb = s.next(beta);
      kernels::sum_rows(rgy, gb, beta);
    }
  }
};

// Under mixed precision: one bf16 product with the bias and ReLU in it (LinearBf16::forward_relu).
class LinearReluNode final : public LinearReluTangents {
 public:
  LinearBf16 bf16;
  bf::Buffer h16;  // bf16(h) [B, out], as the product wrote it; value = widened h16

  // gy = m gh ;  gx += gy w ;  gw += gy^T x ;  gb += sum_rows(gy)
  void backward(Tape& t) override {
    Node& x = t.node(input[0]);
    Node& w = t.node(input[1]);
    LinearBf16::Grad g16;
    double beta_b = 0.0;
    Tensor gb;
    if (has_bias() && t.requires_grad(input[2])) gb = t.grad_sink(input[2], beta_b);
    bf::relu_backward(grad.data<float>(), h16.data(), bf16.batch(), bf16.out(), g16.gy.resize(grad.numel()),
                      gb.defined() ? gb.data<float>() : nullptr, static_cast<float>(beta_b));
    double beta = 0.0;
    if (x.requires_grad) {
      Tensor gx = t.grad_sink(input[0], beta);
      bf16.input_grad(g16, gx, beta);
    }
    if (w.requires_grad) {
      Tensor gw = t.grad_sink(input[1], beta);
      bf16.weight_grad(g16, gw, beta);
    }
  }
};

// float32: the value from kernels::linear (oneDNN's matmul primitive with the bias and
// the ReLU in it); the gradient products as the linear node's, on the masked gradient.
class LinearReluF32Node final : public LinearReluTangents {
 public:
  // gy = m gh ;  gx += gy w ;  gw += gy^T x ;  gb += sum_rows(gy)   (gw, gb only where wanted)
  void backward(Tape& t) override {
    Node& x = t.node(input[0]);
    Node& w = t.node(input[1]);
    const Tensor gy = masked(grad);
    double beta = 0.0;
    if (x.requires_grad) {
      Tensor gx = t.grad_sink(input[0], beta);
      kernels::gemm(gy, false, w.value, false, gx, 1.0, beta);
    }
    if (t.wants_grad(input[1])) {
      Tensor gw = t.grad_sink(input[1], beta);
      kernels::gemm(gy, true, x.value, false, gw, 1.0, beta);
    }
    if (has_bias() && t.wants_grad(input[2])) {
      Tensor gb = t.grad_sink(input[2], beta);
      kernels::sum_rows(gy, gb, beta);
    }
  }
};

// A data leaf with the bf16 bits of its value (constant_bf16).
class ConstantBf16Node final : public Node {
 public:
  const char* name() const override { return "constant_bf16"; }
  bf::Buffer x16;
};

}  // namespace

const bf::Buffer* bf16_value(Tape& t, std::int32_t id) {
  Node& node = t.node(id);
  if (auto* n = dynamic_cast<LinearReluNode*>(&node)) return &n->h16;
  if (auto* c = dynamic_cast<ConstantBf16Node*>(&node)) return &c->x16;
  return nullptr;
}

Var constant_bf16(Tape& t, const Tensor& x, const bf::Buffer& x16) {
  if (x.dtype() != DType::f32 || x16.data() == nullptr || x16.size() < x.numel()) {
    throw ShapeError("constant_bf16: expected float32 values and at least " + std::to_string(x.numel()) +
                     " bf16 values, got " + dtype_name(x.dtype()) + " and " + std::to_string(x16.size()));
  }
  auto node = std::make_unique<ConstantBf16Node>();
  node->value = x;
  node->x16 = x16;
  return t.record(std::move(node));
}

bool fuses_linear_relu(Var x) {
  if (!x.valid()) return false;
  const Tensor& xv = x.value();
  // float32: linear_relu checks the layer's width too, and is relu(linear(...)) where it does not fuse
  return LinearBf16::wanted(xv) ||
         (xv.ndim() == 2 && kernels::fused_linear(xv.dtype(), xv.dim(0), std::numeric_limits<std::int64_t>::max()));
}

Var linear_relu(Var x, Var w, Var b) {
  if (!fuses_linear_relu(x)) return relu(linear(x, w, b));
  const Tensor& xv = x.value();
  const Tensor& wv = w.value();
  if (xv.ndim() != 2 || wv.ndim() != 2 || xv.dim(1) != wv.dim(1) || wv.dtype() != DType::f32 ||
      (b.valid() && (b.value().numel() != wv.dim(0) || b.value().dtype() != DType::f32))) {
    return relu(linear(x, w, b));  // linear's own checks name the problem
  }
  if (!LinearBf16::wanted(xv)) {
    if (!kernels::fused_linear(xv.dtype(), xv.dim(0), wv.dim(0))) return relu(linear(x, w, b));
    auto node = std::make_unique<LinearReluF32Node>();
    node->value = Tensor::empty(Shape{xv.dim(0), wv.dim(0)}, DType::f32);
    kernels::linear(xv, wv, b.valid() ? b.value() : Tensor(), node->value, true);
    return detail::make(*x.tape, std::move(node), {x, w, b});
  }
  auto node = std::make_unique<LinearReluNode>();
  node->bf16.forward_relu(xv, wv, b.valid() ? b.value() : Tensor(), node->h16, bf16_value(*x.tape, x.id));
  node->value = Tensor::empty(Shape{xv.dim(0), wv.dim(0)}, DType::f32);
  bf::widen(node->h16.data(), node->value.numel(), node->value.data<float>());
  return detail::make(*x.tape, std::move(node), {x, w, b});
}

}  // namespace descent::autodiff
