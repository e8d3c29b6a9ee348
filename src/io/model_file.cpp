#include "descent/io/model_file.hpp"

#include <cstring>
#include <vector>

#include "descent/error.hpp"
#include "descent/io/safetensors.hpp"

namespace descent::io {
namespace {
const char* safetensors_dtype(DType t) { return t == DType::f64 ? "F64" : "F32"; }
}  // namespace

void save_parameters(const std::filesystem::path& path, ParameterArena& arena,
                     const std::map<std::string, std::string>& metadata) {
  save_parameters(path, arena, arena.values(), metadata);
}

void save_parameters(const std::filesystem::path& path, ParameterArena& arena, const Tensor& values,
                     const std::map<std::string, std::string>& metadata) {
  std::vector<TensorView> views;
  for (std::size_t i = 0; i < arena.count(); ++i) {
    const ParamId id{static_cast<std::int32_t>(i)};
    const ParamEntry& e = arena.entry(id);
    Tensor t = arena.slice(values, id);
    views.push_back(TensorView{e.name, safetensors_dtype(arena.dtype()),
                               std::vector<std::int64_t>(e.shape.dims().begin(), e.shape.dims().end()),
                               std::span<const std::byte>(static_cast<const std::byte*>(t.raw()), t.nbytes())});
  }
  write_safetensors(path, views, metadata);
}

std::map<std::string, std::string> load_parameters(const std::filesystem::path& path, ParameterArena& arena) {
  const Safetensors file = read_safetensors(path);
  const std::string where = path.string();
  const char* dtype = safetensors_dtype(arena.dtype());
  for (const TensorData& t : file.tensors) {
    if (!arena.find(t.name).valid()) {
      throw DataError(where + ": tensor '" + t.name + "' is not a parameter of this model");
    }
  }
  for (std::size_t i = 0; i < arena.count(); ++i) {
    const ParamEntry& e = arena.entry(ParamId{static_cast<std::int32_t>(i)});
    const TensorData* t = file.find(e.name);
    if (t == nullptr) throw DataError(where + ": parameter '" + e.name + "' is missing");
    if (t->dtype != dtype) {
      throw DataError(where + ": parameter '" + e.name + "' has dtype " + t->dtype + ", the model expects " + dtype);
    }
    if (!(Shape(std::span<const std::int64_t>(t->shape)) == e.shape)) {
      throw DataError(where + ": parameter '" + e.name + "' has shape " + Shape(std::span<const std::int64_t>(t->shape)).str() +
                      ", the model expects " + e.shape.str());
    }
  }
  for (std::size_t i = 0; i < arena.count(); ++i) {
    const ParamId id{static_cast<std::int32_t>(i)};
    const TensorData* t = file.find(arena.entry(id).name);
    Tensor dst = arena.value(id);
    std::memcpy(dst.raw(), t->data.data(), dst.nbytes());
  }
  return file.metadata;
}

}  // namespace descent::io
