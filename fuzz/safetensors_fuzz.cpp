// libFuzzer target: io::decode_safetensors, and the round trip through encode_safetensors.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string_view>
#include <vector>

#include "contract.hpp"
#include "descent/io/safetensors.hpp"

using namespace descent;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const std::string source = "fuzz.safetensors";
  fuzz::expect_result_or_error<DataError>(source, [&] {
    const io::Safetensors file = io::decode_safetensors(bytes, source);
    std::set<std::string> names;
    std::size_t total = 0;
    std::vector<io::TensorView> views;
    for (const io::TensorData& tensor : file.tensors) {
      fuzz::require(names.insert(tensor.name).second, "duplicate tensor name");
      fuzz::require(tensor.name != "__metadata__", "tensor named __metadata__");
      std::size_t expected = 0;
      try {
        expected = io::dtype_size(tensor.dtype);
      } catch (const DataError&) {
        fuzz::violated("decoded an unknown dtype");
      }
      fuzz::require(fuzz::product_is(tensor.shape, expected, tensor.data.size()),
                    "byte count differs from product(shape) * dtype size");
      total += tensor.data.size();
      views.push_back({tensor.name, tensor.dtype, tensor.shape, tensor.data});
    }
    fuzz::require(total <= size, "more tensor bytes than the input holds");
    // What was decoded encodes, and decodes again to the same tensors and metadata.
    std::string encoded;
    try {
      encoded = io::encode_safetensors(views, file.metadata);
    } catch (const Error& error) {
      fuzz::violated(std::string("a decoded file does not encode: ") + error.what());
    }
    const io::Safetensors again = io::decode_safetensors(encoded, "round trip");
    fuzz::require(again.metadata == file.metadata, "metadata changed in the round trip");
    fuzz::require(again.tensors.size() == file.tensors.size(), "tensor count changed");
    for (std::size_t i = 0; i < file.tensors.size(); ++i) {
      const io::TensorData& a = file.tensors[i];
      const io::TensorData* b = again.find(a.name);
      fuzz::require(b != nullptr && b->dtype == a.dtype && b->shape == a.shape && b->data == a.data,
                    "tensor '" + a.name + "' changed in the round trip");
    }
  });
  return 0;
}
