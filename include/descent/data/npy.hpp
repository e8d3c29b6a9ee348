#pragma once
// NumPy .npy files (format versions 1.0, 2.0 and 3.0).
//
// Reference: NumPy Enhancement Proposal 1, "A Simple File Format for NumPy Arrays", and
// the numpy.lib.format documentation. Layout: the magic "\x93NUMPY", major and minor
// version bytes, the header length (little-endian uint16 for 1.0, uint32 for 2.0 and 3.0),
// the header — a Python dict literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (60000, 784), }
// padded with spaces and ended by '\n' — and then the raw elements.
#include <filesystem>
#include <string>
#include <string_view>

#include "descent/data/array.hpp"

namespace descent::data {

// Decodes a .npy file held in memory and converts its elements to float32; `source_name`
// starts every message.
// Supported dtypes: '<f4', '<f8', '|u1', '|i1', '<i2', '<i4', '<i8' ('<' or '|' for the
// 1-byte types); float64 and integers beyond 2^24 are rounded to float32, float elements
// must be finite and within the float32 range. C order only: fortran_order True is an
// error, as are structured dtypes, big-endian dtypes, 0-d arrays, more than 32 dimensions,
// and unknown or repeated dict keys.
// The header length, the element count (checked for int64 overflow) and the data byte count
// are validated against the input's size before anything is allocated, so a header claiming
// 10^12 elements is refused at once; the data must fill the rest of the input exactly
// (trailing bytes are an error). Text quoted from the header in a message is cut to 40
// bytes, non-printable bytes written as \xHH.
// Throws DataError (malformed content). Cost: O(input size).
Array decode_npy(std::string_view bytes, const std::string& source_name);

// Reads the file at `path` and decodes it as decode_npy does (messages start with the path).
// Throws IoError (file missing, not a regular file or unreadable) or DataError.
// Cost: the whole file is held in memory while decoding.
Array read_npy(const std::filesystem::path& path);

}  // namespace descent::data
