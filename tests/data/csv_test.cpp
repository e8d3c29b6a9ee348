#include "descent/data/csv.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "descent/error.hpp"

namespace descent::data {
namespace {

namespace fs = std::filesystem;

class CsvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    dir_ = fs::temp_directory_path() /
           ("descent_csv_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path write(const std::string& name, const std::string& text) {
    const fs::path path = dir_ / name;
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }

  fs::path dir_;
};

template <typename Error = DataError>
void expect_error(const fs::path& path, const CsvOptions& options, const std::string& what) {
  try {
    read_csv(path, options);
    ADD_FAILURE() << "expected an error mentioning '" << what << "'";
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find(path.string()), std::string::npos) << message;
    EXPECT_NE(message.find(what), std::string::npos) << message;
  }
}

TEST_F(CsvTest, ReadsLabelFirstWithDetectedHeader) {
  const auto path = write("a.csv", "label,x1,x2\n2,0.5,-1\n0,1e-3,+4\n1, 7 ,8.25\n");
  const Labeled data = read_csv(path);
  EXPECT_EQ(data.features.shape, (std::vector<std::int64_t>{3, 2}));
  EXPECT_EQ(data.features.values, (std::vector<float>{0.5f, -1.0f, 1e-3f, 4.0f, 7.0f, 8.25f}));
  EXPECT_EQ(data.labels, (std::vector<std::int32_t>{2, 0, 1}));
  EXPECT_EQ(data.num_classes, 3);
  EXPECT_EQ(data.size(), 3);
  EXPECT_EQ(data.dim(), 2);
}

TEST_F(CsvTest, ReadsWithoutHeaderLabelLast) {
  const auto path = write("b.csv", "1.5,2,3\r\n4,5,1\r\n\r\n");
  const Labeled data = read_csv(path, {.label_column = -1});
  EXPECT_EQ(data.features.shape, (std::vector<std::int64_t>{2, 2}));
  EXPECT_EQ(data.features.values, (std::vector<float>{1.5f, 2.0f, 4.0f, 5.0f}));
  EXPECT_EQ(data.labels, (std::vector<std::int32_t>{3, 1}));
  EXPECT_EQ(data.num_classes, 4);
}

TEST_F(CsvTest, ReadsMiddleLabelColumnAndOtherDelimiter) {
  const auto path = write("c.tsv", "1\t0\t2\n3\t1\t4\n");
  const Labeled data = read_csv(path, {.label_column = 1, .delimiter = '\t', .num_classes = 5});
  EXPECT_EQ(data.features.values, (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(data.labels, (std::vector<std::int32_t>{0, 1}));
  EXPECT_EQ(data.num_classes, 5);
}

TEST_F(CsvTest, HeaderYesSkipsANumericFirstRow) {
  const auto path = write("d.csv", "0,1,2\n1,5,6\n");
  const Labeled data = read_csv(path, {.header = CsvOptions::Header::yes});
  EXPECT_EQ(data.features.shape, (std::vector<std::int64_t>{1, 2}));
  EXPECT_EQ(data.labels, (std::vector<std::int32_t>{1}));
}

TEST_F(CsvTest, HeaderNoRejectsATextFirstRow) {
  const auto path = write("e.csv", "label,x\n1,5\n");
  expect_error(path, {.header = CsvOptions::Header::no}, "line 1, column 1: 'label' is not a number");
}

TEST_F(CsvTest, SkipsBlankLinesAndCountsThemInLineNumbers) {
  const auto path = write("f.csv", "y,x\n\n1,2\n   \n0,abc\n");
  expect_error(path, {}, "line 5, column 2: 'abc' is not a number");
}

TEST_F(CsvTest, MissingFileIsIoError) {
  expect_error<IoError>(dir_ / "missing.csv", {}, "cannot open");
}

TEST_F(CsvTest, RejectsNaN) {
  expect_error(write("nan.csv", "1,2\n0,nan\n"), {}, "line 2, column 2: 'nan' is not finite");
}

TEST_F(CsvTest, RejectsInfinity) {
  expect_error(write("inf.csv", "1,-inf\n"), {}, "line 1, column 2: '-inf' is not finite");
  expect_error(write("inf2.csv", "1,+Infinity\n"), {}, "'+Infinity' is not finite");
}

TEST_F(CsvTest, RejectsValuesBeyondFloat32) {
  expect_error(write("big.csv", "1,1e39\n"), {}, "'1e39' is outside the float32 range");
  expect_error(write("huge.csv", "1,1e400\n"), {}, "'1e400' is outside the float64 range");
}

TEST_F(CsvTest, RejectsEmptyField) {
  expect_error(write("empty.csv", "1,2,3\n0,,3\n"), {}, "line 2, column 2: empty field");
}

TEST_F(CsvTest, RejectsEmptyFieldInFirstRowRatherThanTakingItAsHeader) {
  expect_error(write("empty1.csv", "1,,3\n0,2,3\n"), {}, "line 1, column 2: empty field");
}

TEST_F(CsvTest, RejectsTrailingCharacters) {
  expect_error(write("junk.csv", "0,1\n1,2.5x\n"), {}, "line 2, column 2: '2.5x' is not a number");
  expect_error(write("hex.csv", "0,1\n1,0x10\n"), {}, "'0x10' is not a number");
}

TEST_F(CsvTest, RejectsRaggedRows) {
  expect_error(write("ragged.csv", "y,a,b\n1,2,3\n0,1\n"), {},
               "line 3 has 2 fields, expected 3 (as on line 1)");
  expect_error(write("ragged2.csv", "1,2,3\n0,1,2,3\n"), {}, "line 2 has 4 fields, expected 3");
}

TEST_F(CsvTest, RejectsLabelOutOfRange) {
  expect_error(write("range.csv", "0,1\n3,1\n"), {.num_classes = 3},
               "line 2, column 1: label '3' is not an integer in [0, 3)");
  expect_error(write("neg.csv", "-1,1\n"), {}, "label '-1' is not an integer");
}

TEST_F(CsvTest, RejectsNonIntegralLabel) {
  expect_error(write("frac.csv", "1,1.5\n"), {.label_column = -1},
               "line 1, column 2: label '1.5' is not an integer");
}

TEST_F(CsvTest, RejectsSingleColumn) {
  expect_error(write("one.csv", "1\n2\n"), {}, "expected at least 2");
}

TEST_F(CsvTest, RejectsHeaderOnly) {
  expect_error(write("header.csv", "y,x\n"), {}, "no data rows");
  expect_error(write("blank.csv", "\n\n"), {}, "no data rows");
}

TEST_F(CsvTest, RejectsLabelColumnOutOfRange) {
  const auto path = write("cols.csv", "1,2\n");
  expect_error<ConfigError>(path, {.label_column = 2}, "label_column 2 is out of range for 2");
  expect_error<ConfigError>(path, {.label_column = -3}, "label_column -3 is out of range");
}

TEST_F(CsvTest, RejectsBadOptions) {
  const auto path = write("opts.csv", "1,2\n");
  expect_error<ConfigError>(path, {.num_classes = -1}, "num_classes is -1");
  expect_error<ConfigError>(path, {.delimiter = '"'}, "delimiter");
}

// ---- decode_csv: the same reader on text in memory --------------------------------------

TEST_F(CsvTest, DecodeAgreesWithRead) {
  const std::string text = "label,x1,x2\n2,0.5,-1\n0,1e-3,+4\n";
  const Labeled from_file = read_csv(write("a.csv", text));
  const Labeled decoded = decode_csv(text, "memory.csv");
  EXPECT_EQ(decoded.features.shape, from_file.features.shape);
  EXPECT_EQ(decoded.features.values, from_file.features.values);
  EXPECT_EQ(decoded.labels, from_file.labels);
  EXPECT_EQ(decoded.num_classes, 3);
  try {
    decode_csv("1,2\n0,x\n", "memory.csv");
    ADD_FAILURE() << "a text feature was accepted";
  } catch (const DataError& error) {
    EXPECT_STREQ(error.what(), "memory.csv: line 2, column 2: 'x' is not a number");
  }
}

// A message quotes at most 40 bytes of a field and writes control and non-ASCII bytes as \xHH,
// so a hostile file cannot make it long or split it over lines.
TEST_F(CsvTest, QuotesFieldsShortAndPrintable) {
  const std::string long_field(10000, '7');
  const auto path = write("long.csv", "1,2\n0," + long_field + "x\n");
  // Built with append: gcc 12's -Warray-bounds misfires on operator+ of a temporary here.
  std::string expected = "line 2, column 2: '";
  expected.append(40, '7').append("...' is not a number");
  expect_error(path, {}, expected);
  try {
    read_csv(path);
  } catch (const DataError& error) {
    EXPECT_LT(std::string(error.what()).size(), path.string().size() + 100) << error.what();
  }
  expect_error(write("binary.csv", std::string("1,2\n0,a\x01\xff\\b\r\n")), {},
               "line 2, column 2: 'a\\x01\\xff\\x5cb' is not a number");
  expect_error(write("escape.csv", std::string("1\x1b[31m,2\n")), {.header = CsvOptions::Header::no},
               "line 1, column 1: '1\\x1b[31m' is not a number");
}

}  // namespace
}  // namespace descent::data
