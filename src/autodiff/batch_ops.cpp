// Per-channel operations of batch normalization (batch.hpp). Each node's four rules sit side
// by side with their equations above them (x' tangent, gy = dL/dy, R(.) the derivative
// along v). Every rule is a few per-channel reductions followed by one elementwise pass
// whose coefficients are per channel, so the work is a handful of streaming passes.
//
// Notation per channel c (the index c is dropped): m the count, mean(.) the average over
// the channel's m elements, mu and var the batch statistics, s = 1 / sqrt(var + eps),
// xh = (x - mu) s, g = gy, rg = R(gy). Derivation of the fused batch_norm rules:
//   xh'  = s (x' - mean(x') - xh a),  a = mean(xh x')        (so s' = -s^2 a)
//   gx   = gamma s (g - mean(g) - xh mean(xh g))              (J^T = J: a symmetric projection)
// and R(gx) is the derivative of the second line along v with s, xh, gamma and g all moving.
#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "descent/autodiff/batch.hpp"
#include "node_util.hpp"

namespace descent::autodiff {
namespace {

using namespace detail;

// x [N, C, ...] seen as outer = N blocks of C channels of `inner` contiguous elements.
struct Layout {
  std::int64_t outer = 0;
  std::int64_t channels = 0;
  std::int64_t inner = 1;
  std::int64_t count() const { return outer * inner; }  // elements per channel (m)
};

Layout layout_of(const Shape& s) {
  Layout l;
  l.outer = s[0];
  l.channels = s[1];
  for (int d = 2; d < s.ndim(); ++d) l.inner *= s[d];
  return l;
}

// Per-channel moments, accumulated in double in an order fixed by the shape alone (the same
// with any number of threads):
//   s0[c] = sum_i (b_i - cb_c)                 (always)
//   s1[c] = sum_i (a_i - ca_c) (b_i - cb_c)    (when a is given)
// over the elements i of channel c; a null center is zero. Raw pointers and plain loops,
// so the inner loops vectorize with contiguous loads.
template <class T>
struct Moments {
  const T* a = nullptr;
  const double* ca = nullptr;
  const T* b = nullptr;
  const double* cb = nullptr;
};

template <class T>
void channel_moments(const Layout& l, const Moments<T>& in, std::vector<double>& s0, std::vector<double>& s1) {
  const std::int64_t nc = l.channels;
  const std::int64_t inner = l.inner;
  const std::int64_t outer = l.outer;
  const std::vector<double> zeros(in.ca == nullptr || in.cb == nullptr ? static_cast<std::size_t>(nc) : 0, 0.0);
  const T* a = in.a;
  const T* b = in.b;
  const double* ca = in.ca != nullptr ? in.ca : zeros.data();
  const double* cb = in.cb != nullptr ? in.cb : zeros.data();
  s0.assign(static_cast<std::size_t>(nc), 0.0);
  s1.assign(static_cast<std::size_t>(nc), 0.0);
  double* o0 = s0.data();
  double* o1 = s1.data();
  if (inner == 1) {
    // [N, C]: each task owns a block of columns and walks the rows, vectorized along c.
    const std::int64_t want = parallel_grain / std::max<std::int64_t>(outer, 1);
    const std::int64_t grain = std::max<std::int64_t>(1, std::min(nc, std::max<std::int64_t>(want, 16)));
    parallel_for(nc, grain, [=](std::int64_t c0, std::int64_t c1) {
      for (std::int64_t n = 0; n < outer; ++n) {
        const T* br = b + n * nc;
        if (a == nullptr) {
#pragma omp simd
          for (std::int64_t c = c0; c < c1; ++c) o0[c] += static_cast<double>(br[c]) - cb[c];
        } else {
          const T* ar = a + n * nc;
#pragma omp simd
          for (std::int64_t c = c0; c < c1; ++c) {
            const double bv = static_cast<double>(br[c]) - cb[c];
            o0[c] += bv;
            o1[c] += (static_cast<double>(ar[c]) - ca[c]) * bv;
          }
        }
      }
    });
    return;
  }
  // [N, C, ...]: each task owns whole channels; each (n, c) block is a contiguous run.
  const std::int64_t grain = std::max<std::int64_t>(1, parallel_grain / std::max<std::int64_t>(l.count(), 1));
  parallel_for(nc, grain, [=](std::int64_t c0, std::int64_t c1) {
    for (std::int64_t c = c0; c < c1; ++c) {
      const double zb = cb[c];
      const double za = ca[c];
      double t0 = 0.0, t1 = 0.0;
      for (std::int64_t n = 0; n < outer; ++n) {
        const std::int64_t base = (n * nc + c) * inner;
        const T* br = b + base;
        double p0 = 0.0, p1 = 0.0;
        if (a == nullptr) {
#pragma omp simd reduction(+ : p0)
          for (std::int64_t k = 0; k < inner; ++k) p0 += static_cast<double>(br[k]) - zb;
        } else {
          const T* ar = a + base;
#pragma omp simd reduction(+ : p0, p1)
          for (std::int64_t k = 0; k < inner; ++k) {
            const double bv = static_cast<double>(br[k]) - zb;
            p0 += bv;
            p1 += (static_cast<double>(ar[k]) - za) * bv;
          }
        }
        t0 += p0;
        t1 += p1;
      }
      o0[c] = t0;
      o1[c] = t1;
    }
  });
}

// One term coef_c (src_i - center_c) of an elementwise combination.
template <class T>
struct Term {
  const T* src;
  const T* coef;
  const T* center;
};

template <class T>
class Terms {
 public:
  explicit Terms(std::int64_t channels) : zeros_(static_cast<std::size_t>(channels), T(0)) {}
  void add(const T* src, const std::vector<T>& coef) { add(src, coef, zeros_); }
  void add(const T* src, const std::vector<T>& coef, const std::vector<T>& center) {
    terms_[static_cast<std::size_t>(n_++)] = Term<T>{src, coef.data(), center.data()};
  }
  int size() const { return n_; }
  const Term<T>* data() const { return terms_.data(); }
  const T* zeros() const { return zeros_.data(); }

 private:
  std::vector<T> zeros_;
  std::array<Term<T>, 4> terms_{};
  int n_ = 0;
};

// out_i (beta 0: =, 1: +=) bias_c + sum_j coef_j,c (src_j,i - center_j,c) over x's layout.
template <class T, int K>
void combine_k(const Layout& l, const Term<T>* terms, const T* bias, T* out, double beta) {
  const std::int64_t nc = l.channels;
  const std::int64_t inner = l.inner;
  std::array<const T*, K> src{}, coef{}, center{};
  for (int j = 0; j < K; ++j) {
    src[static_cast<std::size_t>(j)] = terms[j].src;
    coef[static_cast<std::size_t>(j)] = terms[j].coef;
    center[static_cast<std::size_t>(j)] = terms[j].center;
  }
  const bool accumulate = beta != 0.0;
  if (inner == 1) {
    parallel_for(l.outer, std::max<std::int64_t>(1, parallel_grain / std::max<std::int64_t>(nc, 1)),
                 [&](std::int64_t n0, std::int64_t n1) {
                   for (std::int64_t n = n0; n < n1; ++n) {
                     const std::int64_t o = n * nc;
                     T* dst = out + o;
#pragma omp simd
                     for (std::int64_t c = 0; c < nc; ++c) {
                       T v = bias[c];
                       for (std::size_t j = 0; j < K; ++j) v += coef[j][c] * (src[j][o + c] - center[j][c]);
                       dst[c] = accumulate ? dst[c] + v : v;
                     }
                   }
                 });
    return;
  }
  parallel_for(l.outer * nc, std::max<std::int64_t>(1, parallel_grain / inner), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const std::int64_t c = r % nc;
      const std::int64_t o = r * inner;
      std::array<T, K> cf{}, z{};
      for (std::size_t j = 0; j < K; ++j) {
        cf[j] = coef[j][c];
        z[j] = center[j][c];
      }
      const T b = bias[c];
      T* dst = out + o;
#pragma omp simd
      for (std::int64_t k = 0; k < inner; ++k) {
        T v = b;
        for (std::size_t j = 0; j < K; ++j) v += cf[j] * (src[j][o + k] - z[j]);
        dst[k] = accumulate ? dst[k] + v : v;
      }
    }
  });
}

template <class T>
void combine(const Layout& l, const Terms<T>& terms, const T* bias, const Tensor& out, double beta) {
  if (bias == nullptr) bias = terms.zeros();
  T* o = out.data<T>();
  switch (terms.size()) {
    case 0: combine_k<T, 0>(l, terms.data(), bias, o, beta); break;
    case 1: combine_k<T, 1>(l, terms.data(), bias, o, beta); break;
    case 2: combine_k<T, 2>(l, terms.data(), bias, o, beta); break;
    case 3: combine_k<T, 3>(l, terms.data(), bias, o, beta); break;
    default: combine_k<T, 4>(l, terms.data(), bias, o, beta); break;
  }
}

// A per-channel vector in T from f(c) computed in double.
template <class T, class F>
std::vector<T> per_channel(std::int64_t channels, F&& f) {
  std::vector<T> v(static_cast<std::size_t>(channels));
  for (std::int64_t c = 0; c < channels; ++c) v[static_cast<std::size_t>(c)] = static_cast<T>(f(static_cast<std::size_t>(c)));
  return v;
}

// Element c of a [C] tensor as double, 0 when the tensor is undefined (a zero tangent).
template <class T>
class ChannelReader {
 public:
  explicit ChannelReader(const Tensor& t) : p_(t.defined() ? t.data<T>() : nullptr) {}
  double operator[](std::size_t c) const { return p_ == nullptr ? 0.0 : static_cast<double>(p_[c]); }

 private:
  const T* p_;
};

// Writes (beta from the sink) the per-channel values f(c) into input k's gradient or
// R-gradient.
template <class T, class F>
void write_channels(Tape& t, std::int32_t id, bool tangent, std::int64_t channels, F&& f) {
  double beta = 0.0;
  Tensor dst = tangent ? t.grad_tangent_sink(id, beta) : t.grad_sink(id, beta);
  T* d = dst.data<T>();
  for (std::int64_t c = 0; c < channels; ++c) {
    const T v = static_cast<T>(f(static_cast<std::size_t>(c)));
    d[c] = beta == 0.0 ? v : d[c] + v;
  }
}

void check_channels(Var x, Var p, const char* op, const char* what) {
  if (!p.valid()) throw ShapeError(std::string(op) + ": the " + what + " is missing");
  const Tensor& pv = p.value();
  if (pv.numel() != x.value().dim(1)) {
    throw ShapeError(std::string(op) + ": " + what + " " + pv.shape().str() + " does not fit input " + x.shape().str() +
                     " (expected " + std::to_string(x.value().dim(1)) + " elements, one per channel)");
  }
  check_same_dtype(x.value(), pv, op);
}

Layout check_input(Var x, const char* op) {
  check_float(x, op);
  const Tensor& xv = x.value();
  if (xv.ndim() < 2) {
    throw ShapeError(std::string(op) + ": expects an input [N, C, ...] of 2 to 4 dimensions, got " + xv.shape().str());
  }
  const Layout l = layout_of(xv.shape());
  if (l.channels == 0 || l.count() == 0) {
    throw ShapeError(std::string(op) + ": input " + xv.shape().str() + " has an empty channel");
  }
  return l;
}

// ============================================================================
// batch_norm: y = gamma xh + beta,  xh = (x - mean(x)) / sqrt(var(x) + eps) per channel
// ============================================================================
class BatchNormNode final : public Node {
 public:
  const char* name() const override { return "batch_norm"; }

  Layout l;
  std::vector<double> mu, inv_std;  // the batch statistics: mu and s per channel
  std::vector<double> mean_xt, a;   // from tangent_forward: mean(x'), a = mean(xh x')
  std::vector<double> mean_g, mean_gx;  // from backward: mean(g), mean(xh g)

  // y = (gamma s)(x - mu) + beta
  template <class T>
  void compute_value(const Tensor& x, const Tensor& gamma, const Tensor& beta) {
    const ChannelReader<T> gm(gamma);
    Terms<T> terms(l.channels);
    const std::vector<T> coef = per_channel<T>(l.channels, [&](std::size_t c) { return gm[c] * inv_std[c]; });
    const std::vector<T> center = per_channel<T>(l.channels, [&](std::size_t c) { return mu[c]; });
    terms.add(x.data<T>(), coef, center);
    combine<T>(l, terms, beta.data<T>(), value, 0.0);
  }

  // y' = gamma' xh + gamma s (x' - mean(x') - xh a) + beta'
  //    = (gamma' - gamma s a) xh + (gamma s) x' + (beta' - gamma s mean(x'))
  void tangent_forward(Tape& t) override {
    dispatch_float(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      Node& x = t.node(input[0]);
      Node& gamma = t.node(input[1]);
      Node& beta = t.node(input[2]);
      const std::int64_t nc = l.channels;
      const auto m = static_cast<double>(l.count());
      mean_xt.assign(static_cast<std::size_t>(nc), 0.0);
      a.assign(static_cast<std::size_t>(nc), 0.0);
      const T* xv = x.value.data<T>();
      const bool xt = x.tangent.defined();
      if (xt) {
        std::vector<double> s0, s1;
        channel_moments<T>(l, {.a = xv, .ca = mu.data(), .b = x.tangent.data<T>()}, s0, s1);
        for (std::size_t c = 0; c < static_cast<std::size_t>(nc); ++c) {
          mean_xt[c] = s0[c] / m;
          a[c] = inv_std[c] * s1[c] / m;
        }
      }
      const ChannelReader<T> gm(gamma.value), gp(gamma.tangent), bp(beta.tangent);
      tangent = Tensor::empty(value.shape(), value.dtype());
      Terms<T> terms(nc);
      // coefficient of (x - mu): (gamma' - gamma s a) s
      const std::vector<T> cx =
          per_channel<T>(nc, [&](std::size_t c) { return (gp[c] - gm[c] * inv_std[c] * a[c]) * inv_std[c]; });
      const std::vector<T> center = per_channel<T>(nc, [&](std::size_t c) { return mu[c]; });
      const std::vector<T> cxt = per_channel<T>(nc, [&](std::size_t c) { return gm[c] * inv_std[c]; });
      const std::vector<T> bias =
          per_channel<T>(nc, [&](std::size_t c) { return bp[c] - gm[c] * inv_std[c] * mean_xt[c]; });
      terms.add(xv, cx, center);
      if (xt) terms.add(x.tangent.data<T>(), cxt);
      combine<T>(l, terms, bias.data(), tangent, 0.0);
    });
  }

  // gx     += gamma s (g - mean(g) - xh mean(xh g))
  // ggamma += sum(g xh) ;  gbeta += sum(g)
  void backward(Tape& t) override {
    dispatch_float(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      Node& x = t.node(input[0]);
      const std::int64_t nc = l.channels;
      const auto m = static_cast<double>(l.count());
      const T* xv = x.value.data<T>();
      const T* gy = grad.data<T>();
      std::vector<double> s0, s1;
      channel_moments<T>(l, {.a = xv, .ca = mu.data(), .b = gy}, s0, s1);
      mean_g.resize(static_cast<std::size_t>(nc));
      mean_gx.resize(static_cast<std::size_t>(nc));
      for (std::size_t c = 0; c < static_cast<std::size_t>(nc); ++c) {
        mean_g[c] = s0[c] / m;
        mean_gx[c] = inv_std[c] * s1[c] / m;
      }
      const ChannelReader<T> gm(t.node(input[1]).value);
      if (x.requires_grad) {
        Terms<T> terms(nc);
        const std::vector<T> cg = per_channel<T>(nc, [&](std::size_t c) { return gm[c] * inv_std[c]; });
        const std::vector<T> cx =
            per_channel<T>(nc, [&](std::size_t c) { return -gm[c] * inv_std[c] * inv_std[c] * mean_gx[c]; });
        const std::vector<T> center = per_channel<T>(nc, [&](std::size_t c) { return mu[c]; });
        const std::vector<T> bias = per_channel<T>(nc, [&](std::size_t c) { return -gm[c] * inv_std[c] * mean_g[c]; });
        terms.add(gy, cg);
        terms.add(xv, cx, center);
        double beta = 0.0;
        Tensor dst = t.grad_sink(input[0], beta);
        combine<T>(l, terms, bias.data(), dst, beta);
      }
      if (t.requires_grad(input[1])) {
        write_channels<T>(t, input[1], false, nc, [&](std::size_t c) { return m * mean_gx[c]; });
      }
      if (t.requires_grad(input[2])) {
        write_channels<T>(t, input[2], false, nc, [&](std::size_t c) { return m * mean_g[c]; });
      }
    });
  }

  // With mg = mean(g), mgx = mean(xh g), mr = mean(rg), mrx = mean(xh rg), mgt = mean(g x'),
  // mt = mean(x') and a = mean(xh x'):
  // R(gx)     += A g + B rg + Cx xh + D x' + E, where
  //              A  = s gamma' - s^2 a gamma            B = s gamma
  //              Cx = 3 s^2 a gamma mgx - s^2 gamma (mgt - mt mg) - s gamma' mgx - s gamma mrx
  //              D  = -s^2 gamma mgx
  //              E  = s^2 a gamma mg - s gamma' mg - s gamma mr + s^2 gamma mgx mt
  // R(ggamma) += sum(rg xh + g xh') = m (mrx + s (mgt - mt mg - a mgx))
  // R(gbeta)  += sum(rg) = m mr
  void tangent_backward(Tape& t) override {
    Node& x = t.node(input[0]);
    Node& gamma = t.node(input[1]);
    const bool rg = grad_tangent.defined();
    const bool xt = x.tangent.defined();
    const bool gt = gamma.tangent.defined();
    if (!rg && !xt && !gt) return;
    dispatch_float(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const std::int64_t nc = l.channels;
      const auto n = static_cast<std::size_t>(nc);
      const auto m = static_cast<double>(l.count());
      const T* xv = x.value.data<T>();
      const T* gy = grad.data<T>();
      std::vector<double> mr(n, 0.0), mrx(n, 0.0), mgt(n, 0.0);
      std::vector<double> s0, s1;
      if (rg) {
        channel_moments<T>(l, {.a = xv, .ca = mu.data(), .b = grad_tangent.data<T>()}, s0, s1);
        for (std::size_t c = 0; c < n; ++c) {
          mr[c] = s0[c] / m;
          mrx[c] = inv_std[c] * s1[c] / m;
        }
      }
      if (xt) {
        channel_moments<T>(l, {.a = gy, .b = x.tangent.data<T>()}, s0, s1);
        for (std::size_t c = 0; c < n; ++c) mgt[c] = s1[c] / m;
      }
      // Without a tangent of x, mean(x') = a = 0 (tangent_forward may not have run).
      auto mt = [&](std::size_t c) { return xt ? mean_xt[c] : 0.0; };
      auto ax = [&](std::size_t c) { return xt ? a[c] : 0.0; };
      const ChannelReader<T> gm(gamma.value), gp(gamma.tangent);
      if (x.requires_grad) {
        Terms<T> terms(nc);
        const std::vector<T> ca = per_channel<T>(nc, [&](std::size_t c) {
          const double s = inv_std[c];
          return s * gp[c] - s * s * ax(c) * gm[c];
        });
        const std::vector<T> cb = per_channel<T>(nc, [&](std::size_t c) { return inv_std[c] * gm[c]; });
        // Cx multiplies xh = s (x - mu): its coefficient of (x - mu) is Cx s.
        const std::vector<T> cx = per_channel<T>(nc, [&](std::size_t c) {
          const double s = inv_std[c];
          const double v = 3.0 * s * s * ax(c) * gm[c] * mean_gx[c] - s * s * gm[c] * (mgt[c] - mt(c) * mean_g[c]) -
                           s * gp[c] * mean_gx[c] - s * gm[c] * mrx[c];
          return v * s;
        });
        const std::vector<T> center = per_channel<T>(nc, [&](std::size_t c) { return mu[c]; });
        const std::vector<T> cd = per_channel<T>(nc, [&](std::size_t c) {
          const double s = inv_std[c];
          return -s * s * gm[c] * mean_gx[c];
        });
        const std::vector<T> bias = per_channel<T>(nc, [&](std::size_t c) {
          const double s = inv_std[c];
          return s * s * ax(c) * gm[c] * mean_g[c] - s * gp[c] * mean_g[c] - s * gm[c] * mr[c] +
                 s * s * gm[c] * mean_gx[c] * mt(c);
        });
        terms.add(gy, ca);
        if (rg) terms.add(grad_tangent.data<T>(), cb);
        terms.add(xv, cx, center);
        if (xt) terms.add(x.tangent.data<T>(), cd);
        double beta = 0.0;
        Tensor dst = t.grad_tangent_sink(input[0], beta);
        combine<T>(l, terms, bias.data(), dst, beta);
      }
      if (t.requires_grad(input[1]) && (rg || xt)) {
        write_channels<T>(t, input[1], true, nc, [&](std::size_t c) {
          return m * (mrx[c] + inv_std[c] * (mgt[c] - mt(c) * mean_g[c] - ax(c) * mean_gx[c]));
        });
      }
      if (t.requires_grad(input[2]) && rg) {
        write_channels<T>(t, input[2], true, nc, [&](std::size_t c) { return m * mr[c]; });
      }
    });
  }
};

// ============================================================================
// channel_affine: y = a x + b per channel      a = scale, b = shift (optional)
// ============================================================================
class ChannelAffineNode final : public Node {
 public:
  const char* name() const override { return "channel_affine"; }
  Layout l;
  bool has_shift() const { return num_inputs == 3; }

  // y' = a' x + a x' + b'
  void tangent_forward(Tape& t) override {
    dispatch_float(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      Node& x = t.node(input[0]);
      Node& a = t.node(input[1]);
      const std::int64_t nc = l.channels;
      const ChannelReader<T> av(a.value), ap(a.tangent);
      const ChannelReader<T> bp(has_shift() ? t.node(input[2]).tangent : Tensor());
      const std::vector<T> ca = per_channel<T>(nc, [&](std::size_t c) { return ap[c]; });
      const std::vector<T> cx = per_channel<T>(nc, [&](std::size_t c) { return av[c]; });
      const std::vector<T> bias = per_channel<T>(nc, [&](std::size_t c) { return bp[c]; });
      Terms<T> terms(nc);
      if (a.tangent.defined()) terms.add(x.value.data<T>(), ca);
      if (x.tangent.defined()) terms.add(x.tangent.data<T>(), cx);
      tangent = Tensor::empty(value.shape(), value.dtype());
      combine<T>(l, terms, bias.data(), tangent, 0.0);
    });
  }

  // gx += a gy ;  ga += sum(gy x) ;  gb += sum(gy)
  void backward(Tape& t) override {
    dispatch_float(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      Node& x = t.node(input[0]);
      const std::int64_t nc = l.channels;
      const T* gy = grad.data<T>();
      if (x.requires_grad) {
        const ChannelReader<T> av(t.node(input[1]).value);
        const std::vector<T> ca = per_channel<T>(nc, [&](std::size_t c) { return av[c]; });
        Terms<T> terms(nc);
        terms.add(gy, ca);
        double beta = 0.0;
        Tensor dst = t.grad_sink(input[0], beta);
        combine<T>(l, terms, nullptr, dst, beta);
      }
      const bool ga = t.requires_grad(input[1]);
      const bool gb = has_shift() && t.requires_grad(input[2]);
      if (!ga && !gb) return;
      std::vector<double> s0, s1;
      channel_moments<T>(l, {.a = x.value.data<T>(), .b = gy}, s0, s1);
      if (ga) write_channels<T>(t, input[1], false, nc, [&](std::size_t c) { return s1[c]; });
      if (gb) write_channels<T>(t, input[2], false, nc, [&](std::size_t c) { return s0[c]; });
    });
  }

  // R(gx) += a' gy + a R(gy) ;  R(ga) += sum(R(gy) x + gy x') ;  R(gb) += sum(R(gy))
  void tangent_backward(Tape& t) override {
    Node& x = t.node(input[0]);
    Node& a = t.node(input[1]);
    const bool rg = grad_tangent.defined();
    const bool xt = x.tangent.defined();
    const bool at = a.tangent.defined();
    dispatch_float(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const std::int64_t nc = l.channels;
      const T* gy = grad.data<T>();
      if (x.requires_grad && (rg || at)) {
        const ChannelReader<T> av(a.value), ap(a.tangent);
        const std::vector<T> cg = per_channel<T>(nc, [&](std::size_t c) { return ap[c]; });
        const std::vector<T> cr = per_channel<T>(nc, [&](std::size_t c) { return av[c]; });
        Terms<T> terms(nc);
        if (at) terms.add(gy, cg);
        if (rg) terms.add(grad_tangent.data<T>(), cr);
        double beta = 0.0;
        Tensor dst = t.grad_tangent_sink(input[0], beta);
        combine<T>(l, terms, nullptr, dst, beta);
      }
      const bool ra = a.requires_grad && (rg || xt);
      const bool rb = has_shift() && t.requires_grad(input[2]) && rg;
      if (!ra && !rb) return;
      // sum(R(gy) x) and sum(R(gy)), then sum(gy x').
      std::vector<double> rsum(static_cast<std::size_t>(nc), 0.0), rxsum(rsum), gtsum(rsum), s1;
      if (rg) channel_moments<T>(l, {.a = x.value.data<T>(), .b = grad_tangent.data<T>()}, rsum, rxsum);
      if (xt && ra) channel_moments<T>(l, {.a = gy, .b = x.tangent.data<T>()}, s1, gtsum);
      if (ra) write_channels<T>(t, input[1], true, nc, [&](std::size_t c) { return rxsum[c] + gtsum[c]; });
      if (rb) write_channels<T>(t, input[2], true, nc, [&](std::size_t c) { return rsum[c]; });
    });
  }
};

}  // namespace

Var batch_norm(Var x, Var gamma, Var beta, const BatchNormArgs& args) {
  const Layout l = check_input(x, "batch_norm");
  check_channels(x, gamma, "batch_norm", "scale (gamma)");
  check_channels(x, beta, "batch_norm", "shift (beta)");
  if (!(args.eps >= 0.0) || !std::isfinite(args.eps)) {
    throw ConfigError("batch_norm: eps must be a finite number >= 0, got " + std::to_string(args.eps));
  }
  auto node = std::make_unique<BatchNormNode>();
  node->l = l;
  const Tensor& xv = x.value();
  node->value = Tensor::empty(xv.shape(), xv.dtype());
  dispatch_float(xv.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* xp = xv.template data<T>();
    const auto n = static_cast<std::size_t>(l.channels);
    const auto m = static_cast<double>(l.count());
    std::vector<double> s0, s1;
    channel_moments<T>(l, {.b = xp}, s0, s1);
    node->mu.resize(n);
    for (std::size_t c = 0; c < n; ++c) node->mu[c] = s0[c] / m;
    // The variance about the mean (a second pass: no cancellation).
    channel_moments<T>(l, {.a = xp, .ca = node->mu.data(), .b = xp, .cb = node->mu.data()}, s0, s1);
    node->inv_std.resize(n);
    std::vector<double> var(n);
    for (std::size_t c = 0; c < n; ++c) {
      var[c] = s1[c] / m;
      node->inv_std[c] = 1.0 / std::sqrt(var[c] + args.eps);
    }
    node->template compute_value<T>(xv, gamma.value(), beta.value());
    if (args.statistics != nullptr) {
      args.statistics->mean = Tensor::empty(Shape{l.channels}, xv.dtype());
      args.statistics->var = Tensor::empty(Shape{l.channels}, xv.dtype());
      T* mo = args.statistics->mean.template data<T>();
      T* vo = args.statistics->var.template data<T>();
      for (std::size_t c = 0; c < n; ++c) {
        mo[c] = static_cast<T>(node->mu[c]);
        vo[c] = static_cast<T>(var[c]);
      }
    }
  });
  return make(*x.tape, std::move(node), {x, gamma, beta});
}

Var channel_affine(Var x, Var scale, Var shift) {
  const Layout l = check_input(x, "channel_affine");
  check_channels(x, scale, "channel_affine", "scale");
  if (shift.valid()) check_channels(x, shift, "channel_affine", "shift");
  auto node = std::make_unique<ChannelAffineNode>();
  node->l = l;
  const Tensor& xv = x.value();
  node->value = Tensor::empty(xv.shape(), xv.dtype());
  dispatch_float(xv.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const ChannelReader<T> av(scale.value());
    const std::vector<T> ca = per_channel<T>(l.channels, [&](std::size_t c) { return av[c]; });
    Terms<T> terms(l.channels);
    terms.add(xv.template data<T>(), ca);
    combine<T>(l, terms, shift.valid() ? shift.value().template data<T>() : nullptr, node->value, 0.0);
  });
  return make(*x.tape, std::move(node), {x, scale, shift});
}

}  // namespace descent::autodiff
