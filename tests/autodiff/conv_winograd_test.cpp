// Winograd F(2x2, 5x5) kernels (src/autodiff/conv_winograd.cpp) against a direct convolution
// summed in double by a naive loop here: the forward (with and without bias) and the input
// gradient (the transposed convolution) and the weight gradient, on several shapes (channels in 1 to 4 vectors of 16
// and their tails, rows of tiles shorter and longer than the kernel's group of 7, non-square
// images); results bit-identical with 1 and 2 threads. Skipped on a CPU without AVX-512.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "../../src/autodiff/conv_winograd.hpp"
#include "descent/autodiff/conv.hpp"
#include "descent/autodiff/ops.hpp"
#include "descent/autodiff/tape.hpp"
#include "descent/tensor/parallel.hpp"
#include "support/gradcheck.hpp"

namespace descent {
namespace {

namespace wino = autodiff::conv_winograd;

struct Shape4 {
  std::int64_t n, c, h, w;
};

// NCHW -> 16-channel blocked (aBcd16b) and back.
std::vector<float> to_blocked(const std::vector<float>& a, const Shape4& s) {
  std::vector<float> b(a.size());
  for (std::int64_t n = 0; n < s.n; ++n)
    for (std::int64_t c = 0; c < s.c; ++c)
      for (std::int64_t i = 0; i < s.h * s.w; ++i)
        b[static_cast<std::size_t>(((n * (s.c / 16) + c / 16) * s.h * s.w + i) * 16 + c % 16)] =
            a[static_cast<std::size_t>((n * s.c + c) * s.h * s.w + i)];
  return b;
}
std::vector<float> from_blocked(const std::vector<float>& b, const Shape4& s) {
  std::vector<float> a(b.size());
  for (std::int64_t n = 0; n < s.n; ++n)
    for (std::int64_t c = 0; c < s.c; ++c)
      for (std::int64_t i = 0; i < s.h * s.w; ++i)
        a[static_cast<std::size_t>((n * s.c + c) * s.h * s.w + i)] =
            b[static_cast<std::size_t>(((n * (s.c / 16) + c / 16) * s.h * s.w + i) * 16 + c % 16)];
  return a;
}

std::vector<float> random_vec(std::int64_t n, std::uint64_t seed) {
  const Tensor t = testing::random_tensor({n}, DType::f32, seed);
  return std::vector<float>(t.data<float>(), t.data<float>() + n);
}

// y[n][o][i][j] = b[o] + sum_{c,a,b} x[n][c][i + a - 2][j + b - 2] w[o][c][a][b], in double.
std::vector<double> direct_forward(const wino::Geom& g, const std::vector<float>& w, const std::vector<float>& x,
                                   const float* bias) {
  std::vector<double> y(static_cast<std::size_t>(g.batch * g.c_out * g.h * g.w));
  for (std::int64_t n = 0; n < g.batch; ++n)
    for (std::int64_t o = 0; o < g.c_out; ++o)
      for (std::int64_t i = 0; i < g.h; ++i)
        for (std::int64_t j = 0; j < g.w; ++j) {
          double acc = bias != nullptr ? bias[o] : 0.0;
          for (std::int64_t c = 0; c < g.c_in; ++c)
            for (std::int64_t a = 0; a < 5; ++a)
              for (std::int64_t b = 0; b < 5; ++b) {
                const std::int64_t yy = i + a - 2, xx = j + b - 2;
                if (yy < 0 || yy >= g.h || xx < 0 || xx >= g.w) continue;
                acc += static_cast<double>(x[static_cast<std::size_t>(((n * g.c_in + c) * g.h + yy) * g.w + xx)]) *
                       w[static_cast<std::size_t>(((o * g.c_in + c) * 5 + a) * 5 + b)];
              }
          y[static_cast<std::size_t>(((n * g.c_out + o) * g.h + i) * g.w + j)] = acc;
        }
  return y;
}

// gx[n][c][yy][xx] = sum over (o, i, j, a, b) with i + a - 2 = yy, j + b - 2 = xx of gy[n][o][i][j] w[o][c][a][b]:
// the adjoint of direct_forward, scattered from gy (a different loop from the gather the kernel does).
std::vector<double> direct_input_grad(const wino::Geom& g, const std::vector<float>& w, const std::vector<float>& gy) {
  std::vector<double> gx(static_cast<std::size_t>(g.batch * g.c_in * g.h * g.w), 0.0);
  for (std::int64_t n = 0; n < g.batch; ++n)
    for (std::int64_t o = 0; o < g.c_out; ++o)
      for (std::int64_t i = 0; i < g.h; ++i)
        for (std::int64_t j = 0; j < g.w; ++j) {
          const double v = gy[static_cast<std::size_t>(((n * g.c_out + o) * g.h + i) * g.w + j)];
          for (std::int64_t c = 0; c < g.c_in; ++c)
            for (std::int64_t a = 0; a < 5; ++a)
              for (std::int64_t b = 0; b < 5; ++b) {
                const std::int64_t yy = i + a - 2, xx = j + b - 2;
                if (yy < 0 || yy >= g.h || xx < 0 || xx >= g.w) continue;
                gx[static_cast<std::size_t>(((n * g.c_in + c) * g.h + yy) * g.w + xx)] +=
                    v * w[static_cast<std::size_t>(((o * g.c_in + c) * 5 + a) * 5 + b)];
              }
        }
  return gx;
}

// gw[o][c][a][b] = sum_{n,i,j} gy[n][o][i][j] x[n][c][i + a - 2][j + b - 2], in double.
std::vector<double> direct_weight_grad(const wino::Geom& g, const std::vector<float>& gy, const std::vector<float>& x) {
  std::vector<double> gw(static_cast<std::size_t>(g.c_out * g.c_in * 25), 0.0);
  for (std::int64_t o = 0; o < g.c_out; ++o)
    for (std::int64_t c = 0; c < g.c_in; ++c)
      for (std::int64_t a = 0; a < 5; ++a)
        for (std::int64_t b = 0; b < 5; ++b) {
          double acc = 0.0;
          for (std::int64_t n = 0; n < g.batch; ++n)
            for (std::int64_t i = 0; i < g.h; ++i)
              for (std::int64_t j = 0; j < g.w; ++j) {
                const std::int64_t yy = i + a - 2, xx = j + b - 2;
                if (yy < 0 || yy >= g.h || xx < 0 || xx >= g.w) continue;
                acc += static_cast<double>(gy[static_cast<std::size_t>(((n * g.c_out + o) * g.h + i) * g.w + j)]) *
                       x[static_cast<std::size_t>(((n * g.c_in + c) * g.h + yy) * g.w + xx)];
              }
          gw[static_cast<std::size_t>(((o * g.c_in + c) * 5 + a) * 5 + b)] = acc;
        }
  return gw;
}

// |got - want| <= tol max|want| everywhere (the float gap of a sum scales with its terms, not
// with the sum: cancellation leaves small outputs with the same absolute error).
void expect_close(const std::vector<float>& got, const std::vector<double>& want, double tol, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  double scale = 0.0;
  for (double v : want) scale = std::max(scale, std::abs(v));
  double worst = 0.0;
  std::size_t at = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double gap = std::abs(got[i] - want[i]) / scale;
    if (!(gap <= worst)) {
      worst = gap;
      at = i;
    }
  }
  EXPECT_LE(worst, tol) << what << ": element " << at << " got " << got[at] << " want " << want[at] << " scale "
                        << scale;
  if (std::getenv("WINOGRAD_TEST_VERBOSE") != nullptr) std::printf("%s: worst gap / max %.3g\n", what, worst);
}

struct Case {
  std::int64_t batch, c_in, h, w, c_out;
};

class WinogradTest : public ::testing::TestWithParam<Case> {};

TEST_P(WinogradTest, ForwardAndInputGradMatchTheDirectConvolution) {
  const Case c = GetParam();
  if (!wino::supports(c.c_in, c.h, c.w, c.c_out, 5, 5, 1, 2)) GTEST_SKIP() << "no AVX-512 on this CPU";
  const wino::Geom g{c.batch, c.c_in, c.h, c.w, c.c_out};
  const Shape4 xs{c.batch, c.c_in, c.h, c.w}, ys{c.batch, c.c_out, c.h, c.w};
  const std::vector<float> x = random_vec(c.batch * c.c_in * c.h * c.w, 11);
  const std::vector<float> w = random_vec(c.c_out * c.c_in * 25, 12);
  const std::vector<float> b = random_vec(c.c_out, 13);
  const std::vector<float> gy = random_vec(c.batch * c.c_out * c.h * c.w, 14);
  // Float32 direct convolutions of these shapes are within about 1e-6 of the largest output;
  // Winograd's transforms (constants up to 5 and 1/24) lose about 5 more bits.
  const double tol = 2e-5;

  const std::vector<float> xb = to_blocked(x, xs);
  std::vector<float> yb(static_cast<std::size_t>(c.batch * c.c_out * c.h * c.w));
  wino::forward(g, w.data(), xb.data(), b.data(), yb.data());
  expect_close(from_blocked(yb, ys), direct_forward(g, w, x, b.data()), tol, "forward with bias");
  wino::forward(g, w.data(), xb.data(), nullptr, yb.data());
  expect_close(from_blocked(yb, ys), direct_forward(g, w, x, nullptr), tol, "forward");

  const std::vector<float> gyb = to_blocked(gy, ys);
  std::vector<float> gxb(static_cast<std::size_t>(c.batch * c.c_in * c.h * c.w));
  wino::input_grad(g, w.data(), gyb.data(), gxb.data());
  expect_close(from_blocked(gxb, xs), direct_input_grad(g, w, gy), tol, "input gradient");

  std::vector<float> gw(w.size(), 7.0f);  // overwritten
  wino::weight_grad(g, gyb.data(), xb.data(), gw.data());
  expect_close(gw, direct_weight_grad(g, gy, x), tol, "weight gradient");
}

INSTANTIATE_TEST_SUITE_P(Shapes, WinogradTest,
                         ::testing::Values(Case{2, 32, 14, 14, 64},  // the CNN's conv2 (groups of 7 tiles)
                                           Case{1, 16, 6, 10, 48},   // 3 output vectors, rows of 5 tiles
                                           Case{2, 64, 4, 18, 16},   // 9 tiles per row: 7 + 2; 1 output vector
                                           Case{1, 16, 2, 2, 80},    // one tile, all padding; 4 + 1 vectors
                                           Case{37, 16, 8, 4, 32})); // the weight gradient's chunks: 7 of 5 + 2

TEST(Winograd, ResultsDoNotDependOnTheThreadCount) {
  if (!wino::supports(32, 14, 14, 64, 5, 5, 1, 2)) GTEST_SKIP() << "no AVX-512 on this CPU";
  const wino::Geom g{8, 32, 14, 14, 64};
  const std::vector<float> x = random_vec(8 * 32 * 196, 21), w = random_vec(64 * 32 * 25, 22),
                           b = random_vec(64, 23), gy = random_vec(8 * 64 * 196, 24);
  std::vector<float> y1(8 * 64 * 196), y2(y1.size()), gx1(x.size()), gx2(x.size());
  const int saved = num_threads();
  set_num_threads(1);
  wino::forward(g, w.data(), x.data(), b.data(), y1.data());
  wino::input_grad(g, w.data(), gy.data(), gx1.data());
  set_num_threads(2);
  wino::forward(g, w.data(), x.data(), b.data(), y2.data());
  wino::input_grad(g, w.data(), gy.data(), gx2.data());
  std::vector<float> gw1(w.size()), gw2(w.size());
  set_num_threads(1);
  wino::weight_grad(g, gy.data(), x.data(), gw1.data());
  set_num_threads(2);
  wino::weight_grad(g, gy.data(), x.data(), gw2.data());
  set_num_threads(saved);
  EXPECT_EQ(y1, y2);
  EXPECT_EQ(gx1, gx2);
  EXPECT_EQ(gw1, gw2);
}

TEST(Winograd, PooledForwardEqualsTheForwardPooledByHand) {
  // forward_relu_max_pool against forward's output pooled here (relu, then the maximum of each
  // 2x2 tile, the first of equals, relu(NaN) = 0): the same bits. Channel 0 has zero weights
  // and a positive bias (four equal values: the first wins), channel 1 a negative bias (all
  // zero after relu), channel 2 a NaN bias (NaN everywhere: relu gives 0).
  const wino::Geom g{3, 32, 10, 14, 48};
  if (!wino::supports(g.c_in, g.h, g.w, g.c_out, 5, 5, 1, 2)) GTEST_SKIP() << "no AVX-512 on this CPU";
  const std::vector<float> x = random_vec(g.batch * g.c_in * g.h * g.w, 61);
  std::vector<float> w = random_vec(g.c_out * g.c_in * 25, 62), b = random_vec(g.c_out, 63);
  for (std::int64_t i = 0; i < 2 * g.c_in * 25; ++i) w[static_cast<std::size_t>(i)] = 0.0f;
  b[0] = 0.25f;
  b[1] = -0.25f;
  b[2] = std::numeric_limits<float>::quiet_NaN();
  const Shape4 xs{g.batch, g.c_in, g.h, g.w}, zs{g.batch, g.c_out, g.h, g.w};
  const std::vector<float> xb = to_blocked(x, xs);
  std::vector<float> zb(static_cast<std::size_t>(g.batch * g.c_out * g.h * g.w));
  wino::forward(g, w.data(), xb.data(), b.data(), zb.data());
  const std::vector<float> z = from_blocked(zb, zs);
  const std::int64_t ho = g.h / 2, wo = g.w / 2, planes = g.batch * g.c_out;
  std::vector<float> y(static_cast<std::size_t>(planes * ho * wo)), want_y(y.size());
  std::vector<std::int32_t> idx(y.size()), want_idx(y.size());
  for (std::int64_t q = 0; q < planes; ++q)
    for (std::int64_t i = 0; i < ho; ++i)
      for (std::int64_t j = 0; j < wo; ++j) {
        float m = 0.0f;
        std::int32_t best = -1;
        for (std::int64_t u = 0; u < 2; ++u)
          for (std::int64_t v = 0; v < 2; ++v) {
            const auto p = static_cast<std::int32_t>((2 * i + u) * g.w + 2 * j + v);
            const float zv = z[static_cast<std::size_t>(q * g.h * g.w + p)];
            const float r = zv > 0.0f ? zv : 0.0f;
            if (best < 0 || r > m) {
              m = r;
              best = p;
            }
          }
        want_y[static_cast<std::size_t>((q * ho + i) * wo + j)] = m;
        want_idx[static_cast<std::size_t>((q * ho + i) * wo + j)] = best;
      }
  wino::forward_relu_max_pool(g, w.data(), xb.data(), b.data(), y.data(), idx.data());
  EXPECT_EQ(std::memcmp(y.data(), want_y.data(), y.size() * sizeof(float)), 0);
  EXPECT_EQ(idx, want_idx);
  EXPECT_EQ(y[0], 0.25f);  // channel 0 of example 0: ties, the first position
  EXPECT_EQ(idx[0], 0);
  EXPECT_EQ(idx[static_cast<std::size_t>(ho * wo + wo + 1)], 2 * g.w + 2);  // channel 1: all zero, the first
  EXPECT_EQ(y[static_cast<std::size_t>(2 * ho * wo)], 0.0f);  // channel 2: NaN -> 0
  std::int64_t positive = 0;
  for (float v : y) positive += v > 0.0f;
  EXPECT_GT(positive, planes * ho * wo / 4);
}

TEST(Winograd, SupportsOnlyItsShapes) {
  EXPECT_FALSE(wino::supports(32, 14, 14, 64, 3, 3, 1, 1));
  EXPECT_FALSE(wino::supports(32, 14, 14, 64, 5, 5, 2, 2));
  EXPECT_FALSE(wino::supports(32, 14, 14, 64, 5, 5, 1, 0));
  EXPECT_FALSE(wino::supports(32, 13, 14, 64, 5, 5, 1, 2));
  EXPECT_FALSE(wino::supports(1, 28, 28, 32, 5, 5, 1, 2));
  EXPECT_FALSE(wino::supports(32, 14, 14, 40, 5, 5, 1, 2));
}

// The CNN's conv2 block through the tape (conv2d_relu_max_pool2d, oneDNN's blocked layout):
// with Winograd (the default) and with DESCENT_CONV_KERNELS=direct, the value, the gradient
// of x, w and b and Hv along a tangent agree to float rounding, and differ somewhere (so
// Winograd did run). The weight gradient reads the blocked x that Winograd's forward kept.
struct NodeResult {
  std::vector<std::vector<float>> all;  // y, gx, gw, gb, Hv x, Hv w, Hv b
};

NodeResult node_run(const char* kernels) {
  const char* saved = std::getenv("DESCENT_CONV_KERNELS");
  const std::string keep = saved != nullptr ? saved : "";
  if (kernels != nullptr) setenv("DESCENT_CONV_KERNELS", kernels, 1);
  else unsetenv("DESCENT_CONV_KERNELS");
  autodiff::Tape tape;
  const std::vector<Shape> shapes{{3, 32, 14, 14}, {64, 32, 5, 5}, {64}};
  std::vector<autodiff::Var> v;
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    v.push_back(tape.variable(testing::random_tensor(shapes[i], DType::f32, 31 + i, -0.5, 0.5)));
    tape.set_tangent(v.back(), testing::random_tensor(shapes[i], DType::f32, 41 + i));
  }
  autodiff::Var y = autodiff::conv2d_relu_max_pool2d(v[0], v[1], v[2], {.stride = 1, .padding = 2}, 2, 2);
  Tensor c = testing::random_tensor(y.shape(), DType::f32, 51);
  autodiff::Var loss = autodiff::add(autodiff::sum(autodiff::mul(tape.constant(c), y)),
                                     autodiff::scale(autodiff::sum(autodiff::square(y)), 0.5));
  tape.hvp(loss, Tensor(), Tensor());
  auto vec = [](const Tensor& t) { return std::vector<float>(t.data<float>(), t.data<float>() + t.numel()); };
  NodeResult r;
  r.all.push_back(vec(y.value()));
  for (autodiff::Var x : v) r.all.push_back(vec(tape.grad(x)));
  for (autodiff::Var x : v) r.all.push_back(vec(tape.grad_tangent(x)));
  if (saved != nullptr) setenv("DESCENT_CONV_KERNELS", keep.c_str(), 1);
  else unsetenv("DESCENT_CONV_KERNELS");
  return r;
}

TEST(Winograd, FusedNodeMatchesTheDirectConvolution) {
  if (!wino::supports(32, 14, 14, 64, 5, 5, 1, 2) || !autodiff::conv_backend_has_onednn()) {
    GTEST_SKIP() << "no AVX-512 on this CPU or no oneDNN in this build";
  }
  const NodeResult a = node_run(nullptr), b = node_run("direct");
  const char* names[] = {"y", "gx", "gw", "gb", "Hv x", "Hv w", "Hv b"};
  bool differs = false;
  for (std::size_t i = 0; i < a.all.size(); ++i) {
    std::vector<double> want(b.all[i].begin(), b.all[i].end());
    expect_close(a.all[i], want, 1e-5, names[i]);
    differs = differs || a.all[i] != b.all[i];
  }
  EXPECT_TRUE(differs) << "Winograd did not run";
}

}  // namespace
}  // namespace descent
