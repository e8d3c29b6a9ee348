#include "descent/data/idx.hpp"

#include <zlib.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <bit>
#include <climits>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <sstream>
#include <system_error>

#include "descent/error.hpp"
#include "descent/io/atomic_file.hpp"

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

bool is_gzip(std::string_view bytes) {
  return bytes.size() >= 2 && static_cast<unsigned char>(bytes[0]) == 0x1f &&
         static_cast<unsigned char>(bytes[1]) == 0x8b;
}

// The IDX content of the input, handed out in order: a plain input is copied from, a gzip
// input is inflated on demand, so nothing beyond what is asked for is ever produced.
class ByteStream {
 public:
  ByteStream(std::string_view bytes, const std::string& name)
      : input_(bytes), name_(name), compressed_(is_gzip(bytes)) {
    if (!compressed_) return;
    // 16 + MAX_WBITS: a gzip wrapper (RFC 1952) around the deflate data, CRC-32 checked.
    if (inflateInit2(&stream_, 16 + MAX_WBITS) != Z_OK) throw std::bad_alloc();
    inflating_ = true;
  }
  ByteStream(const ByteStream&) = delete;
  ByteStream& operator=(const ByteStream&) = delete;
  ~ByteStream() {
    if (inflating_) inflateEnd(&stream_);
  }

  bool compressed() const { return compressed_; }

  // Copies up to `count` bytes to `destination`; fewer only at the end of the data.
  // Corrupt or truncated gzip data, and bytes after the last gzip member, are DataError.
  std::size_t read(unsigned char* destination, std::size_t count) {
    if (!compressed_) {
      const std::size_t n = std::min(count, input_.size() - consumed_);
      if (n > 0) std::memcpy(destination, input_.data() + consumed_, n);
      consumed_ += n;
      return n;
    }
    std::size_t total = 0;
    while (total < count && !finished_) {
      // zlib counts in 32-bit units: feed and drain in chunks that fit.
      const std::size_t in_chunk = std::min<std::size_t>(input_.size() - consumed_, UINT_MAX);
      const std::size_t out_chunk = std::min<std::size_t>(count - total, UINT_MAX);
      stream_.next_in =
          reinterpret_cast<Bytef*>(const_cast<char*>(input_.data() + consumed_));
      stream_.avail_in = static_cast<uInt>(in_chunk);
      stream_.next_out = destination + total;
      stream_.avail_out = static_cast<uInt>(out_chunk);
      const int status = inflate(&stream_, Z_NO_FLUSH);
      consumed_ += in_chunk - stream_.avail_in;
      total += out_chunk - stream_.avail_out;
      if (status == Z_STREAM_END) {
        end_of_member();
      } else if (status == Z_BUF_ERROR) {
        // No progress possible with output room left: the input ended inside a gzip member.
        throw DataError(name_ + ": truncated gzip data: the file ends inside the compressed "
                                "stream, before its end marker");
      } else if (status == Z_MEM_ERROR) {
        throw std::bad_alloc();
      } else if (status != Z_OK) {
        throw DataError(name_ + ": corrupt or truncated gzip data: " +
                        (stream_.msg != nullptr ? stream_.msg : "inflate failed"));
      }
    }
    return total;
  }

 private:
  // A gzip file may hold several members one after another (as gzip and zlib's gzread
  // accept); anything else after a member is refused rather than ignored.
  void end_of_member() {
    const std::string_view rest = input_.substr(consumed_);
    if (rest.empty()) {
      finished_ = true;
    } else if (is_gzip(rest)) {
      inflateReset(&stream_);
    } else {
      throw DataError(name_ + ": " + std::to_string(rest.size()) +
                      " bytes after the end of the gzip stream, expected none");
    }
  }

  std::string_view input_;
  const std::string& name_;
  bool compressed_ = false;
  bool inflating_ = false;
  bool finished_ = false;
  std::size_t consumed_ = 0;
  z_stream stream_{};
};

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

// `data` holds count * type.size bytes.
std::vector<float> convert(const unsigned char* data, const ElementType& type, std::size_t count,
                           const std::string& name) {
  std::vector<float> values(count);
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


// The header of an IDX file and its data bytes, checked: `data` points into the input (plain
// file) or into `inflated` (gzip).
struct RawIdx {
  const ElementType* type = nullptr;
  std::vector<std::int64_t> shape;
  std::size_t count = 0;
  const unsigned char* data = nullptr;
  std::vector<unsigned char> inflated;
};

RawIdx decode_raw(std::string_view bytes, const std::string& name) {
  ByteStream stream(bytes, name);
  const std::string where = stream.compressed() ? " (after gzip decompression)" : "";

  unsigned char magic[4] = {};
  const std::size_t magic_read = stream.read(magic, 4);
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
  const std::size_t dims_read = stream.read(dim_bytes, 4 * std::size_t(ndim));
  if (dims_read < 4 * std::size_t(ndim)) {
    throw DataError(name + ": truncated header: expected " + std::to_string(header_bytes) +
                    " bytes (magic and " + std::to_string(ndim) + " dimensions), file holds " +
                    std::to_string(4 + dims_read) + where);
  }
  RawIdx raw;
  raw.type = &type;
  for (int d = 0; d < ndim; ++d) raw.shape.push_back(big_endian_u32(dim_bytes + 4 * d));
  const std::string claim = "header claims " + shape_string(raw.shape) + " " + type.name;
  const auto element_count = checked_product(raw.shape);
  const auto byte_count =
      element_count ? checked_product({*element_count, type.size}) : std::nullopt;
  if (!byte_count) throw DataError(name + ": " + claim + ", a size that overflows int64");
  raw.count = static_cast<std::size_t>(*element_count);
  const std::int64_t data_bytes = *byte_count;
  const std::string claim_bytes = claim + " = " + std::to_string(data_bytes) + " data bytes";
  const auto file_size = static_cast<std::int64_t>(bytes.size());

  if (!stream.compressed()) {
    const std::int64_t available = file_size - header_bytes;
    if (available != data_bytes) {
      throw DataError(name + ": " + claim_bytes + ", file holds " + std::to_string(available) +
                      (available > data_bytes ? " (trailing bytes)" : ""));
    }
    raw.data = reinterpret_cast<const unsigned char*>(bytes.data() + header_bytes);
    return raw;
  }

  if (data_bytes > file_size * max_deflate_ratio + deflate_slack_bytes) {
    throw DataError(name + ": " + claim_bytes + ", more than the " + std::to_string(file_size) +
                    " compressed bytes can hold");
  }
  // Grow with the data actually decompressed; stop one byte past the announced size.
  std::vector<unsigned char>& data = raw.inflated;
  const auto cap = static_cast<std::size_t>(data_bytes) + 1;
  std::size_t filled = 0;
  while (filled < cap) {
    const std::size_t target = std::min(cap, std::max<std::size_t>(2 * filled, 1 << 16));
    data.resize(target);
    filled += stream.read(data.data() + filled, target - filled);
    if (filled < target) break;
  }
  if (filled != static_cast<std::size_t>(data_bytes)) {
    throw DataError(name + ": " + claim_bytes + ", decompressed data holds " +
                    (filled > static_cast<std::size_t>(data_bytes) ? "more (trailing bytes)"
                                                                   : std::to_string(filled)));
  }
  data.resize(filled);
  raw.data = data.data();
  return raw;
}

}  // namespace

Array decode_idx(std::string_view bytes, const std::string& source_name) {
  const RawIdx raw = decode_raw(bytes, source_name);
  Array array;
  array.shape = raw.shape;
  array.values = convert(raw.data, *raw.type, raw.count, source_name);
  return array;
}

ByteArray decode_idx_bytes(std::string_view bytes, const std::string& source_name) {
  RawIdx raw = decode_raw(bytes, source_name);
  if (raw.type->code != 0x08) {
    throw DataError(source_name + ": holds " + raw.type->name + " elements, expected ubyte (0x08)");
  }
  ByteArray array;
  array.shape = raw.shape;
  if (!raw.inflated.empty()) {
    array.values = std::move(raw.inflated);
    array.values.shrink_to_fit();
  } else {
    array.values.assign(raw.data, raw.data + raw.count);
  }
  return array;
}

namespace {

std::string read_whole(const std::filesystem::path& path) {
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error)) {
    throw IoError(path.string() + ": cannot open: no such regular file");
  }
  return io::read_file(path, std::numeric_limits<std::size_t>::max());
}

// A plain ubyte IDX file whose header and size agree is read straight into the result (no
// copy of the file in between: the cache of decompressed files is read this way). Anything
// else, gzip or malformed, goes through decode_idx_bytes and its checks and messages.
std::optional<ByteArray> read_plain_ubyte(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  unsigned char head[20] = {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || ::pread(fd, head, 4, 0) != 4) return std::nullopt;
  const int ndim = head[3];
  if (head[0] != 0 || head[1] != 0 || head[2] != 0x08 || ndim < 1 || ndim > 4) return std::nullopt;
  const auto header_bytes = static_cast<std::size_t>(4 + 4 * ndim);
  if (::pread(fd, head + 4, header_bytes - 4, 4) != static_cast<ssize_t>(header_bytes - 4)) return std::nullopt;
  ByteArray array;
  for (int d = 0; d < ndim; ++d) array.shape.push_back(big_endian_u32(head + 4 + 4 * d));
  const std::optional<std::int64_t> count = checked_product(array.shape);
  if (!count || static_cast<std::int64_t>(header_bytes) + *count != static_cast<std::int64_t>(st.st_size)) return std::nullopt;
  array.values.resize(static_cast<std::size_t>(*count));
  std::size_t done = 0;
  while (done < array.values.size()) {
    const ssize_t got = ::pread(fd, array.values.data() + done, array.values.size() - done,
                                static_cast<off_t>(header_bytes + done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return std::nullopt;
    done += static_cast<std::size_t>(got);
  }
  return array;
}

}  // namespace

ByteArray read_idx_bytes(const std::filesystem::path& path) {
  if (std::optional<ByteArray> plain = read_plain_ubyte(path)) return std::move(*plain);
  return decode_idx_bytes(read_whole(path), path.string());
}

Array read_idx(const std::filesystem::path& path) { return decode_idx(read_whole(path), path.string()); }

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
