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

#include "descent/data/array.hpp"

namespace descent::data {

// Reads a .npy file and converts its elements to float32.
// Supported dtypes: '<f4', '<f8', '|u1', '|i1', '<i2', '<i4', '<i8' ('<' or '|' for the
// 1-byte types); float64 and integers beyond 2^24 are rounded to float32, float elements
// must be finite and within the float32 range. C order only: fortran_order True is an
// error, as are structured dtypes, big-endian dtypes, 0-d arrays, and unknown dict keys.
// The header length, the element count (checked for int64 overflow) and the data byte
// count are validated against the file's size before anything is allocated; the data must
// fill the rest of the file exactly (trailing bytes are an error).
// Throws IoError (file missing or unreadable) or DataError (malformed content, message
// starting with the file's path). Cost: O(file size).
Array read_npy(const std::filesystem::path& path);

}  // namespace descent::data
