// diag::interpolate against PyTorch: tests/reference/interpolation_reference.py wrote the
// curve (mean cross-entropy and 0-1 error along (1 - alpha) theta_0 + alpha theta*) of a
// float64 ReLU MLP 5-8-8-3 on 64 training and 32 validation examples, with the weights and
// the examples, to tests/reference/fixtures/interpolation.json. The same weights and examples
// here must give the same curve.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "descent/diag/landscape.hpp"
#include "descent/nn/module.hpp"

namespace descent {
namespace {

using json = nlohmann::json;

json fixture() {
  std::ifstream in(std::filesystem::path(DESCENT_SOURCE_DIR) / "tests" / "reference" / "fixtures" / "interpolation.json");
  EXPECT_TRUE(in.good()) << "tests/reference/fixtures/interpolation.json is missing";
  return json::parse(in);
}

// The weights of the fixture's `which` in the arena's layout, by parameter name.
diag::Weights weights(const json& f, const char* which, const ParameterArena& arena) {
  diag::Weights w;
  w.values.resize(static_cast<std::size_t>(arena.size()));
  for (const ParamEntry& e : arena.entries()) {
    EXPECT_TRUE(f[which].contains(e.name)) << e.name;
    const std::vector<double> v = f[which][e.name].get<std::vector<double>>();
    EXPECT_EQ(static_cast<std::int64_t>(v.size()), e.shape.numel()) << e.name;
    std::copy(v.begin(), v.end(), w.values.begin() + e.offset);
  }
  return w;
}

diag::ExampleSet examples(const json& f, const std::string& split, std::int64_t features) {
  const std::vector<double> x = f[split + "_x"].get<std::vector<double>>();
  const std::vector<std::int32_t> y = f[split + "_labels"].get<std::vector<std::int32_t>>();
  const auto n = static_cast<std::int64_t>(y.size());
  EXPECT_EQ(static_cast<std::int64_t>(x.size()), n * features);
  return {Tensor::from<double>({n, features}, x), Tensor::from<std::int32_t>({n}, y)};
}

TEST(InterpolationReference, MatchesPyTorchOnASmallTrainedMlp) {
  const json f = fixture();
  const std::vector<std::int64_t> sizes = f["sizes"].get<std::vector<std::int64_t>>();
  ParameterArena arena(DType::f64);
  nn::Sequential net = nn::mlp(arena, sizes, nn::Activation::relu);
  const diag::Weights t0 = weights(f, "theta_0", arena), t1 = weights(f, "theta_star", arena);
  const std::vector<diag::ExampleSet> sets = {examples(f, "train", sizes.front()), examples(f, "validation", sizes.front())};
  // Chunks of 10 examples: the sum over chunks must still be the mean over all of them.
  const diag::Interpolation r = diag::interpolate(net, arena, t0, t1, sets, {.points = 41, .chunk = 10});
  const std::vector<double> alpha = f["alpha"].get<std::vector<double>>();
  ASSERT_EQ(r.alpha.size(), alpha.size());
  for (std::size_t i = 0; i < alpha.size(); ++i) EXPECT_EQ(r.alpha[i], alpha[i]) << i;
  int names = 0;
  for (const std::string split : {"train", "validation"}) {
    const std::vector<double> loss = f[split + "_loss"].get<std::vector<double>>();
    const std::vector<double> error = f[split + "_error"].get<std::vector<double>>();
    const std::size_t s = split == "train" ? 0 : 1;
    for (std::size_t i = 0; i < alpha.size(); ++i) {
      EXPECT_NEAR(r.curves[s][i].loss, loss[i], 1e-12 * std::max(1.0, loss[i])) << split << " alpha " << alpha[i];
      EXPECT_EQ(r.curves[s][i].error, error[i]) << split << " alpha " << alpha[i];
    }
    ++names;
  }
  EXPECT_EQ(names, 2);
  // The curve is the interesting kind: it falls by two orders of magnitude from alpha 0 to 1.
  EXPECT_GT(r.curves[0][7].loss, 100 * r.curves[0][35].loss);
}

}  // namespace
}  // namespace descent
