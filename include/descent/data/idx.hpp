#pragma once
// The IDX file format of MNIST and Fashion-MNIST.
//
// Reference: Y. LeCun, C. Cortes, C. Burges, "THE MNIST DATABASE of handwritten digits",
// http://yann.lecun.com/exdb/mnist/, section "FILE FORMATS FOR THE MNIST DATABASE".
//
// Layout: magic bytes 0x00 0x00 TYPE NDIM, then NDIM big-endian uint32 dimensions, then
// the elements in row-major order, big-endian. TYPE is one of
//   0x08 unsigned byte, 0x09 signed byte, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "descent/data/array.hpp"

namespace descent::data {

// Decodes an IDX file held in memory, plain or gzip-compressed (recognized by its magic
// bytes 1f 8b), and converts its elements to float32 (int32 values beyond 2^24 and float64
// values are rounded). `source_name` starts every message.
//
// Validation, all before the output is allocated: the magic, 1 <= NDIM <= 4, the element
// count (product of the dimensions, checked for int64 overflow) and the data byte count,
// which must equal the bytes the file actually holds after the header: short data and
// trailing bytes are both errors. Gzip data is inflated into a buffer that grows with the
// data actually produced and stops one byte past the size the header announces, and a
// header announcing more than deflate can expand the compressed bytes to (1032:1) is refused
// up front, so neither a lying header (10^12 elements in a few bytes) nor a gzip bomb can
// make the reader allocate more than the data it really holds. A gzip file may hold several
// members back to back; any other byte after the last member is an error, as is a member
// that is cut short or fails its CRC-32. Float elements must be finite.
//
// Throws DataError (malformed content); every message starts with `source_name`.
// Cost: one pass over the bytes; O(elements) memory besides the input.
Array decode_idx(std::string_view bytes, const std::string& source_name);

// Reads the file at `path` and decodes it as decode_idx does (messages start with the path).
// Throws IoError (file missing, not a regular file or unreadable) or DataError.
// Cost: the whole file is held in memory while decoding.
Array read_idx(const std::filesystem::path& path);

// The same checks and messages, for a file of unsigned bytes (type 0x08, e.g. MNIST images),
// whose elements are kept as bytes instead of converted to float. Throws DataError (naming
// the element type found) for any other type.
ByteArray decode_idx_bytes(std::string_view bytes, const std::string& source_name);
ByteArray read_idx_bytes(const std::filesystem::path& path);

// read_idx_bytes for a gzip file (name ending in .gz) through a cache of its decompressed
// content: the first read writes a plain IDX copy into idx_cache_dir() (atomically), later
// reads take it, skipping the decompression (Fashion-MNIST's training images: about 0.2 s
// less). The copy's name holds a hash of the file's absolute path, size and modification
// time, so a changed file is decompressed again. A damaged copy is replaced, an unwritable
// cache only costs the decompression; other files are read directly. The copies are never
// removed by descent (delete the folder at will).
ByteArray read_idx_bytes_cached(const std::filesystem::path& path);
// $DESCENT_CACHE_DIR ("" or "none": no cache), else $XDG_CACHE_HOME/descent, else
// $HOME/.cache/descent; empty when there is none.
std::filesystem::path idx_cache_dir();
// Where the cached copy of `path` lives (empty: not cached, e.g. not a .gz file).
std::filesystem::path idx_cache_file(const std::filesystem::path& path);

// Integer class labels from an array with one value per row (shape [n] or [n, 1], e.g. an
// IDX labels file). Every value must be integral and in [0, num_classes).
// Throws ConfigError if num_classes < 1, DataError naming `source`, the index and the
// value otherwise.
std::vector<std::int32_t> to_labels(const Array& array, std::int32_t num_classes,
                                    const std::string& source);

}  // namespace descent::data
