#pragma once
// Elementwise exp, tanh and sigmoid for float that the compiler vectorizes: branch-free
// range reduction and polynomials, no library call, so a loop over them becomes SIMD code
// at -O3 (with -march=native: AVX2 or AVX-512, whatever the host has). glibc's expf and
// tanhf are scalar calls, and they were about a third of an LSTM training step.
// Not installed: the library's kernels (ops.cpp, sequence_ops.cpp) call the inline forms
// inside their own loops; the array forms (vmath.cpp) are what the tests measure.
//
// Accuracy (float), measured on all 2^32 float inputs against double std:: (with and
// without FMA: the same maxima); tests/tensor/vmath_test.cpp asserts these bounds on a
// dense sweep:
//   exp      relative error <= 1.0e-7 (max 8.4e-8, about 1.4 ulp) where the result is a
//            normal float; where it is subnormal (x < -87.34) the error is at most 0.75
//            of a subnormal step (gradual underflow, no flush to zero).
//            exp(x) = +inf for x > 88.72, 0 for x < -103.97.
//   tanh     relative error <= 1.5e-7 (max 1.42e-7); tanh(+-0) = +-0, tanh(x) = x for
//            subnormal x, +-1 for |x| > 9.01.
//   sigmoid  relative error <= 2.5e-7 (max 2.03e-7), the tiny results for x down to -87
//            included; subnormal results as exp.
//   NaN in gives NaN out; +-inf give the limits.
// double: the same names forward to std::exp / std::tanh, so templated kernels call
// vmath::exp(T) for both types and float64 results stay those of libm.
//
// Method.
//   exp(x) = 2^n e^r, n = round(x / ln 2), r = x - n ln 2 (Cody-Waite: ln 2 in two parts,
//     the first with 10 significant bits so that n * ln2_hi is exact), |r| <= ln2/2 and
//     e^r = 1 + r + r^2 q(r) with q of degree 4, fitted by weighted least squares towards
//     minimax (error 3.5e-9 before float rounding). 2^n is built in the exponent bits as
//     two factors 2^(n/2) 2^(n - n/2), each a normal float for n in [-150, 128], so that
//     overflow to inf and gradual underflow to subnormals round once, as they should.
//     Outside [-104, 88.75] the result is set to 0 or inf by two selects at the end (not
//     by clamping x first: GCC then specializes the whole computation per clamp branch).
//   tanh(x): |x| < 0.625: x + x^3 p(x^2), p of degree 4 (relative error 4e-9);
//     otherwise sign(x) (1 - 2 / (exp(2|x|) + 1)), where tanh >= 0.55 and the exp's
//     relative error passes through scaled by less than one.
//   sigmoid(x): e = exp(-|x|), s = 1 / (1 + e); x >= 0: s, else e s (= e^x / (1 + e^x)),
//     never 1 - s, so small results keep their relative accuracy.
// Cost (one Zen 4 core, AVX-512, 16K-element arrays): exp 0.31 ns, sigmoid 0.48 ns,
// tanh 0.58 ns per element, against 12.9 ns for glibc's scalar tanhf.
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

namespace descent::vmath {

namespace detail {

// a b + c: one fused instruction where the target has FMA; the formulas above are
// accurate with or without it.
inline float madd(float a, float b, float c) {
#ifdef __FMA__
  return __builtin_fmaf(a, b, c);
#else
  return a * b + c;
#endif
}

}  // namespace detail

inline float exp(float x) {
  constexpr float log2e = 1.44269504f;
  constexpr float ln2_hi = 0.693359375f;      // 710 / 1024: n * ln2_hi is exact for |n| <= 2^14
  constexpr float ln2_lo = -2.12194440e-4f;   // ln 2 - ln2_hi
  constexpr float shifter = 12582912.0f;      // 1.5 * 2^23: adding it rounds to an integer
  const float t = x * log2e + shifter;
  const float n = t - shifter;
  // n as an integer, from the low bits of t (unsigned: for |x| out of range the bits are
  // meaningless, and the result is replaced below, but the arithmetic stays defined)
  const auto ni = static_cast<std::int32_t>(std::bit_cast<std::uint32_t>(t) - std::bit_cast<std::uint32_t>(shifter));
  const float r = detail::madd(n, -ln2_lo, detail::madd(n, -ln2_hi, x));
  float q = 0.0013811653f;
  q = detail::madd(q, r, 0.008370136f);
  q = detail::madd(q, r, 0.041668527f);
  q = detail::madd(q, r, 0.16666509f);
  q = detail::madd(q, r, 0.49999994f);
  const float p = 1.0f + detail::madd(r * r, q, r);  // e^r
  const std::int32_t n1 = ni >> 1;
  const std::int32_t n2 = ni - n1;
  const float s1 = std::bit_cast<float>(static_cast<std::uint32_t>(n1 + 127) << 23);  // 2^n1
  const float s2 = std::bit_cast<float>(static_cast<std::uint32_t>(n2 + 127) << 23);  // 2^n2
  const float y = p * s1 * s2;
  // Outside [-104, 88.75] n leaves [-150, 128] (the scale factors would be wrong): the
  // result there is 0 or inf. The selects come last and compare x itself, so a NaN
  // keeps its NaN (both comparisons are false).
  const float big = x > 88.75f ? std::numeric_limits<float>::infinity() : y;
  return x < -104.0f ? 0.0f : big;
}

inline float tanh(float x) {
  const float a = std::fabs(x);
  const float s = x * x;
  float p = -0.005717005f;
  p = detail::madd(p, s, 0.020650549f);
  p = detail::madd(p, s, -0.053743485f);
  p = detail::madd(p, s, 0.13331491f);
  p = detail::madd(p, s, -0.33333284f);
  const float small = detail::madd(a * s, p, a);
  const float big = 1.0f - 2.0f / (vmath::exp(2.0f * a) + 1.0f);
  return std::copysign(a < 0.625f ? small : big, x);  // odd, and tanh(-0) = -0
}

inline float sigmoid(float x) {
  const float e = vmath::exp(-std::fabs(x));
  const float s = 1.0f / (1.0f + e);
  return x >= 0.0f ? s : e * s;
}

inline double exp(double x) { return std::exp(x); }
inline double tanh(double x) { return std::tanh(x); }
inline double sigmoid(double x) {
  if (x >= 0.0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}

// y[i] = f(x[i]) for i < n (x and y may be the same array). The loops the tests measure:
// compiled in the library with its flags, as the kernels' own loops are.
void exp(const float* x, float* y, std::int64_t n);
void tanh(const float* x, float* y, std::int64_t n);
void sigmoid(const float* x, float* y, std::int64_t n);
void exp(const double* x, double* y, std::int64_t n);
void tanh(const double* x, double* y, std::int64_t n);
void sigmoid(const double* x, double* y, std::int64_t n);

}  // namespace descent::vmath
