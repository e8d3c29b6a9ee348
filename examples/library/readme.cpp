// The README's example, complete: a minibatch through an MLP, its gradient, an exact
// Hessian-vector product and one Adam step. Built and run by ctest (example.library.readme).
#include <cstdio>
#include <vector>

#include <descent/autodiff/ops.hpp>
#include <descent/loss/loss.hpp>
#include <descent/nn/initialize.hpp>
#include <descent/nn/module.hpp>
#include <descent/optim/optimizer.hpp>
#include <descent/optim/schedule.hpp>
#include <descent/tensor/kernels.hpp>

int main() {
  using namespace descent;
  // A made-up minibatch: 32 examples of 784 features, labels 0..9.
  Tensor x = Tensor::full({32, 784}, DType::f32, 0.5);
  std::vector<std::int32_t> y(32);
  for (int i = 0; i < 32; ++i) y[i] = i % 10;
  Tensor labels = Tensor::from<std::int32_t>({32}, y);

  // [readme]
  descent::ParameterArena arena(descent::DType::f32);          // all parameters: one flat buffer
  auto net = descent::nn::mlp(arena, {784, 256, 256, 10});      // layers.0.weight, layers.0.bias, ...
  descent::nn::initialize(arena, {.seed = 1});                  // He uniform weights, zero biases
  auto opt = descent::optim::make_optimizer({.name = "adam"}, descent::optim::constant(1e-3));
  std::int64_t k = 0;                                           // the update's number
  opt->prepare(arena, k);
  descent::autodiff::Tape tape;
  auto loss = descent::loss::cross_entropy(net.forward(tape, tape.constant(x)), labels);
  arena.zero_grad();
  tape.backward(loss);                                          // gradients into arena.grads()
  descent::Tensor v = arena.grads().clone(), hv = descent::Tensor::empty({arena.size()}, arena.dtype());
  tape.hvp(loss, v, hv);                                        // exact H v, no finite differences
  opt->step(arena, k);                                          // theta <- theta + adam(g)
  // [readme]

  autodiff::Tape after;
  const double loss_after = loss::cross_entropy(net.forward(after, after.constant(x)), labels).value().item();
  std::printf("loss %.4f -> %.4f after one Adam step; g^T H g = %.4g\n", loss.value().item(), loss_after,
              kernels::dot(v, hv));
  return loss_after < loss.value().item() ? 0 : 1;
}
