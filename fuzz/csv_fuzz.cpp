// libFuzzer target: data::decode_csv, under three sets of options.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "contract.hpp"
#include "descent/data/csv.hpp"

using namespace descent;

namespace {

void check(std::string_view text, const data::CsvOptions& options) {
  const std::string source = "fuzz.csv";
  fuzz::expect_result_or_error<DataError, ConfigError>(source, [&] {
    const data::Labeled result = data::decode_csv(text, source, options);
    const auto& shape = result.features.shape;
    fuzz::require(shape.size() == 2, "features are not 2-D");
    fuzz::require(shape[0] >= 1 && shape[1] >= 1, "no rows or no feature columns");
    fuzz::require(static_cast<std::size_t>(shape[0]) == result.labels.size(),
                  "row count differs from the label count");
    fuzz::require(shape[0] <= static_cast<std::int64_t>(text.size()) &&
                      shape[1] <= static_cast<std::int64_t>(text.size()),
                  "more rows or columns than the text has bytes");
    fuzz::require(static_cast<std::size_t>(shape[0] * shape[1]) == result.features.values.size(),
                  "shape product differs from the number of values");
    fuzz::require(result.num_classes >= 1, "num_classes < 1");
    if (options.num_classes > 0) {
      fuzz::require(result.num_classes == options.num_classes, "num_classes not the one given");
    }
    for (const std::int32_t label : result.labels) {
      fuzz::require(label >= 0 && label < result.num_classes, "label outside [0, num_classes)");
    }
    for (const float value : result.features.values) {
      fuzz::require(std::isfinite(value), "non-finite feature");
    }
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  check(text, {});
  check(text, {.label_column = -1, .header = data::CsvOptions::Header::yes, .num_classes = 10});
  check(text, {.label_column = 1,
               .header = data::CsvOptions::Header::no,
               .delimiter = ';',
               .num_classes = 3});
  return 0;
}
