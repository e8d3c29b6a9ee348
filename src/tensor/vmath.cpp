#include "vmath.hpp"

#include "dispatch.hpp"

namespace descent::vmath {
namespace {

template <class T, class F>
DESCENT_DISPATCH void apply(const T* x, T* y, std::int64_t n, F f) {
#pragma omp simd
  for (std::int64_t i = 0; i < n; ++i) y[i] = f(x[i]);
}

}  // namespace

void exp(const float* x, float* y, std::int64_t n) { apply(x, y, n, [](float v) { return vmath::exp(v); }); }
void tanh(const float* x, float* y, std::int64_t n) { apply(x, y, n, [](float v) { return vmath::tanh(v); }); }
void sigmoid(const float* x, float* y, std::int64_t n) { apply(x, y, n, [](float v) { return vmath::sigmoid(v); }); }
void exp(const double* x, double* y, std::int64_t n) { apply(x, y, n, [](double v) { return vmath::exp(v); }); }
void tanh(const double* x, double* y, std::int64_t n) { apply(x, y, n, [](double v) { return vmath::tanh(v); }); }
void sigmoid(const double* x, double* y, std::int64_t n) { apply(x, y, n, [](double v) { return vmath::sigmoid(v); }); }

}  // namespace descent::vmath
