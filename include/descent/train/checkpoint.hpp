#pragma once
// Checkpoint files: the whole state of a training run, so that `descent resume` continues it
// exactly (docs/reliability.md).
//
// A checkpoint is a safetensors file (io/safetensors.hpp) named step-<k>.ckpt, k the number of
// updates done, zero-padded to 12 digits so that names sort by step. It holds
//   tensors    named arrays (parameters, best parameters, buffers, optimizer state), each
//              F32, F64 or I32 as the tensor's dtype;
//   metadata   "format": "descent-checkpoint/1", "step": k, "state": a JSON object (the
//              trainer's counters, sampler and RNG states, early stopping, metrics offset),
//              "config": the resolved config as TOML, and "checksum": the CRC-32 (zlib)
//              of everything else, as 8 hex digits.
// The checksum covers each tensor's name, dtype, shape and bytes, then each other metadata
// key and value, so a file damaged anywhere that still parses is refused as well. Files are
// written with io::write_file_atomic (temporary file, fsync, rename, directory fsync):
// a crash leaves the previous checkpoints intact and never a half-written one under the name.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "descent/tensor/tensor.hpp"

namespace descent::train {

struct Checkpoint {
  std::int64_t step = 0;
  nlohmann::json state = nlohmann::json::object();
  std::string config_toml;
  std::vector<std::pair<std::string, Tensor>> tensors;  // names unique

  // The tensor called `name`. Throws DataError naming `source` when it is missing or its
  // dtype or element count differ from `like`'s.
  const Tensor& tensor(const std::string& name, const Tensor& like, const std::string& source) const;
  const Tensor* find(const std::string& name) const;
};

// The file content, checksum included. Throws ShapeError for a tensor of a dtype a checkpoint
// cannot hold (only f32, f64, i32). Cost: O(total bytes).
std::string encode_checkpoint(const Checkpoint& checkpoint);

// Decodes and verifies a checkpoint held in memory; `source` starts every message. Throws
// DataError for a malformed file, a wrong format tag, a missing or malformed field, or a
// checksum that does not match ("checksum mismatch: the file is damaged").
Checkpoint decode_checkpoint(std::string_view bytes, const std::string& source);

// The file name of the checkpoint after `step` updates: "step-000000001234.ckpt".
std::string checkpoint_file_name(std::int64_t step);

// The checkpoint files of `dir` (names step-<digits>.ckpt), oldest first. A missing
// directory has none. Throws IoError when the directory cannot be listed.
std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& dir);

// Writes `checkpoint` into `dir` (created if missing) atomically, then removes the oldest
// checkpoints beyond the newest `keep`. Returns the path written. Throws IoError naming the
// file when the directory cannot be made or the write fails (disk full, unwritable): the
// checkpoints already there are untouched then.
std::filesystem::path write_checkpoint(const std::filesystem::path& dir, const Checkpoint& checkpoint,
                                       std::int64_t keep);

// The newest checkpoint of `dir` that reads and verifies; damaged or unreadable newer ones are
// skipped, each with a line in `warnings` (when given) naming the file and the problem.
// nullopt when there is none. `path` (when given) receives the file it was read from. With
// `before`, only the checkpoints of fewer than `before` updates count (a rollback that must
// go back past a checkpoint it diverged from).
std::optional<Checkpoint> load_latest_checkpoint(const std::filesystem::path& dir,
                                                 std::vector<std::string>* warnings = nullptr,
                                                 std::filesystem::path* path = nullptr,
                                                 std::optional<std::int64_t> before = std::nullopt);

}  // namespace descent::train
