#include "descent/autodiff/gauss_newton.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "descent/error.hpp"
#include "descent/tensor/kernels.hpp"

namespace descent::autodiff {

Tensor softmax_cross_entropy_hessian_product(const Tensor& logits, const Tensor& u) {
  if (logits.ndim() != 2) {
    throw ShapeError("Gauss-Newton: softmax cross-entropy needs logits [B, C], got " + logits.shape().str());
  }
  check_same_shape(logits, u, "Gauss-Newton (softmax cross-entropy)");
  check_same_dtype(logits, u, "Gauss-Newton (softmax cross-entropy)");
  const std::int64_t rows = logits.dim(0), cols = logits.dim(1);
  Tensor out = Tensor::empty(logits.shape(), logits.dtype());
  dispatch_float(logits.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* z = logits.data<T>();
    const T* t = u.data<T>();
    T* o = out.data<T>();
    const double inv_b = 1.0 / static_cast<double>(rows);
    std::vector<double> p(static_cast<std::size_t>(cols));
    for (std::int64_t r = 0; r < rows; ++r) {
      const T* zr = z + r * cols;
      const T* tr = t + r * cols;
      double m = static_cast<double>(zr[0]);
      for (std::int64_t c = 1; c < cols; ++c) m = std::max(m, static_cast<double>(zr[c]));
      double sum = 0.0;
      for (std::int64_t c = 0; c < cols; ++c) sum += (p[static_cast<std::size_t>(c)] = std::exp(static_cast<double>(zr[c]) - m));
      double pu = 0.0;
      for (std::int64_t c = 0; c < cols; ++c) {
        p[static_cast<std::size_t>(c)] /= sum;
        pu += p[static_cast<std::size_t>(c)] * static_cast<double>(tr[c]);
      }
      for (std::int64_t c = 0; c < cols; ++c) {
        const double pc = p[static_cast<std::size_t>(c)];
        o[r * cols + c] = static_cast<T>(pc * (static_cast<double>(tr[c]) - pu) * inv_b);
      }
    }
  });
  return out;
}

Tensor mean_squared_error_hessian_product(const Tensor& prediction, const Tensor& u) {
  check_same_shape(prediction, u, "Gauss-Newton (mean squared error)");
  check_same_dtype(prediction, u, "Gauss-Newton (mean squared error)");
  if (prediction.numel() == 0) throw ShapeError("Gauss-Newton (mean squared error): empty prediction");
  Tensor out = Tensor::zeros(u.shape(), u.dtype());
  kernels::axpby(2.0 / static_cast<double>(prediction.numel()), u, 0.0, out);
  return out;
}

void gauss_newton_product(Tape& tape, Var output, OutputLoss loss, const Tensor& v, const Tensor& gv) {
  if (output.tape != &tape) throw ShapeError("Gauss-Newton: the output belongs to another tape");
  const Tensor jv = tape.jvp(output, v);
  const Tensor& z = output.value();
  const Tensor seed = loss == OutputLoss::softmax_cross_entropy ? softmax_cross_entropy_hessian_product(z, jv)
                                                                : mean_squared_error_hessian_product(z, jv);
  std::memset(gv.raw(), 0, gv.nbytes());
  tape.vjp(output, seed, gv);
}

}  // namespace descent::autodiff
