#pragma once
// The bf16 products of a linear node (y = x w^T + b) under mixed precision
// (descent/tensor/precision.hpp): the forward converts x and w to bf16 once and keeps them
// for the backward, which converts the output gradient once for both of its products.
// Accumulation and every result stay float32.
#include <cstdint>
#include <vector>

#include "descent/tensor/tensor.hpp"

namespace descent::autodiff {

class LinearBf16 {
 public:
  // Whether the node's products run in bf16: mixed precision on and float32 operands.
  static bool wanted(const Tensor& x);
  bool on() const { return on_; }

  // y <- x w^T + beta y; keeps bf16(x) and bf16(w).
  void forward(const Tensor& x, const Tensor& w, const Tensor& y, double beta);

  // bf16(gy), made once per backward for both products.
  struct Grad {
    std::vector<std::uint16_t> gy;    // gy, [B, out]
    std::vector<std::uint16_t> gy_t;  // gy^T, [out, B]
  };
  Grad convert_grad(const Tensor& gy, bool for_input, bool for_weight) const;
  // gx <- gy w + beta gx
  void input_grad(const Grad& g, const Tensor& gx, double beta) const;
  // gw <- gy^T x + beta gw
  void weight_grad(const Grad& g, const Tensor& gw, double beta) const;

 private:
  bool on_ = false;
  std::int64_t batch_ = 0, in_ = 0, out_ = 0;
  std::vector<std::uint16_t> x_;  // [B, in]
  std::vector<std::uint16_t> w_;  // [out, in]
};

}  // namespace descent::autodiff
