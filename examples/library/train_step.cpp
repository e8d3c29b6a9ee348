// Train: steps of SGD with momentum on one minibatch, by hand (what train::run does per
// minibatch). Built and run by ctest (example.library.train_step); docs/library.md quotes it.
#include <cstdio>
#include <vector>

#include <descent/autodiff/ops.hpp>
#include <descent/init/rng.hpp>
#include <descent/loss/loss.hpp>
#include <descent/nn/initialize.hpp>
#include <descent/nn/module.hpp>
#include <descent/optim/optimizer.hpp>
#include <descent/optim/schedule.hpp>

int main() {
  using namespace descent;
  // A minibatch of 64 random examples with 20 features and 3 classes.
  Rng rng(1);
  Tensor x = Tensor::empty({64, 20}, DType::f32);
  for (float& e : x.span<float>()) e = static_cast<float>(rng.normal());
  std::vector<std::int32_t> y(64);
  for (auto& label : y) label = static_cast<std::int32_t>(rng.below(3));
  Tensor labels = Tensor::from<std::int32_t>({64}, y);

  ParameterArena arena(DType::f32);
  nn::Sequential net = nn::mlp(arena, {20, 32, 3});
  nn::initialize(arena, {.seed = 1});
  // [step]
  auto opt = optim::make_optimizer({.name = "momentum", .momentum = 0.9}, optim::constant(0.05));
  double first = 0.0, last = 0.0;
  for (std::int64_t k = 0; k < 20; ++k) {
    opt->prepare(arena, k);  // moves to the interim point first for Nesterov; else nothing
    autodiff::Tape tape;     // one tape per step: the forward pass records it
    autodiff::Var loss = loss::cross_entropy(net.forward(tape, tape.constant(x)), labels);
    arena.zero_grad();       // backward accumulates into arena.grads()
    tape.backward(loss);
    opt->step(arena, k);     // theta <- theta + v, v <- alpha v - eps g
    (k == 0 ? first : last) = loss.value().item();
  }
  // [step]
  std::printf("loss %.4f at the first step, %.4f at the 20th\n", first, last);
  return last < 0.9 * first ? 0 : 1;
}
