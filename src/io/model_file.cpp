#include "descent/io/model_file.hpp"

#include <cstring>
#include <vector>

#include "descent/error.hpp"
#include "descent/io/safetensors.hpp"

namespace descent::io {
namespace {
const char* safetensors_dtype(DType t) { return t == DType::f64 ? "F64" : "F32"; }

TensorView view_of(const std::string& name, const Shape& shape, DType dtype, const Tensor& t) {
  return TensorView{name, safetensors_dtype(dtype), std::vector<std::int64_t>(shape.dims().begin(), shape.dims().end()),
                    std::span<const std::byte>(static_cast<const std::byte*>(t.raw()), t.nbytes())};
}

// Throws unless the file holds `name` (a parameter or buffer, `what`) with this shape and dtype.
const TensorData& expect_tensor(const Safetensors& file, const std::string& where, const char* what,
                                const std::string& name, const Shape& shape, const char* dtype) {
  const TensorData* t = file.find(name);
  if (t == nullptr) throw DataError(where + ": " + what + " '" + name + "' is missing");
  if (t->dtype != dtype) {
    throw DataError(where + ": " + what + " '" + name + "' has dtype " + t->dtype + ", the model expects " + dtype);
  }
  if (!(Shape(std::span<const std::int64_t>(t->shape)) == shape)) {
    throw DataError(where + ": " + what + " '" + name + "' has shape " + Shape(std::span<const std::int64_t>(t->shape)).str() +
                    ", the model expects " + shape.str());
  }
  return *t;
}
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
    views.push_back(view_of(e.name, e.shape, arena.dtype(), arena.slice(values, id)));
  }
  for (std::size_t i = 0; i < arena.buffer_count(); ++i) {
    const BufferId id{static_cast<std::int32_t>(i)};
    const BufferEntry& e = arena.buffer_entry(id);
    views.push_back(view_of(e.name, e.shape, arena.dtype(), arena.buffer(id)));
  }
  write_safetensors(path, views, metadata);
}

std::map<std::string, std::string> load_parameters(const std::filesystem::path& path, ParameterArena& arena) {
  const Safetensors file = read_safetensors(path);
  const std::string where = path.string();
  const char* dtype = safetensors_dtype(arena.dtype());
  for (const TensorData& t : file.tensors) {
    if (!arena.find(t.name).valid() && !arena.find_buffer(t.name).valid()) {
      throw DataError(where + ": tensor '" + t.name + "' is neither a parameter nor a buffer of this model");
    }
  }
  std::vector<const TensorData*> params, buffers;
  for (const ParamEntry& e : arena.entries()) {
    params.push_back(&expect_tensor(file, where, "parameter", e.name, e.shape, dtype));
  }
  for (const BufferEntry& e : arena.buffer_entries()) {
    buffers.push_back(&expect_tensor(file, where, "buffer", e.name, e.shape, dtype));
  }
  for (std::size_t i = 0; i < params.size(); ++i) {
    Tensor dst = arena.value(ParamId{static_cast<std::int32_t>(i)});
    if (dst.nbytes() > 0) std::memcpy(dst.raw(), params[i]->data.data(), dst.nbytes());
  }
  for (std::size_t i = 0; i < buffers.size(); ++i) {
    Tensor dst = arena.buffer(BufferId{static_cast<std::int32_t>(i)});
    if (dst.nbytes() > 0) std::memcpy(dst.raw(), buffers[i]->data.data(), dst.nbytes());
  }
  return file.metadata;
}

}  // namespace descent::io
