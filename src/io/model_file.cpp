#include "descent/io/model_file.hpp"

#include <cstring>
#include <fstream>
#include <vector>

#include "descent/error.hpp"

namespace descent::io {
namespace {
const char* safetensors_dtype(DType t) { return t == DType::f64 ? "F64" : "F32"; }

TensorView view_of(const std::string& name, const Shape& shape, DType dtype, const Tensor& t) {
  return TensorView{name, safetensors_dtype(dtype), std::vector<std::int64_t>(shape.dims().begin(), shape.dims().end()),
                    std::span<const std::byte>(static_cast<const std::byte*>(t.raw()), t.nbytes())};
}

std::string shape_text(const std::vector<std::int64_t>& dims) {
  return Shape(std::span<const std::int64_t>(dims)).str();
}

// How the file's tensor for a parameter or buffer (`what`) of the model differs from it: ""
// when it is there with the same shape and dtype F32 or F64.
std::string difference(const TensorData* t, const char* what, const std::string& name, const Shape& shape) {
  if (t == nullptr) return std::string(what) + " '" + name + "' " + shape.str() + " of the model is not in the file";
  if (!(Shape(std::span<const std::int64_t>(t->shape)) == shape)) {
    return std::string(what) + " '" + name + "' is " + shape_text(t->shape) + " in the file, " + shape.str() +
           " in the model";
  }
  if (t->dtype != "F32" && t->dtype != "F64") {
    return std::string(what) + " '" + name + "' has dtype " + t->dtype + "; descent reads F32 and F64";
  }
  return "";
}

// Copies a tensor's F32 or F64 bytes into `dst`, converting to dst's dtype.
void copy_converted(const TensorData& src, Tensor dst) {
  const std::size_t n = static_cast<std::size_t>(dst.numel());
  if (n == 0) return;
  if (src.dtype == safetensors_dtype(dst.dtype())) {
    std::memcpy(dst.raw(), src.data.data(), dst.nbytes());
    return;
  }
  dispatch_float(dst.dtype(), [&](auto zero) {
    using To = decltype(zero);
    To* out = dst.data<To>();
    const auto convert = [&](auto from) {
      using From = decltype(from);
      for (std::size_t i = 0; i < n; ++i) {
        From v;
        std::memcpy(&v, src.data.data() + i * sizeof(From), sizeof(From));
        out[i] = static_cast<To>(v);
      }
    };
    if (src.dtype == "F64") {
      convert(double{});
    } else {
      convert(float{});
    }
  });
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

Safetensors read_model_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw IoError(path.string() + ": a folder, not a file; descent reads the model.safetensors of a run folder");
  }
  std::ifstream in(path, std::ios::binary);
  if (in) {  // unreadable or missing: read_safetensors says so
    char head[9] = {};
    in.read(head, sizeof head);
    const std::streamsize got = in.gcount();
    if (got < 9 || head[8] != '{') {
      throw DataError(path.string() + ": not a safetensors file (" +
                      (got < 9 ? std::to_string(got) + " bytes"
                               : std::string("its first 8 bytes are no header length followed by '{'")) +
                      "); descent reads the model.safetensors of a run folder");
    }
  }
  return read_safetensors(path);
}

bool is_checkpoint(const Safetensors& file) {
  const auto format = file.metadata.find("format");
  return format != file.metadata.end() && format->second.rfind("descent-checkpoint/", 0) == 0;
}

void load_parameters(const Safetensors& file, const std::string& where, ParameterArena& arena,
                     const LoadOptions& options) {
  if (is_checkpoint(file)) {
    throw DataError(where + ": a descent checkpoint (the training state of a run), not model weights; "
                            "descent eval reads it, or use the run folder's model.safetensors");
  }
  const auto mismatch = [&](const std::string& detail) {
    std::string message = where + ": the weights do not match " + options.model + ": " + detail;
    if (const auto m = file.metadata.find("model"); m != file.metadata.end()) {
      message += "; the file's model: " + printable_excerpt(m->second, 160);
    }
    return DataError(message);
  };
  // Validate everything before copying anything: the arena is unchanged on error.
  std::vector<const TensorData*> params, buffers;
  for (const ParamEntry& e : arena.entries()) {
    params.push_back(file.find(e.name));
    if (std::string d = difference(params.back(), "parameter", e.name, e.shape); !d.empty()) throw mismatch(d);
  }
  for (const BufferEntry& e : arena.buffer_entries()) {
    buffers.push_back(file.find(e.name));
    if (std::string d = difference(buffers.back(), "buffer", e.name, e.shape); !d.empty()) throw mismatch(d);
  }
  for (const TensorData& t : file.tensors) {
    if (!arena.find(t.name).valid() && !arena.find_buffer(t.name).valid()) {
      throw mismatch("the file holds '" + printable_excerpt(t.name, 120) + "' " + shape_text(t.shape) +
                     ", which the model lacks");
    }
  }
  for (std::size_t i = 0; i < params.size(); ++i) copy_converted(*params[i], arena.value(ParamId{static_cast<std::int32_t>(i)}));
  for (std::size_t i = 0; i < buffers.size(); ++i) {
    copy_converted(*buffers[i], arena.buffer(BufferId{static_cast<std::int32_t>(i)}));
  }
}

std::map<std::string, std::string> load_parameters(const std::filesystem::path& path, ParameterArena& arena,
                                                   const LoadOptions& options) {
  const Safetensors file = read_model_file(path);
  load_parameters(file, path.string(), arena, options);
  return file.metadata;
}

}  // namespace descent::io
