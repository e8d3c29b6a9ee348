#pragma once
// The safetensors file format (weights exchange with PyTorch, JAX, NumPy via Hugging Face).
//
// Reference: https://github.com/huggingface/safetensors, README section "Format".
//
// Layout: an 8-byte little-endian uint64 N, then N bytes of UTF-8 JSON (the header), then the
// data section. The header is one JSON object mapping each tensor name to
//   {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}
// with byte offsets relative to the start of the data section, plus an optional
// "__metadata__" object whose values are all strings. The header starts with '{' and may be
// padded with trailing spaces. The tensors tile the data section exactly: sorted by offset,
// each begins where the previous one ends, the first at 0 and the last at the end of the file;
// end - begin == product(shape) * dtype size. Data is little-endian, row-major. A shape []
// is a scalar (one element); a shape with a 0 dimension holds no bytes.
//
// Data bytes are copied verbatim in both directions: on a little-endian host (every platform
// descent targets) they are the native representation of the values.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace descent::io {

// A tensor to write: `data` must hold exactly product(shape) * dtype_size(dtype) bytes.
struct TensorView {
  std::string name;
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::span<const std::byte> data;
};

// A tensor read from a file, owning its bytes.
struct TensorData {
  std::string name;
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::vector<std::byte> data;
};

struct Safetensors {
  // In the order of their data offsets (for files written by write_safetensors, the order in
  // which they were given).
  std::vector<TensorData> tensors;
  std::map<std::string, std::string> metadata;

  // The tensor called `name`, or nullptr. Cost: O(number of tensors).
  const TensorData* find(std::string_view name) const;
};

// Bytes per element of a safetensors dtype: BOOL, U8, I8, F8_E4M3, F8_E5M2 (1), U16, I16, F16,
// BF16 (2), U32, I32, F32 (4), U64, I64, F64 (8). Throws DataError for any other string.
std::size_t dtype_size(std::string_view dtype);

// The complete file content for `tensors` (data in the given order, contiguous from offset 0)
// and `metadata`. The header lists "__metadata__" first, then the tensors in the given order,
// and is padded with spaces to a multiple of 8 bytes so that the data section is 8-aligned.
// Throws ShapeError for an unknown dtype, a negative dimension, a shape whose byte count
// overflows, or data whose size differs from product(shape) * dtype size; DataError for a
// duplicate tensor name, the reserved name "__metadata__", or a name or metadata string that
// is not valid UTF-8. Messages name the tensor. Cost: O(total bytes).
std::string encode_safetensors(std::span<const TensorView> tensors,
                               const std::map<std::string, std::string>& metadata = {});

// Writes encode_safetensors(tensors, metadata) to `path` with write_file_atomic. Throws as
// encode_safetensors (messages also name `path`) and IoError as write_file_atomic.
void write_safetensors(const std::filesystem::path& path, std::span<const TensorView> tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Decodes a complete safetensors file held in memory; `source_name` starts every message.
//
// Strict validation, all before any tensor is allocated: at least 8 bytes; N at most the bytes
// that follow and at most 100 MiB; the header is valid UTF-8 JSON, an object starting with '{',
// with no duplicate keys at any level; every entry is an object with exactly the keys dtype
// (a known dtype string), shape (an array of non-negative integers whose byte count does not
// overflow) and data_offsets (two non-negative integers, begin <= end, end - begin equal to
// the byte count); "__metadata__" is an object of strings; the tensors tile the data section
// with no gap, overlap or trailing byte. Throws DataError naming `source_name`, the tensor and
// the field. Cost: O(header + data) time, O(data) memory.
Safetensors decode_safetensors(std::string_view bytes, const std::string& source_name);

// Reads and validates a safetensors file as decode_safetensors does. The header is read and
// validated first (N checked against the file size before it is read), then each tensor's
// bytes are read straight into its buffer. Throws IoError naming `path` if the file is missing,
// unreadable or shrinks while being read, DataError naming `path` if it is malformed.
Safetensors read_safetensors(const std::filesystem::path& path);

}  // namespace descent::io
