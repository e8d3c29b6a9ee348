#include "descent/io/safetensors.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>
#include <utility>

#include "descent/error.hpp"
#include "descent/io/atomic_file.hpp"

namespace descent::io {
namespace {

constexpr std::uint64_t max_header_bytes = std::uint64_t{100} << 20;
constexpr std::size_t length_prefix_bytes = 8;
constexpr std::size_t header_alignment = 8;
constexpr std::string_view metadata_key = "__metadata__";
constexpr std::uint64_t max_byte_count = std::numeric_limits<std::int64_t>::max();

struct Dtype {
  std::string_view name;
  std::size_t size;
};

constexpr Dtype dtypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},   {"F8_E4M3", 1}, {"F8_E5M2", 1},
    {"U16", 2},  {"I16", 2}, {"F16", 2},  {"BF16", 2},    {"U32", 4},
    {"I32", 4},  {"F32", 4}, {"U64", 8},  {"I64", 8},     {"F64", 8},
};

const Dtype* find_dtype(std::string_view name) {
  for (const Dtype& dtype : dtypes) {
    if (dtype.name == name) return &dtype;
  }
  return nullptr;
}

// Text taken from the file, for a message: one line, at most `max_shown` bytes.
std::string excerpt(std::string_view text, std::size_t max_shown = 64) {
  return printable_excerpt(text, max_shown);
}

// A JSON value of the header, for a message (as excerpt).
std::string excerpt_json(const nlohmann::json& value) { return excerpt(value.dump()); }

std::string known_dtypes() {
  std::string list;
  for (const Dtype& dtype : dtypes) {
    if (!list.empty()) list += ", ";
    list += dtype.name;
  }
  return list;
}

std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text += ", ";
    text += std::to_string(shape[i]);
  }
  return text + "]";
}

// product(dims) * element_size, or nothing if it exceeds max_byte_count at any step.
bool checked_byte_count(const std::vector<std::uint64_t>& dims, std::size_t element_size,
                        std::uint64_t& bytes) {
  std::uint64_t count = 1;
  for (const std::uint64_t dim : dims) {
    if (dim > max_byte_count || (dim != 0 && count > max_byte_count / dim)) return false;
    count *= dim;
  }
  if (element_size != 0 && count > max_byte_count / element_size) return false;
  bytes = count * element_size;
  return true;
}

struct Entry {
  std::string name;
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
};

struct Header {
  std::vector<Entry> entries;  // sorted by data offset
  std::map<std::string, std::string> metadata;
};

std::uint64_t read_le_u64(const char* bytes) {
  std::uint64_t value = 0;
  for (int i = 7; i >= 0; --i) {
    value = (value << 8) | static_cast<unsigned char>(bytes[i]);
  }
  return value;
}

// Checks the length prefix N against the bytes that follow it.
void check_header_length(std::uint64_t header_length, std::uint64_t total_bytes,
                         const std::string& source) {
  if (header_length > max_header_bytes) {
    throw DataError(source + ": header length " + std::to_string(header_length) +
                    " exceeds the limit of " + std::to_string(max_header_bytes) + " bytes");
  }
  if (header_length > total_bytes - length_prefix_bytes) {
    throw DataError(source + ": header length " + std::to_string(header_length) +
                    " exceeds the " + std::to_string(total_bytes - length_prefix_bytes) +
                    " bytes that follow the 8-byte length");
  }
  if (header_length == 0) {
    throw DataError(source + ": header length is 0, expected a JSON object");
  }
}

nlohmann::json parse_header_json(std::string_view text, const std::string& source) {
  if (text.front() != '{') {
    throw DataError(source + ": header does not start with '{', expected a JSON object");
  }
  // nlohmann-json stops at a NUL byte as if the input ended there.
  if (const std::size_t nul = text.find('\0'); nul != std::string_view::npos) {
    throw DataError(source + ": header is not valid JSON: NUL byte at header offset " +
                    std::to_string(nul));
  }
  // The parser keeps the last of duplicate keys silently, so duplicates are caught here.
  std::vector<std::set<std::string>> open_objects;
  std::string tensor_name;
  const auto callback = [&](int depth, nlohmann::json::parse_event_t event,
                            nlohmann::json& parsed) {
    using Event = nlohmann::json::parse_event_t;
    if (event == Event::object_start || event == Event::array_start) {
      if (depth >= 3) {
        throw DataError(source + ": header nests JSON deeper than an entry's shape array" +
                        (tensor_name.empty() ? "" : " (in '" + excerpt(tensor_name) + "')"));
      }
    }
    if (event == Event::object_start) {
      open_objects.emplace_back();
    } else if (event == Event::object_end) {
      open_objects.pop_back();
    } else if (event == Event::key) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (open_objects.size() == 1) tensor_name = key;
      if (!open_objects.back().insert(key).second) {
        if (open_objects.size() == 1) {
          throw DataError(source + ": header: duplicate tensor name '" + excerpt(key) + "'");
        }
        throw DataError(source + ": header: duplicate key '" + excerpt(key) + "' in '" +
                        excerpt(tensor_name) + "'");
      }
    }
    return true;
  };
  try {
    return nlohmann::json::parse(text.begin(), text.end(), callback);
  } catch (const nlohmann::json::exception& error) {
    throw DataError(source + ": header is not valid JSON: " + excerpt(error.what(), 256));
  }
}

std::map<std::string, std::string> parse_metadata(const nlohmann::json& value,
                                                  const std::string& source) {
  if (!value.is_object()) {
    throw DataError(source + ": header: \"__metadata__\" is a JSON " + value.type_name() +
                    ", expected an object of strings");
  }
  std::map<std::string, std::string> metadata;
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string()) {
      throw DataError(source + ": header: \"__metadata__\" value of '" + excerpt(key) +
                      "' is a JSON " + item.type_name() + ", expected a string");
    }
    metadata.emplace(key, item.get<std::string>());
  }
  return metadata;
}

Entry parse_entry(const std::string& name, const nlohmann::json& value, std::uint64_t data_size,
                  const std::string& source) {
  const std::string where = source + ": tensor '" + excerpt(name) + "': ";
  if (!value.is_object()) {
    throw DataError(where + "entry is a JSON " + std::string(value.type_name()) +
                    ", expected an object with dtype, shape and data_offsets");
  }
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!value.contains(key)) throw DataError(where + "missing key \"" + key + "\"");
  }
  for (const auto& [key, item] : value.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      throw DataError(where + "unknown key \"" + excerpt(key) +
                      "\", expected only dtype, shape and data_offsets");
    }
  }

  Entry entry;
  entry.name = name;
  const auto& dtype = value.at("dtype");
  if (!dtype.is_string()) {
    throw DataError(where + "\"dtype\" is a JSON " + std::string(dtype.type_name()) +
                    ", expected a string");
  }
  entry.dtype = dtype.get<std::string>();
  const Dtype* info = find_dtype(entry.dtype);
  if (info == nullptr) {
    throw DataError(where + "unknown dtype \"" + excerpt(entry.dtype) + "\", expected one of " +
                    known_dtypes());
  }

  const auto& shape = value.at("shape");
  if (!shape.is_array()) {
    throw DataError(where + "\"shape\" is a JSON " + std::string(shape.type_name()) +
                    ", expected an array of non-negative integers");
  }
  std::vector<std::uint64_t> dims;
  dims.reserve(shape.size());
  for (std::size_t i = 0; i < shape.size(); ++i) {
    const auto& dim = shape[i];
    if (dim.is_number_unsigned()) {
      dims.push_back(dim.get<std::uint64_t>());
    } else if (dim.is_number_integer()) {
      throw DataError(where + "\"shape\"[" + std::to_string(i) + "] is " +
                      std::to_string(dim.get<std::int64_t>()) + ", expected >= 0");
    } else {
      throw DataError(where + "\"shape\"[" + std::to_string(i) + "] is " + excerpt_json(dim) +
                      ", expected a non-negative integer");
    }
  }
  std::uint64_t byte_count = 0;
  if (!checked_byte_count(dims, info->size, byte_count)) {
    throw DataError(where + "\"shape\" " + excerpt_json(shape) + " of " + entry.dtype +
                    " overflows: its byte count exceeds 2^63 - 1");
  }
  entry.shape.assign(dims.begin(), dims.end());

  const auto& offsets = value.at("data_offsets");
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned()) {
    throw DataError(where + "\"data_offsets\" is " + excerpt_json(offsets) +
                    ", expected [begin, end] with non-negative integers");
  }
  entry.begin = offsets[0].get<std::uint64_t>();
  entry.end = offsets[1].get<std::uint64_t>();
  if (entry.begin > entry.end) {
    throw DataError(where + "\"data_offsets\" " + offsets.dump() + " has begin > end");
  }
  if (entry.end > data_size) {
    throw DataError(where + "\"data_offsets\" " + offsets.dump() +
                    " is out of range: the data section holds " + std::to_string(data_size) +
                    " bytes");
  }
  if (entry.end - entry.begin != byte_count) {
    throw DataError(where + "\"data_offsets\" " + offsets.dump() + " span " +
                    std::to_string(entry.end - entry.begin) + " bytes, expected " +
                    std::to_string(byte_count) + " for " + entry.dtype + " " +
                    shape_string(entry.shape));
  }
  return entry;
}

// Parses and validates the header text (N bytes after the length prefix) for a data section
// of `data_size` bytes.
Header parse_header(std::string_view text, std::uint64_t data_size, const std::string& source) {
  const nlohmann::json json = parse_header_json(text, source);
  if (!json.is_object()) {
    throw DataError(source + ": header is a JSON " + std::string(json.type_name()) +
                    ", expected an object");
  }
  Header header;
  for (const auto& [key, value] : json.items()) {
    if (key == metadata_key) {
      header.metadata = parse_metadata(value, source);
    } else {
      header.entries.push_back(parse_entry(key, value, data_size, source));
    }
  }
  std::sort(header.entries.begin(), header.entries.end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  std::uint64_t expected = 0;
  std::string previous = "the start of the data section";
  for (const Entry& entry : header.entries) {
    if (entry.begin > expected) {
      throw DataError(source + ": tensor '" + excerpt(entry.name) + "' begins at data offset " +
                      std::to_string(entry.begin) + ", leaving a gap after " + previous +
                      " (expected it to begin at " + std::to_string(expected) + ")");
    }
    if (entry.begin < expected) {
      throw DataError(source + ": tensor '" + excerpt(entry.name) + "' begins at data offset " +
                      std::to_string(entry.begin) + ", overlapping " + previous +
                      " (expected it to begin at " + std::to_string(expected) + ")");
    }
    expected = entry.end;
    previous = "tensor '" + excerpt(entry.name) + "'";
  }
  if (expected != data_size) {
    throw DataError(source + ": the tensors end at data offset " + std::to_string(expected) +
                    ", but the data section holds " + std::to_string(data_size) +
                    " bytes, expected no bytes left over");
  }
  return header;
}

// Throws DataError naming `what` unless `text` is valid UTF-8.
void check_utf8(const std::string& text, const std::string& what) {
  try {
    static_cast<void>(nlohmann::json(text).dump());
  } catch (const nlohmann::json::exception&) {
    throw DataError(what + " is not valid UTF-8");
  }
}

std::string encode(std::span<const TensorView> tensors,
                   const std::map<std::string, std::string>& metadata, const std::string& label) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json entries = nlohmann::ordered_json::object();
    for (const auto& [key, value] : metadata) {
      check_utf8(key, label + ": metadata key '" + key + "'");
      check_utf8(value, label + ": metadata value of '" + key + "'");
      entries[key] = value;
    }
    header[std::string(metadata_key)] = std::move(entries);
  }
  std::set<std::string_view> names;
  std::uint64_t offset = 0;
  for (const TensorView& tensor : tensors) {
    const std::string where = label + ": tensor '" + tensor.name + "': ";
    if (tensor.name == metadata_key) {
      throw DataError(where + "the name is reserved for the metadata");
    }
    if (!names.insert(tensor.name).second) throw DataError(where + "duplicate tensor name");
    check_utf8(tensor.name, label + ": tensor name '" + tensor.name + "'");
    const Dtype* info = find_dtype(tensor.dtype);
    if (info == nullptr) {
      throw ShapeError(where + "unknown dtype \"" + tensor.dtype + "\", expected one of " +
                       known_dtypes());
    }
    std::vector<std::uint64_t> dims;
    for (const std::int64_t dim : tensor.shape) {
      if (dim < 0) {
        throw ShapeError(where + "shape " + shape_string(tensor.shape) +
                         " has a negative dimension");
      }
      dims.push_back(static_cast<std::uint64_t>(dim));
    }
    std::uint64_t byte_count = 0;
    if (!checked_byte_count(dims, info->size, byte_count)) {
      throw ShapeError(where + "shape " + shape_string(tensor.shape) + " of " + tensor.dtype +
                       " overflows: its byte count exceeds 2^63 - 1");
    }
    if (tensor.data.size() != byte_count) {
      throw ShapeError(where + "data holds " + std::to_string(tensor.data.size()) +
                       " bytes, expected " + std::to_string(byte_count) + " for " +
                       tensor.dtype + " " + shape_string(tensor.shape));
    }
    header[tensor.name] = {{"dtype", tensor.dtype},
                           {"shape", tensor.shape},
                           {"data_offsets", {offset, offset + byte_count}}};
    offset += byte_count;
  }
  std::string header_text = header.dump();
  header_text.append((header_alignment - header_text.size() % header_alignment) % header_alignment,
                     ' ');

  std::string bytes;
  bytes.reserve(length_prefix_bytes + header_text.size() + static_cast<std::size_t>(offset));
  std::uint64_t length = header_text.size();
  for (std::size_t i = 0; i < length_prefix_bytes; ++i) {
    bytes.push_back(static_cast<char>(length & 0xFF));
    length >>= 8;
  }
  bytes += header_text;
  for (const TensorView& tensor : tensors) {
    bytes.append(reinterpret_cast<const char*>(tensor.data.data()), tensor.data.size());
  }
  return bytes;
}

// Closes the descriptor on scope exit.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() { ::close(fd_); }
  int get() const { return fd_; }

 private:
  int fd_;
};

// Reads exactly `count` bytes at `offset`; IoError naming `source` if the file is shorter.
void read_exact(int fd, std::uint64_t offset, char* destination, std::size_t count,
                const std::string& source) {
  constexpr std::size_t max_chunk = std::size_t{1} << 30;
  std::size_t done = 0;
  while (done < count) {
    const ssize_t got = ::pread(fd, destination + done, std::min(count - done, max_chunk),
                                static_cast<off_t>(offset + done));
    if (got < 0) {
      if (errno == EINTR) continue;
      throw IoError(source + ": read failed: " + std::strerror(errno));
    }
    if (got == 0) {
      throw IoError(source + ": file ended at byte " + std::to_string(offset + done) +
                    " while reading, expected " + std::to_string(offset + count) +
                    " bytes (did it shrink?)");
    }
    done += static_cast<std::size_t>(got);
  }
}

}  // namespace

const TensorData* Safetensors::find(std::string_view name) const {
  for (const TensorData& tensor : tensors) {
    if (tensor.name == name) return &tensor;
  }
  return nullptr;
}

std::size_t dtype_size(std::string_view dtype) {
  const Dtype* info = find_dtype(dtype);
  if (info == nullptr) {
    throw DataError("unknown safetensors dtype \"" + std::string(dtype) + "\", expected one of " +
                    known_dtypes());
  }
  return info->size;
}

std::string encode_safetensors(std::span<const TensorView> tensors,
                               const std::map<std::string, std::string>& metadata) {
  return encode(tensors, metadata, "safetensors");
}

void write_safetensors(const std::filesystem::path& path, std::span<const TensorView> tensors,
                       const std::map<std::string, std::string>& metadata) {
  write_file_atomic(path, encode(tensors, metadata, path.string()));
}

Safetensors decode_safetensors(std::string_view bytes, const std::string& source_name) {
  if (bytes.size() < length_prefix_bytes) {
    throw DataError(source_name + ": holds " + std::to_string(bytes.size()) +
                    " bytes, expected at least 8 (the header length)");
  }
  const std::uint64_t header_length = read_le_u64(bytes.data());
  check_header_length(header_length, bytes.size(), source_name);
  const std::size_t data_start = length_prefix_bytes + static_cast<std::size_t>(header_length);
  const Header header = parse_header(bytes.substr(length_prefix_bytes, header_length),
                                     bytes.size() - data_start, source_name);
  Safetensors result;
  result.metadata = header.metadata;
  result.tensors.reserve(header.entries.size());
  for (const Entry& entry : header.entries) {
    const auto* begin =
        reinterpret_cast<const std::byte*>(bytes.data() + data_start + entry.begin);
    const auto* end = begin + (entry.end - entry.begin);
    result.tensors.push_back(
        TensorData{entry.name, entry.dtype, entry.shape, std::vector<std::byte>(begin, end)});
  }
  return result;
}

Safetensors read_safetensors(const std::filesystem::path& path) {
  const std::string source = path.string();
  int fd = -1;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) throw IoError(source + ": cannot open for reading: " + std::strerror(errno));
  FileDescriptor file(fd);
  struct stat status {};
  if (::fstat(file.get(), &status) != 0) {
    throw IoError(source + ": cannot stat: " + std::strerror(errno));
  }
  if (!S_ISREG(status.st_mode)) throw IoError(source + ": not a regular file");
  const auto file_size = static_cast<std::uint64_t>(status.st_size);
  if (file_size < length_prefix_bytes) {
    throw DataError(source + ": holds " + std::to_string(file_size) +
                    " bytes, expected at least 8 (the header length)");
  }
  char prefix[length_prefix_bytes];
  read_exact(file.get(), 0, prefix, length_prefix_bytes, source);
  const std::uint64_t header_length = read_le_u64(prefix);
  check_header_length(header_length, file_size, source);
  std::string header_text(static_cast<std::size_t>(header_length), '\0');
  read_exact(file.get(), length_prefix_bytes, header_text.data(), header_text.size(), source);
  const std::uint64_t data_start = length_prefix_bytes + header_length;
  const Header header = parse_header(header_text, file_size - data_start, source);

  Safetensors result;
  result.metadata = header.metadata;
  result.tensors.reserve(header.entries.size());
  for (const Entry& entry : header.entries) {
    TensorData tensor{entry.name, entry.dtype, entry.shape,
                      std::vector<std::byte>(static_cast<std::size_t>(entry.end - entry.begin))};
    read_exact(file.get(), data_start + entry.begin, reinterpret_cast<char*>(tensor.data.data()),
               tensor.data.size(), source);
    result.tensors.push_back(std::move(tensor));
  }
  return result;
}

}  // namespace descent::io
