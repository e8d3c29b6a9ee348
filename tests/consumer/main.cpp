// Computes a gradient through the installed library and checks it against the formula:
// L = mean(tanh(x w^T)^2) ... kept tiny: L = sum(x w^T), dL/dw[j,k] = sum_i x[i,k].
#include <cstdio>

#include <descent/autodiff/ops.hpp>
#include <descent/version.hpp>

int main() {
  using namespace descent;
  autodiff::Tape tape;
  autodiff::Var x = tape.constant(Tensor::from<double>({2, 2}, {1.0, 2.0, 3.0, 4.0}));
  autodiff::Var w = tape.variable(Tensor::from<double>({1, 2}, {0.5, -0.5}));
  tape.backward(autodiff::sum(autodiff::linear(x, w)));
  const Tensor& g = tape.grad(w);
  std::printf("descent %s: gradient (%g, %g)\n", descent::version, g.at(0), g.at(1));
  return (g.at(0) == 4.0 && g.at(1) == 6.0) ? 0 : 1;
}
