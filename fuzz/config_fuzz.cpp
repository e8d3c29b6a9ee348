// libFuzzer target: train::parse_train_config, with overrides, and the to_toml round trip.
// Lines of the input that start with "#--set " are TOML comments, so the text parses the
// same with them; their rest is also passed as a --set override, so the corpus stays
// readable TOML and the override parser is fuzzed too.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "contract.hpp"
#include "descent/train/config.hpp"

using namespace descent;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  constexpr std::string_view marker = "#--set ";
  std::vector<std::string> overrides;
  for (std::size_t start = 0; start < text.size();) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(start, end - start);
    if (line.starts_with(marker)) overrides.emplace_back(line.substr(marker.size()));
    start = end + 1;
  }
  const std::string source = "fuzz.toml";
  fuzz::expect_result_or_error<ConfigError>(source, [&] {
    const train::TrainConfig config = train::parse_train_config(text, source, overrides);
    fuzz::require(config.source == source, "source not kept");
    // The documented round trip: parse_train_config(to_toml(c), c.source) == c.
    const std::string written = train::to_toml(config);
    train::TrainConfig again;
    try {
      again = train::parse_train_config(written, config.source);
    } catch (const Error& error) {
      fuzz::violated(std::string("to_toml output does not parse: ") + error.what() + "\n" + written);
    }
    fuzz::require(again == config, "to_toml round trip changed the config:\n" + written);
  });
  return 0;
}
