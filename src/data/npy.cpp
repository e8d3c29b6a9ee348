#include "descent/data/npy.hpp"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <string_view>
#include <system_error>

#include "descent/error.hpp"
#include "descent/io/atomic_file.hpp"

namespace descent::data {
namespace {

constexpr char npy_magic[] = "\x93NUMPY";
constexpr std::size_t npy_magic_size = 6;
constexpr std::size_t max_ndim = 32;

// `text` for a message: printable ASCII kept, other bytes as \xHH, at most 40 bytes shown.
std::string printable(std::string_view text) { return ascii_excerpt(text, 40); }

enum class Kind { floating, signed_integer, unsigned_integer };

struct Dtype {
  Kind kind;
  std::int64_t size;
};

struct Header {
  std::string descr;
  bool fortran_order = false;
  std::vector<std::int64_t> shape;
};

// A parser for the restricted Python literal of a .npy header: a dict with string keys
// whose values are strings, True/False or tuples of non-negative integers.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& name) : text_(text), name_(name) {}

  Header parse() {
    Header header;
    bool seen_descr = false;
    bool seen_fortran = false;
    bool seen_shape = false;
    expect('{');
    skip_space();
    while (peek() != '}') {
      const std::string key = string_literal();
      if ((key == "descr" && seen_descr) || (key == "fortran_order" && seen_fortran) ||
          (key == "shape" && seen_shape)) {
        fail("duplicate key '" + key + "'");
      }
      expect(':');
      skip_space();
      if (key == "descr") {
        if (peek() == '[') fail("structured dtypes are not supported, expected a simple dtype");
        header.descr = string_literal();
        seen_descr = true;
      } else if (key == "fortran_order") {
        header.fortran_order = boolean();
        seen_fortran = true;
      } else if (key == "shape") {
        header.shape = tuple();
        seen_shape = true;
      } else {
        fail("unexpected key '" + printable(key) + "', expected descr, fortran_order and shape");
      }
      skip_space();
      if (peek() == ',') {
        ++pos_;
        skip_space();
      } else if (peek() != '}') {
        fail("expected ',' or '}'");
      }
    }
    ++pos_;
    skip_space();
    if (pos_ != text_.size()) fail("unexpected characters after the header dict");
    if (!seen_descr || !seen_fortran || !seen_shape) {
      fail("header dict lacks " + std::string(!seen_descr     ? "'descr'"
                                              : !seen_fortran ? "'fortran_order'"
                                                              : "'shape'"));
    }
    return header;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw DataError(name_ + ": header at character " + std::to_string(pos_) + ": " + what);
  }

  char peek() const {
    if (pos_ >= text_.size()) fail("unexpected end of the header");
    return text_[pos_];
  }

  void skip_space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\n' ||
                                   text_[pos_] == '\t' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }

  void expect(char c) {
    skip_space();
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }

  std::string string_literal() {
    const char quote = peek();
    if (quote != '\'' && quote != '"') fail("expected a quoted string");
    const auto end = text_.find(quote, pos_ + 1);
    if (end == std::string_view::npos) fail("unterminated string");
    std::string value(text_.substr(pos_ + 1, end - pos_ - 1));
    pos_ = end + 1;
    skip_space();
    return value;
  }

  bool boolean() {
    for (const auto& [word, value] : {std::pair{"True", true}, std::pair{"False", false}}) {
      const std::string_view w(word);
      if (text_.substr(pos_, w.size()) == w) {
        pos_ += w.size();
        return value;
      }
    }
    fail("expected True or False");
  }

  std::vector<std::int64_t> tuple() {
    std::vector<std::int64_t> values;
    expect('(');
    skip_space();
    while (peek() != ')') {
      std::int64_t value = 0;
      const char* begin = text_.data() + pos_;
      const auto [end, error] = std::from_chars(begin, text_.data() + text_.size(), value);
      if (error != std::errc() || end == begin || value < 0) {
        fail("expected a dimension (a non-negative integer that fits int64)");
      }
      if (values.size() == max_ndim) fail("more than 32 dimensions");
      values.push_back(value);
      pos_ += static_cast<std::size_t>(end - begin);
      skip_space();
      if (peek() == ',') {
        ++pos_;
        skip_space();
      } else if (peek() != ')') {
        fail("expected ',' or ')' in the shape");
      }
    }
    ++pos_;
    return values;
  }

  std::string_view text_;
  const std::string& name_;
  std::size_t pos_ = 0;
};

Dtype parse_dtype(const std::string& descr, const std::string& name) {
  struct Entry {
    const char* descr;
    Dtype dtype;
  };
  static constexpr Entry supported[] = {
      {"<f4", {Kind::floating, 4}},        {"<f8", {Kind::floating, 8}},
      {"|u1", {Kind::unsigned_integer, 1}}, {"<u1", {Kind::unsigned_integer, 1}},
      {"|i1", {Kind::signed_integer, 1}},   {"<i1", {Kind::signed_integer, 1}},
      {"<i2", {Kind::signed_integer, 2}},   {"<i4", {Kind::signed_integer, 4}},
      {"<i8", {Kind::signed_integer, 8}},
  };
  for (const Entry& entry : supported) {
    if (descr == entry.descr) return entry.dtype;
  }
  throw DataError(name + ": unsupported dtype '" + printable(descr) +
                  "', expected one of <f4, <f8, |u1, |i1, <i2, <i4, <i8");
}

std::uint64_t little_endian(const unsigned char* bytes, std::int64_t size) {
  std::uint64_t value = 0;
  for (std::int64_t i = size - 1; i >= 0; --i) value = (value << 8) | bytes[i];
  return value;
}

float to_float(const unsigned char* bytes, const Dtype& dtype, std::size_t index,
               const std::string& name) {
  const std::uint64_t bits = little_endian(bytes, dtype.size);
  double value = 0.0;
  switch (dtype.kind) {
    case Kind::unsigned_integer:
      return static_cast<float>(bits);
    case Kind::signed_integer: {
      const unsigned shift = static_cast<unsigned>(64 - 8 * dtype.size);
      return static_cast<float>(static_cast<std::int64_t>(bits << shift) >> shift);
    }
    case Kind::floating:
      value = dtype.size == 4 ? double{std::bit_cast<float>(static_cast<std::uint32_t>(bits))}
                              : std::bit_cast<double>(bits);
      break;
  }
  if (!std::isfinite(value) || std::abs(value) > std::numeric_limits<float>::max()) {
    std::ostringstream message;
    message << name << ": element " << index << " is " << value
            << ", expected a finite number within the float32 range";
    throw DataError(message.str());
  }
  return static_cast<float>(value);
}

}  // namespace

Array decode_npy(std::string_view bytes, const std::string& source_name) {
  const std::string& name = source_name;
  const auto file_size = static_cast<std::int64_t>(bytes.size());
  if (file_size < 10) {
    throw DataError(name + ": truncated header: file holds " + std::to_string(file_size) +
                    " bytes, expected at least 10 (magic, version, header length)");
  }
  const auto* prefix = reinterpret_cast<const unsigned char*>(bytes.data());
  if (std::memcmp(prefix, npy_magic, npy_magic_size) != 0) {
    throw DataError(name + ": bad magic, expected \"\\x93NUMPY\" (a .npy file)");
  }
  const int major = prefix[6];
  const int minor = prefix[7];
  if (major < 1 || major > 3 || minor != 0) {
    throw DataError(name + ": unsupported format version " + std::to_string(major) + "." +
                    std::to_string(minor) + ", expected 1.0, 2.0 or 3.0");
  }
  const std::int64_t length_bytes = major == 1 ? 2 : 4;
  const std::int64_t prefix_bytes = 8 + length_bytes;
  if (file_size < prefix_bytes) {
    throw DataError(name + ": truncated header: file holds " + std::to_string(file_size) +
                    " bytes, expected at least " + std::to_string(prefix_bytes));
  }
  const auto header_length = static_cast<std::int64_t>(little_endian(prefix + 8, length_bytes));
  if (header_length > file_size - prefix_bytes) {
    throw DataError(name + ": truncated header: header length is " +
                    std::to_string(header_length) + " bytes, file holds " +
                    std::to_string(file_size - prefix_bytes) + " after the prefix");
  }
  const std::string_view header_text = bytes.substr(static_cast<std::size_t>(prefix_bytes),
                                                    static_cast<std::size_t>(header_length));
  const Header header = HeaderParser(header_text, name).parse();

  const Dtype dtype = parse_dtype(header.descr, name);
  if (header.fortran_order) {
    throw DataError(name + ": fortran_order is True, expected False (only C order is supported)");
  }
  if (header.shape.empty()) throw DataError(name + ": shape is (), expected at least 1 dimension");
  const std::string claim = "header claims shape " + shape_string(header.shape) + " of '" +
                            header.descr + "'";
  const auto element_count = checked_product(header.shape);
  const auto byte_count = element_count ? checked_product({*element_count, dtype.size}) : std::nullopt;
  if (!byte_count) throw DataError(name + ": " + claim + ", a size that overflows int64");
  const std::int64_t data_start = prefix_bytes + header_length;
  const std::int64_t available = file_size - data_start;
  if (*byte_count != available) {
    throw DataError(name + ": " + claim + " = " + std::to_string(*byte_count) +
                    " data bytes, file holds " + std::to_string(available) +
                    (available > *byte_count ? " (trailing bytes)" : ""));
  }

  const auto* data = prefix + data_start;
  Array array;
  array.shape = header.shape;
  array.values.resize(static_cast<std::size_t>(*element_count));
  const auto size = static_cast<std::size_t>(dtype.size);
  for (std::size_t i = 0; i < array.values.size(); ++i) {
    array.values[i] = to_float(data + i * size, dtype, i, name);
  }
  return array;
}

Array read_npy(const std::filesystem::path& path) {
  const std::string name = path.string();
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error)) {
    throw IoError(name + ": cannot open: no such regular file");
  }
  const std::string bytes = io::read_file(path, std::numeric_limits<std::size_t>::max());
  return decode_npy(bytes, name);
}

}  // namespace descent::data
