// Sequence operations (sequence.hpp): block copies between matrices and the gradient
// barrier. Each node's four rules sit side by side; the comment above each rule is its
// equation (x' tangent, gy = dL/dy, R(.) the derivative along v).
#include "descent/autodiff/sequence.hpp"

#include <algorithm>
#include <cstring>
#include <string>

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

Var stop_gradient(Var x) {
  check_float(x, "stop_gradient");
  auto node = std::make_unique<StopGradientNode>();
  node->value = x.value();
  Var y = make(*x.tape, std::move(node), {x});
  x.tape->node(y).requires_grad = false;
  return y;
}

}  // namespace descent::autodiff
