#include "descent/nn/initialize.hpp"

#include <algorithm>

namespace descent::nn {

void initialize(ParameterArena& arena, const InitSpec& spec) {
  Rng rng(spec.seed);
  arena.reset_buffers();
  std::size_t last_weight = arena.count();
  for (std::size_t i = 0; i < arena.count(); ++i) {
    const ParamId id{static_cast<std::int32_t>(i)};
    const ParamEntry& e = arena.entry(id);
    Tensor t = arena.value(id);
    if (e.info.role == ParamRole::bias) {
      t.fill(spec.bias);
      continue;
    }
    if (e.info.role == ParamRole::scale || e.info.role == ParamRole::shift) {
      t.fill(e.info.role == ParamRole::scale ? 1.0 : 0.0);
      continue;
    }
    // The weight is drawn as a (units x incoming) matrix: a Linear weight [out, in] as it is,
    // a conv kernel [C_out, C_in, k, k] as [C_out, C_in k^2] (fan_in = C_in k^2, fan_out =
    // C_out: so Glorot on a conv uses C_out, not PyTorch's C_out k^2, in its denominator).
    last_weight = i;
    const std::int64_t fan_in = e.info.fan_in > 0 ? e.info.fan_in : (e.shape.ndim() >= 2 ? t.numel() / e.shape[0] : 1);
    const std::int64_t fan_out = t.numel() / std::max<std::int64_t>(fan_in, 1);
    dispatch_float(t.dtype(), [&](auto zero) {
      using T = decltype(zero);
      init::initialize<T>(t.span<T>(), fan_in, fan_out, spec.weights, spec.options, rng);
    });
  }
  if (spec.output_gain != 1.0 && last_weight < arena.count()) {
    Tensor t = arena.value(ParamId{static_cast<std::int32_t>(last_weight)});
    dispatch_float(t.dtype(), [&](auto zero) {
      using T = decltype(zero);
      for (T& w : t.span<T>()) w = static_cast<T>(static_cast<double>(w) * spec.output_gain);
    });
  }
}

}  // namespace descent::nn
