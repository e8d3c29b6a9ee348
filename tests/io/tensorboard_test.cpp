// The TensorBoard encoder against values worked out from the specifications: CRC-32C check
// values (RFC 3720, B.4), TFRecord framing of a hand-built record, Event/Summary protobuf
// bytes written out by hand, histograms counted by hand. The run folder's files are read
// by the independent reader (tests/reference/tensorboard_reader.py) in tests/cli.
#include "descent/io/tensorboard.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cfloat>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "descent/error.hpp"
#include "support/expect_error.hpp"

namespace descent::io {
namespace {

namespace fs = std::filesystem;

std::string bytes(std::initializer_list<int> b) {
  std::string s;
  for (const int x : b) s.push_back(static_cast<char>(x));
  return s;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(Crc32c, KnownVectors) {
  EXPECT_EQ(crc32c("123456789"), 0xE3069283U);            // the CRC catalogue's check value
  EXPECT_EQ(crc32c(""), 0U);
  EXPECT_EQ(crc32c(std::string(32, '\0')), 0x8A9136AAU);   // RFC 3720 B.4: 32 bytes of zeros
  EXPECT_EQ(crc32c(std::string(32, '\xff')), 0x62A8AB43U); // 32 bytes of 0xFF
  std::string ascending;
  for (int i = 0; i < 32; ++i) ascending.push_back(static_cast<char>(i));
  EXPECT_EQ(crc32c(ascending), 0x46DD794EU);               // 0x00, 0x01, ..., 0x1F
  // Continuing a CRC over a second piece is the CRC of the whole.
  EXPECT_EQ(crc32c("56789", crc32c("1234")), 0xE3069283U);
}

TEST(Crc32c, Mask) {
  EXPECT_EQ(mask_crc32c(0), 0xa282ead8U);
  // ((0xE3069283 >> 15) | (0xE3069283 << 17)) = 0x0001C60D | 0x25060000 = 0x2507C60D; + 0xa282ead8
  EXPECT_EQ(mask_crc32c(0xE3069283U), 0xC78AB0E5U);
}

TEST(TfRecord, FramesAHandBuiltRecord) {
  // "abc": length 3 as 8 little-endian bytes, masked CRC-32C of them, the data, masked CRC-32C
  // of the data (the CRCs from a bitwise CRC-32C of the same bytes).
  const std::string want = bytes({0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xb0, 0x99, 0x49, 0x0e, 0x61, 0x62,
                                  0x63, 0x6e, 0x57, 0xf1, 0x21});
  EXPECT_EQ(frame_record("abc"), want);
  const std::string empty = frame_record("");
  ASSERT_EQ(empty.size(), 16U);
  EXPECT_EQ(empty.substr(12), bytes({0xd8, 0xea, 0x82, 0xa2}));  // mask(crc32c("")) = mask(0)
}

TEST(EventProto, ScalarEventBytes) {
  const std::vector<ScalarValue> v{{"lr", 0.25F}};
  // Event{wall_time: 1.5, step: 7, summary: Summary{value: [Value{tag: "lr", simple_value: 0.25}]}}
  const std::string want = bytes({0x09, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f,  // 1: double 1.5
                                  0x10, 0x07,                            // 2: varint 7
                                  0x2a, 0x0b,                            // 5: 11 bytes
                                  0x0a, 0x09,                            //   Summary 1: 9 bytes
                                  0x0a, 0x02, 'l', 'r',                  //     Value 1: "lr"
                                  0x15, 0, 0, 0x80, 0x3e});              //     Value 2: float 0.25
  EXPECT_EQ(encode_scalars_event(1.5, 7, v), want);
  // A step past 127 takes two varint bytes: 300 = 0xAC 0x02.
  EXPECT_EQ(encode_scalars_event(1.5, 300, v).substr(9, 3), bytes({0x10, 0xac, 0x02}));
}

TEST(EventProto, FileVersionEvent) {
  const std::string e = encode_file_version_event(0.5);
  EXPECT_EQ(e, bytes({0x09, 0, 0, 0, 0, 0, 0, 0xe0, 0x3f, 0x1a, 13}) + "brain.Event:2");
}

TEST(EventProto, HistogramEventBytes) {
  Histogram h;
  h.min = 1, h.max = 2, h.num = 2, h.sum = 3, h.sum_squares = 5;
  h.bucket_limit = {2.0};
  h.bucket = {1.0};
  const std::vector<HistogramValue> v{{"w", h}};
  const std::string e = encode_histograms_event(0.0, 0, v);
  // wall_time 0.0 is written (8 zero bytes); step 0 is left out (proto3's default).
  ASSERT_EQ(e.substr(0, 9), bytes({0x09, 0, 0, 0, 0, 0, 0, 0, 0}));
  // HistogramProto: 5 doubles of 9 bytes, then field 6 and 7 packed: 2 + 8 bytes each = 65.
  const std::string histo = bytes({0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x11, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x19, 0, 0,
                                   0, 0, 0, 0, 0, 0x40, 0x21, 0, 0, 0, 0, 0, 0, 0x08, 0x40, 0x29, 0, 0, 0, 0, 0, 0,
                                   0x14, 0x40, 0x32, 0x08, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x3a, 0x08, 0, 0, 0, 0, 0, 0,
                                   0xf0, 0x3f});
  const std::string value = bytes({0x0a, 0x01, 'w', 0x2a, 65}) + histo;
  const std::string summary = bytes({0x0a, static_cast<int>(value.size())}) + value;
  EXPECT_EQ(e.substr(9), bytes({0x2a, static_cast<int>(summary.size())}) + summary);
}

TEST(Histogram, CountsByHand) {
  const std::vector<float> x{1, 2, 3, 4, std::nanf(""), std::numeric_limits<float>::infinity()};
  const Histogram h = make_histogram(std::span<const float>(x), 2);
  EXPECT_EQ(h.num, 4);  // the non-finite values are left out
  EXPECT_EQ(h.min, 1);
  EXPECT_EQ(h.max, 4);
  EXPECT_EQ(h.sum, 10);
  EXPECT_EQ(h.sum_squares, 30);
  ASSERT_EQ(h.bucket_limit.size(), 2U);
  EXPECT_EQ(h.bucket_limit[0], 2.5);
  EXPECT_EQ(h.bucket_limit[1], DBL_MAX);
  EXPECT_EQ(h.bucket, (std::vector<double>{2, 2}));
  // A value on a limit goes to the bucket above it: [lim[i-1], lim[i]).
  const std::vector<double> y{0, 1, 2, 3, 4};  // limits 1, 2, 3, DBL_MAX
  const Histogram g = make_histogram(std::span<const double>(y), 4);
  EXPECT_EQ(g.bucket_limit, (std::vector<double>{1, 2, 3, DBL_MAX}));
  EXPECT_EQ(g.bucket, (std::vector<double>{1, 1, 1, 2}));
  // All equal: one bucket.
  const std::vector<float> z(5, 0.5F);
  const Histogram c = make_histogram(std::span<const float>(z), 30);
  EXPECT_EQ(c.bucket, (std::vector<double>{5}));
  EXPECT_EQ(make_histogram(std::span<const float>(), 30).num, 0);
}

class EventFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("descent_tb_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(EventFileTest, WritesFramedEventsAndReopenCutsBack) {
  const fs::path p = dir_ / event_file_name(1000.0);
  EXPECT_TRUE(p.filename().string().starts_with("events.out.tfevents.1000."));
  std::uint64_t after_first = 0;
  {
    EventFileWriter w = EventFileWriter::create(p, 2.0);
    after_first = w.size();
    EXPECT_EQ(after_first, 16 + encode_file_version_event(2.0).size());
    const std::vector<ScalarValue> v{{"a", 1.0F}};
    w.write(encode_scalars_event(3.0, 1, v));
    w.flush();
    EXPECT_EQ(w.size(), fs::file_size(p));
  }
  EXPECT_EQ(slurp(p), frame_record(encode_file_version_event(2.0)) +
                          frame_record(encode_scalars_event(3.0, 1, std::vector<ScalarValue>{{"a", 1.0F}})));
  {
    EventFileWriter w = EventFileWriter::reopen(p, after_first);
    EXPECT_EQ(fs::file_size(p), after_first);
    w.write("x");
    EXPECT_EQ(w.size(), after_first + 17);
  }
  EXPECT_EQ(slurp(p), frame_record(encode_file_version_event(2.0)) + frame_record("x"));
  testing::expect_error<DataError>([&] { (void)EventFileWriter::reopen(p, 1000000); },
                                   {p.string(), "fewer than the 1000000"});
  testing::expect_error<IoError>([&] { (void)EventFileWriter::create(dir_ / "no" / "such", 0.0); },
                                 {(dir_ / "no" / "such").string()});
}

}  // namespace
}  // namespace descent::io
