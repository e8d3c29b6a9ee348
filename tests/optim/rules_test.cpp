// Each update rule (src/optim/rules.hpp) has two users: its link, which runs it over the
// buffer one link at a time, and the fused loop of every chain that contains it, which
// composes the chain's rules per element in one pass. Here both run side by side, step by
// step, for every configuration the factory fuses (found by asking it, so a new fused
// loop is covered without editing this list), on inputs with zeros, signs and scales that
// exercise every branch of the rules. They must agree to a few ulps after every step, in
// the parameters and in every state tensor and counter, reached by the chain's names.
//
// That the rule is one definition (editing it changes both paths) is checked by
// tests/optim/algorithms_test.cpp: both paths against scalar code from the equations.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "descent/optim/optimizer.hpp"
#include "descent/tensor/parallel.hpp"

namespace descent {
namespace {

// A deterministic gradient for step k: both signs, magnitudes over five decades, exact
// zeros (sqrt(0) in the denominators) and a term in theta (so L2 and decoupled decay matter).
constexpr double kScales[6] = {1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0};

template <class T>
void gradient(ParameterArena& arena, int k) {
  T* g = arena.grads().data<T>();
  const T* th = arena.values().data<T>();
  const std::int64_t n = arena.size();
  for (std::int64_t i = 0; i < n; ++i) {
    const double x = static_cast<double>(i);
    const double scale = kScales[(i + k) % 6];
    const double v = (i % 11 == 5) ? 0.0 : scale * std::sin(0.37 * x + 1.3 * k) + 0.25 * static_cast<double>(th[i]);
    g[i] = static_cast<T>(v);
  }
}

// |a - b|_inf / |b|_inf: the gap in units of the tensor's scale (a disagreement between the
// paths, a wrong composition or a wrong state tensor, is of the order of 1e-2 or more).
double relative_gap(const Tensor& a, const Tensor& b) {
  double gap = 0.0, scale = 0.0;
  dispatch_float(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    for (std::int64_t i = 0; i < a.numel(); ++i) {
      gap = std::max(gap, std::abs(static_cast<double>(pa[i]) - static_cast<double>(pb[i])));
      scale = std::max(scale, std::abs(static_cast<double>(pb[i])));
    }
  });
  return scale > 0.0 ? gap / scale : gap;
}

struct Config {
  optim::OptimizerSpec spec;
  std::string label;
};

// Every (name, form, weight decay) the factory accepts and runs fused.
std::vector<Config> fused_configs() {
  std::vector<Config> out;
  for (const std::string& name : optim::optimizer_names()) {
    for (const std::string form : {"textbook", "pytorch"}) {
      for (double wd : {0.0, 0.05}) {
        optim::OptimizerSpec spec{.name = name, .form = form, .weight_decay = wd};
        if (name == "rmsprop" || name == "adagrad") spec.delta = 1e-3;  // both terms of the denominator matter
        std::unique_ptr<optim::Optimizer> opt;
        try {
          opt = optim::make_optimizer(spec, nullptr);
        } catch (const ConfigError&) {
          continue;  // rmsprop_nesterov has no PyTorch form
        }
        if (opt->describe().find("[fused]") == std::string::npos) continue;
        out.push_back({spec, name + " " + form + (wd > 0 ? " wd" : "")});
      }
    }
  }
  return out;
}

template <class T>
void expect_paths_agree(const Config& c, DType dtype) {
  SCOPED_TRACE(c.label + (dtype == DType::f32 ? " f32" : " f64"));
  const std::int64_t n = 2 * parallel_grain + 5;  // three parallel chunks, the last one ragged
  ParameterArena fa(dtype), ca(dtype);
  fa.add("a", {n - 7});
  fa.add("b", {7});
  ca.add("a", {n - 7});
  ca.add("b", {7});
  T* th = fa.values().data<T>();
  for (std::int64_t i = 0; i < n; ++i) th[i] = static_cast<T>(std::cos(0.11 * static_cast<double>(i)) * 2.0);
  ca.values().copy_from(fa.values());
  optim::OptimizerSpec chain_spec = c.spec;
  chain_spec.fused = false;
  // A schedule that changes every step, so the rate's place in the chain matters.
  auto fused = optim::make_optimizer(c.spec, optim::linear_decay(0.05, 0.005, 8));
  auto chain = optim::make_optimizer(chain_spec, optim::linear_decay(0.05, 0.005, 8));
  ASSERT_EQ(chain->describe().find("[fused]"), std::string::npos);
  // A few ulps of the tensor's scale (seen: 4.5e-7 in f32, 9.3e-16 in f64): only the
  // compiler's contraction of a*b + c into one FMA may differ, since the fused loop keeps in
  // a register what the chain stores between links.
  const double tol = dtype == DType::f32 ? 4e-6 : 1e-14;
  for (int k = 0; k < 12; ++k) {
    fused->prepare(fa, k);
    chain->prepare(ca, k);
    ASSERT_LE(relative_gap(fa.values(), ca.values()), tol) << "interim point, k = " << k;
    gradient<T>(fa, k);
    ca.grads().copy_from(fa.grads());
    fused->step(fa, k);
    chain->step(ca, k);
    ASSERT_LE(relative_gap(fa.values(), ca.values()), tol) << "theta after step k = " << k;
    const std::vector<Tensor> fs = fused->state(), cs = chain->state();  // views, in the chain's order
    ASSERT_EQ(fs.size(), cs.size());
    for (std::size_t t = 0; t < fs.size(); ++t) {
      ASSERT_LE(relative_gap(fs[t], cs[t]), tol) << "state tensor " << t << " after step k = " << k;
    }
  }
  // The same state under the same names (the fused loop found the chain's tensors by name),
  // the same counters (Adam's t).
  const optim::OptimizerState fs = fused->save_state(), cs = chain->save_state();
  EXPECT_EQ(fs.names, cs.names);
  EXPECT_EQ(fs.counter_names, cs.counter_names);
  EXPECT_EQ(fs.counters, cs.counters);
  // Something happened: the parameters moved away from where they started.
  EXPECT_GT(std::abs(fa.values().at(3) - std::cos(0.33) * 2.0), 1e-4);
}

TEST(Rules, FusedLoopAndLinksAgreeStepByStepInEveryFusedConfiguration) {
  const std::vector<Config> configs = fused_configs();
  std::set<std::string> names;
  for (const Config& c : configs) {
    names.insert(c.spec.name);
    expect_paths_agree<double>(c, DType::f64);
    expect_paths_agree<float>(c, DType::f32);
  }
  // The loops that exist today (docs/optimizers.md, "Fused loops"): 7 names, both forms,
  // with and without weight decay. A fused loop that disappears fails here.
  EXPECT_EQ(names, (std::set<std::string>{"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"}));
  EXPECT_EQ(configs.size(), 28u);
}

}  // namespace
}  // namespace descent
