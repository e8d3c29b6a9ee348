// Tape::set_param_ready (tape.hpp): during the reverse sweep the callback reports each
// parameter once, at the moment its gradient is final. Checked on an MLP 3-5-4-2: a copy of
// each parameter's gradient taken inside the callback equals, bit for bit, the gradient at
// the end of backward() (a callback that fires before the last contribution sees a partial
// sum or zeros); every parameter is reported exactly once, the last layer before the first;
// an empty callback turns it off.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <vector>

#include "descent/autodiff/tape.hpp"
#include "descent/init/rng.hpp"
#include "descent/loss/loss.hpp"
#include "descent/nn/module.hpp"

namespace descent {
namespace {

TEST(ParamReady, ReportsEachParameterOnceWithItsFinalGradient) {
  ParameterArena arena{DType::f64};
  nn::Sequential net = nn::mlp(arena, {3, 5, 4, 2}, nn::Activation::tanh);
  Rng rng(11);
  double* w = arena.values().data<double>();
  for (std::int64_t i = 0; i < arena.size(); ++i) w[i] = rng.uniform(-1.0, 1.0);
  Tensor x = Tensor::empty({6, 3}, DType::f64);
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data<double>()[i] = rng.uniform(-2.0, 2.0);
  const Tensor labels = Tensor::from<std::int32_t>({6}, {0, 1, 1, 0, 1, 0});

  autodiff::Tape tape;
  std::vector<int> order;
  std::map<int, std::vector<double>> seen;
  tape.set_param_ready([&](ParamId id) {
    order.push_back(id.index);
    const Tensor g = arena.grad(id);
    seen[id.index].assign(g.data<double>(), g.data<double>() + g.numel());
  });
  arena.zero_grad();
  tape.backward(loss::cross_entropy(net.forward(tape, tape.constant(x)), labels));

  ASSERT_EQ(order.size(), arena.count());
  std::vector<int> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  for (std::size_t i = 0; i < sorted.size(); ++i) EXPECT_EQ(sorted[i], static_cast<int>(i)) << "reported twice or never";
  // Parameters are registered layer by layer: the last layer's come first in the sweep.
  const auto pos = [&](int index) { return std::find(order.begin(), order.end(), index) - order.begin(); };
  EXPECT_LT(pos(static_cast<int>(arena.count()) - 1), pos(0));
  for (std::size_t i = 0; i < arena.count(); ++i) {
    const Tensor g = arena.grad(ParamId{static_cast<std::int32_t>(i)});
    const std::vector<double> final_grad(g.data<double>(), g.data<double>() + g.numel());
    EXPECT_EQ(seen[static_cast<int>(i)], final_grad) << arena.entry(ParamId{static_cast<std::int32_t>(i)}).name;
    EXPECT_TRUE(std::any_of(final_grad.begin(), final_grad.end(), [](double v) { return v != 0.0; }));
  }

  // Off again: no more calls.
  tape.set_param_ready({});
  order.clear();
  tape.clear();
  tape.backward(loss::cross_entropy(net.forward(tape, tape.constant(x)), labels));
  EXPECT_TRUE(order.empty());
}

}  // namespace
}  // namespace descent
