#include "descent/data/npy.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "data/allocation_probe.hpp"
#include "descent/error.hpp"

namespace descent::data {
namespace {

namespace fs = std::filesystem;

class NpyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    dir_ = fs::temp_directory_path() /
           ("descent_npy_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path write(const std::string& name, const std::string& bytes) {
    const fs::path path = dir_ / name;
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }

  fs::path dir_;
};

// Little-endian bytes of a value (the test host, like every supported one, is little-endian).
template <typename T>
std::string le(T value) {
  static_assert(std::endian::native == std::endian::little);
  std::string bytes(sizeof(T), '\0');
  std::memcpy(bytes.data(), &value, sizeof(T));
  return bytes;
}

template <typename T>
std::string le_all(std::initializer_list<T> values) {
  std::string bytes;
  for (const T value : values) bytes += le(value);
  return bytes;
}

// A .npy file as numpy.save writes it: the dict padded with spaces so that the data
// starts at a multiple of 64 bytes, ended by '\n'.
std::string npy(int major, const std::string& dict, const std::string& data) {
  const std::size_t prefix = major == 1 ? 10 : 12;
  std::string header = dict;
  while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string bytes = "\x93NUMPY";
  bytes += static_cast<char>(major);
  bytes += '\0';
  if (major == 1) {
    bytes += le(static_cast<std::uint16_t>(header.size()));
  } else {
    bytes += le(static_cast<std::uint32_t>(header.size()));
  }
  return bytes + header + data;
}

std::string dict(const std::string& descr, const std::string& shape, bool fortran = false) {
  return "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") +
         ", 'shape': " + shape + ", }";
}

template <typename Error = DataError>
void expect_error(const fs::path& path, const std::string& what) {
  try {
    read_npy(path);
    ADD_FAILURE() << "expected an error mentioning '" << what << "'";
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find(path.string()), std::string::npos) << message;
    EXPECT_NE(message.find(what), std::string::npos) << message;
  }
}

TEST_F(NpyTest, WriterHelperAlignsDataTo64Bytes) {
  EXPECT_EQ(npy(1, dict("<f4", "(1,)"), "").size() % 64, 0u);
  EXPECT_EQ(npy(2, dict("<f4", "(1,)"), "").size() % 64, 0u);
}

TEST_F(NpyTest, ReadsFloat32V1) {
  const auto path =
      write("f4.npy", npy(1, dict("<f4", "(2, 3)"), le_all({1.5f, -2.0f, 0.25f, 3e38f, -0.0f, 7.0f})));
  const Array array = read_npy(path);
  EXPECT_EQ(array.shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(array.rows(), 2);
  EXPECT_EQ(array.row_size(), 3);
  EXPECT_EQ(array.values, (std::vector<float>{1.5f, -2.0f, 0.25f, 3e38f, -0.0f, 7.0f}));
}

TEST_F(NpyTest, ReadsFloat64V1) {
  const auto path = write("f8.npy", npy(1, dict("<f8", "(3,)"), le_all({0.1, -2.0, 1e10})));
  const Array array = read_npy(path);
  EXPECT_EQ(array.shape, (std::vector<std::int64_t>{3}));
  EXPECT_EQ(array.values, (std::vector<float>{0.1f, -2.0f, 1e10f}));
}

TEST_F(NpyTest, ReadsUint8V1) {
  const auto path = write("u1.npy", npy(1, dict("|u1", "(2, 2)"), std::string("\x00\x7f\x80\xff", 4)));
  EXPECT_EQ(read_npy(path).values, (std::vector<float>{0, 127, 128, 255}));
}

TEST_F(NpyTest, ReadsV2Header) {
  const auto path = write("v2.npy", npy(2, dict("<f4", "(1, 2)"), le_all({4.0f, -8.5f})));
  const Array array = read_npy(path);
  EXPECT_EQ(array.shape, (std::vector<std::int64_t>{1, 2}));
  EXPECT_EQ(array.values, (std::vector<float>{4.0f, -8.5f}));
}

TEST_F(NpyTest, ReadsV3HeaderWithIntegers) {
  const auto i4 = write("i4.npy", npy(3, dict("<i4", "(3,)"), le_all<std::int32_t>({-7, 0, 1 << 20})));
  EXPECT_EQ(read_npy(i4).values, (std::vector<float>{-7, 0, 1 << 20}));
  const auto i8 = write("i8.npy", npy(1, dict("<i8", "(2,)"), le_all<std::int64_t>({-3, 1LL << 40})));
  EXPECT_EQ(read_npy(i8).values, (std::vector<float>{-3, 1099511627776.0f}));
  const auto i1 = write("i1.npy", npy(1, dict("|i1", "(2,)"), std::string("\xff\x05", 2)));
  EXPECT_EQ(read_npy(i1).values, (std::vector<float>{-1, 5}));
}

TEST_F(NpyTest, AcceptsOtherKeyOrderAndQuotes) {
  const auto path = write(
      "order.npy", npy(1, "{\"shape\": (2,), \"fortran_order\": False, \"descr\": \"<f4\"}",
                       le_all({1.0f, 2.0f})));
  EXPECT_EQ(read_npy(path).values, (std::vector<float>{1.0f, 2.0f}));
}

TEST_F(NpyTest, ReadsZeroRowArray) {
  const Array array = read_npy(write("empty.npy", npy(1, dict("<f4", "(0, 5)"), "")));
  EXPECT_EQ(array.shape, (std::vector<std::int64_t>{0, 5}));
  EXPECT_TRUE(array.values.empty());
}

TEST_F(NpyTest, MissingFileIsIoError) { expect_error<IoError>(dir_ / "missing.npy", "cannot open"); }

TEST_F(NpyTest, RejectsBadMagic) {
  expect_error(write("magic.npy", std::string("\x93NUMPZ\x01\x00\x00\x00", 10)), "bad magic");
}

TEST_F(NpyTest, RejectsTruncatedPrefix) {
  expect_error(write("short.npy", "\x93NUM"), "truncated header: file holds 4 bytes");
}

TEST_F(NpyTest, RejectsHeaderLengthBeyondFile) {
  std::string bytes = npy(2, dict("<f4", "(1,)"), le(1.0f));
  bytes.resize(40);
  expect_error(write("cut.npy", bytes), "truncated header: header length is 116 bytes");
  std::string huge = "\x93NUMPY";
  huge += std::string("\x02\x00", 2) + le(std::uint32_t{0xFFFFFFFF}) + "{}";
  expect_error(write("huge_header.npy", huge), "header length is 4294967295 bytes");
}

TEST_F(NpyTest, RejectsUnsupportedVersion) {
  std::string bytes = npy(1, dict("<f4", "(1,)"), le(1.0f));
  bytes[6] = 4;
  expect_error(write("v4.npy", bytes), "unsupported format version 4.0");
}

TEST_F(NpyTest, RejectsTruncatedData) {
  expect_error(write("trunc.npy", npy(1, dict("<f4", "(2, 2)"), le_all({1.0f, 2.0f}))),
               "header claims shape 2x2 of '<f4' = 16 data bytes, file holds 8");
}

TEST_F(NpyTest, RejectsTrailingBytes) {
  expect_error(write("trail.npy", npy(1, dict("<f4", "(1,)"), le_all({1.0f, 2.0f}))),
               "file holds 8 (trailing bytes)");
}

TEST_F(NpyTest, RejectsFortranOrder) {
  expect_error(write("fortran.npy", npy(1, dict("<f4", "(2, 2)", true), le_all({1.f, 2.f, 3.f, 4.f}))),
               "fortran_order is True");
}

TEST_F(NpyTest, RejectsUnsupportedDtypes) {
  expect_error(write("be.npy", npy(1, dict(">f4", "(1,)"), le(1.0f))), "unsupported dtype '>f4'");
  expect_error(write("c8.npy", npy(1, dict("<c8", "(1,)"), le(1.0))), "unsupported dtype '<c8'");
  expect_error(write("rec.npy", npy(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }",
                                    le(1.0f))),
               "structured dtypes are not supported");
}

TEST_F(NpyTest, RejectsOverflowingShape) {
  expect_error(write("overflow.npy", npy(1, dict("<f8", "(4611686018427387904, 4)"), "")),
               "overflows int64");
  expect_error(write("toolong.npy", npy(1, dict("<f8", "(99999999999999999999,)"), "")),
               "expected a dimension");
}

TEST_F(NpyTest, RefusesHugeClaimWithoutAllocating) {
  expect_error(write("huge.npy", npy(1, dict("|u1", "(1000000, 1000000)"), "abc")),
               "= 1000000000000 data bytes, file holds 3");
}

TEST_F(NpyTest, RejectsMalformedDicts) {
  expect_error(write("nokey.npy", npy(1, "{'descr': '<f4', 'shape': (1,), }", le(1.0f))),
               "lacks 'fortran_order'");
  expect_error(write("extra.npy", npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}",
                                      le(1.0f))),
               "unexpected key 'x'");
  expect_error(write("neg.npy", npy(1, dict("<f4", "(-1,)"), "")), "expected a dimension");
  expect_error(write("scalar.npy", npy(1, dict("<f4", "()"), le(1.0f))), "shape is ()");
  expect_error(write("bool.npy", npy(1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}", le(1.0f))),
               "expected True or False");
  expect_error(write("open.npy", npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,", le(1.0f))),
               "unexpected end of the header");
  expect_error(write("after.npy", npy(1, dict("<f4", "(1,)") + " x", le(1.0f))),
               "unexpected characters after the header dict");
}

TEST_F(NpyTest, RejectsNonFiniteAndOutOfRangeValues) {
  expect_error(write("nan.npy", npy(1, dict("<f4", "(2,)"),
                                    le_all({1.0f, std::numeric_limits<float>::infinity()}))),
               "element 1 is inf");
  expect_error(write("big.npy", npy(1, dict("<f8", "(1,)"), le(1e300))), "element 0 is 1e+300");
}

// ---- decode_npy: the same reader on bytes in memory -------------------------------------

template <typename Error = DataError>
void expect_decode_error(const std::string& bytes, const std::string& what) {
  try {
    decode_npy(bytes, "memory.npy");
    ADD_FAILURE() << "expected an error mentioning '" << what << "'";
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_EQ(message.rfind("memory.npy: ", 0), 0u) << message;
    EXPECT_NE(message.find(what), std::string::npos) << message;
  }
}

TEST_F(NpyTest, DecodeAgreesWithRead) {
  const std::string bytes = npy(2, dict("<f4", "(2, 1)"), le_all({4.0f, -8.5f}));
  const Array from_file = read_npy(write("v2.npy", bytes));
  const Array decoded = decode_npy(bytes, "memory.npy");
  EXPECT_EQ(decoded.shape, from_file.shape);
  EXPECT_EQ(decoded.values, from_file.values);
  EXPECT_EQ(decoded.values, (std::vector<float>{4.0f, -8.5f}));
}

// A header claiming 10^12 elements over 3 data bytes is refused from the header alone; the
// allocation probe shows no request near that size (under AddressSanitizer, the asan stage
// of scripts/test, an attempt would abort the binary).
TEST_F(NpyTest, DecodeRefusesTenToTheTwelveElementsBeforeAllocating) {
  const std::string huge = npy(1, dict("|u1", "(1000000, 1000000)"), "abc");
  const std::string huge_f8 = npy(3, dict("<f8", "(1000, 1000, 1000, 1000)"), "abc");
  const std::size_t largest = testing::largest_allocation_during([&] {
    expect_decode_error(huge, "header claims shape 1000000x1000000 of '|u1' = 1000000000000 data "
                              "bytes, file holds 3");
    expect_decode_error(huge_f8, "= 8000000000000 data bytes, file holds 3");
  });
  EXPECT_LT(largest, 4096u);
}

TEST_F(NpyTest, RejectsRepeatedKeys) {
  expect_decode_error(npy(1, "{'descr': '<f4', 'descr': '<f8', 'fortran_order': False, 'shape': (1,), }",
                          le(1.0f)),
                      "duplicate key 'descr'");
  expect_decode_error(npy(1, "{'shape': (1,), 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",
                          le(1.0f)),
                      "duplicate key 'shape'");
}

TEST_F(NpyTest, QuotesHeaderTextShortAndPrintable) {
  const std::string long_descr(500, 'x');
  try {
    decode_npy(npy(1, dict(long_descr, "(1,)"), le(1.0f)), "memory.npy");
    ADD_FAILURE() << "a 500-character dtype was accepted";
  } catch (const DataError& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("unsupported dtype '" + std::string(40, 'x') + "...'"), std::string::npos)
        << message;
    EXPECT_LT(message.size(), 200u) << message;
  }
  expect_decode_error(npy(1, dict("<f\n4\x01", "(1,)"), le(1.0f)), "unsupported dtype '<f\\x0a4\\x01'");
  expect_decode_error(npy(1, "{'a\\b\x7f': 1}", ""), "unexpected key 'a\\x5cb\\x7f'");
}

}  // namespace
}  // namespace descent::data
