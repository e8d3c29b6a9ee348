#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "descent/tensor/arena.hpp"
#include "descent/tensor/kernels.hpp"
#include "descent/tensor/parallel.hpp"
#include "descent/tensor/storage.hpp"

namespace descent {
namespace {

TEST(Tensor, ShapeAndViews) {
  Tensor t = Tensor::from<float>({3, 2}, {1, 2, 3, 4, 5, 6});
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.shape().str(), "[3, 2]");
  Tensor r = t.rows(1, 3);
  EXPECT_EQ(r.shape(), (Shape{2, 2}));
  EXPECT_EQ(r.at(0), 3.0);
  r.data<float>()[0] = 30.0f;  // a view: writes through
  EXPECT_EQ(t.at(2), 30.0);
  Tensor flat = t.reshape({6});
  EXPECT_EQ(flat.at(5), 6.0);
  EXPECT_EQ(t.view(4, {2}).at(1), 6.0);
  EXPECT_THROW(t.reshape({4}), ShapeError);
  EXPECT_THROW(t.rows(2, 4), ShapeError);
  EXPECT_THROW(t.view(5, {2}), ShapeError);
  EXPECT_THROW(t.data<double>(), ShapeError);
  EXPECT_THROW(Shape({1, 2, 3, 4, 5}), ShapeError);
  EXPECT_THROW(Shape({-1}), ShapeError);
  EXPECT_THROW(Shape({1LL << 40, 1LL << 40}), ShapeError);
}

TEST(Tensor, CloneCopyConvert) {
  Tensor t = Tensor::from<double>({2}, {1.5, -2.25});
  Tensor c = t.clone();
  c.data<double>()[0] = 7.0;
  EXPECT_EQ(t.at(0), 1.5);
  Tensor f = t.to(DType::f32);
  EXPECT_EQ(f.dtype(), DType::f32);
  EXPECT_EQ(f.at(1), -2.25);
  Tensor z = Tensor::zeros({2}, DType::f64);
  z.copy_from(t);
  EXPECT_EQ(z.at(1), -2.25);
  EXPECT_THROW(z.copy_from(f), ShapeError);
}

TEST(Tensor, StorageIsReused) {
  release_cached_storage();
  void* first = nullptr;
  {
    Tensor a = Tensor::empty({1000}, DType::f32);
    first = a.raw();
  }
  EXPECT_GE(cached_storage_bytes(), 4000u);
  Tensor b = Tensor::empty({1000}, DType::f32);
  EXPECT_EQ(b.raw(), first);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(b.raw()) % 64, 0u);
}

TEST(Kernels, GemmWithTransposes) {
  // A = [[1,2,3],[4,5,6]], B = [[1,0],[0,1],[1,1]]: A B = [[4,5],[10,11]].
  Tensor a = Tensor::from<double>({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor b = Tensor::from<double>({3, 2}, {1, 0, 0, 1, 1, 1});
  Tensor c = Tensor::zeros({2, 2}, DType::f64);
  kernels::gemm(a, false, b, false, c);
  EXPECT_EQ(c.at(0), 4.0);
  EXPECT_EQ(c.at(3), 11.0);
  // (A B)^T = B^T A^T, accumulated with beta = 1: doubles the transposed result.
  Tensor ct = Tensor::from<double>({2, 2}, {4, 10, 5, 11});
  kernels::gemm(b, true, a, true, ct, 1.0, 1.0);
  EXPECT_EQ(ct.at(1), 20.0);
  EXPECT_EQ(ct.at(2), 10.0);
  Tensor bad = Tensor::zeros({3, 3}, DType::f64);
  EXPECT_THROW(kernels::gemm(a, false, b, false, bad), ShapeError);
  Tensor af = Tensor::from<float>({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor bf = Tensor::from<float>({3, 2}, {1, 0, 0, 1, 1, 1});
  Tensor cf = Tensor::zeros({2, 2}, DType::f32);
  kernels::gemm(af, false, bf, false, cf, 2.0);
  EXPECT_EQ(cf.at(2), 20.0);
}

TEST(Kernels, ReductionsAreIndependentOfTheThreadCount) {
  const std::int64_t n = 1 << 20;
  Tensor x = Tensor::empty({n}, DType::f32);
  for (std::int64_t i = 0; i < n; ++i) x.data<float>()[i] = static_cast<float>((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
  const int saved = num_threads();
  set_num_threads(1);
  const double s1 = kernels::sum(x), q1 = kernels::sum_squares(x);
  set_num_threads(2);
  const double s2 = kernels::sum(x), q2 = kernels::sum_squares(x);
  set_num_threads(saved);
  EXPECT_EQ(s1, s2);
  EXPECT_EQ(q1, q2);
  Tensor m = Tensor::from<double>({3, 2}, {1, 2, 3, 4, 5, 6});
  Tensor cols = Tensor::from<double>({2}, {100, 100});
  kernels::sum_rows(m, cols, 1.0);
  EXPECT_EQ(cols.at(0), 109.0);
  EXPECT_EQ(cols.at(1), 112.0);
  EXPECT_FALSE(kernels::all_finite(Tensor::from<float>({2}, {1.0f, std::numeric_limits<float>::infinity()})));
  EXPECT_TRUE(kernels::all_finite(m));
}

// kernels::squared_distance against a plain long-double loop (independent of its lanes and
// blocks), on sizes that end mid-lane and mid-block; the copy pass; thread-count invariance.
TEST(Kernels, SquaredDistanceMatchesAPlainSumAndCopies) {
  for (const std::int64_t n : {std::int64_t{1}, std::int64_t{7}, std::int64_t{8}, std::int64_t{4099}, std::int64_t{3 * 4096 + 13}}) {
    std::vector<float> a(static_cast<std::size_t>(n)), b(a.size());
    std::vector<double> ad(a.size()), bd(a.size());
    long double expected = 0.0L, expected_d = 0.0L;
    for (std::int64_t i = 0; i < n; ++i) {
      const auto k = static_cast<std::size_t>(i);
      a[k] = static_cast<float>(std::sin(0.37 * static_cast<double>(i)) * (1.0 + static_cast<double>(i % 11)));
      b[k] = static_cast<float>(std::cos(0.11 * static_cast<double>(i)));
      ad[k] = std::sin(0.5 * static_cast<double>(i)) * 1e3;
      bd[k] = 1e-3 * static_cast<double>(i % 17);
      const long double d = static_cast<long double>(a[k]) - static_cast<long double>(b[k]);
      expected += d * d;
      const long double dd = static_cast<long double>(ad[k]) - static_cast<long double>(bd[k]);
      expected_d += dd * dd;
    }
    EXPECT_NEAR(kernels::squared_distance(a.data(), b.data(), n), static_cast<double>(expected), 1e-13 * static_cast<double>(expected)) << n;
    EXPECT_NEAR(kernels::squared_distance(ad.data(), bd.data(), n), static_cast<double>(expected_d), 1e-13 * static_cast<double>(expected_d))
        << n;
    // b <- a in the same pass, reading each b[i] before overwriting it.
    std::vector<float> c = b;
    EXPECT_NEAR(kernels::squared_distance(a.data(), c.data(), n, c.data()), static_cast<double>(expected), 1e-13 * static_cast<double>(expected));
    EXPECT_EQ(c, a) << n;
    EXPECT_EQ(kernels::squared_distance(a.data(), c.data(), n), 0.0);
  }
  const Tensor x = Tensor::from<float>({3}, {1.0f, 2.0f, 3.0f}), y = Tensor::from<float>({3}, {0.0f, 0.0f, 1.0f});
  EXPECT_EQ(kernels::squared_distance(x, y), 9.0);
  EXPECT_THROW(kernels::squared_distance(x, Tensor::from<float>({2}, {0.0f, 0.0f})), ShapeError);
  EXPECT_THROW(kernels::squared_distance(x, Tensor::from<double>({3}, {0.0, 0.0, 0.0})), ShapeError);
  // The same bits with 1 and 2 threads (fixed lanes and blocks).
  std::vector<float> a(100000), b(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    a[i] = static_cast<float>(std::sin(static_cast<double>(i)));
    b[i] = static_cast<float>(1e-3 * static_cast<double>(i % 101));
  }
  const int saved = num_threads();
  set_num_threads(1);
  const double s1 = kernels::squared_distance(a.data(), b.data(), static_cast<std::int64_t>(a.size()));
  set_num_threads(2);
  const double s2 = kernels::squared_distance(a.data(), b.data(), static_cast<std::int64_t>(a.size()));
  set_num_threads(saved);
  EXPECT_EQ(s1, s2);
}

TEST(Arena, ParametersAreViewsOfOneBuffer) {
  ParameterArena arena(DType::f32);
  ParamId w = arena.add("layers.0.weight", {3, 2}, {.role = ParamRole::weight, .fan_in = 2, .fan_out = 3});
  ParamId b = arena.add("layers.0.bias", {3}, {.role = ParamRole::bias});
  EXPECT_THROW(arena.add("layers.0.bias", {1}), ShapeError);
  EXPECT_EQ(arena.size(), 9);
  arena.value(b).fill(2.0);
  EXPECT_EQ(arena.values().at(6), 2.0);
  EXPECT_EQ(arena.values().at(5), 0.0);
  arena.grad(w).fill(1.0);
  EXPECT_EQ(kernels::sum(arena.grads()), 6.0);
  arena.zero_grad();
  EXPECT_EQ(kernels::sum(arena.grads()), 0.0);
  EXPECT_EQ(arena.find("layers.0.weight"), w);
  EXPECT_FALSE(arena.find("nope").valid());
  EXPECT_THROW(arena.add("late", {1}), ShapeError);
  EXPECT_THROW(arena.slice(Tensor::zeros({8}, DType::f32), w), ShapeError);
}

}  // namespace
}  // namespace descent
