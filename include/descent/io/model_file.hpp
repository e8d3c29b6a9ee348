#pragma once
// A model's parameters as a safetensors file: one tensor per parameter, named as in the
// arena ("layers.0.weight"), F32 or F64, so PyTorch's safetensors.torch.load_file reads it.
// The arena's buffers (running statistics, "layers.1.running_mean") are written after the
// parameters, as tensors named the same way. The metadata (string to string) is the caller's;
// the trainer writes what is needed to use the weights elsewhere (train/model_card.hpp,
// docs/model-file.md).
#include <filesystem>
#include <map>
#include <string>

#include "descent/io/safetensors.hpp"
#include "descent/tensor/arena.hpp"

namespace descent::io {

// Writes arena.values() (or `values`, a flat vector of the arena's layout) and
// arena.buffers() atomically.
void save_parameters(const std::filesystem::path& path, ParameterArena& arena,
                     const std::map<std::string, std::string>& metadata = {});
void save_parameters(const std::filesystem::path& path, ParameterArena& arena, const Tensor& values,
                     const std::map<std::string, std::string>& metadata = {});

struct LoadOptions {
  // How messages name the model loaded into, e.g. "the model of this config (exp.toml)".
  std::string model = "the model";
};

// Reads every parameter and every buffer of `arena` from the file: each name must be present
// with the same shape, and the file must hold no other tensor. F32 and F64 tensors are
// converted to the arena's dtype (F64 to F32 rounds to nearest). Returns the metadata.
// Throws DataError naming the file, the arena unchanged:
//   "<file>: not a safetensors file (...)" when its first bytes are not those of one (a TOML
//   or text file); "<file>: a descent checkpoint (...), not model weights" for a checkpoint
//   (train/checkpoint.hpp); "<file>: the weights do not match <options.model>: ..." with the
//   first parameter or buffer, in the arena's order, that is missing or of another shape
//   (both shapes), else the first tensor of the file the model lacks; a tensor of another
//   dtype than F32 or F64. IoError when the file cannot be read; the reader's DataError when
//   it is a damaged safetensors file.
std::map<std::string, std::string> load_parameters(const std::filesystem::path& path, ParameterArena& arena,
                                                   const LoadOptions& options = {});

// The same from tensors already read; `where` starts every message.
void load_parameters(const Safetensors& file, const std::string& where, ParameterArena& arena,
                     const LoadOptions& options = {});

// read_safetensors, except that a file whose first bytes cannot start a safetensors file (an
// 8-byte length, then '{') is "<file>: not a safetensors file (...)".
Safetensors read_model_file(const std::filesystem::path& path);

// Whether the file is a descent checkpoint: metadata "format" is "descent-checkpoint/<n>".
bool is_checkpoint(const Safetensors& file);

}  // namespace descent::io
