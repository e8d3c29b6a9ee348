// libFuzzer target: compare::parse_grid, the GRID.toml reader of `descent compare`
// (compare/grid.hpp, docs/compare.md). It reads no file: the base config is only named.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "contract.hpp"
#include "descent/compare/grid.hpp"

using namespace descent;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::string source = "fuzz.toml";
  fuzz::expect_result_or_error<ConfigError>(source, [&] {
    const compare::GridSpec spec = compare::parse_grid(text, source, "/nonexistent");
    fuzz::require(!spec.config.empty(), "accepted a grid without config");
    fuzz::require(!spec.seeds.empty(), "accepted a grid without seeds");
    for (const compare::Axis& a : spec.vary) fuzz::require(!a.values.empty(), "accepted an empty axis " + a.key);
    for (const compare::Group& g : spec.groups) {
      for (const compare::Axis& a : g.vary) fuzz::require(!a.values.empty(), "accepted an empty axis " + a.key);
    }
  });
  return 0;
}
