#pragma once
// A dense row-major float32 array as read from a data file (IDX, NPY, CSV), with its shape.
//
// The readers convert every supported element type to float32 and guarantee that
// values.size() equals the product of shape, and that every value is finite.
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace descent::data {

struct Array {
  std::vector<std::int64_t> shape;  // e.g. {60000, 28, 28}
  std::vector<float> values;        // row-major (C order), product(shape) elements

  // Size of the first dimension (the number of examples); 0 for an array with no dimensions.
  std::int64_t rows() const { return shape.empty() ? 0 : shape.front(); }

  // Elements per row: the product of all dimensions after the first (1 for a 1-D array).
  std::int64_t row_size() const {
    std::int64_t size = 1;
    for (std::size_t i = 1; i < shape.size(); ++i) size *= shape[i];
    return size;
  }
};

// An array of unsigned bytes kept as they are (an IDX ubyte file: images): a quarter of the
// memory of the float Array, for data that a trainer converts per batch.
struct ByteArray {
  std::vector<std::int64_t> shape;
  std::vector<std::uint8_t> values;  // row-major, product(shape) elements
  std::int64_t rows() const { return shape.empty() ? 0 : shape.front(); }
  std::int64_t row_size() const {
    std::int64_t size = 1;
    for (std::size_t i = 1; i < shape.size(); ++i) size *= shape[i];
    return size;
  }
};

// The product of non-negative factors, or nullopt if it overflows int64 (used to check the
// element and byte counts a file header claims before anything is allocated).
inline std::optional<std::int64_t> checked_product(const std::vector<std::int64_t>& factors) {
  std::int64_t product = 1;
  for (const std::int64_t factor : factors) {
    if (factor < 0) return std::nullopt;
    if (factor != 0 && product > std::numeric_limits<std::int64_t>::max() / factor) {
      return std::nullopt;
    }
    product *= factor;
  }
  return product;
}

// The shape written as "60000x28x28" ("scalar" when empty), for messages.
inline std::string shape_string(const std::vector<std::int64_t>& shape) {
  if (shape.empty()) return "scalar";
  std::string text;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text += 'x';
    text += std::to_string(shape[i]);
  }
  return text;
}

}  // namespace descent::data
