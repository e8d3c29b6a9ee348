#include "descent/diag/symmetry.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <type_traits>

#include "descent/diag/noise.hpp"
#include "descent/init/rng.hpp"
#include "descent/nn/conv.hpp"
#include "descent/nn/normalization.hpp"
#include "descent/nn/recurrent.hpp"

namespace descent::diag {
namespace {

std::string module_name(const ParameterArena& arena, ParamId weight) {
  const std::string& n = arena.entry(weight).name;
  const auto dot = n.rfind('.');
  return dot == std::string::npos ? n : n.substr(0, dot);
}

// Whether a module between two layers maps each unit (channel) on its own, and whether it
// is positively homogeneous (commutes with a positive scaling of each unit).
struct Between {
  bool unitwise = false;
  bool homogeneous = false;
};
Between classify(nn::Module& m, bool images) {
  if (auto* a = dynamic_cast<nn::ActivationModule*>(&m)) {
    switch (a->activation()) {
      case nn::Activation::relu:
      case nn::Activation::identity:
        return {true, true};
      case nn::Activation::tanh:
      case nn::Activation::sigmoid:
        return {true, false};
      default:
        return {};  // softmax mixes the units
    }
  }
  if (dynamic_cast<nn::Dropout*>(&m)) return {true, true};  // the identity in evaluation mode
  if (images && (dynamic_cast<nn::MaxPool2d*>(&m) || dynamic_cast<nn::AvgPool2d*>(&m))) return {true, true};
  return {};
}

UnitSlice rows_of(const ParameterArena& arena, ParamId p, std::int64_t units) {
  const Shape& s = arena.entry(p).shape;
  return {.param = p, .outer = 1, .group = 1, .inner = s.numel() / units};
}

template <class F>
void for_slices(ParameterArena& arena, const UnitSlice& s, std::int64_t units, F&& f) {
  Tensor t = arena.value(s.param);
  if (t.numel() != s.outer * units * s.group * s.inner) {
    throw ShapeError("symmetry: parameter " + arena.entry(s.param).name + " " + t.shape().str() + " does not hold " +
                     std::to_string(units) + " units");
  }
  dispatch_float(arena.dtype(), [&](auto zero) {
    using T = decltype(zero);
    f(t.data<T>());
  });
}

// A recurrent layer's hidden units (section 10.2's h_t), permuted consistently: the rows of
// each gate's block of W_ih, W_hh and the bias (and GRU's b_hn), the columns of W_hh (h_{t-1}
// enters every gate), and the next module's inputs: a Linear reading h_T (columns), a Linear
// reading the flat sequence [h_1 .. h_T] (columns u, H + u, 2H + u, ...), or a recurrent
// layer reading the sequence (the columns of its W_ih). Elementwise activations and dropout
// may stand between. No rescaling: sigmoid and tanh are not positively homogeneous, and the
// recurrence feeds h back through the same units. Empty (with `why`) when not covered.
std::optional<SymmetryLayer> recurrent_symmetry(nn::Sequential& net, ParameterArena& arena, std::size_t i, nn::Recurrent& rec,
                                                std::string& why) {
  const std::int64_t h = rec.hidden_size();
  const std::int64_t g = rec.gates();
  SymmetryLayer layer;
  layer.kind = rec.kind() == nn::CellKind::lstm ? "lstm" : rec.kind() == nn::CellKind::gru ? "gru" : "rnn";
  layer.units = h;
  layer.name = module_name(arena, rec.weight_ih());
  // The layer's own slices all go into `incoming` (W_hh's columns too: they belong to the
  // same layer, and a rescaling never applies here).
  layer.incoming.push_back({.param = rec.weight_ih(), .outer = g, .group = 1, .inner = rec.input_size()});
  layer.incoming.push_back({.param = rec.weight_hh(), .outer = g, .group = 1, .inner = h});
  layer.incoming.push_back({.param = rec.weight_hh(), .outer = g * h, .group = 1, .inner = 1});
  if (rec.bias().valid()) layer.incoming.push_back({.param = rec.bias(), .outer = g, .group = 1, .inner = 1});
  if (rec.bias_hn().valid()) layer.incoming.push_back({.param = rec.bias_hn(), .outer = 1, .group = 1, .inner = 1});
  const bool sequence = rec.options().return_sequence;
  std::vector<std::string> between;
  std::size_t j = i + 1;
  for (; j < net.size(); ++j) {
    nn::Module& next = net.at(j);
    if (dynamic_cast<nn::Linear*>(&next) || dynamic_cast<nn::Recurrent*>(&next)) break;
    if (dynamic_cast<nn::Flatten*>(&next)) {  // [B, T, H] -> [B, T*H]: the same layout
      between.push_back(next.describe());
      continue;
    }
    if (!classify(next, false).unitwise) break;
    between.push_back(next.describe());
  }
  const std::string self = "module " + std::to_string(i) + " (" + rec.describe() + ")";
  if (j >= net.size()) {
    why = self + ": the last layer with parameters, its units are the outputs (not hidden)";
    return std::nullopt;
  }
  nn::Module& next = net.at(j);
  auto* next_lin = dynamic_cast<nn::Linear*>(&next);
  auto* next_rec = dynamic_cast<nn::Recurrent*>(&next);
  if (next_lin && !sequence && next_lin->in_features() == h) {
    layer.outgoing.push_back({.param = next_lin->weight(), .outer = next_lin->out_features(), .group = 1, .inner = 1});
  } else if (next_lin && sequence && next_lin->in_features() % h == 0) {
    // [out, T*H]: row o, step t, unit u at (o*T + t)*H + u.
    layer.outgoing.push_back(
        {.param = next_lin->weight(), .outer = next_lin->out_features() * (next_lin->in_features() / h), .group = 1, .inner = 1});
  } else if (next_rec && sequence && next_rec->input_size() == h) {
    layer.outgoing.push_back(
        {.param = next_rec->weight_ih(), .outer = next_rec->gates() * next_rec->hidden_size(), .group = 1, .inner = 1});
  } else {
    why = self + ": followed by module " + std::to_string(j) + " (" + next.describe() +
          "), which does not take its units one to one (not covered)";
    return std::nullopt;
  }
  for (std::size_t k = 0; k < between.size(); ++k) layer.between += (k ? ", " : "") + between[k];
  return layer;
}

}  // namespace

std::vector<SymmetryLayer> find_symmetries(nn::Sequential& net, ParameterArena& arena, std::vector<std::string>* skipped) {
  std::vector<SymmetryLayer> layers;
  auto skip = [&](const std::string& why) {
    if (skipped) skipped->push_back(why);
  };
  const std::size_t count = net.size();
  for (std::size_t i = 0; i < count; ++i) {
    nn::Module& m = net.at(i);
    auto* lin = dynamic_cast<nn::Linear*>(&m);
    auto* conv = dynamic_cast<nn::Conv2d*>(&m);
    if (auto* rec = dynamic_cast<nn::Recurrent*>(&m)) {
      std::string why;
      if (auto layer = recurrent_symmetry(net, arena, i, *rec, why)) {
        layers.push_back(std::move(*layer));
      } else {
        skip(why);
      }
      continue;
    }
    if (!lin && !conv) {
      if (dynamic_cast<nn::BatchNorm*>(&m)) {
        skip("module " + std::to_string(i) + " (" + m.describe() + "): its units are not permuted or rescaled (not covered)");
      }
      continue;
    }
    SymmetryLayer layer;
    layer.kind = lin ? "dense" : "conv";
    layer.units = lin ? lin->out_features() : conv->out_channels();
    const ParamId w = lin ? lin->weight() : conv->weight();
    const ParamId b = lin ? lin->bias() : conv->bias();
    layer.name = module_name(arena, w);
    layer.incoming.push_back(rows_of(arena, w, layer.units));
    if (b.valid()) layer.incoming.push_back(rows_of(arena, b, layer.units));
    bool homogeneous = true;
    std::vector<std::string> between;
    std::size_t j = i + 1;
    bool flattened = false;
    for (; j < count; ++j) {
      nn::Module& next = net.at(j);
      if (dynamic_cast<nn::Linear*>(&next) || dynamic_cast<nn::Conv2d*>(&next)) break;
      if (conv && !flattened && dynamic_cast<nn::Flatten*>(&next)) {
        flattened = true;
        between.push_back(next.describe());
        continue;
      }
      const Between c = classify(next, conv != nullptr && !flattened);
      if (!c.unitwise) break;
      homogeneous = homogeneous && c.homogeneous;
      between.push_back(next.describe());
    }
    if (j >= count) continue;  // the output layer: its units are not hidden
    nn::Module& next = net.at(j);
    auto* next_lin = dynamic_cast<nn::Linear*>(&next);
    auto* next_conv = dynamic_cast<nn::Conv2d*>(&next);
    if (lin && next_lin && next_lin->in_features() == layer.units) {
      layer.outgoing.push_back(
          {.param = next_lin->weight(), .outer = next_lin->out_features(), .group = 1, .inner = 1});
    } else if (conv && !flattened && next_conv && next_conv->in_channels() == layer.units) {
      const std::int64_t k = next_conv->kernel();
      layer.outgoing.push_back({.param = next_conv->weight(), .outer = next_conv->out_channels(), .group = 1, .inner = k * k});
    } else if (conv && flattened && next_lin && next_lin->in_features() % layer.units == 0) {
      // Flatten of [C, H, W]: channel c is columns c*H*W .. (c+1)*H*W - 1.
      layer.outgoing.push_back({.param = next_lin->weight(),
                                .outer = next_lin->out_features(),
                                .group = next_lin->in_features() / layer.units,
                                .inner = 1});
    } else {
      skip("module " + std::to_string(i) + " (" + m.describe() + "): followed by module " + std::to_string(j) + " (" +
           next.describe() + "), which does not take its units one to one (not covered)");
      continue;
    }
    layer.rescaling = homogeneous;
    for (std::size_t k = 0; k < between.size(); ++k) layer.between += (k ? ", " : "") + between[k];
    layers.push_back(std::move(layer));
  }
  return layers;
}

void permute_units(ParameterArena& arena, const SymmetryLayer& layer, std::span<const std::int64_t> perm) {
  const std::int64_t n = layer.units;
  if (static_cast<std::int64_t>(perm.size()) != n) {
    throw ShapeError("symmetry: a permutation of " + std::to_string(perm.size()) + " for " + std::to_string(n) + " units");
  }
  auto apply = [&](const UnitSlice& s) {
    for_slices(arena, s, n, [&](auto* p) {
      using T = std::remove_pointer_t<decltype(p)>;
      const std::int64_t block = s.group * s.inner;  // one unit's entries within one outer index
      std::vector<T> old(static_cast<std::size_t>(n * block));
      for (std::int64_t o = 0; o < s.outer; ++o) {
        T* base = p + o * n * block;
        std::copy(base, base + n * block, old.begin());
        for (std::int64_t u = 0; u < n; ++u) {
          const auto from = old.begin() + perm[static_cast<std::size_t>(u)] * block;
          std::copy(from, from + block, base + u * block);
        }
      }
    });
  };
  for (const UnitSlice& s : layer.incoming) apply(s);
  for (const UnitSlice& s : layer.outgoing) apply(s);
}

void rescale_units(ParameterArena& arena, const SymmetryLayer& layer, std::span<const double> scale) {
  const std::int64_t n = layer.units;
  if (static_cast<std::int64_t>(scale.size()) != n) {
    throw ShapeError("symmetry: " + std::to_string(scale.size()) + " scale factors for " + std::to_string(n) + " units");
  }
  auto apply = [&](const UnitSlice& s, bool inverse) {
    for_slices(arena, s, n, [&](auto* p) {
      using T = std::remove_pointer_t<decltype(p)>;
      const std::int64_t block = s.group * s.inner;
      for (std::int64_t o = 0; o < s.outer; ++o) {
        for (std::int64_t u = 0; u < n; ++u) {
          const double a = scale[static_cast<std::size_t>(u)];
          const T f = static_cast<T>(inverse ? 1.0 / a : a);
          T* q = p + (o * n + u) * block;
          for (std::int64_t e = 0; e < block; ++e) q[e] *= f;
        }
      }
    });
  };
  for (const UnitSlice& s : layer.incoming) apply(s, false);
  for (const UnitSlice& s : layer.outgoing) apply(s, true);
}

SymmetryResult weight_space_symmetry(nn::Sequential& net, ParameterArena& arena, const Tensor& x, const Tensor& labels,
                                     const SymmetryOptions& options) {
  if (options.trials < 1) throw ShapeError("symmetry: trials must be at least 1, got " + std::to_string(options.trials));
  if (!(options.log_scale > 0.0)) throw ShapeError("symmetry: log_scale must be positive");
  if (!x.defined() || x.dim(0) < 1 || !labels.defined() || labels.dtype() != DType::i32 || labels.ndim() != 1 ||
      labels.dim(0) != x.dim(0) || x.dtype() != arena.dtype()) {
    throw ShapeError("symmetry: needs examples of the parameters' dtype and i32 labels, one per example");
  }
  SymmetryResult r;
  r.trials = options.trials;
  r.layers = find_symmetries(net, arena, &r.skipped);
  for (const SymmetryLayer& l : r.layers) {
    r.log10_equivalent_models += std::lgamma(static_cast<double>(l.units) + 1.0) / std::log(10.0);
    if (l.rescaling) r.rescaling_dimensions += l.units;
  }
  r.loss = mean_loss(net, x, labels, options.chunk);
  const Tensor saved = arena.values().clone();
  double theta_norm = 0.0;
  for (std::int64_t i = 0; i < saved.numel(); ++i) theta_norm += saved.at(i) * saved.at(i);
  theta_norm = std::sqrt(theta_norm);
  auto distance = [&] {
    const Tensor& now = arena.values();
    double d = 0.0;
    dispatch_float(arena.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* a = now.data<T>();
      const T* b = saved.data<T>();
      for (std::int64_t i = 0; i < now.numel(); ++i) d += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    });
    return theta_norm > 0.0 ? std::sqrt(d) / theta_norm : std::sqrt(d);
  };
  auto change = [&] {
    const double l = mean_loss(net, x, labels, options.chunk);
    return std::abs(l - r.loss) / std::max(std::abs(r.loss), 1e-300);
  };
  Rng rng(options.seed);
  bool any_rescaling = false;
  for (const SymmetryLayer& l : r.layers) any_rescaling = any_rescaling || l.rescaling;
  try {
    for (int t = 0; t < options.trials && !r.layers.empty(); ++t) {
      for (const SymmetryLayer& l : r.layers) {
        std::vector<std::int64_t> perm(static_cast<std::size_t>(l.units));
        std::iota(perm.begin(), perm.end(), std::int64_t{0});
        for (std::int64_t k = l.units - 1; k > 0; --k) {
          std::swap(perm[static_cast<std::size_t>(k)], perm[rng.below(static_cast<std::uint64_t>(k + 1))]);
        }
        permute_units(arena, l, perm);
      }
      r.permutation_distance = std::max(r.permutation_distance, distance());
      r.permutation_max_change = std::max(r.permutation_max_change, change());
      arena.values().copy_from(saved);
      if (!any_rescaling) continue;
      for (const SymmetryLayer& l : r.layers) {
        if (!l.rescaling) continue;
        std::vector<double> a(static_cast<std::size_t>(l.units));
        for (double& v : a) v = std::exp(rng.uniform(-options.log_scale, options.log_scale));
        rescale_units(arena, l, a);
      }
      r.rescaling_distance = std::max(r.rescaling_distance, distance());
      r.rescaling_max_change = std::max(r.rescaling_max_change, change());
      arena.values().copy_from(saved);
    }
  } catch (...) {
    arena.values().copy_from(saved);
    throw;
  }
  return r;
}

}  // namespace descent::diag
