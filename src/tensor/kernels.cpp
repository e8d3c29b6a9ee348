#include "descent/tensor/kernels.hpp"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "descent/tensor/fused_sums.hpp"
#include "descent/tensor/parallel.hpp"
#include "dispatch.hpp"
#include "gemm_avx512.hpp"
#include "gemm_dnnl.hpp"

namespace descent::kernels {
namespace {

constexpr std::int64_t reduce_block = lane_sum_block;  // one block size for every blocked sum

std::atomic<GemmBackend> g_gemm_backend{GemmBackend::automatic};

void check_matrix(const Tensor& t, const char* name) {
  if (t.ndim() != 2) throw ShapeError(std::string("gemm: ") + name + " must be 2-D, got " + t.shape().str());
}

// Sum of f(i) over [0, n) with partials per fixed block, added in block order.
template <class F>
double blocked_sum(std::int64_t n, F&& f) {
  const std::int64_t blocks = (n + reduce_block - 1) / reduce_block;
  if (blocks <= 1) {
    double s = 0.0;
    for (std::int64_t i = 0; i < n; ++i) s += f(i);
    return s;
  }
  std::vector<double> partial(static_cast<std::size_t>(blocks), 0.0);
  parallel_for(blocks, 8, [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t b = b0; b < b1; ++b) {
      const std::int64_t end = std::min(n, (b + 1) * reduce_block);
      double s = 0.0;
      for (std::int64_t i = b * reduce_block; i < end; ++i) s += f(i);
      partial[static_cast<std::size_t>(b)] = s;
    }
  });
  double s = 0.0;
  for (double p : partial) s += p;
  return s;
}

// o[c0, c1) += the rows of p (rows x cols), summed in row order.
template <class T>
DESCENT_DISPATCH void add_rows(const T* p, T* o, std::int64_t rows, std::int64_t cols, std::int64_t c0, std::int64_t c1) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* row = p + r * cols;
#pragma omp simd
    for (std::int64_t c = c0; c < c1; ++c) o[c] += row[c];
  }
}

// y = a x (beta_zero) or y = a x + b y over [i0, i1).
template <class T>
DESCENT_DISPATCH void scale_add(T a, const T* x, T b, T* y, bool beta_zero, std::int64_t i0, std::int64_t i1) {
  if (beta_zero) {
#pragma omp simd
    for (std::int64_t i = i0; i < i1; ++i) y[i] = a * x[i];
  } else {
#pragma omp simd
    for (std::int64_t i = i0; i < i1; ++i) y[i] = a * x[i] + b * y[i];
  }
}

}  // namespace

namespace {

std::atomic<bool> g_deterministic_products{false};
constexpr std::int64_t det_tile = 128;

// C in fixed det_tile x det_tile tiles, each one BLAS call on one thread (inside the
// parallel region BLAS does not start threads of its own): the tiles do not depend on the
// thread count, so neither does any element of C. `call` computes one tile.
template <class T, class Call>
void tiled_gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, const T* a, std::int64_t lda, const T* b,
                std::int64_t ldb, T* c, std::int64_t ldc, Call&& call) {
  const std::int64_t tm = (m + det_tile - 1) / det_tile, tn = (n + det_tile - 1) / det_tile;
#pragma omp parallel for schedule(static)
  for (std::int64_t t = 0; t < tm * tn; ++t) {
    const std::int64_t i0 = (t / tn) * det_tile, j0 = (t % tn) * det_tile;
    const std::int64_t mi = std::min(det_tile, m - i0), nj = std::min(det_tile, n - j0);
    const T* at = ta ? a + i0 : a + i0 * lda;
    const T* bt = tb ? b + j0 * ldb : b + j0;
    call(mi, nj, at, bt, c + i0 * ldc + j0);
  }
}

}  // namespace

namespace {

std::atomic<std::int64_t> g_gemm_serial_below{gemm_serial_below_default};

// While alive, the products called on this thread run on it alone. Both libraries read the
// OpenMP thread count per call (oneDNN: omp_get_max_threads; OpenBLAS's OpenMP build: its own
// count, which it stops re-reading from OpenMP once set to 1, hence its own setter both ways).
class SerialProducts {
 public:
  explicit SerialProducts(bool on, bool openblas) : on_(on), openblas_(openblas) {
    if (!on_) return;
    prev_ = omp_get_max_threads();
    if (openblas_) openblas_set_num_threads(1);
    else omp_set_num_threads(1);
  }
  ~SerialProducts() {
    if (!on_) return;
    if (openblas_) openblas_set_num_threads(prev_);
    else omp_set_num_threads(prev_);
  }
  SerialProducts(const SerialProducts&) = delete;
  SerialProducts& operator=(const SerialProducts&) = delete;

 private:
  bool on_, openblas_;
  int prev_ = 1;
};

bool run_serial(std::int64_t m, std::int64_t n, std::int64_t k) {
  if (omp_in_parallel() || omp_get_max_threads() <= 1) return false;  // already one thread
  const bool serial = m * n * k < g_gemm_serial_below.load(std::memory_order_relaxed);
  note_products_serial(serial);
  return serial;
}

}  // namespace

void set_gemm_serial_below(std::int64_t mnk) { g_gemm_serial_below.store(std::max<std::int64_t>(0, mnk)); }
std::int64_t gemm_serial_below() { return g_gemm_serial_below.load(); }

void set_deterministic_products(bool on) { g_deterministic_products.store(on, std::memory_order_relaxed); }
bool deterministic_products() { return g_deterministic_products.load(std::memory_order_relaxed); }

void set_gemm_backend(GemmBackend backend) { g_gemm_backend.store(backend); }
GemmBackend gemm_backend() { return g_gemm_backend.load(); }
bool gemm_backend_has_onednn() { return gemm_dnnl::available(); }
bool gemm_backend_has_descent() { return gemm_avx512::available(); }
std::string gemm_matmul_implementation(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k) {
  return gemm_dnnl::matmul_implementation(ta, tb, m, n, k, false, false);
}

namespace {

// The threads descent's kernel may use for an m n k product that run_serial said (serial) to
// run on one thread or not. The kernel runs its products under gemm_avx512::serial_below on
// the calling thread whatever it is allowed: last_products_serial says so too (reached only
// with gemm_serial_below lowered under them, as the parallel thread rule does; train_mlp at
// batches 64 and 128 under that rule unchanged within noise, docs/performance.md session 13).
// A product of one 12-row step and one 32-column panel, which the kernel keeps on one thread
// too, is not noted (it is under serial_below unless k exceeds 682).
int descent_threads(bool serial, std::int64_t m, std::int64_t n, std::int64_t k) {
  if (serial || omp_in_parallel()) return 1;
  if (m * n * k < gemm_avx512::serial_below && omp_get_max_threads() > 1) note_products_serial(true);
  return omp_get_max_threads();
}

}  // namespace

GemmBackend gemm_choice(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k) {
  // Measured per shape by bench/gemm_backends (docs/performance.md): on AVX-512 CPUs oneDNN's
  // sgemm was faster than OpenBLAS's (which runs its Haswell AVX2 kernels there) on every
  // shape of the MLP and LSTM steps and on a 2048^3 product; elsewhere OpenBLAS stays.
  if (!gemm_dnnl::available() || !gemm_dnnl::cpu_prefers_onednn()) return GemmBackend::openblas;
  // descent's own kernel where it beat dnnl_sgemm on every run (2 threads, session 12, Intel
  // Xeon): x w^T with few rows and k >= 256 (the MLP's forward at batch 32 and 64: 1.13-1.32x),
  // products with 16 or fewer rows or output columns on the side of the 10-wide layer
  // (x w^T into 10 columns: 1.04-1.16x; dy^T x into 10 rows: 1.27-1.49x), and dy w from
  // k <= 16 with 32 rows or fewer (1.15-1.20x). Elsewhere they were within a few per cent of
  // each other or oneDNN ahead (dy w at batch 512 from the 256-wide layer: 0.95x).
  if (gemm_avx512::available()) {
    // (bounded to the sizes measured: batches up to 64 into up to 1024 columns; an LSTM's
    // gates or a convolution's weight gradient of other sizes keep oneDNN)
    const bool few_rows_forward = !ta && tb && 4 * m <= n && k >= 256 && m <= 64 && n <= 1024;
    const bool narrow = (!ta && tb && n <= 16) || (ta && !tb && m <= 16);
    const bool short_k = !ta && !tb && k <= 16 && m <= 32;
    if (few_rows_forward || narrow || short_k) return GemmBackend::descent;
  }
  return GemmBackend::onednn;
}

template <>
void gemm_raw<float>(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
                     std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (deterministic_products()) {
    tiled_gemm<float>(ta, tb, m, n, a, lda, b, ldb, c, ldc,
                      [&](std::int64_t mi, std::int64_t nj, const float* at, const float* bt, float* ct) {
                        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                                    static_cast<int>(mi), static_cast<int>(nj), static_cast<int>(k), alpha, at,
                                    static_cast<int>(lda), bt, static_cast<int>(ldb), beta, ct, static_cast<int>(ldc));
                      });
    return;
  }
  GemmBackend use = g_gemm_backend.load(std::memory_order_relaxed);
  if (use == GemmBackend::automatic) use = gemm_choice(ta, tb, m, n, k);
  const bool serial = run_serial(m, n, k);
  if (use == GemmBackend::descent && gemm_avx512::available()) {
    gemm_avx512::sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, descent_threads(serial, m, n, k));
    return;
  }
  if (use == GemmBackend::onednn && gemm_dnnl::available() && k > 0) {
    SerialProducts one(serial, false);
    gemm_dnnl::sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  if (use == GemmBackend::onednn_matmul && gemm_dnnl::available() && k > 0) {
    SerialProducts one(serial, false);
    gemm_dnnl::matmul(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  SerialProducts one(serial, true);
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta, c,
              static_cast<int>(ldc));
}

template <>
void gemm_raw<double>(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, double alpha, const double* a,
                      std::int64_t lda, const double* b, std::int64_t ldb, double beta, double* c, std::int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (deterministic_products()) {
    tiled_gemm<double>(ta, tb, m, n, a, lda, b, ldb, c, ldc,
                       [&](std::int64_t mi, std::int64_t nj, const double* at, const double* bt, double* ct) {
                         cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                                     static_cast<int>(mi), static_cast<int>(nj), static_cast<int>(k), alpha, at,
                                     static_cast<int>(lda), bt, static_cast<int>(ldb), beta, ct, static_cast<int>(ldc));
                       });
    return;
  }
  SerialProducts one(run_serial(m, n, k), true);
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta, c,
              static_cast<int>(ldc));
}

bool fused_linear(DType dtype, std::int64_t batch, std::int64_t out) {
  if (dtype != DType::f32 || deterministic_products() || !gemm_dnnl::available()) return false;
  const GemmBackend use = g_gemm_backend.load(std::memory_order_relaxed);
  if (use == GemmBackend::onednn_matmul) return true;
  // automatic, where dnnl_sgemm is the automatic library: the primitive with the bias (and
  // ReLU) in it against dnnl_sgemm and the separate steps, bench/gemm_backends at 2 threads
  // (docs/performance.md session 11): 1.03-1.28x from 128 rows up (the MLP's and the LSTM's
  // forward products), 1.01-1.16x on 64 rows into 256 columns, 0.86x on 64 rows into 10,
  // 0.72-0.95x on 32 rows
  return use == GemmBackend::automatic && gemm_dnnl::cpu_prefers_onednn() &&
         (batch >= 128 || (batch >= 64 && out >= 128));
}

bool descent_linear(std::int64_t m, std::int64_t n, std::int64_t k) {
  if (deterministic_products() || !gemm_avx512::available()) return false;
  const GemmBackend use = g_gemm_backend.load(std::memory_order_relaxed);
  if (use == GemmBackend::descent) return true;
  if (use != GemmBackend::automatic) return false;
  // Where linear would be oneDNN's primitive (fused_linear), descent's kernel with the bias
  // and ReLU in its stores where it beat the primitive on every run (session 13, Intel Xeon,
  // 2 threads, bench/gemm_backends' bias_relu columns, descent over the primitive, 3 runs
  // alternated, and a bench of ours of the same products): at 128 rows into 256 columns from
  // k = 784 (the MLP's first layer) 1.01-1.04x, from k = 256 1.06-1.13x, into 128 columns
  // from k = 256 1.10-1.11x, into 10 from k = 256 1.12-1.29x; 256 x 256 from k = 256
  // 1.06-1.07x. Not where the primitive kept up: 512 x 256 from k = 784 (0.96-1.04x),
  // 128 x 512 from k = 784 (0.93-0.95x), 512 x 10 from k = 256 (0.995-1.05x), 128 x 256 from
  // k = 1024 (0.99-1.01x). Nor where the product won but the step did not (train_mlp, 2
  // threads, A/B): 64 rows (1.12-1.28x alone; the step 0.8x: the kernel split 64 rows by
  // rows of x, each core reading all of w, whose update by the optimizer, split over both
  // cores, then took twice as long) and 512 x 256 from k = 256 (1.01-1.05x alone, split by
  // rows, each core reading all of w: the step unchanged within its noise). Bounded to the
  // sizes measured.
  if (fused_linear(DType::f32, m, n)) {
    const bool layer = m >= 128 && m < 512 && n >= 128 && n <= 256 && k >= 256 && k <= 784 &&
                       m * k <= (std::int64_t{1} << 17);
    const bool narrow = m <= 128 && n <= 16 && k >= 256 && k <= 784;
    return layer || narrow;
  }
  // Where the separate steps would run descent's kernel (gemm_choice): its bias and ReLU in
  // the stores instead of the bias rows before and the ReLU pass after, bit for bit the same
  // result.
  return gemm_choice(false, true, m, n, k) == GemmBackend::descent;
}

void linear(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y, bool relu) {
  check_matrix(x, "x");
  check_matrix(w, "w");
  check_matrix(y, "y");
  check_same_dtype(x, w, "linear");
  check_same_dtype(x, y, "linear");
  const std::int64_t m = x.dim(0), k = x.dim(1), n = w.dim(0);
  if (w.dim(1) != k || y.dim(0) != m || y.dim(1) != n || (b.defined() && b.numel() != n)) {
    throw ShapeError("linear: x " + x.shape().str() + ", w " + w.shape().str() + ", b " +
                     (b.defined() ? b.shape().str() : std::string("none")) + " into y " + y.shape().str());
  }
  if (b.defined()) check_same_dtype(x, b, "linear");
  if (m == 0 || n == 0) return;
  if (x.dtype() == DType::f32 && descent_linear(m, n, k)) {
    gemm_avx512::linear(m, n, k, x.data<float>(), w.data<float>(), b.defined() ? b.data<float>() : nullptr, relu,
                        y.data<float>(), descent_threads(run_serial(m, n, k), m, n, k));
    return;
  }
  if (fused_linear(x.dtype(), m, n) && k > 0) {
    SerialProducts one(run_serial(m, n, k), false);
    gemm_dnnl::matmul_bias_act(false, true, m, n, k, x.data<float>(), k, w.data<float>(), k,
                               b.defined() ? b.data<float>() : nullptr, relu, y.data<float>(), n);
    return;
  }
  dispatch_float(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* out = y.data<T>();
    if (b.defined()) {
      const T* bias = b.data<T>();
      for (std::int64_t r = 0; r < m; ++r) std::copy(bias, bias + n, out + r * n);
    }
    gemm_raw<T>(false, true, m, n, k, T(1), x.data<T>(), k, w.data<T>(), k, b.defined() ? T(1) : T(0), out, n);
    if (relu) {
      parallel_for_elements(m * n, [&](std::int64_t i0, std::int64_t i1) {
        for (std::int64_t i = i0; i < i1; ++i) out[i] = out[i] > T(0) ? out[i] : T(0);
      });
    }
  });
}

void gemm(const Tensor& a, bool ta, const Tensor& b, bool tb, const Tensor& c, double alpha, double beta) {
  check_matrix(a, "A");
  check_matrix(b, "B");
  check_matrix(c, "C");
  check_same_dtype(a, b, "gemm");
  check_same_dtype(a, c, "gemm");
  const std::int64_t m = ta ? a.dim(1) : a.dim(0);
  const std::int64_t k = ta ? a.dim(0) : a.dim(1);
  const std::int64_t kb = tb ? b.dim(1) : b.dim(0);
  const std::int64_t n = tb ? b.dim(0) : b.dim(1);
  if (k != kb || c.dim(0) != m || c.dim(1) != n) {
    throw ShapeError("gemm: op(A) " + std::to_string(m) + "x" + std::to_string(k) + " times op(B) " + std::to_string(kb) +
                     "x" + std::to_string(n) + " into C " + c.shape().str());
  }
  dispatch_float(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    gemm_raw<T>(ta, tb, m, n, k, static_cast<T>(alpha), a.data<T>(), a.dim(1), b.data<T>(), b.dim(1),
                static_cast<T>(beta), c.data<T>(), c.dim(1));
  });
}

namespace {

// sum over [i0, i1) of (a_i - b_i)^2 (minus_b false: of a_i^2, b unread) in lane_sum_lanes
// double lanes (lane l: i = i0 + l mod 8), lanes added in order, then the tail; copy_to[i] =
// a[i] when given. squared_distance's blocks and squares_in_lanes' (fused_sums.hpp).
template <class T, bool minus_b = true>
DESCENT_DISPATCH double squared_distance_block(const T* a, const T* b, std::int64_t i0, std::int64_t i1, T* copy_to) {
  constexpr int lanes = lane_sum_lanes;
  const auto diff = [](T ai, [[maybe_unused]] T bi) {
    if constexpr (minus_b) {
      return static_cast<double>(ai) - static_cast<double>(bi);
    } else {
      return static_cast<double>(ai);
    }
  };
  double acc[lanes] = {};
  std::int64_t i = i0;
  for (; i + lanes <= i1; i += lanes) {
    T av[lanes], bv[lanes] = {};
    for (int l = 0; l < lanes; ++l) {
      av[l] = a[i + l];
      if constexpr (minus_b) bv[l] = b[i + l];
    }
    for (int l = 0; l < lanes; ++l) {
      const double d = diff(av[l], bv[l]);
      acc[l] += d * d;
    }
    if (copy_to != nullptr) {
      for (int l = 0; l < lanes; ++l) copy_to[i + l] = av[l];
    }
  }
  double s = 0.0;
  for (int l = 0; l < lanes; ++l) s += acc[l];
  for (; i < i1; ++i) {
    const T ai = a[i];
    const double d = diff(ai, minus_b ? b[i] : T{});
    s += d * d;
    if (copy_to != nullptr) copy_to[i] = ai;
  }
  return s;
}

// sum_i x_i^2 in squared_distance's blocks, the blocks shared out over the threads (partials
// per block, added in block order) when there are more than 8 of them.
template <class T>
double squares_in_lanes_impl(const T* x, std::int64_t n) {
  if (n <= 0) return 0.0;
  const std::int64_t blocks = (n + lane_sum_block - 1) / lane_sum_block;
  std::vector<double> partial(static_cast<std::size_t>(blocks), 0.0);
  parallel_for(blocks, 8, [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t b = b0; b < b1; ++b) {
      partial[static_cast<std::size_t>(b)] = squared_distance_block<T, false>(
          x, nullptr, b * lane_sum_block, std::min(n, (b + 1) * lane_sum_block), nullptr);
    }
  });
  double s = 0.0;
  for (const double p : partial) s += p;
  return s;
}

template <class T>
double squared_distance_impl(const T* a, const T* b, std::int64_t n, T* copy_to) {
  // One thread: the pass is bound by memory (12 bytes per float element), and a parallel
  // region costs more than it saves at a few hundred thousand parameters (far more on a
  // loaded machine: bench/trajectory_step). The blocks keep the order fixed all the same.
  double s = 0.0;
  for (std::int64_t blk = 0; blk * reduce_block < n; ++blk) {
    s += squared_distance_block(a, b, blk * reduce_block, std::min(n, (blk + 1) * reduce_block), copy_to);
  }
  return s;
}

}  // namespace

double squared_distance(const float* a, const float* b, std::int64_t n, float* copy_to) {
  return squared_distance_impl(a, b, n, copy_to);
}

double squared_distance(const double* a, const double* b, std::int64_t n, double* copy_to) {
  return squared_distance_impl(a, b, n, copy_to);
}

double squares_in_lanes(const float* x, std::int64_t n) { return squares_in_lanes_impl(x, n); }
double squares_in_lanes(const double* x, std::int64_t n) { return squares_in_lanes_impl(x, n); }

double squares_in_lanes(const Tensor& x) {
  if (x.dtype() == DType::f32) return squares_in_lanes(x.data<float>(), x.numel());
  if (x.dtype() == DType::f64) return squares_in_lanes(x.data<double>(), x.numel());
  throw ShapeError("squares_in_lanes: expected a float32 or float64 tensor");
}

double squared_distance(const Tensor& a, const Tensor& b) {
  if (a.numel() != b.numel()) throw ShapeError("squared_distance: " + a.shape().str() + " and " + b.shape().str());
  check_same_dtype(a, b, "squared_distance");
  return dispatch_float(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    return squared_distance(a.data<T>(), b.data<T>(), a.numel(), static_cast<T*>(nullptr));
  });
}

double sum(const Tensor& x) {
  return dispatch_float(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* p = x.data<T>();
    return blocked_sum(x.numel(), [p](std::int64_t i) { return static_cast<double>(p[i]); });
  });
}

double sum_squares(const Tensor& x) {
  return dispatch_float(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* p = x.data<T>();
    return blocked_sum(x.numel(), [p](std::int64_t i) { return static_cast<double>(p[i]) * static_cast<double>(p[i]); });
  });
}

double dot(const Tensor& a, const Tensor& b) {
  if (a.numel() != b.numel()) throw ShapeError("dot: " + a.shape().str() + " and " + b.shape().str());
  check_same_dtype(a, b, "dot");
  return dispatch_float(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* p = a.data<T>();
    const T* q = b.data<T>();
    return blocked_sum(a.numel(), [p, q](std::int64_t i) { return static_cast<double>(p[i]) * static_cast<double>(q[i]); });
  });
}

void sum_rows(const Tensor& x, const Tensor& out, double beta) {
  if (x.ndim() != 2 || out.numel() != x.dim(1)) {
    throw ShapeError("sum_rows: " + x.shape().str() + " into " + out.shape().str());
  }
  check_same_dtype(x, out, "sum_rows");
  dispatch_float(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const std::int64_t rows = x.dim(0);
    const std::int64_t cols = x.dim(1);
    const T* p = x.data<T>();
    T* o = out.data<T>();
    // Columns are split across threads (small passes: one thread, as parallel_for_elements);
    // each column is summed over rows in order.
    const std::int64_t grain = rows * cols < elementwise_serial_below()
                                   ? cols
                                   : std::max<std::int64_t>(64, parallel_grain / std::max<std::int64_t>(rows, 1));
    parallel_for(cols, grain,
                 [&](std::int64_t c0, std::int64_t c1) {
                   for (std::int64_t c = c0; c < c1; ++c) o[c] = beta == 0.0 ? T(0) : o[c];
                   add_rows(p, o, rows, cols, c0, c1);
                 });
  });
}

void axpby(double alpha, const Tensor& x, double beta, const Tensor& y) {
  if (x.numel() != y.numel()) throw ShapeError("axpby: " + x.shape().str() + " and " + y.shape().str());
  check_same_dtype(x, y, "axpby");
  dispatch_float(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    const T a = static_cast<T>(alpha);
    const T b = static_cast<T>(beta);
    parallel_for_elements(x.numel(),
                 [&](std::int64_t i0, std::int64_t i1) { scale_add(a, xp, b, yp, beta == 0.0, i0, i1); });
  });
}

bool all_finite(const Tensor& x) {
  return dispatch_float(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* p = x.data<T>();
    // Summing x*0 turns any Inf/NaN into NaN and keeps finite values at 0.
    double s = blocked_sum(x.numel(), [p](std::int64_t i) { return static_cast<double>(p[i]) * 0.0; });
    return !std::isnan(s);
  });
}

}  // namespace descent::kernels
