#pragma once
// Numeric CSV files with one label column: "label,x1,x2,..." (or the label elsewhere).
//
// Each non-blank line is a row; fields are separated by a single delimiter character and
// may be surrounded by spaces or tabs. Quoting is not supported (the data is numeric).
// Blank lines are skipped; a trailing "\r" (Windows line ends) is removed.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "descent/data/dataset.hpp"

namespace descent::data {

struct CsvOptions {
  int label_column = 0;  // 0-based; negative counts from the end: -1 = last column
  enum class Header {
    auto_detect,  // the first row is a header if a non-empty field of it is not a number
    yes,
    no,
  };
  Header header = Header::auto_detect;
  char delimiter = ',';
  std::int32_t num_classes = 0;  // 0: inferred as max(label) + 1
};

// The result of read_csv: features [rows, columns - 1] and the label column.
using Labeled = Dataset;

// Decodes CSV text held in memory; `source_name` starts every message. Every row must have
// as many fields as the first row (header or data); every feature field must parse
// completely as a finite number that fits float32 (NaN, Inf, empty fields and trailing
// characters are errors); every label must be an integer in [0, num_classes) (in
// [0, 2^31 - 1) when num_classes is 0, the class count then being max(label) + 1). There
// must be at least 2 columns and 1 data row. A field quoted in a message is cut to 40 bytes,
// non-printable bytes written as \xHH.
// Throws ConfigError (bad options: label_column out of range for the text's columns,
// negative num_classes, delimiter '"', '\n' or '\r') or DataError naming the 1-based line
// and column and what was expected. Cost: O(text size); the output grows with the rows
// actually parsed.
Labeled decode_csv(std::string_view text, const std::string& source_name,
                   const CsvOptions& options = {});

// Reads the file at `path` and decodes it as decode_csv does (messages start with the path).
// Throws IoError (file missing, not a regular file or unreadable), ConfigError or DataError.
// Cost: the whole file is held in memory while parsing; O(file size).
Labeled read_csv(const std::filesystem::path& path, const CsvOptions& options = {});

}  // namespace descent::data
