// libFuzzer target: train::decode_checkpoint, and the round trip through encode_checkpoint.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "contract.hpp"
#include "descent/train/checkpoint.hpp"

using namespace descent;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const std::string source = "fuzz.ckpt";
  fuzz::expect_result_or_error<DataError>(source, [&] {
    const train::Checkpoint c = train::decode_checkpoint(bytes, source);
    fuzz::require(c.step >= 0, "negative step");
    fuzz::require(c.state.is_object(), "state is not an object");
    std::size_t total = 0;
    for (const auto& [name, t] : c.tensors) total += t.nbytes();
    fuzz::require(total <= size, "more tensor bytes than the input holds");
    // What was decoded encodes, and decodes again to the same content.
    const train::Checkpoint again = train::decode_checkpoint(train::encode_checkpoint(c), "round trip");
    fuzz::require(again.step == c.step && again.state == c.state && again.config_toml == c.config_toml,
                  "metadata changed in the round trip");
    fuzz::require(again.tensors.size() == c.tensors.size(), "tensor count changed");
    for (std::size_t i = 0; i < c.tensors.size(); ++i) {
      const Tensor& a = c.tensors[i].second;
      const Tensor& b = again.tensors[i].second;
      fuzz::require(again.tensors[i].first == c.tensors[i].first && a.dtype() == b.dtype() &&
                        a.numel() == b.numel() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0,
                    "tensor '" + c.tensors[i].first + "' changed in the round trip");
    }
  });
  return 0;
}
