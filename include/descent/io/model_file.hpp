#pragma once
// A model's parameters as a safetensors file: one tensor per parameter, named as in the
// arena ("layers.0.weight"), F32 or F64, so PyTorch's safetensors.torch.load_file reads it.
// The arena's buffers (running statistics, "layers.1.running_mean") are written after the
// parameters, as tensors named the same way.
#include <filesystem>
#include <map>
#include <string>

#include "descent/tensor/arena.hpp"

namespace descent::io {

// Writes arena.values() (or `values`, a flat vector of the arena's layout) and
// arena.buffers() atomically.
void save_parameters(const std::filesystem::path& path, ParameterArena& arena,
                     const std::map<std::string, std::string>& metadata = {});
void save_parameters(const std::filesystem::path& path, ParameterArena& arena, const Tensor& values,
                     const std::map<std::string, std::string>& metadata = {});

// Reads every parameter and every buffer of `arena` from the file: each name must be
// present with the same shape and dtype, and the file must hold no other tensor. Throws
// DataError naming the file and the parameter or buffer otherwise; the arena is unchanged
// on error. Returns the metadata.
std::map<std::string, std::string> load_parameters(const std::filesystem::path& path, ParameterArena& arena);

}  // namespace descent::io
