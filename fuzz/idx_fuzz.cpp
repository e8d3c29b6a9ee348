// libFuzzer target: data::decode_idx (plain and gzip IDX) and data::to_labels.
//
// A custom mutator reaches the IDX parser behind the gzip layer: for an input that is a valid
// gzip stream it mutates the decompressed bytes half of the time and compresses them again
// (other inputs, and the other half, get libFuzzer's byte mutations). Without it nearly every
// mutation of a compressed seed is merely a corrupt deflate stream.
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "contract.hpp"
#include "descent/data/idx.hpp"

using namespace descent;

extern "C" std::size_t LLVMFuzzerMutate(std::uint8_t* data, std::size_t size, std::size_t max_size);

namespace {

constexpr std::size_t max_inflated = 1 << 16;

// The decompressed bytes of a gzip stream of at most max_inflated bytes, or nothing.
bool inflate_small(const std::uint8_t* data, std::size_t size, std::vector<std::uint8_t>& out) {
  if (size < 2 || data[0] != 0x1f || data[1] != 0x8b) return false;
  z_stream stream{};
  if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK) return false;
  out.resize(max_inflated);
  stream.next_in = const_cast<std::uint8_t*>(data);
  stream.avail_in = static_cast<uInt>(size);
  stream.next_out = out.data();
  stream.avail_out = static_cast<uInt>(out.size());
  const int status = inflate(&stream, Z_FINISH);
  out.resize(stream.total_out);
  inflateEnd(&stream);
  return status == Z_STREAM_END;
}

// `bytes` gzip-compressed into data[0, max_size), or 0 if it does not fit.
std::size_t deflate_into(const std::vector<std::uint8_t>& bytes, std::uint8_t* data,
                         std::size_t max_size) {
  z_stream stream{};
  if (deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8,
                   Z_DEFAULT_STRATEGY) != Z_OK) {
    return 0;
  }
  stream.next_in = const_cast<std::uint8_t*>(bytes.data());
  stream.avail_in = static_cast<uInt>(bytes.size());
  stream.next_out = data;
  stream.avail_out = static_cast<uInt>(max_size);
  const int status = deflate(&stream, Z_FINISH);
  const std::size_t written = stream.total_out;
  deflateEnd(&stream);
  return status == Z_STREAM_END ? written : 0;
}

}  // namespace

extern "C" std::size_t LLVMFuzzerCustomMutator(std::uint8_t* data, std::size_t size,
                                               std::size_t max_size, unsigned int seed) {
  std::vector<std::uint8_t> inflated;
  if (seed % 2 == 0 && inflate_small(data, size, inflated)) {
    const std::size_t used = inflated.size();
    inflated.resize(std::max<std::size_t>(used * 2, 64));
    inflated.resize(LLVMFuzzerMutate(inflated.data(), used, inflated.size()));
    if (const std::size_t written = deflate_into(inflated, data, max_size)) return written;
  }
  return LLVMFuzzerMutate(data, size, max_size);
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const std::string source = "fuzz.idx";
  fuzz::expect_result_or_error<DataError>(source, [&] {
    const data::Array array = data::decode_idx(bytes, source);
    fuzz::require(!array.shape.empty() && array.shape.size() <= 4, "IDX rank outside 1..4");
    for (const std::int64_t dim : array.shape) {
      fuzz::require(dim >= 0 && dim <= 0xFFFFFFFFll, "IDX dimension outside uint32");
    }
    fuzz::require(fuzz::product_is(array.shape, 1, array.values.size()),
                  "shape product differs from the number of values");
    // What the input can hold: 1 byte per element plain, deflate's 1032:1 if compressed.
    fuzz::require(array.values.size() <= size * 1032 + 4096, "more values than the input can hold");
    for (const float value : array.values) fuzz::require(std::isfinite(value), "non-finite value");
    fuzz::expect_result_or_error<DataError>(source, [&] {
      const auto labels = data::to_labels(array, 10, source);
      fuzz::require(labels.size() == array.values.size(), "label count differs from values");
      for (const std::int32_t label : labels) {
        fuzz::require(label >= 0 && label < 10, "label outside [0, 10)");
      }
    });
  });
  return 0;
}
