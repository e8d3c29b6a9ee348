// Optimizer::step_measured (optim/optimizer.hpp) and kernels::squares_in_lanes
// (tensor/fused_sums.hpp): the update is step()'s bit for bit; the sums it takes in its pass
// are the sums in double over the raw arrays (computed here by a plain loop), are the same
// bits as the pass of their own (squares_in_lanes, squared_distance) and the same bits with 1
// and 2 threads.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "descent/init/rng.hpp"
#include "descent/optim/optimizer.hpp"
#include "descent/tensor/fused_sums.hpp"
#include "descent/tensor/kernels.hpp"
#include "descent/tensor/parallel.hpp"

namespace descent {
namespace {

// Puts the process's thread count back.
struct Threads {
  int before = num_threads();
  explicit Threads(int n) { set_num_threads(n); }
  ~Threads() { set_num_threads(before); }
  Threads(const Threads&) = delete;
  Threads& operator=(const Threads&) = delete;
};

// `n` values drawn from `seed` (normal, times `scale`).
Tensor random_tensor(DType dtype, std::int64_t n, std::uint64_t seed, double scale) {
  Tensor t = Tensor::zeros({n}, dtype);
  Rng rng(seed);
  for (std::int64_t i = 0; i < n; ++i) {
    const double v = scale * rng.normal();
    if (dtype == DType::f64) {
      t.data<double>()[i] = v;
    } else {
      t.data<float>()[i] = static_cast<float>(v);
    }
  }
  return t;
}

// Three parameters, `total` values in all (several blocks of 4096, a tail that is not a
// multiple of 8), values and gradients drawn from `seed`.
void fill_arena(ParameterArena& arena, std::int64_t total, std::uint64_t seed) {
  arena.add("w", {total - 1003});
  arena.add("b", {1000});
  arena.add("c", {3});
  arena.values().copy_from(random_tensor(arena.dtype(), total, seed, 1.0));
  arena.grads().copy_from(random_tensor(arena.dtype(), total, seed + 1000, 0.1));
}

double element(const Tensor& t, std::int64_t i) {
  return t.dtype() == DType::f64 ? t.data<double>()[i] : static_cast<double>(t.data<float>()[i]);
}

// sum_i t_i^2 and sum_i (a_i - b_i)^2 by a plain loop in double: the independent figures.
double squares_by_hand(const Tensor& t) {
  double s = 0.0;
  for (std::int64_t i = 0; i < t.numel(); ++i) s += element(t, i) * element(t, i);
  return s;
}
double distance_squared_by_hand(const Tensor& a, const Tensor& b) {
  double s = 0.0;
  for (std::int64_t i = 0; i < a.numel(); ++i) s += (element(a, i) - element(b, i)) * (element(a, i) - element(b, i));
  return s;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.numel() != b.numel() || a.dtype() != b.dtype()) return false;
  const auto n = static_cast<std::size_t>(a.numel());
  return a.dtype() == DType::f64 ? std::memcmp(a.data<double>(), b.data<double>(), n * sizeof(double)) == 0
                                 : std::memcmp(a.data<float>(), b.data<float>(), n * sizeof(float)) == 0;
}

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

TEST(SquaresInLanes, IsTheSumInDoubleAndSquaredDistanceFromZeroBitForBit) {
  for (const std::int64_t n : {0, 1, 7, 8, 9, 4095, 4096, 4097, 40000, 140003}) {
    for (const DType dtype : {DType::f32, DType::f64}) {
      SCOPED_TRACE(std::to_string(n) + (dtype == DType::f64 ? " f64" : " f32"));
      Tensor x = Tensor::zeros({std::max<std::int64_t>(n, 1)}, dtype);
      Rng rng(static_cast<std::uint64_t>(n + 1));
      for (std::int64_t i = 0; i < n; ++i) {
        const double v = rng.normal() * (i % 5 == 0 ? 100.0 : 1.0);
        if (dtype == DType::f64) {
          x.data<double>()[i] = v;
        } else {
          x.data<float>()[i] = static_cast<float>(v);
        }
      }
      const Tensor zero = Tensor::zeros({std::max<std::int64_t>(n, 1)}, dtype);
      double one = 0, two = 0, dist = 0;
      {
        Threads t(1);
        one = dtype == DType::f64 ? kernels::squares_in_lanes(x.data<double>(), n) : kernels::squares_in_lanes(x.data<float>(), n);
      }
      {
        Threads t(2);
        two = dtype == DType::f64 ? kernels::squares_in_lanes(x.data<double>(), n) : kernels::squares_in_lanes(x.data<float>(), n);
        dist = dtype == DType::f64 ? kernels::squared_distance(x.data<double>(), zero.data<double>(), n)
                                   : kernels::squared_distance(x.data<float>(), zero.data<float>(), n);
      }
      double by_hand = 0.0;
      for (std::int64_t i = 0; i < n; ++i) by_hand += element(x, i) * element(x, i);
      EXPECT_TRUE(same_bits(one, two)) << one << " " << two;
      // float32: the same bits as squared_distance (the trajectory's own pass); float64: to
      // rounding (the lanes' multiply-adds are contracted to FMAs there and not in
      // squared_distance's double version, as GCC compiles them)
      if (dtype == DType::f32) {
        EXPECT_TRUE(same_bits(one, dist)) << one << " " << dist;
      } else {
        EXPECT_NEAR(one, dist, 1e-14 * dist);
      }
      // a sum of n positive terms in double: the plain loop's own error is up to n eps
      EXPECT_NEAR(one, by_hand, 1e-11 * by_hand);
      if (n > 0 && n == x.numel()) {
        EXPECT_TRUE(same_bits(kernels::squares_in_lanes(x), one));
      }
    }
  }
}

// Every optimizer of the registry (both forms where the name has them, with L2 decay and
// averaging): five updates through step_measured against five through step() on a copy.
TEST(StepMeasured, UpdatesAsStepBitForBitAndTakesTheSumsInDouble) {
  const std::int64_t total = 140003;  // above elementwise_serial_below: the pass splits over 2 threads
  for (const std::string& name : optim::optimizer_names()) {
    for (const std::string form : {"textbook", "pytorch"}) {
      for (const bool decay : {false, true}) {
        for (const DType dtype : {DType::f32, DType::f64}) {
          optim::OptimizerSpec spec{.name = name, .form = form, .weight_decay = decay ? 0.01 : 0.0};
          if (decay) spec.averaging = optim::Averaging::exponential;
          std::unique_ptr<optim::Optimizer> a, b;
          try {
            a = optim::make_optimizer(spec, nullptr);
            b = optim::make_optimizer(spec, nullptr);
          } catch (const ConfigError&) {
            continue;  // a form the name does not have
          }
          SCOPED_TRACE(a->describe() + (dtype == DType::f64 ? " f64" : " f32"));
          ParameterArena x(dtype), y(dtype);
          fill_arena(x, total, 3);
          fill_arena(y, total, 3);
          for (int k = 0; k < 5; ++k) {
            Threads threads(k % 2 == 0 ? 2 : 1);
            const Tensor g = random_tensor(dtype, total, static_cast<std::uint64_t>(10 + k), 0.1);
            x.grads().copy_from(g);
            y.grads().copy_from(g);
            a->prepare(x, k);
            b->prepare(y, k);
            const Tensor before = x.values().clone();
            optim::Optimizer::StepSums sums{.gradient = true, .step = true};
            a->step_measured(x, k, sums);
            b->step(y, k);
            ASSERT_TRUE(same_bits(x.values(), y.values())) << k;
            const std::vector<Tensor> sa = a->state(), sb = b->state();
            ASSERT_EQ(sa.size(), sb.size());
            for (std::size_t i = 0; i < sa.size(); ++i) ASSERT_TRUE(same_bits(sa[i], sb[i])) << k << " state " << i;
            // The gradient's squares: in double over the raw array, and the pass of their own.
            const double gs = squares_by_hand(g);
            EXPECT_NEAR(sums.gradient_squares, gs, 1e-11 * gs) << k;
            EXPECT_TRUE(same_bits(sums.gradient_squares, kernels::squares_in_lanes(g))) << k;
            // The step's: measured in a fused loop's pass (steps_by_parameter: the optimizers
            // with one), except at an interim point (Nesterov); else left to the caller.
            EXPECT_EQ(a->measures_in_update(), a->steps_by_parameter() && !a->has_interim());
            if (!a->measures_in_update()) {
              EXPECT_EQ(sums.step_squares, -1.0);
            } else {
              const double ds = distance_squared_by_hand(x.values(), before);
              ASSERT_GT(ds, 0.0);
              EXPECT_NEAR(sums.step_squares, ds, 1e-11 * ds) << k;
              const double pass = dtype == DType::f64
                                      ? kernels::squared_distance(x.values().data<double>(), before.data<double>(), total)
                                      : kernels::squared_distance(x.values().data<float>(), before.data<float>(), total);
              if (dtype == DType::f32) {
                EXPECT_TRUE(same_bits(sums.step_squares, pass)) << k;  // the trajectory's length as before
              } else {
                EXPECT_NEAR(sums.step_squares, pass, 1e-14 * pass) << k;  // to rounding (FMAs, see above)
              }
            }
          }
        }
      }
    }
  }
}

// A chain run link by link (clipping, or fused = false) takes the gradient's squares in a pass
// of their own before the update and leaves the step's to the caller; asking for nothing is
// step().
TEST(StepMeasured, WithoutAFusedLoopTheGradientBeforeTheUpdateAndNoStep) {
  for (const bool clip : {false, true}) {
    optim::OptimizerSpec spec{.name = "momentum", .clip_global_norm = clip ? 1e-3 : 0.0, .fused = clip};
    auto a = optim::make_optimizer(spec, nullptr), b = optim::make_optimizer(spec, nullptr);
    EXPECT_FALSE(a->measures_in_update());
    ParameterArena x(DType::f32), y(DType::f32);
    fill_arena(x, 20000, 4);
    fill_arena(y, 20000, 4);
    const double gs = squares_by_hand(x.grads());
    optim::Optimizer::StepSums sums{.gradient = true, .step = true};
    a->step_measured(x, 0, sums);
    b->step(y, 0);
    EXPECT_TRUE(same_bits(x.values(), y.values()));
    EXPECT_NEAR(sums.gradient_squares, gs, 1e-11 * gs);
    EXPECT_EQ(sums.step_squares, -1.0);
    EXPECT_EQ(a->clip_count(), clip ? 1 : 0);  // the clipping saw the gradient
  }
  auto a = optim::make_optimizer({.name = "adam"}, nullptr), b = optim::make_optimizer({.name = "adam"}, nullptr);
  ParameterArena x(DType::f32), y(DType::f32);
  fill_arena(x, 9000, 5);
  fill_arena(y, 9000, 5);
  optim::Optimizer::StepSums none;
  a->step_measured(x, 0, none);
  b->step(y, 0);
  EXPECT_TRUE(same_bits(x.values(), y.values()));
  EXPECT_EQ(none.gradient_squares, -1.0);
  EXPECT_EQ(none.step_squares, -1.0);
}

}  // namespace
}  // namespace descent
