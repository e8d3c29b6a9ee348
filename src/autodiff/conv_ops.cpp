// Convolution and pooling on the tape (include/descent/autodiff/conv.hpp). Each node's
// four rules sit side by side; the comment above each rule is its equation (x' tangent,
// gy = dL/dy, R(.) the derivative along v).
//
// conv2d works example by example on the patch matrix ("im2col": row (c, u, v), column
// (i, j) holds x[c, i s - p + u, j s - p + v]): the forward is one GEMM per example, the
// input gradient a transposed GEMM followed by the adjoint scatter ("col2im"), the weight
// gradient a GEMM of gy with the patches. Examples are processed in chunks whose size
// depends only on the batch size; chunks run in parallel (GEMM single-threaded inside)
// and the weight gradient adds the per-chunk partials in chunk order, so results do not
// depend on the thread count.
#include "descent/autodiff/conv.hpp"

#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define DESCENT_POOL_AVX512 1  // relu_max_pool_2x2_avx512, chosen at run time
#endif

#include "descent/autodiff/ops.hpp"  // relu (relu_max_pool2d unfused)
#include "descent/tensor/kernels.hpp"
#include "descent/tensor/parallel.hpp"
#include "../tensor/dispatch.hpp"  // DESCENT_DISPATCH
#include "conv_dnnl.hpp"
#include "node_util.hpp"

namespace descent::autodiff {
namespace {

using namespace detail;

// ============================================================================
// Geometry and the patch-matrix kernels
// ============================================================================
struct ConvGeom {
  std::int64_t batch = 0, c_in = 0, h = 0, w = 0;
  std::int64_t c_out = 0, kh = 0, kw = 0;
  std::int64_t stride = 1, pad = 0, h_out = 0, w_out = 0;
  std::int64_t k() const { return c_in * kh * kw; }  // rows of the patch matrix
  std::int64_t p() const { return h_out * w_out; }   // its columns
  std::int64_t in_size() const { return c_in * h * w; }
  std::int64_t out_size() const { return c_out * p(); }
  std::int64_t w_size() const { return c_out * k(); }
};

// Examples per chunk: at most `max_chunks` chunks, boundaries fixed by the batch size.
constexpr std::int64_t max_chunks = 16;
struct Chunks {
  std::int64_t size = 1, count = 0;
};
Chunks chunks_of(std::int64_t batch) {
  Chunks c;
  c.size = std::max<std::int64_t>(1, (batch + max_chunks - 1) / max_chunks);
  c.count = (batch + c.size - 1) / c.size;
  return c;
}

// Multiply-adds below which a group of chunks is not worth a thread (entering a parallel
// region costs microseconds, more on a loaded machine).
constexpr std::int64_t min_parallel_work = std::int64_t{1} << 20;

// Runs f(chunk, n0, n1) over the chunks of the batch, groups of chunks in parallel, each
// group holding at least min_parallel_work multiply-adds (work_per_example of them per
// example). Groups are handed out dynamically, so a thread whose core is busy with other
// work takes fewer of them; which thread runs a chunk never changes what it computes.
template <class F>
void for_chunks(const Chunks& c, std::int64_t batch, std::int64_t work_per_example, F&& f) {
  const std::int64_t per_chunk = std::max<std::int64_t>(1, work_per_example * c.size);
  const std::int64_t grain = std::max<std::int64_t>(1, min_parallel_work / per_chunk);
  const std::int64_t groups = (c.count + grain - 1) / grain;
  auto run_group = [&](std::int64_t gi) {
    for (std::int64_t ci = gi * grain; ci < std::min(c.count, (gi + 1) * grain); ++ci) {
      f(ci, ci * c.size, std::min(batch, (ci + 1) * c.size));
    }
  };
  if (groups <= 1 || num_threads() <= 1) {
    for (std::int64_t gi = 0; gi < groups; ++gi) run_group(gi);
    return;
  }
#pragma omp parallel for schedule(dynamic, 1)
  for (std::int64_t gi = 0; gi < groups; ++gi) run_group(gi);
}

// The example x[C_in, H, W] with `pad` zeros on every side: xp[C_in, H + 2p, W + 2p].
template <class T>
void pad_example(const ConvGeom& g, const T* x, T* xp) {
  const std::int64_t hp = g.h + 2 * g.pad, wp = g.w + 2 * g.pad;
  for (std::int64_t c = 0; c < g.c_in; ++c) {
    T* plane = xp + c * hp * wp;
    std::fill(plane, plane + g.pad * wp, T(0));                        // top rows
    std::fill(plane + (g.pad + g.h) * wp, plane + hp * wp, T(0));      // bottom rows
    for (std::int64_t r = 0; r < g.h; ++r) {
      T* row = plane + (r + g.pad) * wp;
      std::fill(row, row + g.pad, T(0));
      std::memcpy(row + g.pad, x + (c * g.h + r) * g.w, static_cast<std::size_t>(g.w) * sizeof(T));
      std::fill(row + g.pad + g.w, row + wp, T(0));
    }
  }
}

// dst[0, n) = src[0, n) for the short rows of im2col (an output row of a few dozen
// elements): fixed 32-byte moves that the compiler inlines, the last one overlapping the
// previous, instead of a library memcpy call per row (4x faster on 14-element rows).
template <class T>
inline void copy_row(T* dst, const T* src, std::int64_t n) {
  constexpr std::int64_t lanes = 32 / sizeof(T);
  if (n < lanes) {
    for (std::int64_t j = 0; j < n; ++j) dst[j] = src[j];
    return;
  }
  std::int64_t j = 0;
  for (; j + lanes <= n; j += lanes) std::memcpy(dst + j, src + j, 32);
  if (j < n) std::memcpy(dst + n - lanes, src + n - lanes, 32);
}

// dst[0, n) += src[0, n) for the short rows of col2im (a row of w_out elements, 14 or 7
// in the benchmark CNN). With AVX-512 (compile-time: -march of a host that has it) a row
// of up to 16 floats is one masked load-add-store, instead of a vector pass that leaves
// most of a short row to a scalar remainder; elsewhere the plain loop.
template <class T>
inline void add_row(T* dst, const T* src, std::int64_t n) {
#pragma omp simd
  for (std::int64_t j = 0; j < n; ++j) dst[j] += src[j];
}
#ifdef __AVX512F__
template <>
inline void add_row<float>(float* dst, const float* src, std::int64_t n) {
  std::int64_t j = 0;
  for (; j + 16 <= n; j += 16) _mm512_storeu_ps(dst + j, _mm512_add_ps(_mm512_loadu_ps(dst + j), _mm512_loadu_ps(src + j)));
  if (j < n) {
    const auto m = static_cast<__mmask16>((1u << (n - j)) - 1u);
    _mm512_mask_storeu_ps(dst + j, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, dst + j), _mm512_maskz_loadu_ps(m, src + j)));
  }
}
#endif

// cols[K, P] = the patches of one example x[C_in, H, W] (zeros outside the image):
// row (c, u, v), column (i, j) holds x[c, i s - p + u, j s - p + v]. `scratch` holds
// C_in (H + 2p) (W + 2p) elements (unused without padding).
template <class T>
void im2col(const ConvGeom& g, const T* x, T* scratch, T* cols) {
  const std::int64_t P = g.p(), s = g.stride;
  const std::int64_t hp = g.h + 2 * g.pad, wp = g.w + 2 * g.pad;
  const T* src = x;
  if (g.pad > 0) {
    pad_example(g, x, scratch);
    src = scratch;
  }
  for (std::int64_t c = 0; c < g.c_in; ++c) {
    for (std::int64_t u = 0; u < g.kh; ++u) {
      for (std::int64_t v = 0; v < g.kw; ++v) {
        T* row = cols + ((c * g.kh + u) * g.kw + v) * P;
        const T* base = src + (c * hp + u) * wp + v;
        if (s == 1) {
          for (std::int64_t i = 0; i < g.h_out; ++i) copy_row(row + i * g.w_out, base + i * wp, g.w_out);
        } else {
          for (std::int64_t i = 0; i < g.h_out; ++i) {
            const T* in = base + i * s * wp;
            T* out = row + i * g.w_out;
            for (std::int64_t j = 0; j < g.w_out; ++j) out[j] = in[j * s];
          }
        }
      }
    }
  }
}

// gx[C_in, H, W] (beta 0: =, 1: +=) the adjoint of im2col applied to gcols[K, P].
// `scratch` holds C_in (H + 2p) (W + 2p) elements.
template <class T>
void col2im(const ConvGeom& g, const T* cols, T* scratch, T* gx, double beta) {
  const std::int64_t P = g.p(), s = g.stride;
  const std::int64_t hp = g.h + 2 * g.pad, wp = g.w + 2 * g.pad;
  std::fill(scratch, scratch + g.c_in * hp * wp, T(0));
  for (std::int64_t c = 0; c < g.c_in; ++c) {
    for (std::int64_t u = 0; u < g.kh; ++u) {
      for (std::int64_t v = 0; v < g.kw; ++v) {
        const T* row = cols + ((c * g.kh + u) * g.kw + v) * P;
        T* base = scratch + (c * hp + u) * wp + v;
        for (std::int64_t i = 0; i < g.h_out; ++i) {
          T* out = base + i * s * wp;
          const T* in = row + i * g.w_out;
          if (s == 1) {
            add_row(out, in, g.w_out);
          } else {
            for (std::int64_t j = 0; j < g.w_out; ++j) out[j * s] += in[j];
          }
        }
      }
    }
  }
  for (std::int64_t c = 0; c < g.c_in; ++c) {
    for (std::int64_t r = 0; r < g.h; ++r) {
      const T* in = scratch + (c * hp + r + g.pad) * wp + g.pad;
      T* out = gx + (c * g.h + r) * g.w;
      if (beta == 0.0) {
        std::memcpy(out, in, static_cast<std::size_t>(g.w) * sizeof(T));
      } else {
#pragma omp simd
        for (std::int64_t q = 0; q < g.w; ++q) out[q] += in[q];
      }
    }
  }
}

// Elements of the padded copy of one example (the scratch of im2col / col2im).
std::int64_t padded_size(const ConvGeom& g) { return g.c_in * (g.h + 2 * g.pad) * (g.w + 2 * g.pad); }

// Up to two bilinear terms per pass (the value, or the two halves of an R-rule).
template <class T>
struct Terms {
  const T* a[2] = {nullptr, nullptr};
  const T* b[2] = {nullptr, nullptr};
  int n = 0;
  void add(const T* first, const T* second) {
    a[n] = first;
    b[n] = second;
    ++n;
  }
};

conv_dnnl::Geom dnnl_geom(const ConvGeom& g) {
  return {g.batch, g.c_in, g.h, g.w, g.c_out, g.kh, g.kw, g.stride, g.pad, g.h_out, g.w_out};
}

// oneDNN's direct kernels vectorize over channels: with fewer than 8 input channels (a first
// layer on grey or RGB images) the patch matrix + sgemm is faster (measured on the benchmark
// CNN's first layer, 1 -> 32 channels: forward 1.2 ms against 2.3 ms for a batch of 128).
bool use_dnnl(const ConvGeom& g) { return conv_dnnl::active() && g.c_in >= 8; }

// out[n] = bias + sum_t conv(x_t[n], w_t) for every example; terms are (w_t, x_t).
template <class T>
void conv_forward(const ConvGeom& g, const Terms<T>& terms, const T* bias, T* out) {
  if constexpr (std::is_same_v<T, float>) {
    if (use_dnnl(g)) {
      conv_dnnl::forward(dnnl_geom(g), terms.a, terms.b, terms.n, bias, out);
      return;
    }
  }
  const std::int64_t K = g.k(), P = g.p(), co = g.c_out;
  const Chunks ch = chunks_of(g.batch);
  const DType dt = dtype_of<T>();
  for_chunks(ch, g.batch, g.w_size() * g.p(), [&](std::int64_t, std::int64_t n0, std::int64_t n1) {
    Tensor cols_buf = terms.n > 0 ? Tensor::empty(Shape{K * P + padded_size(g)}, dt) : Tensor();
    T* cols = terms.n > 0 ? cols_buf.data<T>() : nullptr;
    T* scratch = terms.n > 0 ? cols + K * P : nullptr;
    for (std::int64_t n = n0; n < n1; ++n) {
      T* y = out + n * g.out_size();
      T beta = T(0);
      if (bias != nullptr) {
        for (std::int64_t o = 0; o < co; ++o) std::fill(y + o * P, y + (o + 1) * P, bias[o]);
        beta = T(1);
      }
      for (int t = 0; t < terms.n; ++t) {
        im2col(g, terms.b[t] + n * g.in_size(), scratch, cols);
        kernels::gemm_raw<T>(false, false, co, P, K, T(1), terms.a[t], K, cols, P, beta, y, P);
        beta = T(1);
      }
      if (beta == T(0)) std::fill(y, y + g.out_size(), T(0));
    }
  });
}

// gx[n] (beta 0: =, 1: +=) sum_t conv_transpose(g_t[n], w_t); terms are (w_t, g_t).
template <class T>
void conv_input_grad(const ConvGeom& g, const Terms<T>& terms, T* gx, double beta) {
  if constexpr (std::is_same_v<T, float>) {
    if (use_dnnl(g)) {
      conv_dnnl::input_grad(dnnl_geom(g), terms.a, terms.b, terms.n, gx, beta);
      return;
    }
  }
  const std::int64_t K = g.k(), P = g.p(), co = g.c_out;
  const Chunks ch = chunks_of(g.batch);
  const DType dt = dtype_of<T>();
  for_chunks(ch, g.batch, g.w_size() * g.p(), [&](std::int64_t, std::int64_t n0, std::int64_t n1) {
    Tensor cols_buf = Tensor::empty(Shape{K * P + padded_size(g)}, dt);
    T* gcols = cols_buf.data<T>();
    T* scratch = gcols + K * P;
    for (std::int64_t n = n0; n < n1; ++n) {
      for (int t = 0; t < terms.n; ++t) {
        kernels::gemm_raw<T>(true, false, K, P, co, T(1), terms.a[t], K, terms.b[t] + n * g.out_size(), P,
                             t == 0 ? T(0) : T(1), gcols, P);
      }
      col2im(g, gcols, scratch, gx + n * g.in_size(), beta);
    }
  });
}

// The sum of src[0, n) accumulated in double (one output plane of gy, for the bias
// gradient), compiled for each CPU level (the baseline's SSE2 converts two floats at a time,
// AVX-512 eight).
template <class T>
DESCENT_DISPATCH double sum_in_double(const T* src, std::int64_t n) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (std::int64_t q = 0; q < n; ++q) s += static_cast<double>(src[q]);
  return s;
}

// gw (beta_w) sum_n sum_t corr(g_t[n], x_t[n]) for the weight terms (g_t, x_t), and
// gb (beta_b) sum_{n, i, j} sum_t gb_t[n] for the bias terms. Either may be null.
// Per-chunk partials are added in chunk order: the same sums for any thread count.
template <class T>
void conv_weight_grad(const ConvGeom& g, const Terms<T>& wterms, T* gw, double beta_w, const Terms<T>& bterms, T* gb,
                      double beta_b) {
  const std::int64_t K = g.k(), P = g.p(), co = g.c_out;
  bool do_w = gw != nullptr && wterms.n > 0;
  const bool do_b = gb != nullptr && bterms.n > 0;
  if constexpr (std::is_same_v<T, float>) {
    if (do_w && use_dnnl(g)) {
      conv_dnnl::weight_grad(dnnl_geom(g), wterms.a, wterms.b, wterms.n, gw, beta_w);
      do_w = false;  // the bias gradient below, as on the im2col path
    }
  }
  if (!do_w && !do_b) return;
  const Chunks ch = chunks_of(g.batch);
  const DType dt = dtype_of<T>();
  const std::int64_t wsz = do_w ? g.w_size() : 0, bsz = do_b ? co : 0, stride = wsz + bsz;
  const bool direct = ch.count == 1;  // one chunk: write straight into the sinks
  const bool reference = conv_dnnl::reference_kernels();
  Tensor partial = direct ? Tensor() : Tensor::empty(Shape{ch.count * stride}, dt);
  for_chunks(ch, g.batch, g.w_size() * g.p(), [&](std::int64_t ci, std::int64_t n0, std::int64_t n1) {
    T* pw = direct ? gw : partial.data<T>() + ci * stride;
    T* pb = direct ? gb : partial.data<T>() + ci * stride + wsz;
    if (do_w) {
      Tensor cols_buf = Tensor::empty(Shape{K * P + padded_size(g)}, dt);
      T* cols = cols_buf.data<T>();
      T* scratch = cols + K * P;
      T beta = direct ? static_cast<T>(beta_w) : T(0);
      for (std::int64_t n = n0; n < n1; ++n) {
        for (int t = 0; t < wterms.n; ++t) {
          im2col(g, wterms.b[t] + n * g.in_size(), scratch, cols);
          kernels::gemm_raw<T>(false, true, co, K, P, T(1), wterms.a[t] + n * g.out_size(), P, cols, P, beta, pw, K);
          beta = T(1);
        }
      }
    }
    if (do_b) {
      std::vector<double> acc(static_cast<std::size_t>(co), 0.0);
      for (std::int64_t n = n0; n < n1; ++n) {
        for (int t = 0; t < bterms.n; ++t) {
          const T* src = bterms.a[t] + n * g.out_size();
          for (std::int64_t o = 0; o < co; ++o) {
            if (reference) {  // DESCENT_CONV_KERNELS=reference: the loop compiled for the baseline
              double s = 0.0;
#pragma omp simd reduction(+ : s)
              for (std::int64_t q = 0; q < P; ++q) s += static_cast<double>(src[o * P + q]);
              acc[static_cast<std::size_t>(o)] += s;
            } else {
              acc[static_cast<std::size_t>(o)] += sum_in_double(src + o * P, P);
            }
          }
        }
      }
      const bool add = direct && beta_b != 0.0;
      for (std::int64_t o = 0; o < co; ++o) {
        const T v = static_cast<T>(acc[static_cast<std::size_t>(o)]);
        pb[o] = add ? pb[o] + v : v;
      }
    }
  });
  if (direct) return;
  const T* part = partial.data<T>();
  auto reduce = [&](T* dst, double beta, std::int64_t offset, std::int64_t count) {
    parallel_for(count, parallel_grain, [&](std::int64_t e0, std::int64_t e1) {
      for (std::int64_t e = e0; e < e1; ++e) {
        T s = beta == 0.0 ? T(0) : dst[e];
        for (std::int64_t c = 0; c < ch.count; ++c) s += part[c * stride + offset + e];
        dst[e] = s;
      }
    });
  };
  if (do_w) reduce(gw, beta_w, 0, wsz);
  if (do_b) reduce(gb, beta_b, wsz, bsz);
}

template <class T>
const T* ptr(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

template <class T>
void conv_tangent_backward(Tape& t, const Node& n, const ConvGeom& g, const T* gy, const T* rgy);

// ============================================================================
// conv2d: y = conv(x, w) + b     x [B, C_in, H, W], w [C_out, C_in, kh, kw], b [C_out]
// ============================================================================
class Conv2dNode final : public Node {
 public:
  explicit Conv2dNode(const ConvGeom& geom) : g(geom) {}
  const char* name() const override { return "conv2d"; }
  bool has_bias() const { return num_inputs == 3; }

  // y' = conv(x', w) + conv(x, w') + b'
  void tangent_forward(Tape& t) override {
    tangent = Tensor::empty(value.shape(), value.dtype());
    dispatch_float(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      Node& x = t.node(input[0]);
      Node& w = t.node(input[1]);
      Terms<T> terms;
      if (x.tangent.defined()) terms.add(w.value.data<T>(), x.tangent.data<T>());
      if (w.tangent.defined()) terms.add(w.tangent.data<T>(), x.value.data<T>());
      const T* bt = has_bias() ? ptr<T>(t.node(input[2]).tangent) : nullptr;
      conv_forward<T>(g, terms, bt, tangent.data<T>());
    });
  }

  // gx += conv_transpose(gy, w) ;  gw += corr(gy, x) ;  gb += sum_{n,i,j} gy
  void backward(Tape& t) override {
    const conv_dnnl::ReuseScope reuse;  // gy is converted once for both gradients
    dispatch_float(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      Node& x = t.node(input[0]);
      Node& w = t.node(input[1]);
      const T* gy = grad.data<T>();
      if (x.requires_grad) {
        double beta = 0.0;
        Tensor gx = t.grad_sink(input[0], beta);
        Terms<T> terms;
        terms.add(w.value.data<T>(), gy);
        conv_input_grad<T>(g, terms, gx.data<T>(), beta);
      }
      Terms<T> wterms, bterms;
      double beta_w = 0.0, beta_b = 0.0;
      T* gw = nullptr;
      T* gb = nullptr;
      if (w.requires_grad) {
        gw = t.grad_sink(input[1], beta_w).data<T>();
        wterms.add(gy, x.value.data<T>());
      }
      if (has_bias() && t.requires_grad(input[2])) {
        gb = t.grad_sink(input[2], beta_b).data<T>();
        bterms.add(gy, nullptr);
      }
      conv_weight_grad<T>(g, wterms, gw, beta_w, bterms, gb, beta_b);
    });
  }

  // R(gx) += conv_transpose(R(gy), w) + conv_transpose(gy, w')
  // R(gw) += corr(R(gy), x) + corr(gy, x') ;  R(gb) += sum_{n,i,j} R(gy)
  void tangent_backward(Tape& t) override {
    dispatch_float(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      conv_tangent_backward<T>(t, *this, g, grad.data<T>(), ptr<T>(grad_tangent));
    });
  }

  ConvGeom g;
};

// The R-rules of y = conv(x, w) + b for the node `n` (inputs x, w and optionally b), given
// gy and R(gy) (null: zero) in NCHW:
//   R(gx) += conv_transpose(R(gy), w) + conv_transpose(gy, w')
//   R(gw) += corr(R(gy), x) + corr(gy, x') ;  R(gb) += sum_{n,i,j} R(gy)
template <class T>
void conv_tangent_backward(Tape& t, const Node& n, const ConvGeom& g, const T* gy, const T* rgy) {
  const conv_dnnl::ReuseScope reuse;
  const std::int32_t* input = n.input;
  const bool has_bias = n.num_inputs == 3;
  {
    {
      Node& x = t.node(input[0]);
      Node& w = t.node(input[1]);
      if (x.requires_grad) {
        Terms<T> terms;
        if (rgy != nullptr) terms.add(w.value.data<T>(), rgy);
        if (w.tangent.defined()) terms.add(w.tangent.data<T>(), gy);
        if (terms.n > 0) {
          double beta = 0.0;
          Tensor rgx = t.grad_tangent_sink(input[0], beta);
          conv_input_grad<T>(g, terms, rgx.data<T>(), beta);
        }
      }
      Terms<T> wterms, bterms;
      double beta_w = 0.0, beta_b = 0.0;
      T* rgw = nullptr;
      T* rgb = nullptr;
      if (w.requires_grad) {
        if (rgy != nullptr) wterms.add(rgy, x.value.data<T>());
        if (x.tangent.defined()) wterms.add(gy, x.tangent.data<T>());
        if (wterms.n > 0) rgw = t.grad_tangent_sink(input[1], beta_w).data<T>();
      }
      if (has_bias && t.requires_grad(input[2]) && rgy != nullptr) {
        rgb = t.grad_tangent_sink(input[2], beta_b).data<T>();
        bterms.add(rgy, nullptr);
      }
      conv_weight_grad<T>(g, wterms, rgw, beta_w, bterms, rgb, beta_b);
    }
  }
}

// ============================================================================
// Pooling over planes [B C, H, W] (no padding)
// ============================================================================
struct PoolGeom {
  std::int64_t planes = 0, h = 0, w = 0, kernel = 1, stride = 1, h_out = 0, w_out = 0;
  std::int64_t in_plane() const { return h * w; }
  std::int64_t out_plane() const { return h_out * w_out; }
  // Planes per parallel chunk: about parallel_grain input elements.
  std::int64_t grain() const { return std::max<std::int64_t>(1, parallel_grain / std::max<std::int64_t>(1, in_plane())); }
};

template <class F>
void for_planes(const PoolGeom& g, F&& f) {
  parallel_for(g.planes, g.grain(), [&](std::int64_t p0, std::int64_t p1) {
    for (std::int64_t p = p0; p < p1; ++p) f(p);
  });
}

// dst[o] = src[argmax[o]] plane by plane (the pooled tangent); with `mask` (relu_max_pool2d's
// output y), [y > 0] src[argmax]: relu's derivative at the argmax.
template <class T>
void gather_argmax(const PoolGeom& g, const std::int32_t* idx, const T* src, T* dst, const T* mask = nullptr) {
  for_planes(g, [&](std::int64_t p) {
    const T* s = src + p * g.in_plane();
    const std::int64_t o0 = p * g.out_plane();
    if (mask == nullptr) {
      for (std::int64_t o = o0; o < o0 + g.out_plane(); ++o) dst[o] = s[idx[o]];
    } else {
      for (std::int64_t o = o0; o < o0 + g.out_plane(); ++o) dst[o] = (mask[o] > T(0) ? T(1) : T(0)) * s[idx[o]];
    }
  });
}

// dst plane (beta 0: =, 1: +=) the scatter-add of src through the argmax indices; with
// `mask` (relu_max_pool2d's output y), of [y > 0] src: relu's derivative at the argmax.
template <class T>
void scatter_argmax(const PoolGeom& g, const std::int32_t* idx, const T* src, T* dst, double beta,
                    const T* mask = nullptr) {
  for_planes(g, [&](std::int64_t p) {
    T* d = dst + p * g.in_plane();
    const T* s = src + p * g.out_plane();
    const std::int32_t* ix = idx + p * g.out_plane();
    if (beta == 0.0) std::fill(d, d + g.in_plane(), T(0));
    if (mask == nullptr) {
      for (std::int64_t o = 0; o < g.out_plane(); ++o) d[ix[o]] += s[o];
    } else {
      const T* y = mask + p * g.out_plane();
      for (std::int64_t o = 0; o < g.out_plane(); ++o) d[ix[o]] += (y[o] > T(0) ? T(1) : T(0)) * s[o];
    }
  });
}

// y = the window means of x, plane by plane.
template <class T>
void avg_forward(const PoolGeom& g, const T* x, T* y) {
  const T inv = static_cast<T>(1.0 / static_cast<double>(g.kernel * g.kernel));
  for_planes(g, [&](std::int64_t p) {
    const T* xp = x + p * g.in_plane();
    T* yp = y + p * g.out_plane();
    for (std::int64_t i = 0; i < g.h_out; ++i) {
      for (std::int64_t j = 0; j < g.w_out; ++j) {
        T s = T(0);
        for (std::int64_t u = 0; u < g.kernel; ++u) {
          const T* row = xp + (i * g.stride + u) * g.w + j * g.stride;
          for (std::int64_t v = 0; v < g.kernel; ++v) s += row[v];
        }
        yp[i * g.w_out + j] = s * inv;
      }
    }
  });
}

// gx (beta 0: =, 1: +=) gy / kernel^2 spread over each window.
template <class T>
void avg_backward(const PoolGeom& g, const T* gy, T* gx, double beta) {
  const T inv = static_cast<T>(1.0 / static_cast<double>(g.kernel * g.kernel));
  for_planes(g, [&](std::int64_t p) {
    T* d = gx + p * g.in_plane();
    const T* s = gy + p * g.out_plane();
    if (beta == 0.0) std::fill(d, d + g.in_plane(), T(0));
    for (std::int64_t i = 0; i < g.h_out; ++i) {
      for (std::int64_t j = 0; j < g.w_out; ++j) {
        const T v = s[i * g.w_out + j] * inv;
        for (std::int64_t u = 0; u < g.kernel; ++u) {
          T* row = d + (i * g.stride + u) * g.w + j * g.stride;
          for (std::int64_t k = 0; k < g.kernel; ++k) row[k] += v;
        }
      }
    }
  });
}

// y = the window maxima of x and idx their positions in the plane (the first maximum in
// row-major order on ties; a NaN stays where it is first met, as `>` is false for it).
// Relu: of relu(x) = (x > 0 ? x : 0), taken of each element as it is read.
// K > 0: the kernel size known at compile time (the common 2 and 3, unrolled); K = 0:
// g.kernel. Branch-free (the comparisons are selects), so the loop over a row of windows
// vectorizes and random data costs no mispredicted branches.
template <class T, int K, bool Relu>
void max_pool_plane(const PoolGeom& g, const T* xp, T* yp, std::int32_t* ip) {
  const std::int64_t k = K > 0 ? K : g.kernel;
  const std::int64_t s = g.stride, w = g.w, w_out = g.w_out;
  {
    for (std::int64_t i = 0; i < g.h_out; ++i) {
      const std::int32_t row0 = static_cast<std::int32_t>(i * s * w);
#pragma omp simd
      for (std::int64_t j = 0; j < w_out; ++j) {
        std::int32_t best = row0 + static_cast<std::int32_t>(j * s);
        T m = xp[best];
        if constexpr (Relu) m = m > T(0) ? m : T(0);
        for (std::int64_t u = 0; u < k; ++u) {
          const std::int32_t r = row0 + static_cast<std::int32_t>(u * w + j * s);
          for (std::int64_t v = 0; v < k; ++v) {
            T val = xp[r + v];
            if constexpr (Relu) val = val > T(0) ? val : T(0);
            const bool gt = val > m;
            m = gt ? val : m;
            best = gt ? r + static_cast<std::int32_t>(v) : best;
          }
        }
        yp[i * w_out + j] = m;
        ip[i * w_out + j] = best;
      }
    }
  }
}

template <class T, int K, bool Relu = false>
void max_pool_planes(const PoolGeom& g, const T* x, T* y, std::int32_t* idx) {
  for_planes(g, [&](std::int64_t p) {
    max_pool_plane<T, K, Relu>(g, x + p * g.in_plane(), y + p * g.out_plane(), idx + p * g.out_plane());
  });
}

#ifdef DESCENT_POOL_AVX512
// max_pool_plane<float, 2, Relu> with stride 2 on one plane, 16 windows of an output row per
// step (AVX-512, for CPUs that have it: the callers check): the two input rows are loaded
// (masked at the row's end), split into even and odd columns, and the four candidates
// compared in max_pool_plane's order with the same strict `>` (ordered: false for NaN), so
// the values and indices are the scalar loop's. With Relu the first candidate is taken
// through relu as max(v, 0) (vmaxps gives its second operand, +0, for NaN and -0, as relu
// does); the others need no relu: v > m >= 0 exactly when relu(v) > m.
template <bool Relu>
__attribute__((target("avx512f"))) void max_pool_2x2_plane_avx512(const PoolGeom& g, const float* xp, float* yp,
                                                                   std::int32_t* ip) {
  const std::int64_t w = g.w, w_out = g.w_out;
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  const __m512i lane2 = _mm512_slli_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), 1);
  for (std::int64_t i = 0; i < g.h_out; ++i) {
    for (std::int64_t j0 = 0; j0 < w_out; j0 += 16) {
      const std::int64_t n = std::min<std::int64_t>(16, w_out - j0);
      const auto m_out = static_cast<__mmask16>((1u << n) - 1u);
      const auto m_lo = static_cast<__mmask16>(n >= 8 ? 0xFFFFu : (1u << (2 * n)) - 1u);
      const auto m_hi = static_cast<__mmask16>(n > 8 ? (1u << (2 * n - 16)) - 1u : 0u);
      const std::int64_t r0 = 2 * i * w + 2 * j0;  // window (i, j0)'s top-left in the plane
      const float* a = xp + r0;
      const float* b = a + w;
      const __m512 a_lo = _mm512_maskz_loadu_ps(m_lo, a), a_hi = _mm512_maskz_loadu_ps(m_hi, a + 16);
      const __m512 b_lo = _mm512_maskz_loadu_ps(m_lo, b), b_hi = _mm512_maskz_loadu_ps(m_hi, b + 16);
      const __m512i base = _mm512_add_epi32(_mm512_set1_epi32(static_cast<std::int32_t>(r0)), lane2);
      __m512 m = _mm512_permutex2var_ps(a_lo, even, a_hi);
      if constexpr (Relu) m = _mm512_maskz_max_ps(0xFFFF, m, _mm512_setzero_ps());  // maskz: no -Wmaybe-uninitialized
      __m512i best = base;
      const __m512 cand[3] = {_mm512_permutex2var_ps(a_lo, odd, a_hi), _mm512_permutex2var_ps(b_lo, even, b_hi),
                              _mm512_permutex2var_ps(b_lo, odd, b_hi)};
      const std::int32_t offset[3] = {1, static_cast<std::int32_t>(w), static_cast<std::int32_t>(w + 1)};
      for (int c = 0; c < 3; ++c) {
        const __mmask16 gt = _mm512_cmp_ps_mask(cand[c], m, _CMP_GT_OQ);
        m = _mm512_mask_blend_ps(gt, m, cand[c]);
        best = _mm512_mask_blend_epi32(gt, best, _mm512_add_epi32(base, _mm512_set1_epi32(offset[c])));
      }
      _mm512_mask_storeu_ps(yp + i * w_out + j0, m_out, m);
      _mm512_mask_storeu_epi32(ip + i * w_out + j0, m_out, best);
    }
  }
}

// relu then 2x2/stride-2 max-pool for `planes` planes in a row (the caller parallelizes).
void relu_max_pool_2x2_avx512(const PoolGeom& g, std::int64_t planes, const float* x, float* y, std::int32_t* idx) {
  for (std::int64_t p = 0; p < planes; ++p)
    max_pool_2x2_plane_avx512<true>(g, x + p * g.in_plane(), y + p * g.out_plane(), idx + p * g.out_plane());
}

bool cpu_has_avx512f() {
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
}
#endif

// max_pool_plane<float, K, true> for `planes` planes in a row, K chosen from g.kernel.
void relu_max_pool_run(const PoolGeom& g, std::int64_t planes, const float* x, float* y, std::int32_t* idx) {
#ifdef DESCENT_POOL_AVX512
  if (g.kernel == 2 && g.stride == 2 && cpu_has_avx512f() && !conv_dnnl::reference_kernels()) {
    relu_max_pool_2x2_avx512(g, planes, x, y, idx);
    return;
  }
#endif
  for (std::int64_t p = 0; p < planes; ++p) {
    const float* xp = x + p * g.in_plane();
    float* yp = y + p * g.out_plane();
    std::int32_t* ip = idx + p * g.out_plane();
    if (g.kernel == 2) max_pool_plane<float, 2, true>(g, xp, yp, ip);
    else if (g.kernel == 3) max_pool_plane<float, 3, true>(g, xp, yp, ip);
    else max_pool_plane<float, 0, true>(g, xp, yp, ip);
  }
}

#ifdef __AVX512F__
// The common 2x2 window with stride 2 on float planes, each plane by
// max_pool_2x2_plane_avx512: values and indices are those of the scalar loop.
void max_pool_2x2(const PoolGeom& g, const float* x, float* y, std::int32_t* idx) {
  for_planes(g, [&](std::int64_t p) {
    max_pool_2x2_plane_avx512<false>(g, x + p * g.in_plane(), y + p * g.out_plane(), idx + p * g.out_plane());
  });
}
#endif

// ============================================================================
// max_pool2d: y = x[argmax] per window; with Relu, relu_max_pool2d: y = max-pool(relu(x)) =
// relu(x)[argmax] per window (both piecewise linear)
// ============================================================================
template <bool Relu>
class MaxPool2dNode final : public Node {
 public:
  explicit MaxPool2dNode(const PoolGeom& geom) : g(geom) {}
  const char* name() const override { return Relu ? "relu_max_pool2d" : "max_pool2d"; }

  // y' = x'[argmax]; with Relu [y > 0] x'[argmax] (relu's derivative at the argmax, which is
  // > 0 exactly when y is)
  void tangent_forward(Tape& t) override {
    tangent = Tensor::empty(value.shape(), value.dtype());
    dispatch_float(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const Tensor& xt = t.node(input[0]).tangent;
      gather_argmax<T>(g, argmax.data<std::int32_t>(), xt.data<T>(), tangent.data<T>(), mask<T>());
    });
  }

  // gx[argmax] += gy (with Relu [y > 0] gy)
  void backward(Tape& t) override {
    if (!t.requires_grad(input[0])) return;
    double beta = 0.0;
    Tensor gx = t.grad_sink(input[0], beta);
    dispatch_float(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      scatter_argmax<T>(g, argmax.data<std::int32_t>(), grad.data<T>(), gx.data<T>(), beta, mask<T>());
    });
  }

  // R(gx)[argmax] += R(gy) (with Relu [y > 0] R(gy))   (no second-order term: relu'' = 0 and
  // the pool is linear on each piece)
  void tangent_backward(Tape& t) override {
    if (!t.requires_grad(input[0]) || !grad_tangent.defined()) return;
    double beta = 0.0;
    Tensor rgx = t.grad_tangent_sink(input[0], beta);
    dispatch_float(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      scatter_argmax<T>(g, argmax.data<std::int32_t>(), grad_tangent.data<T>(), rgx.data<T>(), beta, mask<T>());
    });
  }

  PoolGeom g;
  Tensor argmax;  // i32, the shape of the output: the (relu'd) window maximum's index in its plane

 private:
  // relu's derivative is read from y: the output with Relu, none without
  template <class T>
  const T* mask() const {
    if constexpr (Relu) {
      return value.data<T>();
    } else {
      return nullptr;
    }
  }
};

// ============================================================================
// conv2d_relu_max_pool2d on oneDNN's 16-channel blocked layout: z = conv(x, w) + b stays in
// the layout the convolution wrote (aBcd16b: 16 channels side by side per position), and
// y = max-pool(relu(z)) reads it there, 16 channels per vector; the backward scatters
// [y > 0] gy into a blocked gz that the convolution's backward reads as it is.
// ============================================================================

// One block of 16 channels: zb [H W 16] (position-major, channel fastest) -> y and idx for
// those channels (channel l's output plane at y + l out_plane), the same comparisons in the
// same order as max_pool_planes<T, K, true>, so the same maxima and argmax.
DESCENT_DISPATCH void relu_max_pool_block16(const PoolGeom& g, const float* zb, float* y, std::int32_t* idx) {
  const std::int64_t k = g.kernel, s = g.stride, w = g.w, w_out = g.w_out, op = g.out_plane();
  for (std::int64_t i = 0; i < g.h_out; ++i) {
    for (std::int64_t j = 0; j < w_out; ++j) {
      float m[16];
      std::int32_t best[16];
      const auto p0 = static_cast<std::int32_t>(i * s * w + j * s);
#pragma omp simd
      for (int l = 0; l < 16; ++l) {
        const float v = zb[p0 * 16 + l];
        m[l] = v > 0.0f ? v : 0.0f;
        best[l] = p0;
      }
      for (std::int64_t u = 0; u < k; ++u) {
        for (std::int64_t v = 0; v < k; ++v) {
          const auto p = static_cast<std::int32_t>((i * s + u) * w + j * s + v);
          const float* src = zb + static_cast<std::int64_t>(p) * 16;
#pragma omp simd
          for (int l = 0; l < 16; ++l) {
            float val = src[l];
            val = val > 0.0f ? val : 0.0f;
            const bool gt = val > m[l];
            m[l] = gt ? val : m[l];
            best[l] = gt ? p : best[l];
          }
        }
      }
      for (int l = 0; l < 16; ++l) {
        y[l * op + i * w_out + j] = m[l];
        idx[l * op + i * w_out + j] = best[l];
      }
    }
  }
}

// One block of 16 channels: gzb [H W 16] = the scatter of [y > 0] gy through idx (gy, y,
// idx: channel l's output plane at + l out_plane); bsum[l] = the sum of channel l's terms
// [y > 0] gy in double (its share of the bias gradient), if bsum is not null.
DESCENT_DISPATCH void relu_max_pool_grad_block16(const PoolGeom& g, const float* gy, const float* y,
                                                 const std::int32_t* idx, float* gzb, double* bsum) {
  const std::int64_t op = g.out_plane();
  if (gzb != nullptr) std::fill(gzb, gzb + g.in_plane() * 16, 0.0f);
  for (int l = 0; l < 16; ++l) {
    double sum = 0.0;
    for (std::int64_t o = 0; o < op; ++o) {
      const std::int64_t q = l * op + o;
      const float v = (y[q] > 0.0f ? 1.0f : 0.0f) * gy[q];
      if (gzb != nullptr) gzb[static_cast<std::int64_t>(idx[q]) * 16 + l] += v;
      sum += static_cast<double>(v);
    }
    if (bsum != nullptr) bsum[l] = sum;
  }
}

class ConvReluMaxPool2dNode final : public Node {
 public:
  ConvReluMaxPool2dNode(const ConvGeom& conv, const PoolGeom& pool, bool blocked_layout)
      : cg(conv), pg(pool), blocked(blocked_layout) {}
  const char* name() const override { return "conv2d_relu_max_pool2d"; }
  bool has_bias() const { return num_inputs == 3; }

  // NCHW z from the blocked form's relative, for the tangent rules (not the hot path):
  // [y > 0] src[n, c, argmax] gathered or scattered plane by plane, src/dst [B, C_out, H, W].
  // z' = conv(x', w) + conv(x, w') + b' ;  y' = [y > 0] z'[argmax]
  void tangent_forward(Tape& t) override {
    Node& x = t.node(input[0]);
    Node& w = t.node(input[1]);
    Terms<float> terms;
    if (x.tangent.defined()) terms.add(w.value.data<float>(), x.tangent.data<float>());
    if (w.tangent.defined()) terms.add(w.tangent.data<float>(), x.value.data<float>());
    const float* bt = has_bias() ? ptr<float>(t.node(input[2]).tangent) : nullptr;
    Tensor zt = Tensor::empty(Shape{cg.batch, cg.c_out, cg.h_out, cg.w_out}, DType::f32);
    conv_forward<float>(cg, terms, bt, zt.data<float>());
    tangent = Tensor::empty(value.shape(), value.dtype());
    gather_argmax<float>(pg, argmax.data<std::int32_t>(), zt.data<float>(), tangent.data<float>(), value.data<float>());
  }

  // gz = [y > 0] gy scattered to the argmax (blocked) ;  gx += conv_transpose(gz, w) ;
  // gw += corr(gz, x) ;  gb += sum_{n,i,j} gz = sum_{n,i,j} [y > 0] gy
  void backward(Tape& t) override {
    if (!blocked) {
      backward_plain(t);
      return;
    }
    Node& x = t.node(input[0]);
    Node& w = t.node(input[1]);
    const conv_dnnl::Geom dg = dnnl_geom(cg);
    const bool want_w = w.requires_grad, want_b = has_bias() && t.requires_grad(input[2]);
    const bool want_z = x.requires_grad || want_w;
    if (!want_z && !want_b) return;
    const std::int64_t blocks = cg.batch * cg.c_out / 16, op = pg.out_plane();
    Tensor gz = want_z ? Tensor::empty(Shape{cg.batch * cg.c_out * cg.h_out * cg.w_out}, DType::f32) : Tensor();
    Tensor bsums = want_b ? Tensor::empty(Shape{blocks * 16}, DType::f64) : Tensor();  // per example and channel
    {
      const float* gy = grad.data<float>();
      const float* y = value.data<float>();
      const std::int32_t* ix = argmax.data<std::int32_t>();
      float* gzb = want_z ? gz.data<float>() : nullptr;
      double* bs = want_b ? bsums.data<double>() : nullptr;
      parallel_for(blocks, 1, [&](std::int64_t b0, std::int64_t b1) {
        for (std::int64_t b = b0; b < b1; ++b) {
          relu_max_pool_grad_block16(pg, gy + b * 16 * op, y + b * 16 * op, ix + b * 16 * op,
                                     gzb != nullptr ? gzb + b * 16 * pg.in_plane() : nullptr,
                                     bs != nullptr ? bs + b * 16 : nullptr);
        }
      });
    }
    if (want_z) {
      const float* gzb = gz.data<float>();
      if (x.requires_grad) {
        double beta = 0.0;
        Tensor gx = t.grad_sink(input[0], beta);
        conv_dnnl::input_grad_blocked16(dg, w.value.data<float>(), gzb, gx.data<float>(), beta);
      }
      if (want_w) {
        double beta = 0.0;
        Tensor gw = t.grad_sink(input[1], beta);
        conv_dnnl::weight_grad_blocked16(dg, gzb, x.value.data<float>(), gw.data<float>(), beta, ptr<float>(x_kept));
      }
    }
    if (want_b) {  // the examples' sums added in example order: the same for any thread count
      double beta = 0.0;
      float* gb = t.grad_sink(input[2], beta).data<float>();
      const double* bs = bsums.data<double>();
      for (std::int64_t c = 0; c < cg.c_out; ++c) {
        double acc = 0.0;
        for (std::int64_t n = 0; n < cg.batch; ++n) acc += bs[n * cg.c_out + c];
        gb[c] = beta == 0.0 ? static_cast<float>(acc) : gb[c] + static_cast<float>(acc);
      }
    }
  }

  // The im2col path, example by example in the chunks of conv_input_grad/conv_weight_grad:
  // gz[n] = [y > 0] gy[n] scattered into one example's [C_out, H W] (in cache), then the
  // same products, col2im and per-chunk partial sums in the same order as those functions,
  // so the results are theirs bit for bit (the bias gradient too: the same sums of gz).
  void backward_plain(Tape& t) {
    Node& x = t.node(input[0]);
    Node& w = t.node(input[1]);
    const bool do_x = x.requires_grad, do_w = w.requires_grad, do_b = has_bias() && t.requires_grad(input[2]);
    if (!do_x && !do_w && !do_b) return;
    const ConvGeom& g = cg;
    const std::int64_t K = g.k(), P = g.p(), co = g.c_out;
    const Chunks ch = chunks_of(g.batch);
    double beta_x = 0.0, beta_w = 0.0, beta_b = 0.0;
    float* gx = do_x ? t.grad_sink(input[0], beta_x).data<float>() : nullptr;
    float* gw = do_w ? t.grad_sink(input[1], beta_w).data<float>() : nullptr;
    float* gb = do_b ? t.grad_sink(input[2], beta_b).data<float>() : nullptr;
    const std::int64_t wsz = do_w ? g.w_size() : 0, bsz = do_b ? co : 0, stride = wsz + bsz;
    const bool direct = ch.count == 1;
    Tensor partial = direct || stride == 0 ? Tensor() : Tensor::empty(Shape{ch.count * stride}, DType::f32);
    const float* gy = grad.data<float>();
    const float* y = value.data<float>();
    const std::int32_t* ix = argmax.data<std::int32_t>();
    const float* wv = w.value.data<float>();
    const float* xv = x.value.data<float>();
    PoolGeom one = pg;
    one.planes = co;  // one example's planes
    for_chunks(ch, g.batch, g.w_size() * g.p(), [&](std::int64_t ci, std::int64_t n0, std::int64_t n1) {
      Tensor buf = Tensor::empty(Shape{co * P + K * P + padded_size(g)}, DType::f32);
      float* gz = buf.data<float>();
      float* cols = gz + co * P;
      float* scratch = cols + K * P;
      float* pw = direct ? gw : (do_w ? partial.data<float>() + ci * stride : nullptr);
      float* pb = direct ? gb : (do_b ? partial.data<float>() + ci * stride + wsz : nullptr);
      float beta = direct ? static_cast<float>(beta_w) : 0.0f;
      std::vector<double> acc(static_cast<std::size_t>(do_b ? co : 0), 0.0);
      const std::int64_t op = co * pg.out_plane();
      for (std::int64_t n = n0; n < n1; ++n) {
        scatter_argmax<float>(one, ix + n * op, gy + n * op, gz, 0.0, y + n * op);
        if (do_x) {
          kernels::gemm_raw<float>(true, false, K, P, co, 1.0f, wv, K, gz, P, 0.0f, cols, P);
          col2im(g, cols, scratch, gx + n * g.in_size(), beta_x);
        }
        if (do_w) {
          im2col(g, xv + n * g.in_size(), scratch, cols);
          kernels::gemm_raw<float>(false, true, co, K, P, 1.0f, gz, P, cols, P, beta, pw, K);
          beta = 1.0f;
        }
        if (do_b) {
          for (std::int64_t o = 0; o < co; ++o) acc[static_cast<std::size_t>(o)] += sum_in_double(gz + o * P, P);
        }
      }
      if (do_b) {
        const bool add = direct && beta_b != 0.0;
        for (std::int64_t o = 0; o < co; ++o) {
          const auto v = static_cast<float>(acc[static_cast<std::size_t>(o)]);
          pb[o] = add ? pb[o] + v : v;
        }
      }
    });
    if (direct || stride == 0) return;
    const float* part = partial.data<float>();
    auto reduce = [&](float* dst, double beta, std::int64_t offset, std::int64_t count) {
      parallel_for(count, parallel_grain, [&](std::int64_t e0, std::int64_t e1) {
        for (std::int64_t e = e0; e < e1; ++e) {
          float sum = beta == 0.0 ? 0.0f : dst[e];
          for (std::int64_t c = 0; c < ch.count; ++c) sum += part[c * stride + offset + e];
          dst[e] = sum;
        }
      });
    };
    if (do_w) reduce(gw, beta_w, 0, wsz);
    if (do_b) reduce(gb, beta_b, wsz, bsz);
  }

  // R(gz) = [y > 0] R(gy) scattered to the argmax, then the convolution's R-rules with gz, R(gz)
  void tangent_backward(Tape& t) override {
    Tensor gz = scatter_plain(grad);
    Tensor rgz = grad_tangent.defined() ? scatter_plain(grad_tangent) : Tensor();
    conv_tangent_backward<float>(t, *this, cg, gz.data<float>(), ptr<float>(rgz));
  }

  // [y > 0] src scattered to the argmax in NCHW [B, C_out, H, W].
  Tensor scatter_plain(const Tensor& src) const {
    Tensor out = Tensor::empty(Shape{cg.batch, cg.c_out, cg.h_out, cg.w_out}, DType::f32);
    scatter_argmax<float>(pg, argmax.data<std::int32_t>(), src.data<float>(), out.data<float>(), 0.0, value.data<float>());
    return out;
  }

  ConvGeom cg;
  PoolGeom pg;    // over z's planes [B C_out, H_out, W_out]
  bool blocked;   // z in oneDNN's 16-channel blocked layout (else NCHW, the im2col path)
  Tensor argmax;  // i32 [B, C_out, pooled H, pooled W]: the index in its plane of relu(z)'s window maximum
  Tensor x_kept;  // x in the convolution's format, from the forward, for the weight gradient (or undefined)
};

// ============================================================================
// avg_pool2d: y = window means (linear)
// ============================================================================
class AvgPool2dNode final : public Node {
 public:
  explicit AvgPool2dNode(const PoolGeom& geom) : g(geom) {}
  const char* name() const override { return "avg_pool2d"; }

  // y' = avg_pool(x')
  void tangent_forward(Tape& t) override {
    tangent = Tensor::empty(value.shape(), value.dtype());
    dispatch_float(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      avg_forward<T>(g, t.node(input[0]).tangent.data<T>(), tangent.data<T>());
    });
  }

  // gx += gy / kernel^2 over each window
  void backward(Tape& t) override {
    if (!t.requires_grad(input[0])) return;
    double beta = 0.0;
    Tensor gx = t.grad_sink(input[0], beta);
    dispatch_float(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      avg_backward<T>(g, grad.data<T>(), gx.data<T>(), beta);
    });
  }

  // R(gx) += R(gy) / kernel^2 over each window
  void tangent_backward(Tape& t) override {
    if (!t.requires_grad(input[0]) || !grad_tangent.defined()) return;
    double beta = 0.0;
    Tensor rgx = t.grad_tangent_sink(input[0], beta);
    dispatch_float(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      avg_backward<T>(g, grad_tangent.data<T>(), rgx.data<T>(), beta);
    });
  }

  PoolGeom g;
};

// The pooling geometry over an input of shape `xs`.
PoolGeom pool_geometry(const Shape& xs, std::int64_t kernel, std::int64_t stride, const char* op) {
  if (xs.ndim() != 4) {
    throw ShapeError(std::string(op) + ": expects a 4-D [batch, channels, height, width] input, got " + xs.str());
  }
  if (kernel < 1 || stride < 1) {
    throw ShapeError(std::string(op) + ": kernel and stride must be >= 1, got kernel " + std::to_string(kernel) +
                     ", stride " + std::to_string(stride));
  }
  PoolGeom g;
  g.planes = xs[0] * xs[1];
  g.h = xs[2];
  g.w = xs[3];
  g.kernel = kernel;
  g.stride = stride;
  const Conv2dOptions o{.stride = stride, .padding = 0};
  g.h_out = conv_output_size(g.h, kernel, o, op);
  g.w_out = conv_output_size(g.w, kernel, o, op);
  if (g.in_plane() > std::int64_t{1} << 30) {
    throw ShapeError(std::string(op) + ": an image plane of " + std::to_string(g.in_plane()) + " elements is too large");
  }
  return g;
}

PoolGeom pool_geometry(Var x, std::int64_t kernel, std::int64_t stride, const char* op) {
  check_float(x, op);
  return pool_geometry(x.value().shape(), kernel, stride, op);
}

// The convolution's geometry, every shape checked (errors name conv2d).
ConvGeom conv_geometry(Var x, Var w, Var b, const Conv2dOptions& options) {
  check_float(x, "conv2d");
  const Tensor& xv = x.value();
  const Tensor& wv = w.value();
  if (xv.ndim() != 4 || wv.ndim() != 4 || xv.dim(1) != wv.dim(1)) {
    throw ShapeError("conv2d: input " + xv.shape().str() + " does not fit weight " + wv.shape().str() +
                     " (expected x [batch, C_in, H, W] and w [C_out, C_in, kh, kw])");
  }
  check_same_dtype(xv, wv, "conv2d");
  ConvGeom g;
  g.batch = xv.dim(0);
  g.c_in = xv.dim(1);
  g.h = xv.dim(2);
  g.w = xv.dim(3);
  g.c_out = wv.dim(0);
  g.kh = wv.dim(2);
  g.kw = wv.dim(3);
  g.stride = options.stride;
  g.pad = options.padding;
  g.h_out = conv_output_size(g.h, g.kh, options, "conv2d");
  g.w_out = conv_output_size(g.w, g.kw, options, "conv2d");
  if (g.c_out < 1) throw ShapeError("conv2d: weight " + wv.shape().str() + " has no output channels");
  if (b.valid()) {
    const Tensor& bv = b.value();
    if (bv.ndim() != 1 || bv.dim(0) != g.c_out) {
      throw ShapeError("conv2d: bias " + bv.shape().str() + " does not fit weight " + wv.shape().str() +
                       " (expected [" + std::to_string(g.c_out) + "])");
    }
    check_same_dtype(xv, bv, "conv2d");
  }
  return g;
}

}  // namespace

// ---- public constructors -------------------------------------------------------------

std::int64_t conv_output_size(std::int64_t in, std::int64_t kernel, const Conv2dOptions& options, const char* op) {
  if (options.stride < 1 || options.padding < 0) {
    throw ShapeError(std::string(op) + ": stride must be >= 1 and padding >= 0, got stride " +
                     std::to_string(options.stride) + ", padding " + std::to_string(options.padding));
  }
  if (kernel < 1 || in < 1 || in + 2 * options.padding < kernel) {
    throw ShapeError(std::string(op) + ": kernel " + std::to_string(kernel) + " does not fit an input side of " +
                     std::to_string(in) + " with padding " + std::to_string(options.padding));
  }
  return (in + 2 * options.padding - kernel) / options.stride + 1;
}

Var conv2d(Var x, Var w, Var b, const Conv2dOptions& options) {
  const ConvGeom g = conv_geometry(x, w, b, options);
  const Tensor& xv = x.value();
  const Tensor& wv = w.value();
  auto node = std::make_unique<Conv2dNode>(g);
  node->value = Tensor::empty(Shape{g.batch, g.c_out, g.h_out, g.w_out}, xv.dtype());
  dispatch_float(xv.dtype(), [&](auto zero) {
    using T = decltype(zero);
    Terms<T> terms;
    terms.add(wv.data<T>(), xv.data<T>());
    conv_forward<T>(g, terms, b.valid() ? b.value().data<T>() : nullptr, node->value.data<T>());
  });
  return make(*x.tape, std::move(node), {x, w, b});
}

// The pooled values and argmax of x into `node` (a MaxPool2dNode<Relu>): the
// planes by max_pool_planes<T, K, Relu>, K chosen from the kernel; plain float 2x2/stride-2
// windows by max_pool_2x2 where the build has AVX-512.
template <bool Relu>
void pool_into(const PoolGeom& g, const Tensor& xv, MaxPool2dNode<Relu>& node) {
  const Shape out{xv.dim(0), xv.dim(1), g.h_out, g.w_out};
  node.value = Tensor::empty(out, xv.dtype());
  node.argmax = Tensor::empty(out, DType::i32);
  dispatch_float(xv.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* xd = xv.data<T>();
    T* yd = node.value.template data<T>();
    std::int32_t* idx = node.argmax.template data<std::int32_t>();
    if (g.kernel == 2) {
#ifdef __AVX512F__
      if constexpr (std::is_same_v<T, float> && !Relu) {
        if (g.stride == 2) {
          max_pool_2x2(g, xd, yd, idx);
          return;
        }
      }
#endif
      max_pool_planes<T, 2, Relu>(g, xd, yd, idx);
    } else if (g.kernel == 3) {
      max_pool_planes<T, 3, Relu>(g, xd, yd, idx);
    } else {
      max_pool_planes<T, 0, Relu>(g, xd, yd, idx);
    }
  });
}

Var max_pool2d(Var x, std::int64_t kernel, std::int64_t stride) {
  const PoolGeom g = pool_geometry(x, kernel, stride, "max_pool2d");
  auto node = std::make_unique<MaxPool2dNode<false>>(g);
  pool_into(g, x.value(), *node);
  return make(*x.tape, std::move(node), {x});
}

Var relu_max_pool2d(Var x, std::int64_t kernel, std::int64_t stride) {
  if (conv_dnnl::unfused_relu_pool()) return max_pool2d(relu(x), kernel, stride);
  const PoolGeom g = pool_geometry(x, kernel, stride, "relu_max_pool2d");
  auto node = std::make_unique<MaxPool2dNode<true>>(g);
  pool_into(g, x.value(), *node);
  return make(*x.tape, std::move(node), {x});
}

bool fuses_conv2d_relu_max_pool2d(Var x, Var w, Var b, const Conv2dOptions& options) {
  if (conv_dnnl::unfused_relu_pool() || x.dtype() != DType::f32) return false;
  const ConvGeom g = conv_geometry(x, w, b, options);
  return !use_dnnl(g) || conv_dnnl::blocked16(dnnl_geom(g));
}

Var conv2d_relu_max_pool2d(Var x, Var w, Var b, const Conv2dOptions& options, std::int64_t kernel, std::int64_t stride) {
  if (!fuses_conv2d_relu_max_pool2d(x, w, b, options)) return relu_max_pool2d(conv2d(x, w, b, options), kernel, stride);
  const ConvGeom cg = conv_geometry(x, w, b, options);
  const PoolGeom pg = pool_geometry(Shape{cg.batch, cg.c_out, cg.h_out, cg.w_out}, kernel, stride, "relu_max_pool2d");
  const Shape out{cg.batch, cg.c_out, pg.h_out, pg.w_out};
  const bool blocked = use_dnnl(cg);
  auto node = std::make_unique<ConvReluMaxPool2dNode>(cg, pg, blocked);
  node->value = Tensor::empty(out, DType::f32);
  node->argmax = Tensor::empty(out, DType::i32);
  if (!blocked) {
    // im2col path, example by example as conv_forward: z[n] = b + w cols(x[n]) into one
    // example's buffer (in cache), pooled straight away.
    const std::int64_t K = cg.k(), P = cg.p(), co = cg.c_out, op = co * pg.out_plane();
    const float* wv = w.value().data<float>();
    const float* xv = x.value().data<float>();
    const float* bv = b.valid() ? b.value().data<float>() : nullptr;
    float* y = node->value.data<float>();
    std::int32_t* ix = node->argmax.data<std::int32_t>();
    for_chunks(chunks_of(cg.batch), cg.batch, cg.w_size() * P, [&](std::int64_t, std::int64_t n0, std::int64_t n1) {
      Tensor buf = Tensor::empty(Shape{co * P + K * P + padded_size(cg)}, DType::f32);
      float* z = buf.data<float>();
      float* cols = z + co * P;
      float* scratch = cols + K * P;
      for (std::int64_t n = n0; n < n1; ++n) {
        float beta = 0.0f;
        if (bv != nullptr) {
          for (std::int64_t o = 0; o < co; ++o) std::fill(z + o * P, z + (o + 1) * P, bv[o]);
          beta = 1.0f;
        }
        im2col(cg, xv + n * cg.in_size(), scratch, cols);
        kernels::gemm_raw<float>(false, false, co, P, K, 1.0f, wv, K, cols, P, beta, z, P);
        relu_max_pool_run(pg, co, z, y + n * op, ix + n * op);
      }
    });
    return make(*x.tape, std::move(node), {x, w, b});
  }
  const std::int64_t kept = conv_dnnl::kept_src_size(dnnl_geom(cg));
  if (kept > 0 && w.tape->requires_grad(w.id)) node->x_kept = Tensor::empty(Shape{kept}, DType::f32);
  // 2x2 / stride 2 windows tiling the output: Winograd pools each 2x2 output tile as it makes
  // it (where it runs; the same bits as its output pooled below).
  if (pg.kernel == 2 && pg.stride == 2 && pg.h_out * 2 == cg.h_out && pg.w_out * 2 == cg.w_out &&
      conv_dnnl::forward_relu_max_pool_blocked16(dnnl_geom(cg), w.value().data<float>(), x.value().data<float>(),
                                                 b.valid() ? b.value().data<float>() : nullptr,
                                                 node->value.data<float>(), node->argmax.data<std::int32_t>(),
                                                 node->x_kept.defined() ? node->x_kept.data<float>() : nullptr)) {
    return make(*x.tape, std::move(node), {x, w, b});
  }
  Tensor z = Tensor::empty(Shape{cg.batch * cg.c_out * cg.h_out * cg.w_out}, DType::f32);  // blocked
  conv_dnnl::forward_blocked16(dnnl_geom(cg), w.value().data<float>(), x.value().data<float>(),
                               b.valid() ? b.value().data<float>() : nullptr, z.data<float>(),
                               node->x_kept.defined() ? node->x_kept.data<float>() : nullptr);
  const float* zb = z.data<float>();
  float* y = node->value.data<float>();
  std::int32_t* ix = node->argmax.data<std::int32_t>();
  const std::int64_t blocks = cg.batch * cg.c_out / 16, op = pg.out_plane();
  parallel_for(blocks, 1, [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t blk = b0; blk < b1; ++blk) {
      relu_max_pool_block16(pg, zb + blk * 16 * pg.in_plane(), y + blk * 16 * op, ix + blk * 16 * op);
    }
  });
  return make(*x.tape, std::move(node), {x, w, b});
}

Var avg_pool2d(Var x, std::int64_t kernel, std::int64_t stride) {
  const PoolGeom g = pool_geometry(x, kernel, stride, "avg_pool2d");
  const Tensor& xv = x.value();
  auto node = std::make_unique<AvgPool2dNode>(g);
  node->value = Tensor::empty(Shape{xv.dim(0), xv.dim(1), g.h_out, g.w_out}, xv.dtype());
  dispatch_float(xv.dtype(), [&](auto zero) {
    using T = decltype(zero);
    avg_forward<T>(g, xv.data<T>(), node->value.template data<T>());
  });
  return make(*x.tape, std::move(node), {x});
}

}  // namespace descent::autodiff
