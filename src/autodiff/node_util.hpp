#pragma once
// Internal helpers shared by the files that define tape operations (src/autodiff/*.cpp):
// gradient sinks, elementwise stores and node recording. Not installed.
#include <string>

#include "descent/autodiff/tape.hpp"
#include "descent/tensor/kernels.hpp"
#include "descent/tensor/parallel.hpp"

namespace descent::autodiff::detail {

using kernels::gemm;

// Collects the terms written into one input's gradient (or R-gradient) sink: the first
// term uses the sink's beta (overwrite a fresh buffer), later terms accumulate.
class Sink {
 public:
  Sink(Tape& t, std::int32_t id, bool tangent) : tape_(t), id_(id), tangent_(tangent) {}
  // The destination and the beta for the next term.
  Tensor next(double& beta) {
    if (!started_) {
      dst_ = tangent_ ? tape_.grad_tangent_sink(id_, beta_) : tape_.grad_sink(id_, beta_);
      started_ = true;
      beta = beta_;
    } else {
      beta = 1.0;
    }
    return dst_;
  }

 private:
  Tape& tape_;
  std::int32_t id_;
  bool tangent_;
  bool started_ = false;
  Tensor dst_;
  double beta_ = 0.0;
};

// dst (beta 0: =, 1: +=) f(i) over dst's elements.
template <class T, class F>
void store(const Tensor& dst, double beta, F&& f) {
  T* d = dst.data<T>();
  parallel_for_elements(dst.numel(), [&](std::int64_t i0, std::int64_t i1) {
    if (beta == 0.0) {
#pragma omp simd
      for (std::int64_t i = i0; i < i1; ++i) d[i] = f(i);
    } else {
#pragma omp simd
      for (std::int64_t i = i0; i < i1; ++i) d[i] += f(i);
    }
  });
}

inline Var make(Tape& t, std::unique_ptr<Node> node, std::initializer_list<Var> inputs) {
  int k = 0;
  for (Var v : inputs) {
    if (!v.valid()) continue;
    if (v.tape != &t) throw ShapeError(std::string(node->name()) + ": inputs come from different tapes");
    node->input[k++] = v.id;
  }
  node->num_inputs = k;
  return t.record(std::move(node));
}

inline void check_float(Var v, const char* op) {
  if (v.dtype() == DType::i32) throw ShapeError(std::string(op) + ": needs f32 or f64 input, got i32");
}

inline void check_same(Var a, Var b, const char* op) {
  check_float(a, op);
  check_same_shape(a.value(), b.value(), op);
  check_same_dtype(a.value(), b.value(), op);
}

}  // namespace descent::autodiff::detail
