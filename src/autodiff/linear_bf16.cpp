#include "linear_bf16.hpp"

#include "descent/tensor/precision.hpp"
#include "../tensor/matmul_bf16.hpp"

namespace descent::autodiff {

namespace bf = kernels::bf16;

bool LinearBf16::wanted(const Tensor& x) {
  return precision::products() == precision::Products::bf16 && x.dtype() == DType::f32;
}

void LinearBf16::forward(const Tensor& x, const Tensor& w, const Tensor& y, double beta) {
  on_ = true;
  batch_ = x.dim(0);
  in_ = x.dim(1);
  out_ = w.dim(0);
  x_.resize(static_cast<std::size_t>(batch_ * in_));
  w_.resize(static_cast<std::size_t>(out_ * in_));
  bf::convert(x.data<float>(), batch_ * in_, x_.data());
  bf::convert(w.data<float>(), out_ * in_, w_.data());
  // y [B, out] = x [B, in] . (w [out, in])^T
  bf::gemm(false, true, batch_, out_, in_, x_.data(), in_, w_.data(), in_, static_cast<float>(beta), y.data<float>(),
           out_);
}

LinearBf16::Grad LinearBf16::convert_grad(const Tensor& gy, bool for_input, bool for_weight) const {
  Grad g;
  if (for_input) {
    g.gy.resize(static_cast<std::size_t>(batch_ * out_));
    bf::convert(gy.data<float>(), batch_ * out_, g.gy.data());
  }
  if (for_weight) {
    // gy^T laid out plainly: oneDNN's kernels take a plain source faster than a strided one
    g.gy_t.resize(static_cast<std::size_t>(batch_ * out_));
    bf::convert_transposed(gy.data<float>(), batch_, out_, g.gy_t.data());
  }
  return g;
}

void LinearBf16::input_grad(const Grad& g, const Tensor& gx, double beta) const {
  // gx [B, in] = gy [B, out] . w [out, in]
  bf::gemm(false, false, batch_, in_, out_, g.gy.data(), out_, w_.data(), in_, static_cast<float>(beta),
           gx.data<float>(), in_);
}

void LinearBf16::weight_grad(const Grad& g, const Tensor& gw, double beta) const {
  // gw [out, in] = gy^T [out, B] . x [B, in]
  bf::gemm(false, false, out_, in_, batch_, g.gy_t.data(), batch_, x_.data(), in_, static_cast<float>(beta),
           gw.data<float>(), in_);
}

}  // namespace descent::autodiff
