#include "descent/data/csv.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <sstream>
#include <string_view>
#include <system_error>

#include "descent/error.hpp"
#include "descent/io/atomic_file.hpp"

namespace descent::data {
namespace {

// `field` for a message: printable ASCII kept, other bytes as \xHH, at most 40 bytes shown.
std::string printable(std::string_view field) { return ascii_excerpt(field, 40); }

std::string_view trim(std::string_view text) {
  const auto first = text.find_first_not_of(" \t");
  if (first == std::string_view::npos) return {};
  const auto last = text.find_last_not_of(" \t");
  return text.substr(first, last - first + 1);
}

void split(std::string_view line, char delimiter, std::vector<std::string_view>& fields) {
  fields.clear();
  std::size_t start = 0;
  while (true) {
    const auto end = line.find(delimiter, start);
    if (end == std::string_view::npos) {
      fields.push_back(trim(line.substr(start)));
      return;
    }
    fields.push_back(trim(line.substr(start, end - start)));
    start = end + 1;
  }
}

enum class Parse { ok, not_a_number, out_of_range };

// Parses the whole (trimmed) field as a double. An optional leading '+' is accepted; empty
// fields and trailing characters are not numbers. NaN and Inf parse (the caller rejects them).
Parse parse_number(std::string_view field, double& value) {
  if (field.size() > 1 && field.front() == '+' && field[1] != '-' && field[1] != '+') {
    field.remove_prefix(1);
  }
  const char* last = field.data() + field.size();
  const auto [end, error] = std::from_chars(field.data(), last, value);
  if (field.empty() || end != last || error == std::errc::invalid_argument) {
    return Parse::not_a_number;
  }
  return error == std::errc() ? Parse::ok : Parse::out_of_range;
}

bool is_number(std::string_view field) {
  double value = 0.0;
  return parse_number(field, value) != Parse::not_a_number;
}

class RowParser {
 public:
  RowParser(std::string name, const CsvOptions& options) : name_(std::move(name)), options_(options) {}

  [[noreturn]] void fail(std::size_t line, std::size_t column, const std::string& what) const {
    throw DataError(name_ + ": line " + std::to_string(line) + ", column " +
                    std::to_string(column) + ": " + what);
  }

  double number(std::string_view field, std::size_t line, std::size_t column) const {
    if (field.empty()) fail(line, column, "empty field, expected a number");
    double value = 0.0;
    const Parse status = parse_number(field, value);
    if (status == Parse::not_a_number) {
      fail(line, column, "'" + printable(field) + "' is not a number");
    }
    if (status == Parse::out_of_range) {
      fail(line, column, "'" + printable(field) + "' is outside the float64 range");
    }
    if (!std::isfinite(value)) {
      fail(line, column, "'" + printable(field) + "' is not finite, expected a finite number");
    }
    return value;
  }

  float feature(std::string_view field, std::size_t line, std::size_t column) const {
    const double value = number(field, line, column);
    if (std::abs(value) > std::numeric_limits<float>::max()) {
      fail(line, column, "'" + printable(field) + "' is outside the float32 range");
    }
    return static_cast<float>(value);
  }

  std::int32_t label(std::string_view field, std::size_t line, std::size_t column) const {
    const double value = number(field, line, column);
    const double limit = options_.num_classes > 0 ? options_.num_classes
                                                  : std::numeric_limits<std::int32_t>::max();
    if (value != std::floor(value) || value < 0.0 || value >= limit) {
      std::ostringstream expected;
      expected << "label '" << printable(field) << "' is not an integer in [0, ";
      if (options_.num_classes > 0) {
        expected << options_.num_classes << ")";
      } else {
        expected << "2^31 - 1)";
      }
      fail(line, column, expected.str());
    }
    return static_cast<std::int32_t>(value);
  }

 private:
  std::string name_;
  const CsvOptions& options_;
};

}  // namespace

Labeled decode_csv(std::string_view text, const std::string& source_name,
                   const CsvOptions& options) {
  const std::string& name = source_name;
  if (options.delimiter == '"' || options.delimiter == '\n' || options.delimiter == '\r') {
    throw ConfigError(name + ": delimiter must not be a quote or line break");
  }
  if (options.num_classes < 0) {
    throw ConfigError(name + ": num_classes is " + std::to_string(options.num_classes) +
                      ", expected >= 0 (0 infers it from the labels)");
  }
  const RowParser parser(name, options);

  Labeled result;
  std::vector<std::string_view> fields;
  std::size_t columns = 0;
  std::size_t first_line = 0;
  std::size_t label_index = 0;
  std::size_t rows = 0;
  std::int32_t max_label = -1;

  std::size_t line_number = 0;
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + start, end - start);
    start = end + 1;
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (trim(line).empty()) continue;
    split(line, options.delimiter, fields);

    if (columns == 0) {
      columns = fields.size();
      first_line = line_number;
      if (columns < 2) {
        throw DataError(name + ": line " + std::to_string(line_number) + " has " +
                        std::to_string(columns) +
                        " field, expected at least 2 (a label and a feature)");
      }
      const auto signed_columns = static_cast<long long>(columns);
      const long long resolved =
          options.label_column < 0 ? signed_columns + options.label_column : options.label_column;
      if (resolved < 0 || resolved >= signed_columns) {
        throw ConfigError(name + ": label_column " + std::to_string(options.label_column) +
                          " is out of range for " + std::to_string(columns) + " columns");
      }
      label_index = static_cast<std::size_t>(resolved);
      bool header = options.header == CsvOptions::Header::yes;
      if (options.header == CsvOptions::Header::auto_detect) {
        header = std::any_of(fields.begin(), fields.end(), [](std::string_view field) {
          return !field.empty() && !is_number(field);
        });
      }
      if (header) continue;
    } else if (fields.size() != columns) {
      throw DataError(name + ": line " + std::to_string(line_number) + " has " +
                      std::to_string(fields.size()) + " fields, expected " +
                      std::to_string(columns) + " (as on line " + std::to_string(first_line) +
                      ")");
    }

    for (std::size_t column = 0; column < columns; ++column) {
      if (column == label_index) {
        const std::int32_t label = parser.label(fields[column], line_number, column + 1);
        result.labels.push_back(label);
        max_label = std::max(max_label, label);
      } else {
        result.features.values.push_back(parser.feature(fields[column], line_number, column + 1));
      }
    }
    ++rows;
  }

  if (rows == 0) throw DataError(name + ": no data rows, expected at least 1");
  result.features.shape = {static_cast<std::int64_t>(rows),
                           static_cast<std::int64_t>(columns - 1)};
  result.num_classes = options.num_classes > 0 ? options.num_classes : max_label + 1;
  return result;
}

Labeled read_csv(const std::filesystem::path& path, const CsvOptions& options) {
  const std::string name = path.string();
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error)) {
    throw IoError(name + ": cannot open: no such regular file");
  }
  const std::string text = io::read_file(path, std::numeric_limits<std::size_t>::max());
  return decode_csv(text, name, options);
}

}  // namespace descent::data
