// Weight-space symmetry (Goodfellow et al. 2016, section 8.2.2): permuting two hidden
// units (their incoming and outgoing weights together) leaves the loss unchanged, and so
// does scaling a ReLU unit's incoming weights and bias by a and its outgoing weights by 1/a.
#include <gtest/gtest.h>

#include "descent/loss/loss.hpp"
#include "descent/nn/module.hpp"
#include "support/gradcheck.hpp"

namespace descent {
namespace {

using autodiff::Tape;

struct Net {
  ParameterArena arena{DType::f64};
  nn::Sequential net;
  Tensor x, labels;
  explicit Net(nn::Activation act) : net(nn::mlp(arena, {6, 5, 3}, act)) {
    arena.values().copy_from(testing::random_tensor({arena.size()}, DType::f64, 4));
    x = testing::random_tensor({10, 6}, DType::f64, 5, -2.0, 2.0);
    labels = Tensor::from<std::int32_t>({10}, {0, 1, 2, 0, 1, 2, 0, 1, 2, 0});
  }
  double loss() {
    Tape tape;
    return loss::cross_entropy(net.forward(tape, tape.constant(x)), labels).value().item();
  }
  double* w1() { return arena.value(arena.find("layers.0.weight")).data<double>(); }  // [5, 6]
  double* b1() { return arena.value(arena.find("layers.0.bias")).data<double>(); }    // [5]
  double* w2() { return arena.value(arena.find("layers.2.weight")).data<double>(); }  // [3, 5]
};

void swap_units(Net& n, int i, int j) {
  for (int k = 0; k < 6; ++k) std::swap(n.w1()[i * 6 + k], n.w1()[j * 6 + k]);
  std::swap(n.b1()[i], n.b1()[j]);
  for (int o = 0; o < 3; ++o) std::swap(n.w2()[o * 5 + i], n.w2()[o * 5 + j]);
}

void scale_unit(Net& n, int i, double a) {
  for (int k = 0; k < 6; ++k) n.w1()[i * 6 + k] *= a;
  n.b1()[i] *= a;
  for (int o = 0; o < 3; ++o) n.w2()[o * 5 + i] /= a;
}

TEST(WeightSpaceSymmetry, SwappingHiddenUnitsLeavesTheLossUnchanged) {
  for (auto act : {nn::Activation::relu, nn::Activation::tanh}) {
    Net n(act);
    const double before = n.loss();
    swap_units(n, 1, 3);
    EXPECT_NEAR(n.loss(), before, 1e-13);
    // Swapping only the incoming weights is not a symmetry: the loss moves.
    for (int k = 0; k < 6; ++k) std::swap(n.w1()[0 * 6 + k], n.w1()[4 * 6 + k]);
    EXPECT_GT(std::abs(n.loss() - before), 1e-4);
  }
}

TEST(WeightSpaceSymmetry, RescalingAReluUnitLeavesTheLossUnchanged) {
  Net n(nn::Activation::relu);
  const double before = n.loss();
  scale_unit(n, 2, 3.7);
  scale_unit(n, 0, 0.125);
  EXPECT_NEAR(n.loss(), before, 1e-13);
}

TEST(WeightSpaceSymmetry, RescalingIsNotASymmetryOfTanh) {
  // tanh(a z) != a tanh(z): the same move changes a tanh network's loss.
  Net n(nn::Activation::tanh);
  const double before = n.loss();
  scale_unit(n, 2, 3.7);
  EXPECT_GT(std::abs(n.loss() - before), 1e-4);
}

}  // namespace
}  // namespace descent
