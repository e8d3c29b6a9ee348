// The operations of the tape. Each node's four rules sit side by side; the comment above
// each rule is its equation (x' tangent, gy = dL/dy, R(.) the derivative along v).
#include "descent/autodiff/ops.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "descent/tensor/kernels.hpp"
#include "descent/tensor/parallel.hpp"
#include "../tensor/vmath.hpp"
#include "linear_bf16.hpp"
#include "node_util.hpp"

namespace descent::autodiff {
namespace {

using namespace detail;
using kernels::gemm;

// ============================================================================
// linear: y = x w^T + b        x [B, in], w [out, in], b [out], y [B, out]
// ============================================================================
class LinearNode final : public Node {
 public:
  const char* name() const override { return "linear"; }
  bool has_bias() const { return num_inputs == 3; }
  LinearBf16 bf16;  // on: the value and gradient products ran in bf16 (tensor/precision.hpp)

  // y' = x' w^T + x w'^T + b'
  void tangent_forward(Tape& t) override {
    Node& x = t.node(input[0]);
    Node& w = t.node(input[1]);
    tangent = Tensor::empty(value.shape(), value.dtype());
    double beta = 0.0;
    if (has_bias() && t.has_tangent(input[2])) {
      broadcast_rows(t.node(input[2]).tangent, tangent);
      beta = 1.0;
    }
    if (x.tangent.defined()) {
      gemm(x.tangent, false, w.value, true, tangent, 1.0, beta);
      beta = 1.0;
    }
    if (w.tangent.defined()) {
      gemm(x.value, false, w.tangent, true, tangent, 1.0, beta);
      beta = 1.0;
    }
    if (beta == 0.0) tangent.fill(0.0);
  }

  // gx += gy w ;  gw += gy^T x ;  gb += sum_rows(gy)   (gw, gb only where wanted: not in Hv alone)
  void backward(Tape& t) override {
    Node& x = t.node(input[0]);
    Node& w = t.node(input[1]);
    const bool want_w = t.wants_grad(input[1]);
    double beta = 0.0;
    const LinearBf16::Grad g16 = bf16.on() ? bf16.convert_grad(grad) : LinearBf16::Grad{};
    if (x.requires_grad) {
      Tensor gx = t.grad_sink(input[0], beta);
      if (bf16.on()) bf16.input_grad(g16, gx, beta);
      else gemm(grad, false, w.value, false, gx, 1.0, beta);
    }
    if (want_w) {
      Tensor gw = t.grad_sink(input[1], beta);
      if (bf16.on()) bf16.weight_grad(g16, gw, beta);
      else gemm(grad, true, x.value, false, gw, 1.0, beta);
    }
    if (has_bias() && t.wants_grad(input[2])) {
      Tensor gb = t.grad_sink(input[2], beta);
      kernels::sum_rows(grad, gb, beta);
    }
  }

  // R(gx) += R(gy) w + gy w' ;  R(gw) += R(gy)^T x + gy^T x' ;  R(gb) += sum_rows(R(gy))
  void tangent_backward(Tape& t) override {
    Node& x = t.node(input[0]);
    Node& w = t.node(input[1]);
    const bool rg = grad_tangent.defined();
    double beta = 0.0;
    if (x.requires_grad && (rg || w.tangent.defined())) {
      Sink s(t, input[0], true);
      if (rg) {
        Tensor d = s.next(beta);
        gemm(grad_tangent, false, w.value, false, d, 1.0, beta);
      }
      if (w.tangent.defined()) {
        Tensor d = s.next(beta);
        gemm(grad, false, w.tangent, false, d, 1.0, beta);
      }
    }
    if (w.requires_grad && (rg || x.tangent.defined())) {
      Sink s(t, input[1], true);
      if (rg) {
        Tensor d = s.next(beta);
        gemm(grad_tangent, true, x.value, false, d, 1.0, beta);
      }
      if (x.tangent.defined()) {
        Tensor d = s.next(beta);
        gemm(grad, true, x.tangent, false, d, 1.0, beta);
      }
    }
    if (has_bias() && t.requires_grad(input[2]) && rg) {
      Sink s(t, input[2], true);
      Tensor gb = s.next(beta);
      kernels::sum_rows(grad_tangent, gb, beta);
    }
  }

  // dst[i, :] = b for every row i.
  static void broadcast_rows(const Tensor& b, const Tensor& dst) {
    const std::int64_t rows = dst.dim(0);
    const std::int64_t cols = dst.dim(1);
    const std::size_t row_bytes = static_cast<std::size_t>(cols) * dtype_size(dst.dtype());
    auto* d = static_cast<std::byte*>(dst.raw());
    for (std::int64_t r = 0; r < rows; ++r) std::memcpy(d + static_cast<std::size_t>(r) * row_bytes, b.raw(), row_bytes);
  }
};

// ============================================================================
// matmul: y = a b        a [m, k], b [k, n]
// ============================================================================
class MatmulNode final : public Node {
 public:
  const char* name() const override { return "matmul"; }

  // y' = a' b + a b'
  void tangent_forward(Tape& t) override {
    Node& a = t.node(input[0]);
    Node& b = t.node(input[1]);
    tangent = Tensor::empty(value.shape(), value.dtype());
    double beta = 0.0;
    if (a.tangent.defined()) {
      gemm(a.tangent, false, b.value, false, tangent, 1.0, beta);
      beta = 1.0;
    }
    if (b.tangent.defined()) gemm(a.value, false, b.tangent, false, tangent, 1.0, beta);
  }

  // ga += gy b^T ;  gb += a^T gy
  void backward(Tape& t) override {
    Node& a = t.node(input[0]);
    Node& b = t.node(input[1]);
    double beta = 0.0;
    if (a.requires_grad) {
      Tensor ga = t.grad_sink(input[0], beta);
      gemm(grad, false, b.value, true, ga, 1.0, beta);
    }
    if (b.requires_grad) {
      Tensor gb = t.grad_sink(input[1], beta);
      gemm(a.value, true, grad, false, gb, 1.0, beta);
    }
  }

  // R(ga) += R(gy) b^T + gy b'^T ;  R(gb) += a'^T gy + a^T R(gy)
  void tangent_backward(Tape& t) override {
    Node& a = t.node(input[0]);
    Node& b = t.node(input[1]);
    const bool rg = grad_tangent.defined();
    double beta = 0.0;
    if (a.requires_grad && (rg || b.tangent.defined())) {
      Sink s(t, input[0], true);
      if (rg) {
        Tensor d = s.next(beta);
        gemm(grad_tangent, false, b.value, true, d, 1.0, beta);
      }
      if (b.tangent.defined()) {
        Tensor d = s.next(beta);
        gemm(grad, false, b.tangent, true, d, 1.0, beta);
      }
    }
    if (b.requires_grad && (rg || a.tangent.defined())) {
      Sink s(t, input[1], true);
      if (rg) {
        Tensor d = s.next(beta);
        gemm(a.value, true, grad_tangent, false, d, 1.0, beta);
      }
      if (a.tangent.defined()) {
        Tensor d = s.next(beta);
        gemm(a.tangent, true, grad, false, d, 1.0, beta);
      }
    }
  }
};

// ============================================================================
// add / sub: y = a + sign b      (linear: no second-order term)
// ============================================================================
class AddNode final : public Node {
 public:
  explicit AddNode(double sign) : sign_(sign) {}
  const char* name() const override { return sign_ > 0 ? "add" : "sub"; }

  // y' = a' + sign b'
  void tangent_forward(Tape& t) override {
    tangent = Tensor::zeros(value.shape(), value.dtype());
    if (t.has_tangent(input[0])) kernels::axpby(1.0, t.node(input[0]).tangent, 1.0, tangent);
    if (t.has_tangent(input[1])) kernels::axpby(sign_, t.node(input[1]).tangent, 1.0, tangent);
  }
  // ga += gy ;  gb += sign gy
  void backward(Tape& t) override { propagate(t, grad, false); }
  // R(ga) += R(gy) ;  R(gb) += sign R(gy)
  void tangent_backward(Tape& t) override {
    if (grad_tangent.defined()) propagate(t, grad_tangent, true);
  }

 private:
  void propagate(Tape& t, const Tensor& g, bool tangent_pass) {
    const double signs[2] = {1.0, sign_};
    for (int k = 0; k < 2; ++k) {
      if (!t.requires_grad(input[k])) continue;
      double beta = 0.0;
      Tensor dst = tangent_pass ? t.grad_tangent_sink(input[k], beta) : t.grad_sink(input[k], beta);
      kernels::axpby(signs[k], g, beta, dst);
    }
  }
  double sign_;
};

// ============================================================================
// mul: y = a (.) b
// ============================================================================
class MulNode final : public Node {
 public:
  const char* name() const override { return "mul"; }

  // y' = a' b + a b'
  void tangent_forward(Tape& t) override {
    dispatch_float(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      Node& a = t.node(input[0]);
      Node& b = t.node(input[1]);
      tangent = Tensor::zeros(value.shape(), value.dtype());
      const T* av = a.value.data<T>();
      const T* bv = b.value.data<T>();
      if (a.tangent.defined()) {
        const T* at = a.tangent.data<T>();
        store<T>(tangent, 1.0, [=](std::int64_t i) { return at[i] * bv[i]; });
      }
      if (b.tangent.defined()) {
        const T* bt = b.tangent.data<T>();
        store<T>(tangent, 1.0, [=](std::int64_t i) { return av[i] * bt[i]; });
      }
    });
  }

  // ga += gy b ;  gb += gy a
  void backward(Tape& t) override {
    dispatch_float(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* gy = grad.data<T>();
      for (int k = 0; k < 2; ++k) {
        if (!t.requires_grad(input[k])) continue;
        const T* other = t.node(input[1 - k]).value.data<T>();
        double beta = 0.0;
        Tensor dst = t.grad_sink(input[k], beta);
        store<T>(dst, beta, [=](std::int64_t i) { return gy[i] * other[i]; });
      }
    });
  }

  // R(ga) += R(gy) b + gy b' ;  R(gb) += R(gy) a + gy a'
  void tangent_backward(Tape& t) override {
    dispatch_float(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* gy = grad.data<T>();
      for (int k = 0; k < 2; ++k) {
        if (!t.requires_grad(input[k])) continue;
        Node& other = t.node(input[1 - k]);
        Sink s(t, input[k], true);
        double beta = 0.0;
        if (grad_tangent.defined()) {
          const T* rg = grad_tangent.data<T>();
          const T* ov = other.value.data<T>();
          Tensor dst = s.next(beta);
          store<T>(dst, beta, [=](std::int64_t i) { return rg[i] * ov[i]; });
        }
        if (other.tangent.defined()) {
          const T* ot = other.tangent.data<T>();
          Tensor dst = s.next(beta);
          store<T>(dst, beta, [=](std::int64_t i) { return gy[i] * ot[i]; });
        }
      }
    });
  }
};

// ============================================================================
// affine with constants: y = c x + d
// ============================================================================
class AffineNode final : public Node {
 public:
  AffineNode(double c, const char* name) : c_(c), name_(name) {}
  const char* name() const override { return name_; }
  // y' = c x'
  void tangent_forward(Tape& t) override {
    tangent = Tensor::empty(value.shape(), value.dtype());
    kernels::axpby(c_, t.node(input[0]).tangent, 0.0, tangent);
  }
  // gx += c gy
  void backward(Tape& t) override {
    if (!t.requires_grad(input[0])) return;
    double beta = 0.0;
    Tensor dst = t.grad_sink(input[0], beta);
    kernels::axpby(c_, grad, beta, dst);
  }
  // R(gx) += c R(gy)
  void tangent_backward(Tape& t) override {
    if (!t.requires_grad(input[0]) || !grad_tangent.defined()) return;
    double beta = 0.0;
    Tensor dst = t.grad_tangent_sink(input[0], beta);
    kernels::axpby(c_, grad_tangent, beta, dst);
  }

 private:
  double c_;
  const char* name_;
};

// ============================================================================
// mul_scalar: y = s x, s a one-element Var
// ============================================================================
class MulScalarNode final : public Node {
 public:
  const char* name() const override { return "mul_scalar"; }

  // y' = s' x + s x'
  void tangent_forward(Tape& t) override {
    Node& x = t.node(input[0]);
    Node& s = t.node(input[1]);
    tangent = Tensor::zeros(value.shape(), value.dtype());
    if (s.tangent.defined()) kernels::axpby(s.tangent.at(0), x.value, 1.0, tangent);
    if (x.tangent.defined()) kernels::axpby(s.value.at(0), x.tangent, 1.0, tangent);
  }

  // gx += s gy ;  gs += sum(gy x)
  void backward(Tape& t) override {
    Node& x = t.node(input[0]);
    Node& s = t.node(input[1]);
    double beta = 0.0;
    if (x.requires_grad) {
      Tensor dst = t.grad_sink(input[0], beta);
      kernels::axpby(s.value.at(0), grad, beta, dst);
    }
    if (s.requires_grad) {
      Tensor dst = t.grad_sink(input[1], beta);
      add_scalar_to(dst, beta, kernels::dot(grad, x.value));
    }
  }

  // R(gx) += s' gy + s R(gy) ;  R(gs) += sum(R(gy) x + gy x')
  void tangent_backward(Tape& t) override {
    Node& x = t.node(input[0]);
    Node& s = t.node(input[1]);
    const bool rg = grad_tangent.defined();
    double beta = 0.0;
    if (x.requires_grad && (rg || s.tangent.defined())) {
      Sink sink(t, input[0], true);
      if (s.tangent.defined()) {
        Tensor dst = sink.next(beta);
        kernels::axpby(s.tangent.at(0), grad, beta, dst);
      }
      if (rg) {
        Tensor dst = sink.next(beta);
        kernels::axpby(s.value.at(0), grad_tangent, beta, dst);
      }
    }
    if (s.requires_grad && (rg || x.tangent.defined())) {
      double total = 0.0;
      if (rg) total += kernels::dot(grad_tangent, x.value);
      if (x.tangent.defined()) total += kernels::dot(grad, x.tangent);
      Tensor dst = t.grad_tangent_sink(input[1], beta);
      add_scalar_to(dst, beta, total);
    }
  }

  static void add_scalar_to(const Tensor& dst, double beta, double v) {
    dispatch_float(dst.dtype(), [&](auto zero) {
      using T = decltype(zero);
      T* d = dst.data<T>();
      d[0] = static_cast<T>(beta == 0.0 ? v : static_cast<double>(d[0]) + v);
    });
  }
};

// ============================================================================
// Elementwise functions y = f(x) with first and second derivatives in terms of x and y.
// ============================================================================
struct ReluFn {
  static constexpr const char* name = "relu";
  static constexpr bool has_d2 = false;
  template <class T> static T f(T x) { return x > T(0) ? x : T(0); }
  template <class T> static T d1(T x, T) { return x > T(0) ? T(1) : T(0); }
  template <class T> static T d2(T, T) { return T(0); }
};
struct TanhFn {
  static constexpr const char* name = "tanh";
  static constexpr bool has_d2 = true;
  template <class T> static T f(T x) { return vmath::tanh(x); }  // float: vectorized (vmath.hpp)
  template <class T> static T d1(T, T y) { return T(1) - y * y; }                  // 1 - y^2
  template <class T> static T d2(T, T y) { return T(-2) * y * (T(1) - y * y); }    // -2 y (1 - y^2)
};
struct SigmoidFn {
  static constexpr const char* name = "sigmoid";
  static constexpr bool has_d2 = true;
  template <class T> static T f(T x) { return vmath::sigmoid(x); }  // e^x / (1 + e^x) for x < 0
  template <class T> static T d1(T, T y) { return y * (T(1) - y); }                      // y (1 - y)
  template <class T> static T d2(T, T y) { return y * (T(1) - y) * (T(1) - T(2) * y); }  // y (1-y)(1-2y)
};
struct ExpFn {
  static constexpr const char* name = "exp";
  static constexpr bool has_d2 = true;
  template <class T> static T f(T x) { return vmath::exp(x); }
  template <class T> static T d1(T, T y) { return y; }
  template <class T> static T d2(T, T y) { return y; }
};
struct LogFn {
  static constexpr const char* name = "log";
  static constexpr bool has_d2 = true;
  template <class T> static T f(T x) { return std::log(x); }
  template <class T> static T d1(T x, T) { return T(1) / x; }
  template <class T> static T d2(T x, T) { return T(-1) / (x * x); }
};
struct SquareFn {
  static constexpr const char* name = "square";
  static constexpr bool has_d2 = true;
  template <class T> static T f(T x) { return x * x; }
  template <class T> static T d1(T x, T) { return T(2) * x; }
  template <class T> static T d2(T, T) { return T(2); }
};

template <class Fn>
class UnaryNode final : public Node {
 public:
  const char* name() const override { return Fn::name; }

  // y' = f'(x) x'
  void tangent_forward(Tape& t) override {
    dispatch_float(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      Node& x = t.node(input[0]);
      tangent = Tensor::empty(value.shape(), value.dtype());
      const T* xv = x.value.data<T>();
      const T* yv = value.data<T>();
      const T* xt = x.tangent.data<T>();
      store<T>(tangent, 0.0, [=](std::int64_t i) { return Fn::d1(xv[i], yv[i]) * xt[i]; });
    });
  }

  // gx += f'(x) gy
  void backward(Tape& t) override {
    if (!t.requires_grad(input[0])) return;
    dispatch_float(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const Node& x = t.node(input[0]);
      const T* xv = x.value.data<T>();
      const T* yv = value.data<T>();
      const T* gy = grad.data<T>();
      double beta = 0.0;
      Tensor dst = t.grad_sink(input[0], beta);
      store<T>(dst, beta, [=](std::int64_t i) { return Fn::d1(xv[i], yv[i]) * gy[i]; });
    });
  }

  // R(gx) += f''(x) x' gy + f'(x) R(gy)
  void tangent_backward(Tape& t) override {
    Node& x = t.node(input[0]);
    const bool second = Fn::has_d2 && x.tangent.defined();
    if (!x.requires_grad || (!second && !grad_tangent.defined())) return;
    dispatch_float(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* xv = x.value.data<T>();
      const T* yv = value.data<T>();
      const T* gy = grad.data<T>();
      double beta = 0.0;
      Tensor dst = t.grad_tangent_sink(input[0], beta);
      if (second && grad_tangent.defined()) {
        const T* xt = x.tangent.data<T>();
        const T* rg = grad_tangent.data<T>();
        store<T>(dst, beta, [=](std::int64_t i) {
          return Fn::d2(xv[i], yv[i]) * xt[i] * gy[i] + Fn::d1(xv[i], yv[i]) * rg[i];
        });
      } else if (second) {
        const T* xt = x.tangent.data<T>();
        store<T>(dst, beta, [=](std::int64_t i) { return Fn::d2(xv[i], yv[i]) * xt[i] * gy[i]; });
      } else {
        const T* rg = grad_tangent.data<T>();
        store<T>(dst, beta, [=](std::int64_t i) { return Fn::d1(xv[i], yv[i]) * rg[i]; });
      }
    });
  }
};

template <class Fn>
Var unary(Var x) {
  check_float(x, Fn::name);
  auto node = std::make_unique<UnaryNode<Fn>>();
  node->value = Tensor::empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* xv = x.value().template data<T>();
    store<T>(node->value, 0.0, [=](std::int64_t i) { return Fn::f(xv[i]); });
  });
  return make(*x.tape, std::move(node), {x});
}

// ============================================================================
// Row-wise softmax family over [B, C].
// ============================================================================
template <class T, class F>
void for_rows(std::int64_t rows, std::int64_t cols, F&& f) {
  parallel_for(rows, std::max<std::int64_t>(1, parallel_grain / std::max<std::int64_t>(cols, 1)),
               [&](std::int64_t r0, std::int64_t r1) {
                 for (std::int64_t r = r0; r < r1; ++r) f(r);
               });
}

// p = softmax(z) row r, written to p; returns log sum exp(z).
template <class T>
double softmax_row(const T* z, T* p, std::int64_t cols) {
  T m = z[0];
  for (std::int64_t c = 1; c < cols; ++c) m = std::max(m, z[c]);
  double s = 0.0;
  for (std::int64_t c = 0; c < cols; ++c) {
    const T e = vmath::exp(z[c] - m);
    p[c] = e;
    s += static_cast<double>(e);
  }
  const T inv = static_cast<T>(1.0 / s);
  for (std::int64_t c = 0; c < cols; ++c) p[c] *= inv;
  return static_cast<double>(m) + std::log(s);
}

template <class T>
double row_dot(const T* a, const T* b, std::int64_t cols) {
  double s = 0.0;
  for (std::int64_t c = 0; c < cols; ++c) s += static_cast<double>(a[c]) * static_cast<double>(b[c]);
  return s;
}

template <class T>
double row_sum(const T* a, std::int64_t cols) {
  double s = 0.0;
  for (std::int64_t c = 0; c < cols; ++c) s += static_cast<double>(a[c]);
  return s;
}

void check_matrix(Var x, const char* op) {
  check_float(x, op);
  if (x.value().ndim() != 2) throw ShapeError(std::string(op) + ": expects a 2-D [batch, classes] input, got " + x.shape().str());
}

// y = p = softmax(z)
class SoftmaxNode final : public Node {
 public:
  const char* name() const override { return "softmax"; }

  // y' = p (.) (z' - <p, z'>)
  void tangent_forward(Tape& t) override {
    dispatch_float(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const std::int64_t rows = value.dim(0), cols = value.dim(1);
      tangent = Tensor::empty(value.shape(), value.dtype());
      const T* p = value.data<T>();
      const T* zt = t.node(input[0]).tangent.data<T>();
      T* yt = tangent.data<T>();
      for_rows<T>(rows, cols, [&](std::int64_t r) {
        const std::int64_t o = r * cols;
        const T pz = static_cast<T>(row_dot(p + o, zt + o, cols));
        for (std::int64_t c = 0; c < cols; ++c) yt[o + c] = p[o + c] * (zt[o + c] - pz);
      });
    });
  }

  // gz += p (.) (gy - <p, gy>)
  void backward(Tape& t) override {
    if (!t.requires_grad(input[0])) return;
    dispatch_float(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const std::int64_t rows = value.dim(0), cols = value.dim(1);
      double beta = 0.0;
      Tensor dst = t.grad_sink(input[0], beta);
      const T* p = value.data<T>();
      const T* gy = grad.data<T>();
      T* gz = dst.data<T>();
      for_rows<T>(rows, cols, [&](std::int64_t r) {
        const std::int64_t o = r * cols;
        const T pg = static_cast<T>(row_dot(p + o, gy + o, cols));
        for (std::int64_t c = 0; c < cols; ++c) {
          const T v = p[o + c] * (gy[o + c] - pg);
          gz[o + c] = beta == 0.0 ? v : gz[o + c] + v;
        }
      });
    });
  }

  // R(gz) += y' (.) (gy - <p, gy>) + p (.) (R(gy) - <y', gy> - <p, R(gy)>)
  void tangent_backward(Tape& t) override {
    const bool has_t = tangent.defined();
    const bool rg = grad_tangent.defined();
    if (!t.requires_grad(input[0]) || (!has_t && !rg)) return;
    dispatch_float(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const std::int64_t rows = value.dim(0), cols = value.dim(1);
      double beta = 0.0;
      Tensor dst = t.grad_tangent_sink(input[0], beta);
      const T* p = value.data<T>();
      const T* gy = grad.data<T>();
      const T* yt = has_t ? tangent.data<T>() : nullptr;
      const T* rgy = rg ? grad_tangent.data<T>() : nullptr;
      T* out = dst.data<T>();
      for_rows<T>(rows, cols, [&](std::int64_t r) {
        const std::int64_t o = r * cols;
        const T pg = static_cast<T>(row_dot(p + o, gy + o, cols));
        const T tg = has_t ? static_cast<T>(row_dot(yt + o, gy + o, cols)) : T(0);
        const T prg = rg ? static_cast<T>(row_dot(p + o, rgy + o, cols)) : T(0);
        for (std::int64_t c = 0; c < cols; ++c) {
          T v = T(0);
          if (has_t) v += yt[o + c] * (gy[o + c] - pg);
          v += p[o + c] * ((rg ? rgy[o + c] : T(0)) - tg - prg);
          out[o + c] = beta == 0.0 ? v : out[o + c] + v;
        }
      });
    });
  }
};

// y = z - lse(z) per row; p = exp(y)
class LogSoftmaxNode final : public Node {
 public:
  const char* name() const override { return "log_softmax"; }

  // y' = z' - <p, z'>
  void tangent_forward(Tape& t) override {
    dispatch_float(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const std::int64_t rows = value.dim(0), cols = value.dim(1);
      tangent = Tensor::empty(value.shape(), value.dtype());
      const T* y = value.data<T>();
      const T* zt = t.node(input[0]).tangent.data<T>();
      T* yt = tangent.data<T>();
      for_rows<T>(rows, cols, [&](std::int64_t r) {
        const std::int64_t o = r * cols;
        double pz = 0.0;
        for (std::int64_t c = 0; c < cols; ++c) pz += std::exp(static_cast<double>(y[o + c])) * zt[o + c];
        for (std::int64_t c = 0; c < cols; ++c) yt[o + c] = zt[o + c] - static_cast<T>(pz);
      });
    });
  }

  // gz += gy - p sum(gy)
  void backward(Tape& t) override {
    if (!t.requires_grad(input[0])) return;
    dispatch_float(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const std::int64_t rows = value.dim(0), cols = value.dim(1);
      double beta = 0.0;
      Tensor dst = t.grad_sink(input[0], beta);
      const T* y = value.data<T>();
      const T* gy = grad.data<T>();
      T* gz = dst.data<T>();
      for_rows<T>(rows, cols, [&](std::int64_t r) {
        const std::int64_t o = r * cols;
        const T sg = static_cast<T>(row_sum(gy + o, cols));
        for (std::int64_t c = 0; c < cols; ++c) {
          const T v = gy[o + c] - vmath::exp(y[o + c]) * sg;
          gz[o + c] = beta == 0.0 ? v : gz[o + c] + v;
        }
      });
    });
  }

  // R(gz) += R(gy) - p sum(R(gy)) - p' sum(gy),   p' = p (.) y'
  void tangent_backward(Tape& t) override {
    const bool has_t = tangent.defined();
    const bool rg = grad_tangent.defined();
    if (!t.requires_grad(input[0]) || (!has_t && !rg)) return;
    dispatch_float(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const std::int64_t rows = value.dim(0), cols = value.dim(1);
      double beta = 0.0;
      Tensor dst = t.grad_tangent_sink(input[0], beta);
      const T* y = value.data<T>();
      const T* gy = grad.data<T>();
      const T* yt = has_t ? tangent.data<T>() : nullptr;
      const T* rgy = rg ? grad_tangent.data<T>() : nullptr;
      T* out = dst.data<T>();
      for_rows<T>(rows, cols, [&](std::int64_t r) {
        const std::int64_t o = r * cols;
        const T sg = static_cast<T>(row_sum(gy + o, cols));
        const T srg = rg ? static_cast<T>(row_sum(rgy + o, cols)) : T(0);
        for (std::int64_t c = 0; c < cols; ++c) {
          const T p = vmath::exp(y[o + c]);
          T v = (rg ? rgy[o + c] : T(0)) - p * srg;
          if (has_t) v -= p * yt[o + c] * sg;
          out[o + c] = beta == 0.0 ? v : out[o + c] + v;
        }
      });
    });
  }
};

// ============================================================================
// Reductions: y = c sum(x)  (sum: c = 1, mean: c = 1/n)
// ============================================================================
class SumNode final : public Node {
 public:
  SumNode(double c, const char* name) : c_(c), name_(name) {}
  const char* name() const override { return name_; }
  // y' = c sum(x')
  void tangent_forward(Tape& t) override {
    tangent = Tensor::full(value.shape(), value.dtype(), c_ * kernels::sum(t.node(input[0]).tangent));
  }
  // gx += c gy
  void backward(Tape& t) override { spread(t, grad, false); }
  // R(gx) += c R(gy)
  void tangent_backward(Tape& t) override {
    if (grad_tangent.defined()) spread(t, grad_tangent, true);
  }

 private:
  void spread(Tape& t, const Tensor& g, bool tangent_pass) {
    if (!t.requires_grad(input[0])) return;
    double beta = 0.0;
    Tensor dst = tangent_pass ? t.grad_tangent_sink(input[0], beta) : t.grad_sink(input[0], beta);
    const double v = c_ * g.at(0);
    dispatch_float(dst.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T tv = static_cast<T>(v);
      store<T>(dst, beta, [=](std::int64_t) { return tv; });
    });
  }
  double c_;
  const char* name_;
};

// ============================================================================
// reshape: a view
// ============================================================================
class ReshapeNode final : public Node {
 public:
  const char* name() const override { return "reshape"; }
  void tangent_forward(Tape& t) override { tangent = t.node(input[0]).tangent.reshape(value.shape()); }
  void backward(Tape& t) override { pass(t, grad, false); }
  void tangent_backward(Tape& t) override {
    if (grad_tangent.defined()) pass(t, grad_tangent, true);
  }

 private:
  void pass(Tape& t, const Tensor& g, bool tangent_pass) {
    if (!t.requires_grad(input[0])) return;
    double beta = 0.0;
    Tensor dst = tangent_pass ? t.grad_tangent_sink(input[0], beta) : t.grad_sink(input[0], beta);
    kernels::axpby(1.0, g, beta, dst);
  }
};

// ============================================================================
// softmax_cross_entropy: L = (1/B) sum_i [ lse(z_i) - z_i,y_i ]
// ============================================================================
class SoftmaxCrossEntropyNode final : public Node {
 public:
  const char* name() const override { return "softmax_cross_entropy"; }
  Tensor labels;  // i32 [B]
  Tensor probs;   // softmax(z) [B, C], kept from the forward pass

  // L' = (1/B) sum_i ( <p_i, z'_i> - z'_i,y_i )
  void tangent_forward(Tape& t) override {
    dispatch_float(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const std::int64_t rows = probs.dim(0), cols = probs.dim(1);
      const T* p = probs.data<T>();
      const T* zt = t.node(input[0]).tangent.data<T>();
      const std::int32_t* y = labels.data<std::int32_t>();
      double s = 0.0;
      for (std::int64_t r = 0; r < rows; ++r) {
        s += row_dot(p + r * cols, zt + r * cols, cols) - static_cast<double>(zt[r * cols + y[r]]);
      }
      tangent = Tensor::full(value.shape(), value.dtype(), s / static_cast<double>(rows));
    });
  }

  // gz += (gL / B) (p - onehot(y))
  void backward(Tape& t) override {
    if (!t.requires_grad(input[0])) return;
    double beta = 0.0;
    Tensor dst = t.grad_sink(input[0], beta);
    write_p_minus_onehot(dst, beta, grad.at(0) / static_cast<double>(probs.dim(0)));
  }

  // R(gz) += (R(gL) / B) (p - onehot(y)) + (gL / B) p',   p'_i = p_i (.) (z'_i - <p_i, z'_i>)
  void tangent_backward(Tape& t) override {
    Node& z = t.node(input[0]);
    const bool rg = grad_tangent.defined();
    if (!z.requires_grad || (!rg && !z.tangent.defined())) return;
    const double inv_b = 1.0 / static_cast<double>(probs.dim(0));
    Sink s(t, input[0], true);
    double beta = 0.0;
    if (rg) {
      Tensor dst = s.next(beta);
      write_p_minus_onehot(dst, beta, grad_tangent.at(0) * inv_b);
    }
    if (z.tangent.defined()) {
      Tensor dst = s.next(beta);
      dispatch_float(value.dtype(), [&](auto zero) {
        using T = decltype(zero);
        const std::int64_t rows = probs.dim(0), cols = probs.dim(1);
        const T scale_v = static_cast<T>(grad.at(0) * inv_b);
        const T* p = probs.data<T>();
        const T* zt = z.tangent.data<T>();
        T* out = dst.data<T>();
        for_rows<T>(rows, cols, [&](std::int64_t r) {
          const std::int64_t o = r * cols;
          const T pz = static_cast<T>(row_dot(p + o, zt + o, cols));
          for (std::int64_t c = 0; c < cols; ++c) {
            const T v = scale_v * p[o + c] * (zt[o + c] - pz);
            out[o + c] = beta == 0.0 ? v : out[o + c] + v;
          }
        });
      });
    }
  }

 private:
  void write_p_minus_onehot(const Tensor& dst, double beta, double factor) {
    dispatch_float(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const std::int64_t rows = probs.dim(0), cols = probs.dim(1);
      const T f = static_cast<T>(factor);
      const T* p = probs.data<T>();
      const std::int32_t* y = labels.data<std::int32_t>();
      T* out = dst.data<T>();
      for_rows<T>(rows, cols, [&](std::int64_t r) {
        const std::int64_t o = r * cols;
        for (std::int64_t c = 0; c < cols; ++c) {
          const T v = f * (p[o + c] - (c == y[r] ? T(1) : T(0)));
          out[o + c] = beta == 0.0 ? v : out[o + c] + v;
        }
      });
    });
  }
};

}  // namespace

// ---- public constructors -------------------------------------------------------------

Var linear(Var x, Var w, Var b) {
  check_float(x, "linear");
  const Tensor& xv = x.value();
  const Tensor& wv = w.value();
  if (xv.ndim() != 2 || wv.ndim() != 2 || xv.dim(1) != wv.dim(1)) {
    throw ShapeError("linear: input " + xv.shape().str() + " does not fit weight " + wv.shape().str() +
                     " (expected [batch, in] and [out, in])");
  }
  check_same_dtype(xv, wv, "linear");
  auto node = std::make_unique<LinearNode>();
  node->value = Tensor::empty(Shape{xv.dim(0), wv.dim(0)}, xv.dtype());
  if (b.valid()) {
    const Tensor& bv = b.value();
    if (bv.numel() != wv.dim(0)) {
      throw ShapeError("linear: bias " + bv.shape().str() + " does not fit weight " + wv.shape().str());
    }
    check_same_dtype(xv, bv, "linear");
  }
  const Tensor bias = b.valid() ? b.value() : Tensor();
  // bf16 products, or kernels::linear: one oneDNN primitive with the bias in it where
  // kernels::fused_linear, else the bias rows and the product added to them
  if (LinearBf16::wanted(xv)) node->bf16.forward(xv, wv, bias, node->value, bf16_value(*x.tape, x.id));
  else kernels::linear(xv, wv, bias, node->value);
  return make(*x.tape, std::move(node), {x, w, b});
}

Var matmul(Var a, Var b) {
  check_float(a, "matmul");
  const Tensor& av = a.value();
  const Tensor& bv = b.value();
  if (av.ndim() != 2 || bv.ndim() != 2 || av.dim(1) != bv.dim(0)) {
    throw ShapeError("matmul: " + av.shape().str() + " times " + bv.shape().str());
  }
  check_same_dtype(av, bv, "matmul");
  auto node = std::make_unique<MatmulNode>();
  node->value = Tensor::empty(Shape{av.dim(0), bv.dim(1)}, av.dtype());
  gemm(av, false, bv, false, node->value, 1.0, 0.0);
  return make(*a.tape, std::move(node), {a, b});
}

namespace {
Var add_impl(Var a, Var b, double sign) {
  check_same(a, b, sign > 0 ? "add" : "sub");
  auto node = std::make_unique<AddNode>(sign);
  node->value = b.value().clone();
  kernels::axpby(1.0, a.value(), sign, node->value);
  return make(*a.tape, std::move(node), {a, b});
}
}  // namespace

Var add(Var a, Var b) { return add_impl(a, b, 1.0); }
Var sub(Var a, Var b) { return add_impl(a, b, -1.0); }

Var mul(Var a, Var b) {
  check_same(a, b, "mul");
  auto node = std::make_unique<MulNode>();
  node->value = Tensor::empty(a.shape(), a.dtype());
  dispatch_float(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* av = a.value().template data<T>();
    const T* bv = b.value().template data<T>();
    store<T>(node->value, 0.0, [=](std::int64_t i) { return av[i] * bv[i]; });
  });
  return make(*a.tape, std::move(node), {a, b});
}

Var scale(Var x, double c) {
  check_float(x, "scale");
  auto node = std::make_unique<AffineNode>(c, "scale");
  node->value = Tensor::empty(x.shape(), x.dtype());
  kernels::axpby(c, x.value(), 0.0, node->value);
  return make(*x.tape, std::move(node), {x});
}

Var add_scalar(Var x, double c) {
  check_float(x, "add_scalar");
  auto node = std::make_unique<AffineNode>(1.0, "add_scalar");
  node->value = Tensor::full(x.shape(), x.dtype(), c);
  kernels::axpby(1.0, x.value(), 1.0, node->value);
  return make(*x.tape, std::move(node), {x});
}

Var mul_scalar(Var x, Var s) {
  check_float(x, "mul_scalar");
  if (s.value().numel() != 1) throw ShapeError("mul_scalar: the scale must have one element, got " + s.shape().str());
  check_same_dtype(x.value(), s.value(), "mul_scalar");
  auto node = std::make_unique<MulScalarNode>();
  node->value = Tensor::empty(x.shape(), x.dtype());
  kernels::axpby(s.value().at(0), x.value(), 0.0, node->value);
  return make(*x.tape, std::move(node), {x, s});
}

Var relu(Var x) { return unary<ReluFn>(x); }
Var tanh(Var x) { return unary<TanhFn>(x); }
Var sigmoid(Var x) { return unary<SigmoidFn>(x); }
Var exp(Var x) { return unary<ExpFn>(x); }
Var log(Var x) { return unary<LogFn>(x); }
Var square(Var x) { return unary<SquareFn>(x); }

Var softmax(Var x) {
  check_matrix(x, "softmax");
  auto node = std::make_unique<SoftmaxNode>();
  node->value = Tensor::empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const std::int64_t rows = x.value().dim(0), cols = x.value().dim(1);
    const T* z = x.value().template data<T>();
    T* p = node->value.template data<T>();
    for_rows<T>(rows, cols, [&](std::int64_t r) { softmax_row(z + r * cols, p + r * cols, cols); });
  });
  return make(*x.tape, std::move(node), {x});
}

Var log_softmax(Var x) {
  check_matrix(x, "log_softmax");
  auto node = std::make_unique<LogSoftmaxNode>();
  node->value = Tensor::empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const std::int64_t rows = x.value().dim(0), cols = x.value().dim(1);
    const T* z = x.value().template data<T>();
    T* y = node->value.template data<T>();
    for_rows<T>(rows, cols, [&](std::int64_t r) {
      T m = z[r * cols];
      for (std::int64_t c = 1; c < cols; ++c) m = std::max(m, z[r * cols + c]);
      double s = 0.0;
      for (std::int64_t c = 0; c < cols; ++c) s += std::exp(static_cast<double>(z[r * cols + c] - m));
      const T lse = static_cast<T>(static_cast<double>(m) + std::log(s));
      for (std::int64_t c = 0; c < cols; ++c) y[r * cols + c] = z[r * cols + c] - lse;
    });
  });
  return make(*x.tape, std::move(node), {x});
}

Var sum(Var x) {
  check_float(x, "sum");
  auto node = std::make_unique<SumNode>(1.0, "sum");
  node->value = Tensor::full(Shape{}, x.dtype(), kernels::sum(x.value()));
  return make(*x.tape, std::move(node), {x});
}

Var mean(Var x) {
  check_float(x, "mean");
  const std::int64_t n = x.value().numel();
  if (n == 0) throw ShapeError("mean: empty input");
  const double c = 1.0 / static_cast<double>(n);
  auto node = std::make_unique<SumNode>(c, "mean");
  node->value = Tensor::full(Shape{}, x.dtype(), c * kernels::sum(x.value()));
  return make(*x.tape, std::move(node), {x});
}

Var reshape(Var x, const Shape& shape) {
  auto node = std::make_unique<ReshapeNode>();
  node->value = x.value().reshape(shape);
  return make(*x.tape, std::move(node), {x});
}

Var softmax_cross_entropy(Var logits, const Tensor& labels) {
  check_matrix(logits, "softmax_cross_entropy");
  const Tensor& z = logits.value();
  const std::int64_t rows = z.dim(0), cols = z.dim(1);
  if (labels.dtype() != DType::i32 || labels.numel() != rows) {
    throw ShapeError("softmax_cross_entropy: labels must be i32 [" + std::to_string(rows) + "], got " +
                     labels.shape().str() + " " + dtype_name(labels.dtype()));
  }
  if (rows == 0) throw ShapeError("softmax_cross_entropy: empty batch");
  const std::int32_t* y = labels.data<std::int32_t>();
  for (std::int64_t r = 0; r < rows; ++r) {
    if (y[r] < 0 || y[r] >= cols) {
      throw DataError("softmax_cross_entropy: label " + std::to_string(y[r]) + " of example " + std::to_string(r) +
                      " is outside [0, " + std::to_string(cols) + ")");
    }
  }
  auto node = std::make_unique<SoftmaxCrossEntropyNode>();
  node->labels = labels;
  node->probs = Tensor::empty(z.shape(), z.dtype());
  double total = dispatch_float(z.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* zv = z.template data<T>();
    T* p = node->probs.template data<T>();
    double s = 0.0;
    for (std::int64_t r = 0; r < rows; ++r) {
      const double lse = softmax_row(zv + r * cols, p + r * cols, cols);
      s += lse - static_cast<double>(zv[r * cols + y[r]]);
    }
    return s;
  });
  node->value = Tensor::full(Shape{}, z.dtype(), total / static_cast<double>(rows));
  return make(*logits.tape, std::move(node), {logits});
}

}  // namespace descent::autodiff
