#include "descent/io/safetensors.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "descent/error.hpp"

namespace descent::io {
namespace {

namespace fs = std::filesystem;

template <typename T>
std::vector<std::byte> to_bytes(const std::vector<T>& values) {
  std::vector<std::byte> bytes(values.size() * sizeof(T));
  if (!bytes.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

std::string little_endian_u64(std::uint64_t value) {
  std::string bytes;
  for (int i = 0; i < 8; ++i) {
    bytes.push_back(static_cast<char>(value & 0xFF));
    value >>= 8;
  }
  return bytes;
}

// A file: the 8-byte length of `header`, `header`, then `data`.
std::string make_file(const std::string& header, const std::string& data) {
  return little_endian_u64(header.size()) + header + data;
}

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("descent_safetensors_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path write_raw(const std::string& bytes, const std::string& name = "model.safetensors") {
    const fs::path path = dir_ / name;
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return path;
  }

  // Both read_safetensors and decode_safetensors reject `bytes` with DataError whose message
  // names the file and contains `expected`.
  void expect_rejected(const std::string& bytes, const std::string& expected) {
    const fs::path path = write_raw(bytes, "bad.safetensors");
    try {
      static_cast<void>(read_safetensors(path));
      ADD_FAILURE() << "read_safetensors accepted a file expected to fail with: " << expected;
    } catch (const DataError& error) {
      const std::string message = error.what();
      EXPECT_EQ(message.rfind(path.string() + ": ", 0), 0u) << message;
      EXPECT_NE(message.find(expected), std::string::npos) << message;
    }
    try {
      static_cast<void>(decode_safetensors(bytes, "memory.safetensors"));
      ADD_FAILURE() << "decode_safetensors accepted bytes expected to fail with: " << expected;
    } catch (const DataError& error) {
      const std::string message = error.what();
      EXPECT_EQ(message.rfind("memory.safetensors: ", 0), 0u) << message;
      EXPECT_NE(message.find(expected), std::string::npos) << message;
    }
  }

  // A header holding one entry `name` -> `entry` (raw JSON) over `data_size` zero bytes.
  void expect_entry_rejected(const std::string& entry, std::size_t data_size,
                             const std::string& expected) {
    expect_rejected(make_file("{\"t\":" + entry + "}", std::string(data_size, '\0')), expected);
  }

  fs::path dir_;
};

const std::vector<float> weights_f32 = {1.5F, -2.25F, 3.0F, 0.1F, -0.0F, 1e-30F};
const std::vector<double> bias_f64 = {0.125, -7.5, 1e300, 2.718281828459045};
const std::vector<std::int32_t> labels_i32 = {-1, 0, 2147483647};
const std::vector<float> scalar_f32 = {42.5F};

struct Fixture {
  std::vector<std::byte> weights = to_bytes(weights_f32);
  std::vector<std::byte> bias = to_bytes(bias_f64);
  std::vector<std::byte> labels = to_bytes(labels_i32);
  std::vector<std::byte> scalar = to_bytes(scalar_f32);
  std::vector<TensorView> views() const {
    return {
        {"layer.weight", "F32", {2, 3}, weights},
        {"layer.bias", "F64", {4}, bias},
        {"labels", "I32", {3, 1}, labels},
        {"step", "F32", {}, scalar},
        {"empty", "F32", {2, 0}, {}},
    };
  }
};

void expect_matches(const Safetensors& file, const std::vector<TensorView>& views) {
  ASSERT_EQ(file.tensors.size(), views.size());
  for (std::size_t i = 0; i < views.size(); ++i) {
    SCOPED_TRACE(views[i].name);
    const TensorData& tensor = file.tensors[i];
    EXPECT_EQ(tensor.name, views[i].name);
    EXPECT_EQ(tensor.dtype, views[i].dtype);
    EXPECT_EQ(tensor.shape, views[i].shape);
    EXPECT_EQ(tensor.data, std::vector<std::byte>(views[i].data.begin(), views[i].data.end()));
  }
}

TEST_F(SafetensorsTest, RoundTripKeepsTensorsOrderAndMetadata) {
  const Fixture fixture;
  const auto views = fixture.views();
  const std::map<std::string, std::string> metadata = {{"format", "pt"},
                                                       {"note", "caf\xc3\xa9 \"quoted\""}};
  const fs::path path = dir_ / "model.safetensors";
  write_safetensors(path, views, metadata);
  const Safetensors file = read_safetensors(path);
  expect_matches(file, views);
  EXPECT_EQ(file.metadata, metadata);

  const TensorData* bias = file.find("layer.bias");
  ASSERT_NE(bias, nullptr);
  std::vector<double> values(4);
  std::memcpy(values.data(), bias->data.data(), bias->data.size());
  EXPECT_EQ(values, bias_f64);
  EXPECT_EQ(file.find("missing"), nullptr);
}

TEST_F(SafetensorsTest, EncodeAndDecodeAgreeWithWriteAndRead) {
  const Fixture fixture;
  const auto views = fixture.views();
  const std::string bytes = encode_safetensors(views);
  const fs::path path = dir_ / "model.safetensors";
  write_safetensors(path, views);
  std::ifstream in(path, std::ios::binary);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), bytes);
  const Safetensors decoded = decode_safetensors(bytes, "memory");
  expect_matches(decoded, views);
  EXPECT_TRUE(decoded.metadata.empty());
}

TEST_F(SafetensorsTest, NoTensorsGivesAValidFile) {
  const std::string bytes = encode_safetensors({});
  EXPECT_EQ(bytes.size(), 16u);
  EXPECT_EQ(bytes.substr(8), "{}      ");
  const Safetensors decoded = decode_safetensors(bytes, "memory");
  EXPECT_TRUE(decoded.tensors.empty());
  EXPECT_TRUE(decoded.metadata.empty());
}

// Parses the written bytes by hand, following the published format rather than our reader.
TEST_F(SafetensorsTest, WrittenBytesFollowTheFormat) {
  const Fixture fixture;
  const auto views = fixture.views();
  const fs::path path = dir_ / "model.safetensors";
  write_safetensors(path, views, {{"framework", "descent"}});
  std::ifstream in(path, std::ios::binary);
  const std::string bytes(std::istreambuf_iterator<char>(in), {});

  ASSERT_GE(bytes.size(), 8u);
  std::uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) {
    header_length = (header_length << 8) | static_cast<unsigned char>(bytes[i]);
  }
  EXPECT_EQ(header_length % 8, 0u);
  ASSERT_LE(8 + header_length, bytes.size());
  const std::string header_text = bytes.substr(8, header_length);
  EXPECT_EQ(header_text.front(), '{');
  const std::size_t json_end = header_text.rfind('}') + 1;
  EXPECT_EQ(header_text.substr(json_end), std::string(header_text.size() - json_end, ' '));
  EXPECT_LT(header_text.size() - json_end, 8u);

  const nlohmann::json header = nlohmann::json::parse(header_text);
  ASSERT_TRUE(header.is_object());
  EXPECT_EQ(header.size(), views.size() + 1);
  EXPECT_EQ(header.at("__metadata__"), nlohmann::json({{"framework", "descent"}}));

  const std::size_t data_start = 8 + header_length;
  const std::size_t data_size = bytes.size() - data_start;
  std::uint64_t expected_begin = 0;
  const std::vector<std::pair<std::string, std::size_t>> element_sizes = {
      {"F32", 4}, {"F64", 8}, {"I32", 4}};
  for (const TensorView& view : views) {
    SCOPED_TRACE(view.name);
    const nlohmann::json& entry = header.at(view.name);
    EXPECT_EQ(entry.size(), 3u);
    EXPECT_EQ(entry.at("dtype").get<std::string>(), view.dtype);
    EXPECT_EQ(entry.at("shape").get<std::vector<std::int64_t>>(), view.shape);
    const auto offsets = entry.at("data_offsets").get<std::vector<std::uint64_t>>();
    ASSERT_EQ(offsets.size(), 2u);
    EXPECT_EQ(offsets[0], expected_begin);
    std::uint64_t elements = 1;
    for (const auto dim : view.shape) elements *= static_cast<std::uint64_t>(dim);
    std::size_t element_size = 0;
    for (const auto& [dtype, size] : element_sizes) {
      if (dtype == view.dtype) element_size = size;
    }
    EXPECT_EQ(offsets[1] - offsets[0], elements * element_size);
    expected_begin = offsets[1];
  }
  EXPECT_EQ(expected_begin, data_size);

  const auto weights_offsets =
      header.at("layer.weight").at("data_offsets").get<std::vector<std::size_t>>();
  std::vector<float> decoded;
  for (std::size_t at = data_start + weights_offsets[0]; at < data_start + weights_offsets[1];
       at += 4) {
    std::uint32_t bits = 0;
    for (int i = 3; i >= 0; --i) bits = (bits << 8) | static_cast<unsigned char>(bytes[at + i]);
    decoded.push_back(std::bit_cast<float>(bits));
  }
  EXPECT_EQ(decoded, weights_f32);

  const auto step_offsets = header.at("step").at("data_offsets").get<std::vector<std::size_t>>();
  ASSERT_EQ(step_offsets[1] - step_offsets[0], 4u);
  std::uint32_t bits = 0;
  for (int i = 3; i >= 0; --i) {
    bits = (bits << 8) | static_cast<unsigned char>(bytes[data_start + step_offsets[0] + i]);
  }
  EXPECT_EQ(std::bit_cast<float>(bits), 42.5F);
}

// A file written by hand as another writer could: keys out of offset order, no padding,
// whitespace in the JSON, trailing newline and spaces, dtypes descent never writes.
TEST_F(SafetensorsTest, ReadsFileFromAnotherWriter) {
  const std::string header =
      "{ \"b\": {\"shape\": [2], \"dtype\": \"I64\", \"data_offsets\": [8, 24]},\n"
      "  \"a\": {\"data_offsets\": [0, 8], \"dtype\": \"F64\", \"shape\": []},\n"
      "  \"c\": {\"dtype\": \"BF16\", \"shape\": [1, 1], \"data_offsets\": [24, 26]},\n"
      "  \"__metadata__\": {\"format\": \"np\"} }\n   ";
  std::string data;
  data += std::string("\x00\x00\x00\x00\x00\x00\xf8\x3f", 8);           // 1.5
  data += std::string("\x05\x00\x00\x00\x00\x00\x00\x00", 8);           // 5
  data += std::string("\xfe\xff\xff\xff\xff\xff\xff\xff", 8);           // -2
  data += std::string("\x80\x3f", 2);                                   // bf16 1.0
  const fs::path path = write_raw(make_file(header, data));
  const Safetensors file = read_safetensors(path);
  ASSERT_EQ(file.tensors.size(), 3u);
  EXPECT_EQ(file.tensors[0].name, "a");
  EXPECT_EQ(file.tensors[1].name, "b");
  EXPECT_EQ(file.tensors[2].name, "c");
  EXPECT_EQ(file.tensors[0].shape, std::vector<std::int64_t>{});
  EXPECT_EQ(file.tensors[2].shape, (std::vector<std::int64_t>{1, 1}));
  double a = 0.0;
  std::memcpy(&a, file.tensors[0].data.data(), 8);
  EXPECT_EQ(a, 1.5);
  std::int64_t b[2] = {};
  std::memcpy(b, file.tensors[1].data.data(), 16);
  EXPECT_EQ(b[0], 5);
  EXPECT_EQ(b[1], -2);
  EXPECT_EQ(file.tensors[2].dtype, "BF16");
  EXPECT_EQ(file.metadata, (std::map<std::string, std::string>{{"format", "np"}}));
}

TEST(SafetensorsDtype, SizesOfKnownDtypes) {
  EXPECT_EQ(dtype_size("F64"), 8u);
  EXPECT_EQ(dtype_size("F32"), 4u);
  EXPECT_EQ(dtype_size("F16"), 2u);
  EXPECT_EQ(dtype_size("BF16"), 2u);
  EXPECT_EQ(dtype_size("I64"), 8u);
  EXPECT_EQ(dtype_size("I32"), 4u);
  EXPECT_EQ(dtype_size("I16"), 2u);
  EXPECT_EQ(dtype_size("I8"), 1u);
  EXPECT_EQ(dtype_size("U8"), 1u);
  EXPECT_EQ(dtype_size("BOOL"), 1u);
  EXPECT_THROW(static_cast<void>(dtype_size("f32")), DataError);
  EXPECT_THROW(static_cast<void>(dtype_size("")), DataError);
}

TEST_F(SafetensorsTest, WriterRejectsInvalidTensorsAndWritesNothing) {
  const std::vector<std::byte> eight(8);
  const fs::path path = dir_ / "out.safetensors";
  const auto expect_throw_naming = [&](const std::vector<TensorView>& views, auto tag,
                                       const std::string& expected) {
    using Expected = decltype(tag);
    try {
      write_safetensors(path, views);
      ADD_FAILURE() << "accepted: " << expected;
    } catch (const Expected& error) {
      const std::string message = error.what();
      EXPECT_EQ(message.rfind(path.string() + ": ", 0), 0u) << message;
      EXPECT_NE(message.find(expected), std::string::npos) << message;
    }
    EXPECT_FALSE(fs::exists(path));
  };
  expect_throw_naming({{"w", "F32", {2}, eight}, {"w", "F32", {2}, eight}}, DataError{""},
                      "tensor 'w': duplicate tensor name");
  expect_throw_naming({{"w", "F32", {3}, eight}}, ShapeError{""},
                      "data holds 8 bytes, expected 12 for F32 [3]");
  expect_throw_naming({{"w", "F128", {1}, eight}}, ShapeError{""}, "unknown dtype \"F128\"");
  expect_throw_naming({{"w", "U8", {-8}, eight}}, ShapeError{""}, "negative dimension");
  expect_throw_naming({{"w", "F64", {std::int64_t{1} << 40, std::int64_t{1} << 40}, eight}},
                      ShapeError{""}, "overflows");
  expect_throw_naming({{"__metadata__", "U8", {8}, eight}}, DataError{""}, "reserved");
  expect_throw_naming({{"bad\xff", "U8", {8}, eight}}, DataError{""}, "not valid UTF-8");
  EXPECT_THROW(write_safetensors(path, {}, {{"key", "bad\xc3"}}), DataError);
  EXPECT_FALSE(fs::exists(path));
}

TEST_F(SafetensorsTest, MissingFileIsIoErrorNamingIt) {
  const fs::path path = dir_ / "absent.safetensors";
  try {
    static_cast<void>(read_safetensors(path));
    FAIL() << "expected IoError";
  } catch (const IoError& error) {
    EXPECT_NE(std::string(error.what()).find(path.string()), std::string::npos);
  }
}

TEST_F(SafetensorsTest, RejectsFileShorterThanLengthPrefix) {
  expect_rejected(std::string("\x02\x00\x00\x00\x00", 5), "holds 5 bytes, expected at least 8");
  expect_rejected("", "holds 0 bytes, expected at least 8");
}

TEST_F(SafetensorsTest, RejectsHeaderLengthBeyondFile) {
  expect_rejected(little_endian_u64(64) + "{}      ", "header length 64 exceeds the 8 bytes");
  const std::string valid = encode_safetensors({});
  expect_rejected(valid.substr(0, 12), "header length 8 exceeds the 4 bytes");
  expect_rejected(little_endian_u64(~std::uint64_t{0}) + "{}", "exceeds the limit");
}

TEST_F(SafetensorsTest, RejectsHeaderLengthAbove100MiB) {
  expect_rejected(little_endian_u64((std::uint64_t{100} << 20) + 1) + "{}",
                  "header length 104857601 exceeds the limit of 104857600 bytes");
}

TEST_F(SafetensorsTest, RejectsEmptyHeader) {
  expect_rejected(little_endian_u64(0), "header length is 0");
}

TEST_F(SafetensorsTest, RejectsInvalidJson) {
  expect_rejected(make_file("{\"t\": ", ""), "header is not valid JSON");
  expect_rejected(make_file("{} x", ""), "header is not valid JSON");
  expect_rejected(make_file("{\"\xff\": 1}", ""), "header is not valid JSON");
  expect_rejected(make_file(std::string("{}\0\0", 4), ""), "header is not valid JSON");
}

TEST_F(SafetensorsTest, RejectsHeaderThatIsNotAnObject) {
  expect_rejected(make_file("[1, 2]  ", ""), "does not start with '{'");
  expect_rejected(make_file("\"text\"", ""), "does not start with '{'");
  expect_rejected(make_file(" {}", ""), "does not start with '{'");
}

TEST_F(SafetensorsTest, RejectsEntryThatIsNotAnObject) {
  expect_entry_rejected("5", 0, "tensor 't': entry is a JSON number, expected an object");
  expect_entry_rejected("[\"F32\"]", 0, "tensor 't': entry is a JSON array");
}

TEST_F(SafetensorsTest, RejectsEntryWithMissingOrUnknownKeys) {
  expect_entry_rejected(R"({"dtype": "U8", "shape": [1]})", 1,
                        "tensor 't': missing key \"data_offsets\"");
  expect_entry_rejected(R"({"dtype": "U8", "data_offsets": [0, 1]})", 1,
                        "tensor 't': missing key \"shape\"");
  expect_entry_rejected(R"({"shape": [1], "data_offsets": [0, 1]})", 1,
                        "tensor 't': missing key \"dtype\"");
  expect_entry_rejected(R"({"dtype": "U8", "shape": [1], "data_offsets": [0, 1], "x": 0})", 1,
                        "tensor 't': unknown key \"x\"");
}

TEST_F(SafetensorsTest, RejectsEntryFieldsOfWrongType) {
  expect_entry_rejected(R"({"dtype": 4, "shape": [1], "data_offsets": [0, 4]})", 4,
                        "\"dtype\" is a JSON number, expected a string");
  expect_entry_rejected(R"({"dtype": "F32", "shape": "1", "data_offsets": [0, 4]})", 4,
                        "\"shape\" is a JSON string, expected an array");
  expect_entry_rejected(R"({"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]})", 4,
                        "\"shape\"[0] is 1.0, expected a non-negative integer");
  expect_entry_rejected(R"({"dtype": "F32", "shape": [true], "data_offsets": [0, 4]})", 4,
                        "\"shape\"[0] is true, expected a non-negative integer");
  expect_entry_rejected(R"({"dtype": "F32", "shape": [1], "data_offsets": [4]})", 4,
                        "\"data_offsets\" is [4], expected [begin, end]");
  expect_entry_rejected(R"({"dtype": "F32", "shape": [1], "data_offsets": ["0", "4"]})", 4,
                        "expected [begin, end] with non-negative integers");
  expect_entry_rejected(R"({"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 4]})", 4,
                        "expected [begin, end]");
  expect_entry_rejected(R"({"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]})", 4,
                        "expected [begin, end] with non-negative integers");
}

TEST_F(SafetensorsTest, RejectsNestingBeyondTheFormat) {
  expect_entry_rejected(R"({"dtype": "F32", "shape": [[1]], "data_offsets": [0, 4]})", 4,
                        "nests JSON deeper");
  expect_entry_rejected(R"({"dtype": {"a": {}}, "shape": [1], "data_offsets": [0, 4]})", 4,
                        "nests JSON deeper");
}

TEST_F(SafetensorsTest, RejectsUnknownDtype) {
  expect_entry_rejected(R"({"dtype": "F128", "shape": [1], "data_offsets": [0, 16]})", 16,
                        "tensor 't': unknown dtype \"F128\", expected one of");
  expect_entry_rejected(R"({"dtype": "f32", "shape": [1], "data_offsets": [0, 4]})", 4,
                        "unknown dtype \"f32\"");
}

TEST_F(SafetensorsTest, RejectsNegativeDimension) {
  expect_entry_rejected(R"({"dtype": "F32", "shape": [2, -1], "data_offsets": [0, 0]})", 0,
                        "\"shape\"[1] is -1, expected >= 0");
}

TEST_F(SafetensorsTest, RejectsShapeWhoseByteCountOverflows) {
  expect_entry_rejected(
      R"({"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]})", 0,
      "overflows");
  expect_entry_rejected(
      R"({"dtype": "F64", "shape": [2305843009213693952], "data_offsets": [0, 0]})", 0,
      "overflows");
  expect_entry_rejected(
      R"({"dtype": "U8", "shape": [18446744073709551615], "data_offsets": [0, 0]})", 0,
      "overflows");
}

TEST_F(SafetensorsTest, RejectsOffsetsNotMatchingShape) {
  expect_entry_rejected(R"({"dtype": "F32", "shape": [2], "data_offsets": [0, 4]})", 4,
                        "\"data_offsets\" [0,4] span 4 bytes, expected 8 for F32 [2]");
  expect_entry_rejected(R"({"dtype": "F32", "shape": [], "data_offsets": [0, 0]})", 0,
                        "span 0 bytes, expected 4 for F32 []");
  expect_entry_rejected(R"({"dtype": "F32", "shape": [0], "data_offsets": [0, 4]})", 4,
                        "span 4 bytes, expected 0 for F32 [0]");
}

TEST_F(SafetensorsTest, RejectsReversedOrOutOfRangeOffsets) {
  expect_entry_rejected(R"({"dtype": "U8", "shape": [0], "data_offsets": [4, 0]})", 4,
                        "has begin > end");
  expect_entry_rejected(R"({"dtype": "F32", "shape": [2], "data_offsets": [0, 8]})", 4,
                        "out of range: the data section holds 4 bytes");
  expect_entry_rejected(
      R"({"dtype": "U8", "shape": [1],
          "data_offsets": [18446744073709551615, 18446744073709551616]})",
      1, "expected [begin, end] with non-negative integers");
}

TEST_F(SafetensorsTest, RejectsGapBetweenTensors) {
  expect_rejected(make_file(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}})",
                            std::string(12, '\0')),
                  "tensor 'b' begins at data offset 8, leaving a gap after tensor 'a'");
  expect_rejected(make_file(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                            std::string(8, '\0')),
                  "leaving a gap after the start of the data section");
}

TEST_F(SafetensorsTest, RejectsOverlappingTensors) {
  expect_rejected(make_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                            std::string(8, '\0')),
                  "tensor 'b' begins at data offset 4, overlapping tensor 'a'");
  expect_rejected(make_file(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})",
                            std::string(4, '\0')),
                  "overlapping tensor 'a'");
  expect_rejected(make_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                "e": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}})",
                            std::string(8, '\0')),
                  "tensor 'e' begins at data offset 4, overlapping tensor 'a'");
}

TEST_F(SafetensorsTest, RejectsBytesAfterLastTensor) {
  expect_entry_rejected(R"({"dtype": "F32", "shape": [1], "data_offsets": [0, 4]})", 5,
                        "the tensors end at data offset 4, but the data section holds 5 bytes");
  expect_rejected(make_file("{}", "x"), "the tensors end at data offset 0");
}

TEST_F(SafetensorsTest, RejectsTruncatedFile) {
  const Fixture fixture;
  const std::string bytes = encode_safetensors(fixture.views());
  expect_rejected(bytes.substr(0, bytes.size() - 1), "out of range");
}

TEST_F(SafetensorsTest, RejectsDuplicateNames) {
  expect_rejected(make_file(R"({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
                                "a": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}})",
                            std::string(2, '\0')),
                  "duplicate tensor name 'a'");
  expect_entry_rejected(
      R"({"dtype": "U8", "dtype": "U8", "shape": [1], "data_offsets": [0, 1]})", 1,
      "duplicate key 'dtype' in 't'");
  expect_rejected(make_file(R"({"__metadata__": {"k": "1", "k": "2"}})", ""),
                  "duplicate key 'k' in '__metadata__'");
}

TEST_F(SafetensorsTest, RejectsMetadataThatIsNotStrings) {
  expect_rejected(make_file(R"({"__metadata__": {"epoch": 3}})", ""),
                  "\"__metadata__\" value of 'epoch' is a JSON number, expected a string");
  expect_rejected(make_file(R"({"__metadata__": ["a"]})", ""),
                  "\"__metadata__\" is a JSON array, expected an object of strings");
  expect_rejected(make_file(R"({"__metadata__": {"a": null}})", ""),
                  "value of 'a' is a JSON null");
}

// Headers claiming 10^12 elements over 3 data bytes are refused from the header, before any
// tensor buffer exists. A buffer of that size would fail the test: std::bad_alloc escapes
// expect_rejected, and under AddressSanitizer (the asan stage of scripts/test) the binary
// aborts on the request, as 8 * 10^12 bytes exceed its 2^40-byte limit.
TEST_F(SafetensorsTest, RefusesTenToTheTwelveElementsBeforeAllocating) {
  expect_entry_rejected(
      R"({"dtype": "U8", "shape": [1000000, 1000000], "data_offsets": [0, 1000000000000]})", 3,
      "\"data_offsets\" [0,1000000000000] is out of range: the data section holds 3 bytes");
  expect_entry_rejected(
      R"({"dtype": "F64", "shape": [1000000, 1000000], "data_offsets": [0, 8000000000000]})", 3,
      "is out of range: the data section holds 3 bytes");
  expect_entry_rejected(R"({"dtype": "F64", "shape": [1000000, 1000000], "data_offsets": [0, 3]})",
                        3, "span 3 bytes, expected 8000000000000 for F64 [1000000, 1000000]");
}

// Text from the header is quoted on one line (a JSON "\n" decodes to a line break, shown as
// \x0a) and cut after 64 bytes, so a hostile header cannot split or bloat a message.
TEST_F(SafetensorsTest, QuotesHeaderTextOnOneLineAndShort) {
  expect_rejected(make_file(R"({"a\nb": {"dtype": "F32\r", "shape": [1], "data_offsets": [0, 4]}})",
                            std::string(4, '\0')),
                  "tensor 'a\\x0ab': unknown dtype \"F32\\x0d\"");
  expect_rejected(make_file(R"({"t": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
                                "t\u0000": {"x\n": 1, "x\n": 2}})",
                            std::string(1, '\0')),
                  "duplicate key 'x\\x0a' in 't\\x00'");
  const std::string long_name(5000, 'n');
  const std::string long_value(5000, 'v');
  for (const std::string& header : std::vector<std::string>{
           R"({")" + long_name + R"(": {"dtype": "U8", "shape": [2], "data_offsets": [0, 1]}})",
        R"({"t": {"dtype": "U8", "shape": [1], "data_offsets": ")" + long_value + R"("}})",
        R"({"t": {"dtype": "U8", "shape": [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,)"
        R"( 1, 1, 1, 1, 1, 1, 1, 4294967296, 4294967296], "data_offsets": [0, 1]}})"}) {
    const std::string bytes = make_file(header, std::string(1, '\0'));
    try {
      static_cast<void>(decode_safetensors(bytes, "memory.safetensors"));
      ADD_FAILURE() << "accepted a malformed header";
    } catch (const DataError& error) {
      const std::string message = error.what();
      EXPECT_LT(message.size(), 300u) << message;
      EXPECT_NE(message.find("..."), std::string::npos) << message;
    }
  }
  expect_rejected(make_file(R"({")" + long_name + R"(": {"dtype": "U8", "shape": [2], "data_offsets": [0, 1]}})",
                            std::string(1, '\0')),
                  "tensor '" + std::string(64, 'n') + "...': \"data_offsets\" [0,1] span 1 bytes");
}

}  // namespace
}  // namespace descent::io
