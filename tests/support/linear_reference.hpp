#pragma once
// The inputs and the reference of the tests of float32 products and dense layers
// (tests/tensor): deterministic values, and one element of y = x w^T + b as a sum in double
// with the absolute sum of its terms, for bounds of k + 2 float roundings.
#include <cmath>
#include <cstdint>

#include "descent/tensor/tensor.hpp"

namespace descent::testing {

// Element i of a test input: sin(scale (i + 1)), in [-1, 1], different per scale.
inline float wave(std::int64_t i, float scale) { return std::sin(scale * static_cast<float>(i + 1)); }

// A dense layer's inputs: x [m, k], w [n, k] and, with bias, b [n] (else undefined), filled by
// wave at scales 0.37, 0.11 and 2 x 0.7.
struct LinearInputs {
  Tensor x, w, b;
};
inline LinearInputs linear_inputs(std::int64_t m, std::int64_t n, std::int64_t k, bool bias) {
  LinearInputs in{Tensor::empty({m, k}, DType::f32), Tensor::empty({n, k}, DType::f32),
                  bias ? Tensor::empty({n}, DType::f32) : Tensor()};
  for (std::int64_t i = 0; i < in.x.numel(); ++i) in.x.data<float>()[i] = wave(i, 0.37f);
  for (std::int64_t i = 0; i < in.w.numel(); ++i) in.w.data<float>()[i] = wave(i, 0.11f);
  for (std::int64_t j = 0; bias && j < n; ++j) in.b.data<float>()[j] = 2.0f * wave(j, 0.7f);
  return in;
}

// Element (i, j) of x w^T + b (b undefined: no bias) in double, and the absolute sum of its terms.
struct DoubleSum {
  double sum = 0.0, abs_sum = 0.0;
};
inline DoubleSum linear_in_double(const LinearInputs& in, std::int64_t i, std::int64_t j) {
  const std::int64_t k = in.x.dim(1);
  DoubleSum s;
  s.sum = in.b.defined() ? in.b.data<float>()[j] : 0.0;
  s.abs_sum = std::abs(s.sum);
  for (std::int64_t p = 0; p < k; ++p) {
    const double t = static_cast<double>(in.x.data<float>()[i * k + p]) * in.w.data<float>()[j * k + p];
    s.sum += t;
    s.abs_sum += std::abs(t);
  }
  return s;
}

}  // namespace descent::testing
