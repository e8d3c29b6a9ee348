#pragma once
// Typed errors of the library. The library throws, never exits; the CLI catches
// descent::Error in main, prints what() on one line and exits non-zero.
// Messages name the file, the field and what was expected, e.g.
//   "train-images.idx: header claims 60000x28x28 ubyte = 47040000 bytes, file holds 1024".
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

namespace descent {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A tensor shape or dtype does not fit the operation.
class ShapeError : public Error {
 public:
  using Error::Error;
};

// A data file (IDX, CSV, NPY) is malformed or holds values out of range.
class DataError : public Error {
 public:
  using Error::Error;
};

// A config value is missing, unknown, of the wrong type or out of range.
class ConfigError : public Error {
 public:
  using Error::Error;
};

// Reading or writing a file failed (missing, unwritable, truncated, bad checksum).
class IoError : public Error {
 public:
  using Error::Error;
};

// A numerical failure detected at run time (NaN/Inf where finite values are required).
class NumericError : public Error {
 public:
  using Error::Error;
};

// Text taken from an input (a key, a name, a parser's description quoting the input) made
// fit for a one-line message: control characters, line breaks included, are written as
// \xHH, and beyond `max_bytes` the text is cut at a UTF-8 character boundary and ends
// with "...". A hostile file thus cannot split a message over lines or make it long.
std::string printable_excerpt(std::string_view text,
                              std::size_t max_bytes = std::string_view::npos);

// The same for bytes of a binary or ASCII file (a CSV field, an NPY header): only printable
// ASCII is kept; every other byte, and the backslash, is written as \xHH; at most
// `max_bytes` bytes are shown (no UTF-8 boundary: the input is not taken as text).
std::string ascii_excerpt(std::string_view text, std::size_t max_bytes);

}  // namespace descent
