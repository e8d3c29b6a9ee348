// libFuzzer target: data::decode_npy.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "contract.hpp"
#include "descent/data/npy.hpp"

using namespace descent;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const std::string source = "fuzz.npy";
  fuzz::expect_result_or_error<DataError>(source, [&] {
    const data::Array array = data::decode_npy(bytes, source);
    fuzz::require(!array.shape.empty() && array.shape.size() <= 32, "NPY rank outside 1..32");
    fuzz::require(fuzz::product_is(array.shape, 1, array.values.size()),
                  "shape product differs from the number of values");
    fuzz::require(array.values.size() <= size, "more values than the input has bytes");
    for (const float value : array.values) fuzz::require(std::isfinite(value), "non-finite value");
  });
  return 0;
}
