// Sequence operations (sequence.hpp): block copies between matrices and the gradient
// barrier. Each node's four rules sit side by side; the comment above each rule is its
// equation (x' tangent, gy = dL/dy, R(.) the derivative along v).
#include "descent/autodiff/sequence.hpp"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "../tensor/dispatch.hpp"
#include "../tensor/vmath.hpp"
#include "node_util.hpp"

namespace descent::autodiff {
namespace {

using namespace detail;

// A block of W columns inside a row-major buffer of R rows with row stride S, starting at
// column O: element (r, j) of the block is element r * S + O + j of the buffer.
struct Block {
  std::int64_t rows = 0, stride = 0, offset = 0, width = 0;
};

// Rows per parallel chunk for a copy touching `cols` elements per row. A copy costs far
// less per element than arithmetic, so its chunks are 4x the library's grain: the
// [batch, 4 hidden] blocks of one LSTM step stay on one thread instead of paying for a
// parallel region each.
std::int64_t row_grain(std::int64_t cols) {
  return std::max<std::int64_t>(1, 4 * parallel_grain / std::max<std::int64_t>(cols, 1));
}

// dst [R, W] (beta 0: =, 1: +=) the block of src.
template <class T>
void gather(const Tensor& src, const Block& b, const Tensor& dst, double beta) {
  const T* s = src.data<T>();
  T* d = dst.data<T>();
  const std::int64_t w = b.width;
  parallel_for(b.rows, row_grain(w), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const T* from = s + r * b.stride + b.offset;
      T* to = d + r * w;
      if (beta == 0.0) {
        std::memcpy(to, from, static_cast<std::size_t>(w) * sizeof(T));
      } else {
#pragma omp simd
        for (std::int64_t j = 0; j < w; ++j) to[j] += from[j];
      }
    }
  });
}

// The block of dst (beta 0: =, 1: +=) src [R, W]. With beta 0 and zero_rest, the part of
// each row of dst outside the block is zeroed too (a fresh gradient buffer).
template <class T>
void scatter(const Tensor& src, const Block& b, const Tensor& dst, double beta, bool zero_rest) {
  const T* s = src.data<T>();
  T* d = dst.data<T>();
  const std::int64_t w = b.width;
  const std::size_t tail = static_cast<std::size_t>(b.stride - b.offset - w) * sizeof(T);
  parallel_for(b.rows, row_grain(beta == 0.0 && zero_rest ? b.stride : w), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const T* from = s + r * w;
      T* row = d + r * b.stride;
      T* to = row + b.offset;
      if (beta == 0.0) {
        if (zero_rest) {
          std::memset(row, 0, static_cast<std::size_t>(b.offset) * sizeof(T));
          std::memset(to + w, 0, tail);
        }
        std::memcpy(to, from, static_cast<std::size_t>(w) * sizeof(T));
      } else {
#pragma omp simd
        for (std::int64_t j = 0; j < w; ++j) to[j] += from[j];
      }
    }
  });
}

// ============================================================================
// slice_cols / select_step: y = the block of x   (linear: no second-order term)
// ============================================================================
class BlockNode final : public Node {
 public:
  BlockNode(const Block& b, const char* name) : block_(b), name_(name) {}
  const char* name() const override { return name_; }

  // y' = x'[block]
  void tangent_forward(Tape& t) override {
    tangent = Tensor::empty(value.shape(), value.dtype());
    dispatch_float(value.dtype(), [&](auto zero) {
      gather<decltype(zero)>(t.node(input[0]).tangent, block_, tangent, 0.0);
    });
  }

  // gx[block] += gy
  void backward(Tape& t) override { spread(t, grad, false); }

  // R(gx)[block] += R(gy)
  void tangent_backward(Tape& t) override {
    if (grad_tangent.defined()) spread(t, grad_tangent, true);
  }

 private:
  void spread(Tape& t, const Tensor& g, bool tangent_pass) {
    if (!t.requires_grad(input[0])) return;
    double beta = 0.0;
    Tensor dst = tangent_pass ? t.grad_tangent_sink(input[0], beta) : t.grad_sink(input[0], beta);
    dispatch_float(value.dtype(), [&](auto zero) { scatter<decltype(zero)>(g, block_, dst, beta, true); });
  }
  Block block_;
  const char* name_;
};

// ============================================================================
// concat_cols: y = [a b]   (linear: no second-order term)
// ============================================================================
class ConcatNode final : public Node {
 public:
  ConcatNode(const Block& a, const Block& b) : parts_{a, b} {}
  const char* name() const override { return "concat_cols"; }

  // y' = [a' b']   (an undefined tangent is a block of zeros)
  void tangent_forward(Tape& t) override {
    const bool both = t.has_tangent(input[0]) && t.has_tangent(input[1]);
    tangent = both ? Tensor::empty(value.shape(), value.dtype()) : Tensor::zeros(value.shape(), value.dtype());
    dispatch_float(value.dtype(), [&](auto zero) {
      for (int k = 0; k < 2; ++k) {
        if (t.has_tangent(input[k])) scatter<decltype(zero)>(t.node(input[k]).tangent, parts_[k], tangent, 0.0, false);
      }
    });
  }

  // ga += gy[:, :Ca] ;  gb += gy[:, Ca:]
  void backward(Tape& t) override { split(t, grad, false); }

  // R(ga) += R(gy)[:, :Ca] ;  R(gb) += R(gy)[:, Ca:]
  void tangent_backward(Tape& t) override {
    if (grad_tangent.defined()) split(t, grad_tangent, true);
  }

 private:
  void split(Tape& t, const Tensor& g, bool tangent_pass) {
    for (int k = 0; k < 2; ++k) {
      if (!t.requires_grad(input[k])) continue;
      double beta = 0.0;
      Tensor dst = tangent_pass ? t.grad_tangent_sink(input[k], beta) : t.grad_sink(input[k], beta);
      dispatch_float(value.dtype(), [&](auto zero) { gather<decltype(zero)>(g, parts_[k], dst, beta); });
    }
  }
  Block parts_[2];
};

// ============================================================================
// stop_gradient: y = x, treated as a constant by both sweeps
// ============================================================================
class StopGradientNode final : public Node {
 public:
  const char* name() const override { return "stop_gradient"; }
  // y' = 0: the tangent stays undefined (zero), so nothing downstream sees x'.
  void tangent_forward(Tape&) override {}
  // gx += 0: nothing flows back (the node does not require a gradient, so the reverse
  // sweep never reaches it).
  void backward(Tape&) override {}
  // R(gx) += 0
  void tangent_backward(Tape&) override {}
};

// ============================================================================
// lstm_cell: [h c] = cell(a, [h_prev c_prev])
//   a [B, 4H] = [a_i a_f a_g a_o], i = sigma(a_i), f = sigma(a_f), g = tanh(a_g),
//   o = sigma(a_o); c = f c_prev + i g, tau = tanh(c), h = o tau   (elementwise)
// Derivatives of the activations in terms of their values: sigma' = s (1 - s),
// sigma'' = s (1 - s)(1 - 2 s); tanh' = 1 - y^2, tanh'' = -2 y (1 - y^2).
// ============================================================================

// Rows per parallel chunk: the cell does about 100 flops per element of h, so chunks are
// a quarter of the library's grain (a [128, 128] step runs on two threads).
std::int64_t cell_row_grain(std::int64_t hidden) {
  return std::max<std::int64_t>(1, parallel_grain / 4 / std::max<std::int64_t>(hidden, 1));
}

// Rows [r0, r1) of the cell's value: a [rows, 4H] pre-activations, state [rows, 2H] =
// [h_prev c_prev] (State = false: c_prev = 0, state unused); writes the activated gates
// [rows, 4H], tau = tanh(c) [rows, H] and [h c] [rows, 2H]. No branch in the loop, so it
// vectorizes, and DESCENT_DISPATCH compiles it for AVX2 and AVX-512 as well (the library's
// baseline is SSE2).
template <class T, bool State>
DESCENT_DISPATCH void cell_forward_rows(const T* av, const T* sv, T* gates, T* tv, T* out, std::int64_t n,
                                        std::int64_t r0, std::int64_t r1) {
  for (std::int64_t r = r0; r < r1; ++r) {
    const T* ar = av + r * 4 * n;
    T* g4 = gates + r * 4 * n;
    T* hr = out + r * 2 * n;
    T* tr = tv + r * n;
    if constexpr (State) {
      const T* cp = sv + r * 2 * n + n;
#pragma omp simd
      for (std::int64_t j = 0; j < n; ++j) {
        const T i = vmath::sigmoid(ar[j]);
        const T f = vmath::sigmoid(ar[n + j]);
        const T g = vmath::tanh(ar[2 * n + j]);
        const T o = vmath::sigmoid(ar[3 * n + j]);
        const T c = f * cp[j] + i * g;
        const T t = vmath::tanh(c);
        g4[j] = i;
        g4[n + j] = f;
        g4[2 * n + j] = g;
        g4[3 * n + j] = o;
        tr[j] = t;
        hr[j] = o * t;
        hr[n + j] = c;
      }
    } else {
#pragma omp simd
      for (std::int64_t j = 0; j < n; ++j) {
        const T i = vmath::sigmoid(ar[j]);
        const T f = vmath::sigmoid(ar[n + j]);
        const T g = vmath::tanh(ar[2 * n + j]);
        const T o = vmath::sigmoid(ar[3 * n + j]);
        const T c = i * g;  // c_0 = 0: f multiplies nothing
        const T t = vmath::tanh(c);
        g4[j] = i;
        g4[n + j] = f;
        g4[2 * n + j] = g;
        g4[3 * n + j] = o;
        tr[j] = t;
        hr[j] = o * t;
        hr[n + j] = c;
      }
    }
  }
}

// The pointers to one row of the cell's saved values and incoming gradients (a row of
// zeros where an input is missing, see LstmCellNode::sweep).
template <class T>
struct CellRow {
  const T *g4, *tr, *gr, *rgr, *ar, *cp, *cpt, *ytr;
};

// One row of LstmCellNode::sweep: the gradients of the pre-activations (dar, [4H]) and of
// c_prev (dsr, [H]); Second: their derivatives along v (tangent_backward). Dispatched
// like cell_forward_rows.
template <class T, bool Second>
DESCENT_DISPATCH void cell_backward_row(const CellRow<T> p, T* dar, T* dsr, std::int64_t n) {
  const T *g4 = p.g4, *tr = p.tr, *gr = p.gr, *rgr = p.rgr, *ar = p.ar, *cp = p.cp, *cpt = p.cpt, *ytr = p.ytr;
#pragma omp simd
  for (std::int64_t j = 0; j < n; ++j) {
    const T i = g4[j], f = g4[n + j], g = g4[2 * n + j], o = g4[3 * n + j], tau_v = tr[j];
    const T c_prev = cp[j];
    const T di = i * (T(1) - i), df = f * (T(1) - f), dg = T(1) - g * g, dout = o * (T(1) - o);
    const T dtau = T(1) - tau_v * tau_v;
    const T gh = gr[j];
    const T go = gh * tau_v;
    const T gc = gr[n + j] + gh * o * dtau;
    const T gi = gc * g, gf = gc * c_prev, gg = gc * i;
    if constexpr (!Second) {
      dar[j] = gi * di;
      dar[n + j] = gf * df;
      dar[2 * n + j] = gg * dg;
      dar[3 * n + j] = go * dout;
      dsr[j] = gc * f;
    } else {
      const T rgh = rgr[j], rgcn = rgr[n + j];
      const T it = di * ar[j], ft = df * ar[n + j], gt = dg * ar[2 * n + j], ot = dout * ar[3 * n + j];
      const T taut = dtau * ytr[n + j];  // tau' = (1 - tau^2) c'
      const T rgo = rgh * tau_v + gh * taut;
      const T rgc = rgcn + (rgh * o + gh * ot) * dtau - T(2) * gh * o * tau_v * taut;
      const T rgi = rgc * g + gc * gt;
      const T rgg = rgc * i + gc * it;
      const T rgf = rgc * c_prev + gc * cpt[j];
      dar[j] = rgi * di + gi * (T(1) - T(2) * i) * it;
      dar[n + j] = rgf * df + gf * (T(1) - T(2) * f) * ft;
      dar[2 * n + j] = rgg * dg - T(2) * gg * g * gt;
      dar[3 * n + j] = rgo * dout + go * (T(1) - T(2) * o) * ot;
      dsr[j] = rgc * f + gc * ft;
    }
  }
}

class LstmCellNode final : public Node {
 public:
  explicit LstmCellNode(std::int64_t hidden) : hidden_(hidden) {}
  const char* name() const override { return "lstm_cell"; }
  bool has_state() const { return num_inputs == 2; }

  Tensor act;  // [B, 4H]: i, f, g, o (the activated gates)
  Tensor tau;  // [B, H]: tanh(c)

  template <class T>
  void compute_value(const Tensor& a, const Tensor* state) {
    const std::int64_t rows = a.dim(0), n = hidden_;
    const T* av = a.data<T>();
    const T* sv = state != nullptr ? state->data<T>() : nullptr;
    T* out = value.data<T>();
    T* gates = act.data<T>();
    T* tv = tau.data<T>();
    parallel_for(rows, cell_row_grain(n), [&](std::int64_t r0, std::int64_t r1) {
      if (sv != nullptr) {
        cell_forward_rows<T, true>(av, sv, gates, tv, out, n, r0, r1);
      } else {
        cell_forward_rows<T, false>(av, sv, gates, tv, out, n, r0, r1);
      }
    });
  }

  // i' = sigma'(a_i) a_i' (and f', g', o' alike);  c' = f' c_prev + f c_prev' + i' g + i g'
  // tau' = (1 - tau^2) c';  h' = o' tau + o tau'
  void tangent_forward(Tape& t) override {
    dispatch_float(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const std::int64_t rows = value.dim(0), n = hidden_;
      tangent = Tensor::empty(value.shape(), value.dtype());
      const T* at = t.has_tangent(input[0]) ? t.node(input[0]).tangent.data<T>() : nullptr;
      const T* sv = has_state() ? t.node(input[1]).value.data<T>() : nullptr;
      const T* st = has_state() && t.has_tangent(input[1]) ? t.node(input[1]).tangent.data<T>() : nullptr;
      const T* gates = act.data<T>();
      const T* tv = tau.data<T>();
      T* out = tangent.data<T>();
      parallel_for(rows, cell_row_grain(n), [&](std::int64_t r0, std::int64_t r1) {
        for (std::int64_t r = r0; r < r1; ++r) {
          const T* g4 = gates + r * 4 * n;
          const T* ar = at != nullptr ? at + r * 4 * n : nullptr;
          const T* cp = sv != nullptr ? sv + r * 2 * n + n : nullptr;
          const T* cpt = st != nullptr ? st + r * 2 * n + n : nullptr;
          const T* tr = tv + r * n;
          T* o2 = out + r * 2 * n;
#pragma omp simd
          for (std::int64_t j = 0; j < n; ++j) {
            const T i = g4[j], f = g4[n + j], g = g4[2 * n + j], o = g4[3 * n + j], tau_v = tr[j];
            T it = T(0), ft = T(0), gt = T(0), ot = T(0);
            if (ar != nullptr) {
              it = i * (T(1) - i) * ar[j];
              ft = f * (T(1) - f) * ar[n + j];
              gt = (T(1) - g * g) * ar[2 * n + j];
              ot = o * (T(1) - o) * ar[3 * n + j];
            }
            T ct = it * g + i * gt;
            if (cp != nullptr) ct += ft * cp[j];
            if (cpt != nullptr) ct += f * cpt[j];
            const T taut = (T(1) - tau_v * tau_v) * ct;
            o2[j] = ot * tau_v + o * taut;
            o2[n + j] = ct;
          }
        }
      });
    });
  }

  // gy = [gh gc_next]:  go = gh tau;  gc = gc_next + gh o (1 - tau^2)
  // gi = gc g, gf = gc c_prev, gg = gc i, gc_prev = gc f
  // ga_i = gi sigma'(i), ga_f = gf sigma'(f), ga_g = gg (1 - g^2), ga_o = go sigma'(o)
  // g[h_prev] = 0, g[c_prev] += gc_prev
  void backward(Tape& t) override {
    dispatch_float(value.dtype(), [&](auto zero) { sweep<decltype(zero), false>(t); });
  }

  // The derivative of backward's equations along v (x' the tangents, R(.) of gradients):
  // R(go) = R(gh) tau + gh tau'
  // R(gc) = R(gc_next) + R(gh) o (1 - tau^2) + gh o' (1 - tau^2) - 2 gh o tau tau'
  // R(gi) = R(gc) g + gc g',  R(gg) = R(gc) i + gc i',  R(gf) = R(gc) c_prev + gc c_prev'
  // R(gc_prev) = R(gc) f + gc f'
  // R(ga_i) = R(gi) sigma'(i) + gi (1 - 2 i) i'   (f, o alike)
  // R(ga_g) = R(gg) (1 - g^2) - 2 gg g g'
  void tangent_backward(Tape& t) override {
    if (!grad_tangent.defined() && !tangent.defined()) return;
    dispatch_float(value.dtype(), [&](auto zero) { sweep<decltype(zero), true>(t); });
  }

 private:
  // Backward (Second = false) or tangent_backward (Second = true). An input without a
  // tangent, a missing state and a missing R(gy) read as rows of zeros, so the loop has no
  // branches and vectorizes; a sink that accumulates (beta 1) or is not wanted is written
  // through a row of scratch first.
  template <class T, bool Second>
  void sweep(Tape& t) {
    const bool ga_wanted = t.requires_grad(input[0]);
    const bool gs_wanted = has_state() && t.requires_grad(input[1]);
    if (!ga_wanted && !gs_wanted) return;
    const std::int64_t rows = value.dim(0), n = hidden_;
    double beta_a = 0.0, beta_s = 0.0;
    Tensor da, ds;
    if (ga_wanted) da = Second ? t.grad_tangent_sink(input[0], beta_a) : t.grad_sink(input[0], beta_a);
    if (gs_wanted) ds = Second ? t.grad_tangent_sink(input[1], beta_s) : t.grad_sink(input[1], beta_s);
    const std::vector<T> zeros(static_cast<std::size_t>(4 * n), T(0));
    // Row r of a [rows, width] input, or the row of zeros: (base, stride).
    auto rows_of = [&](const Tensor& x, bool present, std::int64_t width) {
      return present ? std::pair<const T*, std::int64_t>{x.data<T>(), width} : std::pair<const T*, std::int64_t>{zeros.data(), 0};
    };
    const auto gy = rows_of(grad, true, 2 * n);
    const auto rgy = rows_of(grad_tangent, Second && grad_tangent.defined(), 2 * n);
    const auto at = rows_of(t.node(input[0]).tangent, Second && t.has_tangent(input[0]), 4 * n);
    const auto sv = has_state() ? rows_of(t.node(input[1]).value, true, 2 * n) : rows_of(Tensor(), false, 0);
    const auto st = rows_of(has_state() ? t.node(input[1]).tangent : Tensor(), Second && has_state() && t.has_tangent(input[1]), 2 * n);
    const auto yt = rows_of(tangent, Second && tangent.defined(), 2 * n);  // [h' c']
    const T* gates = act.data<T>();
    const T* tv = tau.data<T>();
    T* dap = ga_wanted ? da.data<T>() : nullptr;
    T* dsp = gs_wanted ? ds.data<T>() : nullptr;
    const bool direct_a = ga_wanted && beta_a == 0.0, direct_s = gs_wanted && beta_s == 0.0;
    parallel_for(rows, cell_row_grain(n), [&](std::int64_t r0, std::int64_t r1) {
      std::vector<T> scratch(static_cast<std::size_t>((direct_a ? 0 : 4 * n) + (direct_s ? 0 : n)));
      for (std::int64_t r = r0; r < r1; ++r) {
        const T* g4 = gates + r * 4 * n;
        const T* tr = tv + r * n;
        const T* gr = gy.first + r * gy.second;
        const T* rgr = rgy.first + r * rgy.second;
        const T* ar = at.first + r * at.second;
        const T* cp = sv.first + r * sv.second + (has_state() ? n : 0);
        const T* cpt = st.first + r * st.second + (st.second != 0 ? n : 0);
        const T* ytr = yt.first + r * yt.second;
        T* dar = direct_a ? dap + r * 4 * n : scratch.data();
        T* dsr = direct_s ? dsp + r * 2 * n + n : scratch.data() + (direct_a ? 0 : 4 * n);
        cell_backward_row<T, Second>({g4, tr, gr, rgr, ar, cp, cpt, ytr}, dar, dsr, n);
        if (ga_wanted && !direct_a) {
          T* d = dap + r * 4 * n;
#pragma omp simd
          for (std::int64_t j = 0; j < 4 * n; ++j) d[j] += dar[j];
        }
        if (gs_wanted) {
          T* d = dsp + r * 2 * n;
          if (direct_s) {
            std::memset(d, 0, static_cast<std::size_t>(n) * sizeof(T));  // g[h_prev] = 0
          } else {
#pragma omp simd
            for (std::int64_t j = 0; j < n; ++j) d[n + j] += dsr[j];
          }
        }
      }
    });
  }

  std::int64_t hidden_;
};

void check_matrix(Var x, const char* op) {
  check_float(x, op);
  if (x.value().ndim() != 2) throw ShapeError(std::string(op) + ": expects a 2-D input, got " + x.shape().str());
}

Var record_block(Var x, const Block& b, const char* op) {
  auto node = std::make_unique<BlockNode>(b, op);
  node->value = Tensor::empty(Shape{b.rows, b.width}, x.dtype());
  dispatch_float(x.dtype(), [&](auto zero) { gather<decltype(zero)>(x.value(), b, node->value, 0.0); });
  return make(*x.tape, std::move(node), {x});
}

}  // namespace

Var slice_cols(Var x, std::int64_t begin, std::int64_t end) {
  check_matrix(x, "slice_cols");
  const std::int64_t cols = x.value().dim(1);
  if (begin < 0 || begin >= end || end > cols) {
    throw ShapeError("slice_cols: columns [" + std::to_string(begin) + ", " + std::to_string(end) + ") of " +
                     x.shape().str() + " (expected 0 <= begin < end <= " + std::to_string(cols) + ")");
  }
  return record_block(x, {.rows = x.value().dim(0), .stride = cols, .offset = begin, .width = end - begin},
                      "slice_cols");
}

Var select_step(Var x, std::int64_t t, std::int64_t steps) {
  check_matrix(x, "select_step");
  const std::int64_t n = x.value().dim(0);
  const std::int64_t g = x.value().dim(1);
  if (steps < 1 || n % steps != 0 || t < 0 || t >= steps) {
    throw ShapeError("select_step: step " + std::to_string(t) + " of " + std::to_string(steps) + " from " +
                     x.shape().str() + " (expected [batch * steps, features] and 0 <= t < steps)");
  }
  return record_block(x, {.rows = n / steps, .stride = steps * g, .offset = t * g, .width = g}, "select_step");
}

Var concat_cols(Var a, Var b) {
  check_matrix(a, "concat_cols");
  check_matrix(b, "concat_cols");
  check_same_dtype(a.value(), b.value(), "concat_cols");
  const std::int64_t rows = a.value().dim(0);
  if (b.value().dim(0) != rows) {
    throw ShapeError("concat_cols: " + a.shape().str() + " and " + b.shape().str() + " differ in rows");
  }
  const std::int64_t ca = a.value().dim(1);
  const std::int64_t cb = b.value().dim(1);
  const Block pa{.rows = rows, .stride = ca + cb, .offset = 0, .width = ca};
  const Block pb{.rows = rows, .stride = ca + cb, .offset = ca, .width = cb};
  auto node = std::make_unique<ConcatNode>(pa, pb);
  node->value = Tensor::empty(Shape{rows, ca + cb}, a.dtype());
  dispatch_float(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    scatter<T>(a.value(), pa, node->value, 0.0, false);
    scatter<T>(b.value(), pb, node->value, 0.0, false);
  });
  return make(*a.tape, std::move(node), {a, b});
}

Var lstm_cell(Var gates, Var state) {
  check_matrix(gates, "lstm_cell");
  const Tensor& av = gates.value();
  const std::int64_t rows = av.dim(0);
  if (av.dim(1) % 4 != 0 || av.dim(1) == 0) {
    throw ShapeError("lstm_cell: gates " + av.shape().str() + " (expected [batch, 4 * hidden], blocks i, f, g, o)");
  }
  const std::int64_t n = av.dim(1) / 4;
  if (state.valid()) {
    check_matrix(state, "lstm_cell");
    check_same_dtype(av, state.value(), "lstm_cell");
    if (state.value().dim(0) != rows || state.value().dim(1) != 2 * n) {
      throw ShapeError("lstm_cell: state " + state.shape().str() + " does not fit gates " + av.shape().str() +
                       " (expected [" + std::to_string(rows) + ", " + std::to_string(2 * n) + "] = [h c])");
    }
    if (state.tape != gates.tape) throw ShapeError("lstm_cell: inputs come from different tapes");
  }
  auto node = std::make_unique<LstmCellNode>(n);
  node->value = Tensor::empty(Shape{rows, 2 * n}, av.dtype());
  node->act = Tensor::empty(av.shape(), av.dtype());
  node->tau = Tensor::empty(Shape{rows, n}, av.dtype());
  const Tensor* sv = state.valid() ? &state.value() : nullptr;
  dispatch_float(av.dtype(), [&](auto zero) { node->template compute_value<decltype(zero)>(av, sv); });
  return make(*gates.tape, std::move(node), {gates, state});
}

Var stop_gradient(Var x) {
  check_float(x, "stop_gradient");
  auto node = std::make_unique<StopGradientNode>();
  node->value = x.value();
  Var y = make(*x.tape, std::move(node), {x});
  x.tape->node(y).requires_grad = false;
  return y;
}

}  // namespace descent::autodiff
