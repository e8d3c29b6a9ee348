// Winograd F(2x2, 5x5) on the 16-channel blocked layout (conv_winograd.hpp).
//
// One dimension, F(2, 5) with the points 0, 1, -1, 2, -2 and infinity: for a 6-element
// input d and a 5-tap filter g, the two outputs y_i = sum_k d_{i+k} g_k are
// y = AT [(G g) . (BT d)] with
//   AT = [1 1  1 1  1 0]        BT = [4  0 -5  0 1 0]     G = [ 1/4     0     0     0    0]
//        [0 1 -1 2 -2 1]             [0 -4 -4  1 1 0]         [-1/6  -1/6  -1/6  -1/6 -1/6]
//                                    [0  4 -4 -1 1 0]         [-1/6   1/6  -1/6   1/6 -1/6]
//                                    [0 -2 -1  2 1 0]         [1/24  1/12   1/6   1/3  2/3]
//                                    [0  2 -1 -2 1 0]         [1/24 -1/12   1/6  -1/3  2/3]
//                                    [0  4  0 -5 0 1]         [ 0      0     0     0    1]
// (the Toom-Cook construction: AT's columns are the points' powers, G's rows the filter
// evaluated at the points over the Lagrange denominators, BT solved from
// sum_j AT[i][j] G[j][k] BT[j][l] = [l == i + k]). In two dimensions the 2x2 output tile at
// (2 ty, 2 tx) is Y = AT [(G g GT) . (BT d B)] A, d the 6x6 input window at (2 ty - 2, 2 tx - 2)
// (zeros outside the image: the padding). Summed over input channels, each of the 36
// positions (xi, nu) of the tile is a matrix product over channels:
//   M[p][tile][o] = sum_c V[p][tile][c] U[p][c][o],  V = BT d B (per tile and channel),
//   U = G g GT (per channel pair).
// The work unit is one row of tiles of one example (in groups of up to 7 tiles): its V
// (36 x 7 x C_in) and M (36 x 7 x C_out) stay in the core's cache. The transforms run on
// 16 channels per vector (the blocked layout keeps a pixel's 16 channels together).
#include "conv_winograd.hpp"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "descent/tensor/parallel.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define DESCENT_WINOGRAD_AVX512 1
#define WINO_TARGET __attribute__((target("avx512f,fma")))
#endif

namespace descent::autodiff::conv_winograd {

bool disabled_by_env() {
  const char* v = std::getenv("DESCENT_CONV_KERNELS");
  return v != nullptr && (std::strcmp(v, "direct") == 0 || std::strcmp(v, "reference") == 0 ||
                          std::strcmp(v, "unfused") == 0);
}

#ifndef DESCENT_WINOGRAD_AVX512
bool supports(std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
              std::int64_t) {
  return false;
}
void forward(const Geom&, const float*, const float*, const float*, float*) {}
void input_grad(const Geom&, const float*, const float*, float*) {}
void forward_relu_max_pool(const Geom&, const float*, const float*, const float*, float*, std::int32_t*) {}
void weight_grad(const Geom&, const float*, const float*, float*) {}
#else

bool supports(std::int64_t c_in, std::int64_t h, std::int64_t w, std::int64_t c_out, std::int64_t kh, std::int64_t kw,
              std::int64_t stride, std::int64_t pad) {
  static const bool cpu = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
  return cpu && kh == 5 && kw == 5 && stride == 1 && pad == 2 && h >= 2 && w >= 2 && h % 2 == 0 && w % 2 == 0 &&
         c_in > 0 && c_out > 0 && c_in % 16 == 0 && c_out % 16 == 0;
}

namespace {

constexpr int kAlpha = 6;           // input tile side
constexpr int kPos = kAlpha * kAlpha;  // tile positions
constexpr int kGroup = 7;           // tiles per group (the GEMM kernel's rows)

constexpr float kG[kAlpha][5] = {
    {0.25f, 0.0f, 0.0f, 0.0f, 0.0f},
    {-1.0f / 6, -1.0f / 6, -1.0f / 6, -1.0f / 6, -1.0f / 6},
    {-1.0f / 6, 1.0f / 6, -1.0f / 6, 1.0f / 6, -1.0f / 6},
    {1.0f / 24, 1.0f / 12, 1.0f / 6, 1.0f / 3, 2.0f / 3},
    {1.0f / 24, -1.0f / 12, 1.0f / 6, -1.0f / 3, 2.0f / 3},
    {0.0f, 0.0f, 0.0f, 0.0f, 1.0f},
};

// U[p][k_in][k_out] = (G g GT)[p], g the 5x5 kernel taking input channel k_in to output
// channel k_out: w[k_out][k_in] (forward) or, flipped, w[k_in][k_out][4 - a][4 - b] (the input
// gradient). Inner loops over the k_in x k_out pairs, contiguous.
void transform_weights(const float* w, std::int64_t c_out, std::int64_t c_in, bool flip, std::vector<float>& u) {
  const std::int64_t k_in = flip ? c_out : c_in, k_out = flip ? c_in : c_out, pairs = k_in * k_out;
  std::vector<float> wt(static_cast<std::size_t>(25 * pairs));  // [a][b][k_in][k_out]
  for (std::int64_t o = 0; o < c_out; ++o) {
    for (std::int64_t c = 0; c < c_in; ++c) {
      const float* g = w + (o * c_in + c) * 25;
      const std::int64_t pair = flip ? o * k_out + c : c * k_out + o;
      for (int a = 0; a < 5; ++a) {
        for (int b = 0; b < 5; ++b) {
          const float v = flip ? g[(4 - a) * 5 + (4 - b)] : g[a * 5 + b];
          wt[static_cast<std::size_t>((a * 5 + b) * pairs + pair)] = v;
        }
      }
    }
  }
  std::vector<float> t1(static_cast<std::size_t>(kAlpha * 5 * pairs), 0.0f);  // [i][b][pairs] = sum_a G[i][a] g[a][b]
  for (int i = 0; i < kAlpha; ++i) {
    for (int b = 0; b < 5; ++b) {
      float* dst = t1.data() + (i * 5 + b) * pairs;
      for (int a = 0; a < 5; ++a) {
        const float c = kG[i][a];
        if (c == 0.0f) continue;
        const float* src = wt.data() + (a * 5 + b) * pairs;
        for (std::int64_t q = 0; q < pairs; ++q) dst[q] += c * src[q];
      }
    }
  }
  u.assign(static_cast<std::size_t>(kPos * pairs), 0.0f);
  for (int i = 0; i < kAlpha; ++i) {
    for (int j = 0; j < kAlpha; ++j) {
      float* dst = u.data() + (i * kAlpha + j) * pairs;
      for (int b = 0; b < 5; ++b) {
        const float c = kG[j][b];
        if (c == 0.0f) continue;
        const float* src = t1.data() + (i * 5 + b) * pairs;
        for (std::int64_t q = 0; q < pairs; ++q) dst[q] += c * src[q];
      }
    }
  }
}

struct Run {
  std::int64_t batch, ci, h, w, co;
  const float* u;     // [36][ci][co]
  const float* in;    // blocked, ci channels
  const float* bias;  // co or null
  float* out;         // blocked, co channels; or null, with:
  float* pool_y;          // relu then 2x2 / stride 2 max-pool of the output, NCHW [batch, co, h/2, w/2]
  std::int32_t* pool_idx;  // the window maximum's index in its h x w plane (first of equals)
};

// r = BT d (6 values: d[0..5] along one direction).
WINO_TARGET inline void bt6(const __m512* d, __m512* r) {
  const __m512 four = _mm512_set1_ps(4.0f), five = _mm512_set1_ps(5.0f), two = _mm512_set1_ps(2.0f);
  // 4 d0 - 5 d2 + d4
  r[0] = _mm512_fmadd_ps(four, d[0], _mm512_fnmadd_ps(five, d[2], d[4]));
  // -4 d1 - 4 d2 + d3 + d4  and  4 d1 - 4 d2 - d3 + d4
  const __m512 s1 = _mm512_fnmadd_ps(four, d[2], d[4]);  // d4 - 4 d2
  const __m512 s2 = _mm512_fmsub_ps(four, d[1], d[3]);   // 4 d1 - d3
  r[1] = _mm512_sub_ps(s1, s2);
  r[2] = _mm512_add_ps(s1, s2);
  // -2 d1 - d2 + 2 d3 + d4  and  2 d1 - d2 - 2 d3 + d4
  const __m512 s3 = _mm512_sub_ps(d[4], d[2]);
  const __m512 s4 = _mm512_mul_ps(two, _mm512_sub_ps(d[1], d[3]));
  r[3] = _mm512_sub_ps(s3, s4);
  r[4] = _mm512_add_ps(s3, s4);
  // 4 d1 - 5 d3 + d5
  r[5] = _mm512_fmadd_ps(four, d[1], _mm512_fnmadd_ps(five, d[3], d[5]));
}

// y0 = m0 + m1 + m2 + m3 + m4, y1 = m1 - m2 + 2 (m3 - m4) + m5.
WINO_TARGET inline void at6(const __m512* m, __m512& y0, __m512& y1) {
  const __m512 a = _mm512_add_ps(m[1], m[2]), b = _mm512_sub_ps(m[1], m[2]);
  const __m512 c = _mm512_add_ps(m[3], m[4]), e = _mm512_sub_ps(m[3], m[4]);
  y0 = _mm512_add_ps(_mm512_add_ps(m[0], a), c);
  y1 = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(2.0f), e, b), m[5]);
}

// c[r][0..16 NV) (+)= sum_k a[r ars + k aks] b[k][0..16 NV), R rows (tiles), K = depth: with
// Accumulate the running sum in c is added to (the weight gradient's products, summed over
// tiles k into the channel pairs), without it c is overwritten (the forward and input gradient).
template <int NV, int R, bool Accumulate>
WINO_TARGET inline __attribute__((always_inline)) void gemm_body(const float* a, std::int64_t ars, std::int64_t aks,
                                                                const float* b, std::int64_t ldb, float* c,
                                                                std::int64_t ldc, std::int64_t depth) {
  __m512 acc[R][NV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = Accumulate ? _mm512_loadu_ps(c + r * ldc + 16 * v) : _mm512_setzero_ps();
  }
  for (std::int64_t k = 0; k < depth; ++k) {
    __m512 bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_ps(b + k * ldb + 16 * v);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(a[r * ars + k * aks]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(c + r * ldc + 16 * v, acc[r][v]);
  }
}

// c = a b, a row-major with rows lda apart (unit stride along k, known when compiled).
template <int NV, int R>
WINO_TARGET void gemm_kernel(const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float* c,
                             std::int64_t ldc, std::int64_t depth) {
  gemm_body<NV, R, false>(a, lda, 1, b, ldb, c, ldc, depth);
}

// c += a b, a with strides ars (rows) and aks (k).
template <int NV, int R>
WINO_TARGET void gemm_acc_kernel(const float* a, std::int64_t ars, std::int64_t aks, const float* b, std::int64_t ldb,
                                 float* c, std::int64_t ldc, std::int64_t depth) {
  gemm_body<NV, R, true>(a, ars, aks, b, ldb, c, ldc, depth);
}

using AccKernel = void (*)(const float*, std::int64_t, std::int64_t, const float*, std::int64_t, float*, std::int64_t,
                           std::int64_t);
template <int NV, int... Rs>
constexpr auto acc_kernel_row(std::integer_sequence<int, Rs...>) {
  return std::array<AccKernel, sizeof...(Rs)>{&gemm_acc_kernel<NV, Rs + 1>...};
}
// acc_kernels[nv - 1][r - 1]
const std::array<std::array<AccKernel, kGroup>, 4> acc_kernels = {
    acc_kernel_row<1>(std::make_integer_sequence<int, kGroup>{}),
    acc_kernel_row<2>(std::make_integer_sequence<int, kGroup>{}),
    acc_kernel_row<3>(std::make_integer_sequence<int, kGroup>{}),
    acc_kernel_row<4>(std::make_integer_sequence<int, kGroup>{})};

using Kernel = void (*)(const float*, std::int64_t, const float*, std::int64_t, float*, std::int64_t, std::int64_t);

template <int NV, int... Rs>
constexpr auto kernel_row(std::integer_sequence<int, Rs...>) {
  return std::array<Kernel, sizeof...(Rs)>{&gemm_kernel<NV, Rs + 1>...};
}

// kernels[nv - 1][r - 1]
const std::array<std::array<Kernel, kGroup>, 4> kernels = {
    kernel_row<1>(std::make_integer_sequence<int, kGroup>{}), kernel_row<2>(std::make_integer_sequence<int, kGroup>{}),
    kernel_row<3>(std::make_integer_sequence<int, kGroup>{}), kernel_row<4>(std::make_integer_sequence<int, kGroup>{})};

// Input transform of tiles (n, ty, tx0 .. tx0 + r) of `in` (blocked, ci channels) into
// V[p][t][c] (t < stride tiles per position).
WINO_TARGET void input_transform(const float* in, std::int64_t ci, std::int64_t h, std::int64_t w, std::int64_t n,
                                 std::int64_t ty, std::int64_t tx0, int r, float* V, std::int64_t stride) {
  const std::int64_t cib = ci / 16;
  const __m512 zero = _mm512_setzero_ps();
  // V[p][t][c] = (BT d B)[p], 16 channels at a time: each row of the 6x6
  // window through BT, then each column of the result.
  for (std::int64_t cb = 0; cb < cib; ++cb) {
    const float* plane = in + (n * cib + cb) * h * w * 16;
    for (int t = 0; t < r; ++t) {
      const std::int64_t y0 = 2 * ty - 2, x0 = 2 * (tx0 + t) - 2;
      const bool inside = y0 >= 0 && x0 >= 0 && y0 + kAlpha <= h && x0 + kAlpha <= w;
      __m512 tmp[kAlpha][kAlpha];  // tmp[i][l] = sum_j d[i][j] BT[l][j]
#pragma GCC unroll 6
      for (int i = 0; i < kAlpha; ++i) {
        const std::int64_t y = y0 + i;
        __m512 row[kAlpha];
        if (inside) {
#pragma GCC unroll 6
          for (int j = 0; j < kAlpha; ++j) row[j] = _mm512_loadu_ps(plane + (y * w + x0 + j) * 16);
        } else {
          const bool yok = y >= 0 && y < h;
#pragma GCC unroll 6
          for (int j = 0; j < kAlpha; ++j) {
            const std::int64_t x = x0 + j;
            row[j] = yok && x >= 0 && x < w ? _mm512_loadu_ps(plane + (y * w + x) * 16) : zero;
          }
        }
        bt6(row, tmp[i]);
      }
      float* vt = V + t * ci + cb * 16;
#pragma GCC unroll 6
      for (int l = 0; l < kAlpha; ++l) {
        __m512 col[kAlpha], res[kAlpha];
#pragma GCC unroll 6
        for (int i = 0; i < kAlpha; ++i) col[i] = tmp[i][l];
        bt6(col, res);
#pragma GCC unroll 6
        for (int k = 0; k < kAlpha; ++k) _mm512_storeu_ps(vt + (k * kAlpha + l) * stride * ci, res[k]);
      }
    }
  }
}

// v > 0 ? v : 0 (NaN and -0 give +0).
WINO_TARGET inline __m512 relu(__m512 v) {
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GT_OQ), v);
}

// One group: tiles (n, ty, tx0 .. tx0 + r) of the output.
WINO_TARGET void run_group(const Run& R, std::int64_t n, std::int64_t ty, std::int64_t tx0, int r, float* V,
                           float* M) {
  const std::int64_t ci = R.ci, co = R.co, h = R.h, w = R.w;
  const std::int64_t cob = co / 16;
  const __m512 zero = _mm512_setzero_ps();
  input_transform(R.in, ci, h, w, n, ty, tx0, r, V, kGroup);
  // The 36 products, C_out in pieces of up to 64 (4 vectors).
  for (int p = 0; p < kPos; ++p) {
    const float* a = V + p * kGroup * ci;
    const float* b = R.u + p * ci * co;
    float* c = M + p * kGroup * co;
    for (std::int64_t ob = 0; ob < cob; ob += 4) {
      const int nv = static_cast<int>(std::min<std::int64_t>(4, cob - ob));
      kernels[static_cast<std::size_t>(nv - 1)][static_cast<std::size_t>(r - 1)](a, ci, b + ob * 16, co, c + ob * 16,
                                                                                 co, ci);
    }
  }
  // Output transform: Y = AT m A (+ bias), 16 channels at a time: each column of the 6x6
  // products through AT, then the two resulting rows.
  for (std::int64_t ob = 0; ob < cob; ++ob) {
    const __m512 bias = R.bias != nullptr ? _mm512_loadu_ps(R.bias + ob * 16) : zero;
    float* plane = R.out != nullptr ? R.out + (n * cob + ob) * h * w * 16 : nullptr;
    for (int t = 0; t < r; ++t) {
      const float* mt = M + t * co + ob * 16;
      __m512 s0[kAlpha], s1[kAlpha];  // (AT m)[0 or 1][l]
#pragma GCC unroll 6
      for (int l = 0; l < kAlpha; ++l) {
        __m512 col[kAlpha];
#pragma GCC unroll 6
        for (int k = 0; k < kAlpha; ++k) col[k] = _mm512_loadu_ps(mt + (k * kAlpha + l) * kGroup * co);
        at6(col, s0[l], s1[l]);
      }
      __m512 y00, y01, y10, y11;
      at6(s0, y00, y01);
      at6(s1, y10, y11);
      const std::int64_t y = 2 * ty, x = 2 * (tx0 + t);
      if (R.out == nullptr) {
        // max(relu(.)) of the tile in the order (0, 0), (0, 1), (1, 0), (1, 1), a later one
        // winning only when greater: relu_max_pool_block16's comparisons (relu(NaN) = 0).
        const auto p0 = static_cast<std::int32_t>(y * w + x), wi = static_cast<std::int32_t>(w);
        __m512 m = relu(_mm512_add_ps(y00, bias));
        __m512i best = _mm512_set1_epi32(p0);
        const __m512 rest[3] = {_mm512_add_ps(y01, bias), _mm512_add_ps(y10, bias), _mm512_add_ps(y11, bias)};
        const std::int32_t at[3] = {p0 + 1, p0 + wi, p0 + wi + 1};
        for (int q = 0; q < 3; ++q) {
          const __m512 v = relu(rest[q]);
          const __mmask16 gt = _mm512_cmp_ps_mask(v, m, _CMP_GT_OQ);
          m = _mm512_mask_blend_ps(gt, m, v);
          best = _mm512_mask_blend_epi32(gt, best, _mm512_set1_epi32(at[q]));
        }
        alignas(64) float mv[16];
        alignas(64) std::int32_t bv[16];
        _mm512_store_ps(mv, m);
        _mm512_store_si512(bv, best);
        const std::int64_t op = (h / 2) * (w / 2), o0 = ((n * co + ob * 16) * (h / 2) + ty) * (w / 2) + tx0 + t;
        for (int l = 0; l < 16; ++l) {
          R.pool_y[o0 + l * op] = mv[l];
          R.pool_idx[o0 + l * op] = bv[l];
        }
        continue;
      }
      _mm512_storeu_ps(plane + (y * w + x) * 16, _mm512_add_ps(y00, bias));
      _mm512_storeu_ps(plane + (y * w + x + 1) * 16, _mm512_add_ps(y01, bias));
      _mm512_storeu_ps(plane + ((y + 1) * w + x) * 16, _mm512_add_ps(y10, bias));
      _mm512_storeu_ps(plane + ((y + 1) * w + x + 1) * 16, _mm512_add_ps(y11, bias));
    }
  }
}

// (A u) for a pair u = (u0, u1): the transpose of at6.
WINO_TARGET inline void a6(__m512 u0, __m512 u1, __m512* r) {
  const __m512 two = _mm512_set1_ps(2.0f);
  r[0] = u0;
  r[1] = _mm512_add_ps(u0, u1);
  r[2] = _mm512_sub_ps(u0, u1);
  r[3] = _mm512_fmadd_ps(two, u1, u0);
  r[4] = _mm512_fnmadd_ps(two, u1, u0);
  r[5] = u1;
}

// W[p][t][o] = (A gy_tile AT)[p] for tiles (n, ty, tx0 .. tx0 + r) of gy (blocked, co channels):
// the gradient of the 36 products M of a tile from the gradient of its 2x2 outputs.
WINO_TARGET void output_grad_transform(const float* gy, std::int64_t co, std::int64_t h, std::int64_t w, std::int64_t n,
                                       std::int64_t ty, std::int64_t tx0, int r, float* W, std::int64_t stride) {
  const std::int64_t cob = co / 16;
  for (std::int64_t ob = 0; ob < cob; ++ob) {
    const float* plane = gy + (n * cob + ob) * h * w * 16;
    for (int t = 0; t < r; ++t) {
      const std::int64_t y = 2 * ty, x = 2 * (tx0 + t);
      __m512 c0[kAlpha], c1[kAlpha];  // A applied to each of the two columns
      a6(_mm512_loadu_ps(plane + (y * w + x) * 16), _mm512_loadu_ps(plane + ((y + 1) * w + x) * 16), c0);
      a6(_mm512_loadu_ps(plane + (y * w + x + 1) * 16), _mm512_loadu_ps(plane + ((y + 1) * w + x + 1) * 16), c1);
      float* wt = W + t * co + ob * 16;
#pragma GCC unroll 6
      for (int k = 0; k < kAlpha; ++k) {
        __m512 row[kAlpha];
        a6(c0[k], c1[k], row);
#pragma GCC unroll 6
        for (int l = 0; l < kAlpha; ++l) _mm512_storeu_ps(wt + (k * kAlpha + l) * stride * co, row[l]);
      }
    }
  }
}

constexpr int kRowsPerUnit = 4;  // tile rows per step of the weight gradient: V and W stay in L2

// Mw[p][c][o] += sum over the tiles of examples [n0, n1) of V[p][t][c] W[p][t][o].
WINO_TARGET void weight_grad_examples(const Geom& g, const float* gy, const float* x, std::int64_t n0, std::int64_t n1,
                                      float* Mw) {
  const std::int64_t ci = g.c_in, co = g.c_out, th = g.h / 2, tw = g.w / 2;
  const std::int64_t tiles_max = kRowsPerUnit * tw;
  thread_local std::vector<float> V, W;
  V.resize(static_cast<std::size_t>(kPos * tiles_max * ci));
  W.resize(static_cast<std::size_t>(kPos * tiles_max * co));
  for (std::int64_t n = n0; n < n1; ++n) {
    for (std::int64_t ty0 = 0; ty0 < th; ty0 += kRowsPerUnit) {
      const std::int64_t rows = std::min<std::int64_t>(kRowsPerUnit, th - ty0), tiles = rows * tw;
      for (std::int64_t ry = 0; ry < rows; ++ry) {
        for (std::int64_t tx = 0; tx < tw; tx += kGroup) {
          const int r = static_cast<int>(std::min<std::int64_t>(kGroup, tw - tx));
          input_transform(x, ci, g.h, g.w, n, ty0 + ry, tx, r, V.data() + (ry * tw + tx) * ci, tiles_max);
          output_grad_transform(gy, co, g.h, g.w, n, ty0 + ry, tx, r, W.data() + (ry * tw + tx) * co, tiles_max);
        }
      }
      // For each position: Mw[p] (ci x co) += V[p]^T (ci x tiles) W[p] (tiles x co).
      for (int p = 0; p < kPos; ++p) {
        const float* a = V.data() + p * tiles_max * ci;
        const float* b = W.data() + p * tiles_max * co;
        float* c = Mw + p * ci * co;
        for (std::int64_t c0 = 0; c0 < ci; c0 += kGroup) {
          const int r = static_cast<int>(std::min<std::int64_t>(kGroup, ci - c0));
          for (std::int64_t ob = 0; ob < co / 16; ob += 4) {
            const int nv = static_cast<int>(std::min<std::int64_t>(4, co / 16 - ob));
            acc_kernels[static_cast<std::size_t>(nv - 1)][static_cast<std::size_t>(r - 1)](
                a + c0, 1, ci, b + ob * 16, co, c + c0 * co + ob * 16, co, tiles);
          }
        }
      }
    }
  }
}

void run_units(const Run& R, std::int64_t u0, std::int64_t u1) {
  thread_local std::vector<float> V, M;
  V.resize(static_cast<std::size_t>(kPos * kGroup * R.ci));
  M.resize(static_cast<std::size_t>(kPos * kGroup * R.co));
  const std::int64_t th = R.h / 2, tw = R.w / 2;
  for (std::int64_t u = u0; u < u1; ++u) {
    const std::int64_t n = u / th, ty = u % th;
    for (std::int64_t tx = 0; tx < tw; tx += kGroup) {
      run_group(R, n, ty, tx, static_cast<int>(std::min<std::int64_t>(kGroup, tw - tx)), V.data(), M.data());
    }
  }
}

void run(const Run& R) {
  const std::int64_t units = R.batch * (R.h / 2);
  parallel_for(units, 1, [&](std::int64_t u0, std::int64_t u1) { run_units(R, u0, u1); });
}

}  // namespace

void forward(const Geom& g, const float* w, const float* x_blocked, const float* bias, float* out_blocked) {
  thread_local std::vector<float> u;
  transform_weights(w, g.c_out, g.c_in, false, u);
  run(Run{g.batch, g.c_in, g.h, g.w, g.c_out, u.data(), x_blocked, bias, out_blocked, nullptr, nullptr});
}

void input_grad(const Geom& g, const float* w, const float* gy_blocked, float* gx_blocked) {
  thread_local std::vector<float> u;
  transform_weights(w, g.c_out, g.c_in, true, u);
  run(Run{g.batch, g.c_out, g.h, g.w, g.c_in, u.data(), gy_blocked, nullptr, gx_blocked, nullptr, nullptr});
}

void forward_relu_max_pool(const Geom& g, const float* w, const float* x_blocked, const float* bias, float* y,
                           std::int32_t* idx) {
  thread_local std::vector<float> u;
  transform_weights(w, g.c_out, g.c_in, false, u);
  run(Run{g.batch, g.c_in, g.h, g.w, g.c_out, u.data(), x_blocked, bias, nullptr, y, idx});
}

void weight_grad(const Geom& g, const float* gy_blocked, const float* x_blocked, float* gw) {
  // Fixed chunks of examples (their boundaries depend on the batch size only), each summed in
  // example order into its own Mw; the chunks added in order: the same bits for any thread count.
  // At most kWeightChunks chunks: each chunk's Mw (36 C_in C_out floats) is zeroed by its own
  // task (in its cache) and read once more by the sum.
  constexpr std::int64_t kWeightChunks = 8;
  const std::int64_t pairs = g.c_in * g.c_out, total = kPos * pairs;
  const std::int64_t chunk = std::max<std::int64_t>(1, (g.batch + kWeightChunks - 1) / kWeightChunks),
                     chunks = (g.batch + chunk - 1) / chunk;
  thread_local std::vector<float> parts;
  parts.resize(static_cast<std::size_t>(chunks * total));
  float* mw = parts.data();
  parallel_for(chunks, 1, [&](std::int64_t c0, std::int64_t c1) {
    for (std::int64_t c = c0; c < c1; ++c) {
      float* part = mw + c * total;
      std::fill(part, part + total, 0.0f);
      weight_grad_examples(g, gy_blocked, x_blocked, c * chunk, std::min(g.batch, (c + 1) * chunk), part);
    }
  });
  // The chunks added in chunk order, element by element (split over threads by element).
  parallel_for(total, 4096, [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t c = 1; c < chunks; ++c) {
      const float* src = mw + c * total;
      for (std::int64_t i = i0; i < i1; ++i) mw[i] += src[i];
    }
  });
  // gw[o][c] = GT Mw[.][c][o] G: t1[a][j] = sum_i G[i][a] Mw[i][j], then sum_j t1[a][j] G[j][b].
  std::vector<float> t1(static_cast<std::size_t>(5 * kAlpha * pairs), 0.0f);
  for (int a = 0; a < 5; ++a) {
    for (int j = 0; j < kAlpha; ++j) {
      float* dst = t1.data() + (a * kAlpha + j) * pairs;
      for (int i = 0; i < kAlpha; ++i) {
        const float c = kG[i][a];
        if (c == 0.0f) continue;
        const float* src = mw + (i * kAlpha + j) * pairs;
        for (std::int64_t q = 0; q < pairs; ++q) dst[q] += c * src[q];
      }
    }
  }
  std::vector<float> gt(static_cast<std::size_t>(25 * pairs), 0.0f);  // [a][b][c][o]
  for (int a = 0; a < 5; ++a) {
    for (int b = 0; b < 5; ++b) {
      float* dst = gt.data() + (a * 5 + b) * pairs;
      for (int j = 0; j < kAlpha; ++j) {
        const float c = kG[j][b];
        if (c == 0.0f) continue;
        const float* src = t1.data() + (a * kAlpha + j) * pairs;
        for (std::int64_t q = 0; q < pairs; ++q) dst[q] += c * src[q];
      }
    }
  }
  for (std::int64_t o = 0; o < g.c_out; ++o) {
    for (std::int64_t c = 0; c < g.c_in; ++c) {
      for (int ab = 0; ab < 25; ++ab) gw[(o * g.c_in + c) * 25 + ab] = gt[static_cast<std::size_t>(ab * pairs + c * g.c_out + o)];
    }
  }
}

#endif

}  // namespace descent::autodiff::conv_winograd
