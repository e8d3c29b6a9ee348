#include "gemm_avx512.hpp"

#include <omp.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <exception>
#include <new>
#include <utility>

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define DESCENT_GEMM_AVX512 1
#include <immintrin.h>
// Functions compiled for AVX-512 inside the portable library: called only where available().
#define DESCENT_AVX512 __attribute__((target("avx512f")))
#endif

namespace descent::kernels::gemm_avx512 {

#ifndef DESCENT_GEMM_AVX512

bool available() { return false; }
void sgemm(bool, bool, std::int64_t, std::int64_t, std::int64_t, float, const float*, std::int64_t, const float*,
           std::int64_t, float, float*, std::int64_t, int) {}
void linear(std::int64_t, std::int64_t, std::int64_t, const float*, const float*, const float*, bool, float*, int) {}

#else

namespace {

constexpr int mr = 12;                 // rows of C per microkernel
constexpr int nr = 32;                 // columns of C per microkernel (two zmm)
constexpr std::int64_t kc_max = 256;   // k per block: a B panel of 32 KB stays in L1
constexpr std::int64_t mc = 120;       // rows of A per block (10 microkernel rows)

struct Product {
  bool ta, tb;
  std::int64_t m, n, k;
  float alpha;
  const float* a;
  std::int64_t lda;
  const float* b;
  std::int64_t ldb;
  float beta;
  float* c;
  std::int64_t ldc;
  std::int64_t kc;  // the k block length (the last one may be shorter)
  bool ct = false;  // this is C^T = op(B)^T op(A)^T: element (i, j) of the product at c[j ldc + i]
  // The epilogue of kernels::linear (beta 0): bias[j] added to column j of C by the first k
  // block's stores (nullptr: none), max(0, .) taken by the last block's stores
  const float* bias = nullptr;
  bool relu = false;
};

// The first count lanes (none for count <= 0, all 16 from 16).
__mmask16 lanes(std::int64_t count) {
  return count >= 16 ? static_cast<__mmask16>(0xffff) : count <= 0 ? 0 : static_cast<__mmask16>((1u << count) - 1u);
}

// The unmasked shuffles as their all-lanes masked forms: GCC 12's unmasked ones start from
// _mm512_undefined_ps, which -Wmaybe-uninitialized reports (a false positive).
constexpr __mmask16 all16 = 0xffff;
constexpr __mmask8 all8 = 0xff;
DESCENT_AVX512 inline __m512 unpacklo_ps(__m512 x, __m512 y) { return _mm512_maskz_unpacklo_ps(all16, x, y); }
DESCENT_AVX512 inline __m512 unpackhi_ps(__m512 x, __m512 y) { return _mm512_maskz_unpackhi_ps(all16, x, y); }
DESCENT_AVX512 inline __m512d unpacklo_pd(__m512d x, __m512d y) { return _mm512_maskz_unpacklo_pd(all8, x, y); }
DESCENT_AVX512 inline __m512d unpackhi_pd(__m512d x, __m512d y) { return _mm512_maskz_unpackhi_pd(all8, x, y); }
// max(x, y) lane by lane: x > y ? x : y (y where either is NaN)
DESCENT_AVX512 inline __m512 max_ps(__m512 x, __m512 y) { return _mm512_maskz_max_ps(all16, x, y); }
template <int imm>
DESCENT_AVX512 inline __m512 shuffle_f32x4(__m512 x, __m512 y) {
  return _mm512_maskz_shuffle_f32x4(all16, x, y, imm);
}

// Transposes the 16 x 16 block r (rows r[i]) in place: r[j] becomes column j.
DESCENT_AVX512 inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // t[4q + 0] = lo(r4q, r4q+1), t[4q+1] = hi(r4q, r4q+1), t[4q+2] = lo(r4q+2, r4q+3), t[4q+3] = hi(...)
  for (int q = 0; q < 4; ++q) {
    const __m512d a0 = _mm512_castps_pd(t[4 * q]), a1 = _mm512_castps_pd(t[4 * q + 1]);
    const __m512d a2 = _mm512_castps_pd(t[4 * q + 2]), a3 = _mm512_castps_pd(t[4 * q + 3]);
    r[4 * q] = _mm512_castpd_ps(unpacklo_pd(a0, a2));
    r[4 * q + 1] = _mm512_castpd_ps(unpackhi_pd(a0, a2));
    r[4 * q + 2] = _mm512_castpd_ps(unpacklo_pd(a1, a3));
    r[4 * q + 3] = _mm512_castpd_ps(unpackhi_pd(a1, a3));
  }
  // r[4q + j] holds, in each 128-bit lane l, the elements (4q .. 4q+3, 4l + j) of the block
  for (int j = 0; j < 4; ++j) {
    t[j] = shuffle_f32x4<0x88>(r[j], r[4 + j]);
    t[4 + j] = shuffle_f32x4<0xdd>(r[j], r[4 + j]);
    t[8 + j] = shuffle_f32x4<0x88>(r[8 + j], r[12 + j]);
    t[12 + j] = shuffle_f32x4<0xdd>(r[8 + j], r[12 + j]);
  }
  for (int j = 0; j < 4; ++j) {
    r[j] = shuffle_f32x4<0x88>(t[j], t[8 + j]);
    r[4 + j] = shuffle_f32x4<0x88>(t[4 + j], t[12 + j]);
    r[8 + j] = shuffle_f32x4<0xdd>(t[j], t[8 + j]);
    r[12 + j] = shuffle_f32x4<0xdd>(t[4 + j], t[12 + j]);
  }
}

// The rank-1 updates acc += A(r, p) B(p, :), p < kc (micro's loop), all lanes of B loaded
// (full) or under the masks m0, m1. Rows of A in place (!AK, rows lda apart) are read
// through four pointers (rows 0, 3, 6, 9) plus the row stride in bytes scaled 1 or 2 by the
// addressing: five registers for twelve rows (GCC, given a[r lda], kept row offsets on the
// stack and reloaded them in the loop).
template <int R, int NV, bool AK, bool full>
DESCENT_AVX512 inline __attribute__((always_inline)) void updates(std::int64_t kc, const float* a, std::int64_t lda,
                                                                const float* b, std::int64_t ldb, __mmask16 m0,
                                                                __mmask16 m1, __m512 (&acc)[R][NV]) {
  const float* ap = a;
  const char* base[4] = {};
  const std::int64_t stride = lda * static_cast<std::int64_t>(sizeof(float));
  if constexpr (!AK) {
    for (int q = 0; 3 * q < R; ++q) base[q] = reinterpret_cast<const char*>(a + 3 * q * lda);
  }
#pragma GCC unroll 4
  for (std::int64_t p = 0; p < kc; ++p) {
    __m512 bv[NV];
    if constexpr (full) {
      bv[0] = _mm512_loadu_ps(b);
      if constexpr (NV > 1) bv[1] = _mm512_loadu_ps(b + 16);
    } else {
      bv[0] = _mm512_maskz_loadu_ps(m0, b);
      if constexpr (NV > 1) bv[1] = _mm512_maskz_loadu_ps(m1, b + 16);
    }
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
      float x;
      if constexpr (AK) x = ap[r];
      else x = *reinterpret_cast<const float*>(base[r / 3] + (r % 3) * stride);
      const __m512 av = _mm512_set1_ps(x);
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
    }
    b += ldb;
    if constexpr (AK) {
      ap += lda;
    } else {
#pragma GCC unroll 4
      for (int q = 0; 3 * q < R; ++q) base[q] += sizeof(float);
    }
  }
}

// The R x (16 NV) block of C at c <- alpha sum_p A(r, p) B(p, :) + beta C (beta 0: C not
// read), p < kc; with beta 0 and a bias (the block's first column's, or under CT its first
// row's), bias[j] added to column j (round(alpha sum + bias[j]), as beta 1 over C's rows
// holding the bias); where relu, max(0, .) of the result (NaN to 0, as x > 0 ? x : 0). A(r, p)
// is a[p lda + r] (ak: A is k-major, op(A) = A^T) or a[r lda + p];
// B(p, :) is the 16 NV floats at b + p ldb, the second 16 under mask m1 (and the first
// under m0): masked-off lanes are neither read nor written.
template <int R, int NV, bool AK, bool CT>
DESCENT_AVX512 void micro(std::int64_t kc, const float* a, std::int64_t lda, const float* b, std::int64_t ldb,
                          __mmask16 m0, __mmask16 m1, float* c, std::int64_t ldc, float alpha, float beta,
                          const float* bias, bool relu) {
  __m512 acc[R][NV];
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  }
  if (m0 == 0xffff && (NV == 1 || m1 == 0xffff)) updates<R, NV, AK, true>(kc, a, lda, b, ldb, m0, m1, acc);
  else updates<R, NV, AK, false>(kc, a, lda, b, ldb, m0, m1, acc);
  const __m512 va = _mm512_set1_ps(alpha);
  const __m512 zero = _mm512_setzero_ps();
  const __mmask16 mask[2] = {m0, m1};
  if constexpr (CT) {
    // C transposed: lane l of acc[r][v] is C(16 v + l, r), row 16 v + l of C at c + (16 v + l) ldc
    const __mmask16 rm = lanes(R);
    const __m512 bias_v = bias != nullptr ? _mm512_maskz_loadu_ps(rm, bias) : zero;
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) {
      __m512 blk[16];
      for (int r = 0; r < 16; ++r) blk[r] = r < R ? acc[r][v] : _mm512_setzero_ps();
      transpose16(blk);
      for (int e = 0; e < 16; ++e) {
        if (((mask[v] >> e) & 1) == 0) break;
        float* cv = c + (16 * v + e) * ldc;
        const __m512 fresh = _mm512_mul_ps(va, blk[e]);
        __m512 x = beta == 0.0f ? (bias != nullptr ? _mm512_add_ps(fresh, bias_v) : fresh)
                                : _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(rm, cv), fresh);
        if (relu) x = max_ps(x, zero);
        _mm512_mask_storeu_ps(cv, rm, x);
      }
    }
    return;
  }
  if (beta == 0.0f && (bias != nullptr || relu)) {
    __m512 bias_v[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) bias_v[v] = bias != nullptr ? _mm512_maskz_loadu_ps(mask[v], bias + 16 * v) : zero;
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) {
        __m512 x = _mm512_mul_ps(va, acc[r][v]);
        if (bias != nullptr) x = _mm512_add_ps(x, bias_v[v]);
        if (relu) x = max_ps(x, zero);
        _mm512_mask_storeu_ps(c + r * ldc + 16 * v, mask[v], x);
      }
    }
  } else if (beta == 0.0f) {
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) _mm512_mask_storeu_ps(c + r * ldc + 16 * v, mask[v], _mm512_mul_ps(va, acc[r][v]));
    }
  } else {
    const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) {
        float* cv = c + r * ldc + 16 * v;
        const __m512 old = _mm512_maskz_loadu_ps(mask[v], cv);
        const __m512 x = _mm512_fmadd_ps(vb, old, _mm512_mul_ps(va, acc[r][v]));
        _mm512_mask_storeu_ps(cv, mask[v], relu ? max_ps(x, zero) : x);
      }
    }
  }
}

using Micro = void (*)(std::int64_t, const float*, std::int64_t, const float*, std::int64_t, __mmask16, __mmask16, float*,
                       std::int64_t, float, float, const float*, bool);

template <int NV, bool AK, bool CT, int... R>
constexpr auto micro_row(std::integer_sequence<int, R...>) {
  return std::array<Micro, sizeof...(R)>{&micro<R + 1, NV, AK, CT>...};
}

// kernels[ct][nv - 1][ak][rows - 1]
using Rows = std::array<std::array<std::array<Micro, mr>, 2>, 2>;
template <bool CT>
constexpr Rows kernel_table() {
  constexpr auto seq = std::make_integer_sequence<int, mr>{};
  return {{{{micro_row<1, false, CT>(seq), micro_row<1, true, CT>(seq)}},
           {{micro_row<2, false, CT>(seq), micro_row<2, true, CT>(seq)}}}};
}
const std::array<Rows, 2> kernels = {kernel_table<false>(), kernel_table<true>()};


// The panels of op(B)[p0, p0 + kc) x [j0, j1) into dst: panel q (columns j0 + 32 q ..) is kc
// rows of 32 floats at dst + q kc 32, zero past j1.
DESCENT_AVX512 void pack_b(const Product& g, std::int64_t p0, std::int64_t kc, std::int64_t j0, std::int64_t j1,
                           float* dst) {
  for (std::int64_t j = j0; j < j1; j += nr, dst += kc * nr) {
    const std::int64_t w = std::min<std::int64_t>(nr, j1 - j);
    if (!g.tb) {  // B(p, j) = b[p ldb + j]: copy rows
      const __mmask16 m0 = lanes(w), m1 = lanes(w - 16);
      const float* src = g.b + p0 * g.ldb + j;
      for (std::int64_t p = 0; p < kc; ++p, src += g.ldb) {
        _mm512_store_ps(dst + p * nr, _mm512_maskz_loadu_ps(m0, src));
        _mm512_store_ps(dst + p * nr + 16, _mm512_maskz_loadu_ps(m1, src + 16));
      }
      continue;
    }
    // B(p, j) = b[j ldb + p]: 16 x 16 blocks of b transposed
    for (int h = 0; h < 2; ++h) {
      const std::int64_t rows = std::min<std::int64_t>(16, w - 16 * h);  // columns of op(B) in this half
      const float* src = g.b + (j + 16 * h) * g.ldb + p0;
      for (std::int64_t p = 0; p < kc; p += 16) {
        const __mmask16 pm = lanes(kc - p);
        __m512 blk[16];
        for (int i = 0; i < 16; ++i) blk[i] = i < rows ? _mm512_maskz_loadu_ps(pm, src + i * g.ldb + p) : _mm512_setzero_ps();
        transpose16(blk);
        const std::int64_t np = std::min<std::int64_t>(16, kc - p);
        for (std::int64_t i = 0; i < np; ++i) _mm512_store_ps(dst + (p + i) * nr + 16 * h, blk[i]);
      }
    }
  }
}

struct Buffer {
  float* data = nullptr;
  std::size_t size = 0;
  ~Buffer() { std::free(data); }
  float* get(std::size_t n) {
    if (n > size) {
      std::free(data);
      data = static_cast<float*>(std::aligned_alloc(64, ((n * sizeof(float) + 63) / 64) * 64));
      size = data != nullptr ? n : 0;
      if (data == nullptr) throw std::bad_alloc();
    }
    return data;
  }
};

// Whether op(B) = B is copied into panels too (op(B) = B^T always is): where the block has
// at least 128 rows, so the copy is read by 11 microkernel rows or more (2 threads: 512 x 256
// from k = 256, 300 GFLOP/s read in place, 330 copied; 128 rows, 64 per thread: 293 in place,
// 271 copied).
bool pack_plain_b(std::int64_t rows) { return rows >= 128; }

// The rows [i0, i1) of op(A) = A^T (A(i, p) = a[p lda + i]) over [p0, p0 + kc) into dst:
// steps of 12 rows, each kc groups of 12 floats at dst + s kc 12 (zero past i1).
DESCENT_AVX512 void pack_at(const Product& g, std::int64_t i0, std::int64_t i1, std::int64_t p0, std::int64_t kc,
                            float* dst) {
  constexpr __mmask16 twelve = 0xfff;
  for (std::int64_t i = i0; i < i1; i += mr, dst += kc * mr) {
    const __mmask16 m = lanes(std::min<std::int64_t>(mr, i1 - i));
    const float* src = g.a + p0 * g.lda + i;
    std::int64_t p = 0;
    // four rows' 48 floats as three whole vectors (each 12-float store alone straddled a
    // cache line every other row)
    const __m512i join0 = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 16, 17, 18, 19);
    const __m512i join1 = _mm512_setr_epi32(4, 5, 6, 7, 8, 9, 10, 11, 16, 17, 18, 19, 20, 21, 22, 23);
    const __m512i join2 = _mm512_setr_epi32(8, 9, 10, 11, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27);
    for (; p + 4 <= kc; p += 4, src += 4 * g.lda) {
      const __m512 x0 = _mm512_maskz_loadu_ps(m, src), x1 = _mm512_maskz_loadu_ps(m, src + g.lda);
      const __m512 x2 = _mm512_maskz_loadu_ps(m, src + 2 * g.lda), x3 = _mm512_maskz_loadu_ps(m, src + 3 * g.lda);
      _mm512_storeu_ps(dst + p * mr, _mm512_permutex2var_ps(x0, join0, x1));
      _mm512_storeu_ps(dst + p * mr + 16, _mm512_permutex2var_ps(x1, join1, x2));
      _mm512_storeu_ps(dst + p * mr + 32, _mm512_permutex2var_ps(x2, join2, x3));
    }
    for (; p < kc; ++p, src += g.lda) {
      _mm512_mask_storeu_ps(dst + p * mr, twelve, _mm512_maskz_loadu_ps(m, src));
    }
  }
}

// The k block [p0, p0 + kc) of C[i0, i1) x [j0, j1) on the calling thread: op(B)'s panels at
// packed (panel q at packed + q kc 32; nullptr: read in place), packed_a the room for op(A) =
// A^T's copied steps (nullptr: read in place).
DESCENT_AVX512 void run_k_block(const Product& g, std::int64_t p0, std::int64_t kc, std::int64_t i0, std::int64_t i1,
                                std::int64_t j0, std::int64_t j1, const float* packed, float* packed_a) {
  const std::int64_t panels = (j1 - j0 + nr - 1) / nr;
  const float beta = p0 == 0 ? g.beta : 1.0f;
  const float* bias = p0 == 0 ? g.bias : nullptr;
  const bool relu = g.relu && p0 + kc >= g.k;
  for (std::int64_t ic = i0; ic < i1; ic += mc) {
    const std::int64_t ie = std::min(i1, ic + mc);
    if (packed_a != nullptr) pack_at(g, ic, ie, p0, kc, packed_a);
    for (std::int64_t q = 0; q < panels; ++q) {
      const std::int64_t j = j0 + q * nr, w = std::min<std::int64_t>(nr, j1 - j);
      const float* bp = packed != nullptr ? packed + q * kc * nr : g.b + p0 * g.ldb + j;
      const std::int64_t bs = packed != nullptr ? nr : g.ldb;
      const __mmask16 m0 = lanes(w), m1 = lanes(w - 16);
      const auto& row = kernels[g.ct ? 1 : 0][w > 16 ? 1 : 0][g.ta ? 1 : 0];
      for (std::int64_t i = ic; i < ie; i += mr) {
        const std::int64_t rows = std::min<std::int64_t>(mr, ie - i);
        const float* ap = packed_a != nullptr ? packed_a + (i - ic) * kc
                          : g.ta               ? g.a + p0 * g.lda + i
                                               : g.a + i * g.lda + p0;
        row[static_cast<std::size_t>(rows - 1)](kc, ap, packed_a != nullptr ? mr : g.lda, bp, bs, m0, m1,
                                                g.ct ? g.c + j * g.ldc + i : g.c + i * g.ldc + j, g.ldc, g.alpha, beta,
                                                bias == nullptr ? nullptr : g.ct ? bias + i : bias + j, relu);
      }
    }
  }
}

// op(A) = A^T is read 12 floats from each row of A, rows lda apart: copied into contiguous
// steps where the block has 4 panels or more to reuse them (2 threads, 256 x 784 from
// k = 128: 342-346 GFLOP/s in place, 360-369 copied). op(A) = A stays in place (its 12 rows
// stream; transposed copies measured no faster).
bool copy_at(const Product& g, std::int64_t j0, std::int64_t j1) { return g.ta && (j1 - j0 + nr - 1) / nr >= 4; }
std::size_t packed_a_size(const Product& g) { return static_cast<std::size_t>((mc + mr) * g.kc); }

// C[i0, i1) x [j0, j1) on the calling thread, op(B) copied (where it is) into this thread's
// own panels.
DESCENT_AVX512 void run_block(const Product& g, std::int64_t i0, std::int64_t i1, std::int64_t j0, std::int64_t j1) {
  if (i0 >= i1 || j0 >= j1) return;
  thread_local Buffer buffer, buffer_a;
  const bool pack = g.tb || pack_plain_b(i1 - i0);
  const std::int64_t panels = (j1 - j0 + nr - 1) / nr;
  float* packed = pack ? buffer.get(static_cast<std::size_t>(panels * g.kc * nr)) : nullptr;
  float* packed_a = copy_at(g, j0, j1) ? buffer_a.get(packed_a_size(g)) : nullptr;
  for (std::int64_t p0 = 0; p0 < g.k; p0 += g.kc) {
    const std::int64_t kc = std::min(g.kc, g.k - p0);
    if (pack) pack_b(g, p0, kc, j0, j1, packed);
    run_k_block(g, p0, kc, i0, i1, j0, j1, packed, packed_a);
  }
}

// The split: by rows where there are at least 4 steps per thread, each thread then writing
// whole rows of C: split by columns, both cores wrote into neighbouring cache lines of every
// row of a C not aligned to 128 bytes (2 threads, 256 x 256 from k = 32: 125 GFLOP/s by
// columns, 229 by rows). Except op(B) = B^T with fewer than 512 rows: split by rows, each
// thread would transpose all of B, split by columns half of it (128 x 256 from k = 784: 281-286
// GFLOP/s by rows, 316-318 by columns). And op(A) = A^T with at least twice as many columns
// as rows: split by rows, each thread copies all of op(B) (k x n), split by columns each
// copies op(A)'s steps (k x m), the smaller (session 13, Intel Xeon, 2 threads, 256 x 784
// from k = 512: 285-289 GFLOP/s by rows, 320 by columns; from k = 128: 314-320 by rows,
// 334-339 by columns; 256 x 256 stays by rows: 304-332 against 297-304). Fewer rows (a batch
// of 32 in the forward and dx products): by columns.
bool split_rows(const Product& g, int nt) {
  const std::int64_t panels = (g.n + nr - 1) / nr, steps = (g.m + mr - 1) / mr;
  if (g.ta && g.n >= 2 * g.m && panels >= 4 * nt) return false;
  return panels < nt || (steps >= 4 * nt && !(g.tb && g.m < 512));
}

// Thread t of nt: its share of C, contiguous ranges of rows (equal counts, each thread then
// ending on a shorter microkernel: 2 threads, 128 x 256 from k = 256, 383-395 GFLOP/s against
// 369-383 with rows in whole steps of 12, 60 and 68) or of 32-column panels.
void run_share(const Product& g, int t, int nt) {
  const std::int64_t panels = (g.n + nr - 1) / nr;
  if (split_rows(g, nt)) {
    run_block(g, g.m * t / nt, g.m * (t + 1) / nt, 0, g.n);
  } else {
    const std::int64_t q0 = panels * t / nt, q1 = panels * (t + 1) / nt;
    run_block(g, 0, g.m, q0 * nr, std::min(g.n, q1 * nr));
  }
}

DESCENT_AVX512 void scale_c(const Product& g) {
  for (std::int64_t i = 0; i < g.m; ++i) {
    float* row = g.c + i * g.ldc;
    for (std::int64_t j = 0; j < g.n; ++j) row[j] = g.beta == 0.0f ? 0.0f : g.beta * row[j];
  }
}

}  // namespace

bool available() {
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
  }();
  return yes;
}

namespace {

void product(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
             std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc, int threads,
             const float* bias, bool relu) {
  if (m <= 0 || n <= 0) return;
  const std::int64_t blocks = (k + kc_max - 1) / kc_max;
  const std::int64_t kc = blocks > 0 ? (k + blocks - 1) / blocks : 0;
  if (k <= 0 || alpha == 0.0f) {
    scale_c(Product{ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, kc});
    return;
  }
  // x w^T with few rows and a long k (the forward at batch 32 and 64: 32 x 256 from k = 784)
  // as its transpose w x^T, the transposed copies then of x's rows instead of w's (a quarter
  // or less of the elements), the microkernel storing its block of C^T transposed (one
  // thread, 32 x 256 from k = 784: 150-159 GFLOP/s, 123-127 without; 128 x 512 from k = 28,
  // where the transposed stores outweigh the copies saved: 0.8x)
  const bool ct = !ta && tb && 4 * m <= n && k >= 256;
  const Product g = ct ? Product{false, true, n, m, k, alpha, b, ldb, a, lda, beta, c, ldc, kc, true, bias, relu}
                       : Product{ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, kc, false, bias, relu};
  m = g.m;
  n = g.n;
  // Under 2^18 multiply-adds one thread, whatever the caller allows: split over 2 threads, the
  // 10-wide layer's products (82k multiply-adds at batch 32) ran at 0.4-0.75x of one thread
  // (the region's start and the join cost more than the half product saved)
  const std::int64_t panels = (n + nr - 1) / nr, steps = (m + mr - 1) / mr;
  if (m * n * k < serial_below) threads = 1;
  const int nt = static_cast<int>(std::min<std::int64_t>(threads, std::max(panels, steps)));
  if (nt <= 1) {
    run_block(g, 0, m, 0, n);
    return;
  }
  // A pack buffer that cannot be allocated throws std::bad_alloc on its thread: caught there
  // (an exception may not leave an OpenMP region) and thrown again here, on the caller's.
  std::exception_ptr failure;
#pragma omp parallel num_threads(nt)
  {
    try {
      run_share(g, omp_get_thread_num(), omp_get_num_threads());
    } catch (...) {
#pragma omp critical(descent_gemm_avx512_failure)
      if (!failure) failure = std::current_exception();
    }
  }
  if (failure) std::rethrow_exception(failure);
}

}  // namespace

void sgemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
           std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc, int threads) {
  product(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, threads, nullptr, false);
}

void linear(std::int64_t m, std::int64_t n, std::int64_t k, const float* x, const float* w, const float* bias, bool relu,
            float* y, int threads) {
  if (k <= 0) {  // no sum: the bias (or 0), then the ReLU
    for (std::int64_t i = 0; i < m; ++i) {
      for (std::int64_t j = 0; j < n; ++j) {
        const float v = bias != nullptr ? bias[j] : 0.0f;
        y[i * n + j] = relu ? (v > 0.0f ? v : 0.0f) : v;
      }
    }
    return;
  }
  product(false, true, m, n, k, 1.0f, x, k, w, k, 0.0f, y, n, threads, bias, relu);
}

#endif

}  // namespace descent::kernels::gemm_avx512
