#include "descent/data/idx.hpp"

#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <sstream>
#include <system_error>

#include "descent/error.hpp"

namespace descent::data {
namespace {

// deflate cannot expand its input by more than 1032:1 (zlib FAQ); the slack covers the
// gzip header and tiny files.
constexpr std::int64_t max_deflate_ratio = 1032;
constexpr std::int64_t deflate_slack_bytes = 4096;

struct ElementType {
  unsigned char code;
  const char* name;
  std::int64_t size;
};

constexpr ElementType element_types[] = {
    {0x08, "ubyte", 1}, {0x09, "sbyte", 1},   {0x0B, "int16", 2},
    {0x0C, "int32", 4}, {0x0D, "float32", 4}, {0x0E, "float64", 8},
};

std::string hex_byte(unsigned value) {
  static constexpr char digits[] = "0123456789abcdef";
  return std::string{digits[(value >> 4) & 0xF], digits[value & 0xF]};
}

struct GzCloser {
  void operator()(gzFile_s* file) const { gzclose(file); }
};
using GzHandle = std::unique_ptr<gzFile_s, GzCloser>;

// Reads up to `count` bytes (fewer only at the end of the stream). Decompression errors
// (corrupt or truncated gzip data, bad CRC) are DataError, read failures IoError.
std::size_t read_up_to(gzFile file, unsigned char* destination, std::size_t count,
                       const std::string& name) {
  constexpr std::size_t max_chunk = std::size_t{1} << 30;
  std::size_t total = 0;
  while (total < count) {
    const auto chunk = static_cast<unsigned>(std::min(count - total, max_chunk));
    const int got = gzread(file, destination + total, chunk);
    if (got < 0) {
      int code = Z_OK;
      const char* message = gzerror(file, &code);
      if (code == Z_ERRNO) throw IoError(name + ": read failed: " + std::strerror(errno));
      throw DataError(name + ": corrupt or truncated gzip data: " + message);
    }
    if (got == 0) {
      // A stream that ends mid-member reads as end of file with Z_BUF_ERROR pending.
      int code = Z_OK;
      const char* message = gzerror(file, &code);
      if (code == Z_BUF_ERROR) throw DataError(name + ": truncated gzip data: " + message);
      break;
    }
    total += static_cast<std::size_t>(got);
  }
  return total;
}

std::uint32_t big_endian_u32(const unsigned char* bytes) {
  return (std::uint32_t{bytes[0]} << 24) | (std::uint32_t{bytes[1]} << 16) |
         (std::uint32_t{bytes[2]} << 8) | std::uint32_t{bytes[3]};
}

std::uint64_t big_endian_u64(const unsigned char* bytes) {
  return (std::uint64_t{big_endian_u32(bytes)} << 32) | big_endian_u32(bytes + 4);
}

void check_finite(float value, std::size_t index, const std::string& name) {
  if (!std::isfinite(value)) {
    std::ostringstream message;
    message << name << ": element " << index << " is " << value << ", expected a finite number";
    throw DataError(message.str());
  }
}

std::vector<float> convert(const std::vector<unsigned char>& bytes, const ElementType& type,
                           std::size_t count, const std::string& name) {
  std::vector<float> values(count);
  const unsigned char* data = bytes.data();
  switch (type.code) {
    case 0x08:
      for (std::size_t i = 0; i < count; ++i) values[i] = static_cast<float>(data[i]);
      break;
    case 0x09:
      for (std::size_t i = 0; i < count; ++i) {
        values[i] = static_cast<float>(static_cast<std::int8_t>(data[i]));
      }
      break;
    case 0x0B:
      for (std::size_t i = 0; i < count; ++i) {
        const auto bits = static_cast<std::uint16_t>((data[2 * i] << 8) | data[2 * i + 1]);
        values[i] = static_cast<float>(static_cast<std::int16_t>(bits));
      }
      break;
    case 0x0C:
      for (std::size_t i = 0; i < count; ++i) {
        values[i] = static_cast<float>(static_cast<std::int32_t>(big_endian_u32(data + 4 * i)));
      }
      break;
    case 0x0D:
      for (std::size_t i = 0; i < count; ++i) {
        values[i] = std::bit_cast<float>(big_endian_u32(data + 4 * i));
        check_finite(values[i], i, name);
      }
      break;
    case 0x0E:
      for (std::size_t i = 0; i < count; ++i) {
        const double value = std::bit_cast<double>(big_endian_u64(data + 8 * i));
        if (std::isfinite(value) && std::abs(value) > std::numeric_limits<float>::max()) {
          std::ostringstream message;
          message << name << ": element " << i << " is " << value << ", outside the float32 range";
          throw DataError(message.str());
        }
        values[i] = static_cast<float>(value);
        check_finite(values[i], i, name);
      }
      break;
    default:
      break;
  }
  return values;
}

}  // namespace

Array read_idx(const std::filesystem::path& path) {
  const std::string name = path.string();
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error)) {
    throw IoError(name + ": cannot open: no such regular file");
  }
  const auto file_size = std::filesystem::file_size(path, error);
  if (error) throw IoError(name + ": cannot determine file size: " + error.message());
  GzHandle file(gzopen(path.c_str(), "rb"));
  if (!file) throw IoError(name + ": cannot open: " + std::strerror(errno));
  gzbuffer(file.get(), 1 << 17);

  unsigned char magic[4] = {};
  const std::size_t magic_read = read_up_to(file.get(), magic, 4, name);
  const bool compressed = gzdirect(file.get()) == 0;
  const std::string where = compressed ? " (after gzip decompression)" : "";
  if (magic_read < 4) {
    throw DataError(name + ": truncated header: expected 4 magic bytes, file holds " +
                    std::to_string(magic_read) + where);
  }
  if (magic[0] != 0 || magic[1] != 0) {
    throw DataError(name + ": bad magic " + hex_byte(magic[0]) + " " + hex_byte(magic[1]) + " " +
                    hex_byte(magic[2]) + " " + hex_byte(magic[3]) +
                    ", expected 00 00 TYPE NDIM (an IDX file)");
  }
  const auto type_it = std::find_if(std::begin(element_types), std::end(element_types),
                                    [&](const ElementType& t) { return t.code == magic[2]; });
  if (type_it == std::end(element_types)) {
    throw DataError(name + ": unsupported element type 0x" + hex_byte(magic[2]) +
                    ", expected 0x08, 0x09, 0x0b, 0x0c, 0x0d or 0x0e");
  }
  const ElementType& type = *type_it;
  const int ndim = magic[3];
  if (ndim < 1 || ndim > 4) {
    throw DataError(name + ": header has " + std::to_string(ndim) +
                    " dimensions, expected 1 to 4");
  }

  const std::int64_t header_bytes = 4 + 4 * std::int64_t{ndim};
  unsigned char dim_bytes[16] = {};
  const std::size_t dims_read = read_up_to(file.get(), dim_bytes, 4 * std::size_t(ndim), name);
  if (dims_read < 4 * std::size_t(ndim)) {
    throw DataError(name + ": truncated header: expected " + std::to_string(header_bytes) +
                    " bytes (magic and " + std::to_string(ndim) + " dimensions), file holds " +
                    std::to_string(4 + dims_read) + where);
  }
  Array array;
  for (int d = 0; d < ndim; ++d) array.shape.push_back(big_endian_u32(dim_bytes + 4 * d));
  const std::string claim = "header claims " + shape_string(array.shape) + " " + type.name;
  const auto element_count = checked_product(array.shape);
  const auto byte_count =
      element_count ? checked_product({*element_count, type.size}) : std::nullopt;
  if (!byte_count) throw DataError(name + ": " + claim + ", a size that overflows int64");
  const std::int64_t count = *element_count;
  const std::int64_t data_bytes = *byte_count;
  const std::string claim_bytes = claim + " = " + std::to_string(data_bytes) + " data bytes";

  std::vector<unsigned char> bytes;
  if (!compressed) {
    const auto available = static_cast<std::int64_t>(file_size) - header_bytes;
    if (available != data_bytes) {
      throw DataError(name + ": " + claim_bytes + ", file holds " + std::to_string(available) +
                      (available > data_bytes ? " (trailing bytes)" : ""));
    }
    bytes.resize(static_cast<std::size_t>(data_bytes));
    if (read_up_to(file.get(), bytes.data(), bytes.size(), name) != bytes.size()) {
      throw IoError(name + ": file shrank while being read");
    }
  } else {
    const auto max_expanded =
        static_cast<std::int64_t>(file_size) * max_deflate_ratio + deflate_slack_bytes;
    if (data_bytes > max_expanded) {
      throw DataError(name + ": " + claim_bytes + ", more than the " + std::to_string(file_size) +
                      " compressed bytes can hold");
    }
    // Grow with the data actually decompressed; stop one byte past the announced size.
    const auto cap = static_cast<std::size_t>(data_bytes) + 1;
    std::size_t filled = 0;
    while (filled < cap) {
      const std::size_t target = std::min(cap, std::max<std::size_t>(2 * filled, 1 << 16));
      bytes.resize(target);
      const std::size_t got = read_up_to(file.get(), bytes.data() + filled, target - filled, name);
      filled += got;
      if (filled < target) break;
    }
    if (filled != static_cast<std::size_t>(data_bytes)) {
      throw DataError(name + ": " + claim_bytes + ", decompressed data holds " +
                      (filled > static_cast<std::size_t>(data_bytes)
                           ? "more (trailing bytes)"
                           : std::to_string(filled)));
    }
    bytes.resize(filled);
    bytes.shrink_to_fit();
  }
  array.values = convert(bytes, type, static_cast<std::size_t>(count), name);
  return array;
}

std::vector<std::int32_t> to_labels(const Array& array, std::int32_t num_classes,
                                    const std::string& source) {
  if (num_classes < 1) {
    throw ConfigError(source + ": num_classes is " + std::to_string(num_classes) +
                      ", expected at least 1");
  }
  if (array.shape.empty() || array.shape.size() > 2 || array.row_size() != 1) {
    throw DataError(source + ": labels have shape " + shape_string(array.shape) +
                    ", expected [n] or [n, 1]");
  }
  std::vector<std::int32_t> labels(array.values.size());
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const float value = array.values[i];
    if (!(value >= 0.0f && static_cast<double>(value) < num_classes) ||
        value != std::floor(value)) {
      std::ostringstream message;
      message << source << ": label " << i << " is " << value << ", expected an integer in [0, "
              << num_classes << ")";
      throw DataError(message.str());
    }
    labels[i] = static_cast<std::int32_t>(value);
  }
  return labels;
}

}  // namespace descent::data
