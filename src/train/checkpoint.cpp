#include "descent/train/checkpoint.hpp"

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstring>
#include <map>
#include <system_error>

#include "descent/error.hpp"
#include "descent/io/atomic_file.hpp"
#include "descent/io/safetensors.hpp"

namespace descent::train {
namespace {

constexpr const char* kFormat = "descent-checkpoint/1";
constexpr std::size_t kMaxCheckpointBytes = std::size_t{1} << 40;

const char* file_dtype(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::i32: return "I32";
  }
  return "?";
}

std::optional<DType> tensor_dtype(std::string_view name) {
  if (name == "F32") return DType::f32;
  if (name == "F64") return DType::f64;
  if (name == "I32") return DType::i32;
  return std::nullopt;
}

class Crc {
 public:
  void add(const void* data, std::size_t n) {
    const auto* p = static_cast<const Bytef*>(data);
    while (n > 0) {
      const auto chunk = static_cast<uInt>(std::min<std::size_t>(n, UINT_MAX));
      value_ = crc32(value_, p, chunk);
      p += chunk;
      n -= chunk;
    }
  }
  void add(std::string_view text) {
    add(text.data(), text.size());
    add("", 1);  // a separator, so that ("ab", "c") and ("a", "bc") differ
  }
  std::string hex() const {
    char out[9];
    std::snprintf(out, sizeof out, "%08lx", value_ & 0xFFFFFFFFul);
    return out;
  }

 private:
  uLong value_ = crc32(0L, Z_NULL, 0);
};

// The checksum over tensors (name, dtype, shape, bytes) and every metadata entry but
// "checksum" (std::map: sorted by key, the same order on both sides).
std::string checksum(const std::vector<io::TensorView>& tensors, const std::map<std::string, std::string>& metadata) {
  Crc crc;
  for (const io::TensorView& t : tensors) {
    crc.add(t.name);
    crc.add(t.dtype);
    for (const std::int64_t d : t.shape) crc.add(std::to_string(d));
    crc.add(t.data.data(), t.data.size());
  }
  for (const auto& [key, value] : metadata) {
    if (key == "checksum") continue;
    crc.add(key);
    crc.add(value);
  }
  return crc.hex();
}

std::map<std::string, std::string> metadata_of(const Checkpoint& c) {
  return {{"format", kFormat},
          {"step", std::to_string(c.step)},
          {"state", c.state.dump()},
          {"config", c.config_toml}};
}

// The step of a file name step-<digits>.ckpt, or -1.
std::int64_t step_of(const std::string& name) {
  constexpr std::string_view prefix = "step-", suffix = ".ckpt";
  if (name.size() <= prefix.size() + suffix.size() || !name.starts_with(prefix) || !name.ends_with(suffix)) return -1;
  const std::string digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  if (digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return -1;
  }
  return std::stoll(digits);
}

}  // namespace

const Tensor* Checkpoint::find(const std::string& name) const {
  for (const auto& [n, t] : tensors) {
    if (n == name) return &t;
  }
  return nullptr;
}

const Tensor& Checkpoint::tensor(const std::string& name, const Tensor& like, const std::string& source) const {
  const Tensor* t = find(name);
  if (t == nullptr) throw DataError(source + ": tensor '" + name + "' is missing");
  if (t->dtype() != like.dtype() || t->numel() != like.numel()) {
    throw DataError(source + ": tensor '" + name + "' holds " + std::to_string(t->numel()) + " " +
                    dtype_name(t->dtype()) + " values; this run needs " + std::to_string(like.numel()) + " " +
                    dtype_name(like.dtype()) + " (a checkpoint of another model?)");
  }
  return *t;
}

std::string encode_checkpoint(const Checkpoint& c) {
  std::vector<io::TensorView> views;
  views.reserve(c.tensors.size());
  for (const auto& [name, t] : c.tensors) {
    const std::vector<std::int64_t> shape{t.numel()};
    views.push_back(io::TensorView{name, file_dtype(t.dtype()), shape,
                                   std::span<const std::byte>(static_cast<const std::byte*>(t.raw()), t.nbytes())});
  }
  std::map<std::string, std::string> metadata = metadata_of(c);
  metadata["checksum"] = checksum(views, metadata);
  return io::encode_safetensors(views, metadata);
}

Checkpoint decode_checkpoint(std::string_view bytes, const std::string& source) {
  const io::Safetensors file = io::decode_safetensors(bytes, source);
  const auto field = [&](const std::string& key) -> const std::string& {
    const auto it = file.metadata.find(key);
    if (it == file.metadata.end()) throw DataError(source + ": not a descent checkpoint (no \"" + key + "\" metadata)");
    return it->second;
  };
  if (field("format") != kFormat) {
    throw DataError(source + ": format \"" + printable_excerpt(field("format"), 64) + "\", expected \"" + kFormat + "\"");
  }
  std::vector<io::TensorView> views;
  for (const io::TensorData& t : file.tensors) {
    views.push_back(io::TensorView{t.name, t.dtype, t.shape, std::span<const std::byte>(t.data)});
  }
  const std::string& stored = field("checksum");
  const std::string computed = checksum(views, file.metadata);
  if (stored != computed) {
    throw DataError(source + ": checksum mismatch (stored " + printable_excerpt(stored, 16) + ", computed " + computed +
                    "): the file is damaged");
  }
  Checkpoint c;
  const std::string& step = field("step");
  if (step.empty() || step.size() > 18 || !std::all_of(step.begin(), step.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
    throw DataError(source + ": \"step\" is not a non-negative integer");
  }
  c.step = std::stoll(step);
  c.state = nlohmann::json::parse(field("state"), nullptr, false);
  if (!c.state.is_object()) throw DataError(source + ": \"state\" is not a JSON object");
  c.config_toml = field("config");
  for (const io::TensorData& t : file.tensors) {
    const std::optional<DType> dtype = tensor_dtype(t.dtype);
    if (!dtype || t.shape.size() != 1) {
      throw DataError(source + ": tensor '" + printable_excerpt(t.name, 64) + "' is not a flat F32, F64 or I32 array");
    }
    Tensor value = Tensor::empty({t.shape[0]}, *dtype);
    if (!t.data.empty()) std::memcpy(value.raw(), t.data.data(), t.data.size());
    c.tensors.emplace_back(t.name, std::move(value));
  }
  return c;
}

std::string checkpoint_file_name(std::int64_t step) {
  char name[40];
  std::snprintf(name, sizeof name, "step-%012lld.ckpt", static_cast<long long>(step));
  return name;
}

std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) return {};
  std::vector<std::pair<std::int64_t, std::filesystem::path>> found;
  std::filesystem::directory_iterator it(dir, ec);
  if (ec) throw IoError(dir.string() + ": cannot list the checkpoints: " + ec.message());
  for (const auto& entry : it) {
    const std::int64_t step = step_of(entry.path().filename().string());
    if (step >= 0) found.emplace_back(step, entry.path());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::filesystem::path> paths;
  for (auto& [step, path] : found) paths.push_back(std::move(path));
  return paths;
}

std::filesystem::path write_checkpoint(const std::filesystem::path& dir, const Checkpoint& checkpoint, std::int64_t keep) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw IoError(dir.string() + ": cannot create the checkpoint folder: " + ec.message());
  const std::filesystem::path path = dir / checkpoint_file_name(checkpoint.step);
  io::write_file_atomic(path, encode_checkpoint(checkpoint));
  std::vector<std::filesystem::path> all = list_checkpoints(dir);
  const auto excess = static_cast<std::int64_t>(all.size()) - std::max<std::int64_t>(1, keep);
  for (std::int64_t i = 0; i < excess; ++i) {
    if (all[static_cast<std::size_t>(i)] == path) continue;
    std::filesystem::remove(all[static_cast<std::size_t>(i)], ec);  // best effort: a leftover is harmless
  }
  return path;
}

std::optional<Checkpoint> load_latest_checkpoint(const std::filesystem::path& dir, std::vector<std::string>* warnings,
                                                 std::filesystem::path* path, std::optional<std::int64_t> before) {
  const std::vector<std::filesystem::path> all = list_checkpoints(dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    // The names hold the step in 12 zero-padded digits: they sort as the steps do.
    if (before && it->filename().string() >= checkpoint_file_name(*before)) continue;
    try {
      Checkpoint c = decode_checkpoint(io::read_file(*it, kMaxCheckpointBytes), it->string());
      if (path != nullptr) *path = *it;
      return c;
    } catch (const Error& e) {
      if (warnings != nullptr) warnings->push_back(std::string("skipping checkpoint ") + e.what());
    }
  }
  return std::nullopt;
}

}  // namespace descent::train
