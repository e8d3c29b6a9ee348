// descent's diagnostics against PyTorch's (tests/reference/hessian_fixture.json, written by
// tests/reference/hessian_reference.py in float64 with double backward): the same ReLU MLP
// with the fixture's weights on the fixture's examples; loss, gradient norm, lambda_max and
// lambda_min (our Lanczos against eigvalsh of PyTorch's dense Hessian), the exact trace
// (our dense Hessian's against PyTorch's), and the noise scale (our per-example gradients
// against PyTorch's).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "descent/diag/hessian.hpp"
#include "descent/diag/lanczos.hpp"
#include "descent/diag/noise.hpp"
#include "descent/nn/module.hpp"

namespace descent {
namespace {

nlohmann::json fixture() {
  std::ifstream in(std::string(DESCENT_SOURCE_DIR) + "/tests/reference/hessian_fixture.json");
  EXPECT_TRUE(in.good()) << "tests/reference/hessian_fixture.json is missing";
  return nlohmann::json::parse(in);
}

struct Reference {
  nlohmann::json f = fixture();
  ParameterArena arena{DType::f64};
  nn::Sequential net = nn::mlp(arena, f["sizes"].get<std::vector<std::int64_t>>(), nn::Activation::relu);
  Tensor x, labels;
  Reference() {
    arena.freeze();
    for (const auto& p : f["parameters"]) {
      const ParamId id = arena.find(p["name"].get<std::string>());
      EXPECT_TRUE(id.valid()) << p["name"];
      const auto values = p["values"].get<std::vector<double>>();
      arena.value(id).copy_from(Tensor::from<double>(arena.entry(id).shape, values));
    }
    const std::int64_t n = f["examples"].get<std::int64_t>();
    const auto xs = f["x"].get<std::vector<double>>();
    x = Tensor::from<double>({n, f["sizes"][0].get<std::int64_t>()}, xs);
    const auto ys = f["labels"].get<std::vector<std::int32_t>>();
    labels = Tensor::from<std::int32_t>({n}, ys);
  }
};

double rel(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-300); }

TEST(PyTorchReference, LossGradientEigenvaluesAndTrace) {
  Reference r;
  ASSERT_EQ(r.arena.size(), r.f["dim"].get<std::int64_t>());
  diag::HessianOperator h(r.net, r.arena, r.x, r.labels, {.chunk = 16});
  EXPECT_LT(rel(h.loss(), r.f["loss"].get<double>()), 1e-13);
  double g2 = 0.0;
  for (double g : h.gradient()) g2 += g * g;
  EXPECT_LT(rel(std::sqrt(g2), r.f["gradient_norm"].get<double>()), 1e-12);

  const diag::Spectrum s = diag::lanczos_extremes(h, {.steps = 120, .top = 5, .bottom = 5, .seed = 2});
  const double scale = r.f["lambda_max"].get<double>();
  EXPECT_LT(rel(s.lambda_max, scale), 1e-10);
  EXPECT_LT(std::abs(s.lambda_min - r.f["lambda_min"].get<double>()), 1e-10 * scale);
  for (std::size_t i = 0; i < 5; ++i) {
    EXPECT_LT(std::abs(s.top[i] - r.f["eigenvalues_top"][i].get<double>()), 1e-9 * scale) << i;
    EXPECT_LT(std::abs(s.bottom[i] - r.f["eigenvalues_bottom"][i].get<double>()), 1e-9 * scale) << i;
  }
  // PyHessian's power iteration (run to 1e-12) agrees too.
  EXPECT_LT(rel(s.lambda_max, r.f["power_lambda_max"].get<double>()), 1e-9);

  const std::vector<double> dense = diag::dense_hessian(h);
  double trace = 0.0;
  for (std::int64_t i = 0; i < h.dim(); ++i) trace += dense[static_cast<std::size_t>(i * h.dim() + i)];
  EXPECT_LT(rel(trace, r.f["trace"].get<double>()), 1e-12);
}

TEST(PyTorchReference, NoiseScale) {
  Reference r;
  const diag::NoiseResult n = diag::gradient_noise(r.net, r.arena, r.x, r.labels, {.draws = 2});
  EXPECT_LT(rel(n.trace_sigma, r.f["trace_sigma"].get<double>()), 1e-12);
  EXPECT_LT(rel(n.noise_scale, r.f["noise_scale"].get<double>()), 1e-11);
  EXPECT_LT(rel(n.gradient_norm, r.f["gradient_norm"].get<double>()), 1e-12);
}

}  // namespace
}  // namespace descent
