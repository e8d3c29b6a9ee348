// Claim 15 (section 8.4): the variance of the activations and of the back-propagated gradients,
// layer by layer, of a deep MLP at initialization, under each weight scheme of descent's
// initializer. Prints one JSON object: {"configs": [{"activation", "scheme", "gain",
// "activation_variance": [layer 1..L], "gradient_variance": [layer 1..L]}], ...}.
//
// The net: L fully connected layers of `width` units, each followed by the activation, fed a
// batch of standard normal inputs (the scale of standardized data). The loss is sum(h_L * r)
// with r standard normal and fixed, so d loss / d h_L has unit variance and the gradient
// variance of a layer is how much back-propagation through the layers above changed it.
// "gradient" is d loss / d z_l, the pre-activation's gradient (the weight gradient is
// h_{l-1}^T times it). Variances are over all batch x width entries (the mean removed).
//   experiment_init_scale [--layers 10] [--width 256] [--batch 500] [--seed 1]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <descent/autodiff/ops.hpp>
#include <descent/init/rng.hpp>
#include <descent/nn/initialize.hpp>
#include <descent/nn/module.hpp>

using namespace descent;

namespace {

double variance(const Tensor& t) {
  const auto v = t.span<double>();
  double mean = 0.0;
  for (double e : v) mean += e;
  mean /= static_cast<double>(v.size());
  double s = 0.0;
  for (double e : v) s += (e - mean) * (e - mean);
  return s / static_cast<double>(v.size());
}

struct Config {
  nn::Activation activation;
  init::Scheme scheme;
  double gain;
  const char* label;
};

}  // namespace

int main(int argc, char** argv) {
  std::int64_t layers = 10, width = 256, batch = 500;
  std::uint64_t seed = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i];
    const long long value = std::atoll(argv[i + 1]);
    if (value < 1) {
      std::fprintf(stderr, "experiment_init_scale: error: %s must be a positive integer\n", key.c_str());
      return 1;
    }
    if (key == "--layers") layers = value;
    else if (key == "--width") width = value;
    else if (key == "--batch") batch = value;
    else if (key == "--seed") seed = static_cast<std::uint64_t>(value);
    else {
      std::fprintf(stderr, "experiment_init_scale: error: unknown option %s (known: --layers --width --batch --seed)\n", key.c_str());
      return 1;
    }
  }
  using init::Scheme;
  using nn::Activation;
  const double r2 = std::sqrt(2.0);
  // The schemes that suit each activation, the same 4x too large and 4x too small (gain 4 and
  // 1/4 scale every weight), and orthogonal and sparse beside them.
  const std::vector<Config> configs = {
      {Activation::tanh, Scheme::glorot_uniform, 1.0, "glorot"},
      {Activation::tanh, Scheme::glorot_uniform, 4.0, "glorot x4"},
      {Activation::tanh, Scheme::glorot_uniform, 0.25, "glorot x1/4"},
      {Activation::tanh, Scheme::orthogonal, 1.0, "orthogonal"},
      {Activation::tanh, Scheme::sparse, 1.0, "sparse"},
      {Activation::relu, Scheme::he_uniform, 1.0, "he"},
      {Activation::relu, Scheme::he_uniform, 4.0, "he x4"},
      {Activation::relu, Scheme::he_uniform, 0.25, "he x1/4"},
      {Activation::relu, Scheme::orthogonal, r2, "orthogonal"},
      {Activation::relu, Scheme::sparse, 1.0, "sparse"},
  };
  Rng rng(seed);
  Tensor x = Tensor::empty({batch, width}, DType::f64);
  for (double& e : x.span<double>()) e = rng.normal();
  Tensor r = Tensor::empty({batch, width}, DType::f64);
  for (double& e : r.span<double>()) e = rng.normal();

  std::printf("{\"layers\": %lld, \"width\": %lld, \"batch\": %lld, \"seed\": %llu, \"configs\": [",
              static_cast<long long>(layers), static_cast<long long>(width), static_cast<long long>(batch),
              static_cast<unsigned long long>(seed));
  for (std::size_t c = 0; c < configs.size(); ++c) {
    const Config& cfg = configs[c];
    ParameterArena arena(DType::f64);
    std::vector<std::int64_t> sizes(static_cast<std::size_t>(layers) + 1, width);
    nn::Sequential net = nn::mlp(arena, sizes, cfg.activation);  // for its parameters only
    nn::InitSpec spec{.weights = cfg.scheme, .options = init::default_options(cfg.scheme), .bias = 0.0, .seed = seed + 1};
    spec.options.gain = cfg.gain;
    nn::initialize(arena, spec);
    // The forward pass by hand (the last layer gets the activation too), keeping each z_l, h_l.
    autodiff::Tape tape;
    autodiff::Var h = tape.constant(x);
    std::vector<autodiff::Var> zs, hs;
    std::int64_t layer = 0;
    for (const auto& entry : arena.entries()) {
      const std::string& name = entry.name;
      if (name.size() < 7 || name.compare(name.size() - 7, 7, ".weight") != 0) continue;
      const std::string prefix = name.substr(0, name.size() - 7);
      autodiff::Var w = tape.param(arena, arena.find(prefix + ".weight"));
      autodiff::Var b = tape.param(arena, arena.find(prefix + ".bias"));
      autodiff::Var z = autodiff::linear(h, w, b);
      h = cfg.activation == Activation::tanh ? autodiff::tanh(z) : autodiff::relu(z);
      zs.push_back(z);
      hs.push_back(h);
      ++layer;
    }
    if (layer != layers) {
      std::fprintf(stderr, "experiment_init_scale: error: found %lld weight matrices, expected %lld\n",
                   static_cast<long long>(layer), static_cast<long long>(layers));
      return 2;
    }
    autodiff::Var loss = autodiff::sum(autodiff::mul(h, tape.constant(r)));
    arena.zero_grad();
    tape.backward(loss);
    std::printf("%s{\"activation\": \"%s\", \"scheme\": \"%s\", \"label\": \"%s\", \"gain\": %.17g, \"activation_variance\": [",
                c ? ", " : "", nn::activation_name(cfg.activation), std::string(init::scheme_name(cfg.scheme)).c_str(),
                cfg.label, cfg.gain);
    for (std::size_t l = 0; l < hs.size(); ++l) std::printf("%s%.17g", l ? ", " : "", variance(tape.node(hs[l]).value));
    std::printf("], \"gradient_variance\": [");
    for (std::size_t l = 0; l < zs.size(); ++l) std::printf("%s%.17g", l ? ", " : "", variance(tape.grad(zs[l])));
    std::printf("]}");
  }
  std::printf("]}\n");
  return 0;
}
