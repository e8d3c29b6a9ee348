#include "mixed_precision.hpp"

#include <string>

#include "descent/error.hpp"

namespace descent::train {

std::unique_ptr<precision::Scope> enter_precision(const TrainConfig& config) {
  if (config.model.dtype != "bf16") return nullptr;
  const bool native = precision::cpu_has_bf16();
  if (!native && !config.model.bf16_emulate) {
    const std::string where = config.source.empty() ? "" : config.source + ": ";
    throw ConfigError(where + "model.dtype = \"bf16\": this CPU has no bf16 matrix instructions (oneDNN "
                      "runs " + precision::cpu_isa_name() + "; needs AVX512-BF16 or AMX-BF16); set "
                      "model.bf16_emulate = true to run emulated (slower than f32), or use model.dtype = \"f32\"");
  }
  return std::make_unique<precision::Scope>(precision::Products::bf16, !native);
}

kernels::bf16::Buffer* batch_bf16(const data::Split& split, std::int64_t rows, bool in_pieces,
                                  kernels::bf16::Buffer& buffer) {
  if (in_pieces || precision::products() != precision::Products::bf16) return nullptr;
  if ((split.x.defined() ? split.x.dtype() : split.dtype) != DType::f32) return nullptr;
  buffer.resize(rows * split.dim());
  return &buffer;
}

}  // namespace descent::train
