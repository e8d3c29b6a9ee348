#include "descent/io/json_lines.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "descent/error.hpp"

namespace descent::io {
namespace {

namespace fs = std::filesystem;

class JsonLinesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("descent_json_lines_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path write_raw(const std::string& content) {
    const fs::path path = dir_ / "raw.jsonl";
    std::ofstream out(path, std::ios::binary);
    out << content;
    return path;
  }

  // read_json_lines rejects `content` with DataError naming the file and containing `expected`.
  void expect_rejected(const std::string& content, const std::string& expected) {
    const fs::path path = write_raw(content);
    try {
      static_cast<void>(read_json_lines(path));
      ADD_FAILURE() << "accepted, expected: " << expected;
    } catch (const DataError& error) {
      const std::string message = error.what();
      EXPECT_EQ(message.rfind(path.string() + ": ", 0), 0u) << message;
      EXPECT_NE(message.find(expected), std::string::npos) << message;
    }
  }

  fs::path dir_;
};

std::string read_plain(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST_F(JsonLinesTest, WritesOneCompactObjectPerLine) {
  const fs::path path = dir_ / "metrics.jsonl";
  const nlohmann::json first = {{"step", 1}, {"loss", 0.5}, {"phase", "train"}};
  const nlohmann::json second = {{"step", 2}, {"loss", 0.25}, {"lr", {1, 2}}};
  {
    JsonLinesWriter writer(path);
    writer.write(first);
    writer.write(second);
    writer.flush();
  }
  EXPECT_EQ(read_plain(path),
            "{\"loss\":0.5,\"phase\":\"train\",\"step\":1}\n"
            "{\"loss\":0.25,\"lr\":[1,2],\"step\":2}\n");
  const auto values = read_json_lines(path);
  ASSERT_EQ(values.size(), 2u);
  EXPECT_EQ(values[0], first);
  EXPECT_EQ(values[1], second);
}

TEST_F(JsonLinesTest, EachLineReachesTheFileBeforeFlushOrClose) {
  const fs::path path = dir_ / "metrics.jsonl";
  JsonLinesWriter writer(path);
  writer.write({{"step", 1}});
  EXPECT_EQ(read_plain(path), "{\"step\":1}\n");
  writer.write({{"step", 2}});
  EXPECT_EQ(read_plain(path), "{\"step\":1}\n{\"step\":2}\n");
}

TEST_F(JsonLinesTest, NonFiniteNumbersBecomeNull) {
  const fs::path path = dir_ / "metrics.jsonl";
  {
    JsonLinesWriter writer(path);
    writer.write({{"loss", std::nan("")}, {"grad", INFINITY}});
  }
  EXPECT_EQ(read_plain(path), "{\"grad\":null,\"loss\":null}\n");
}

TEST_F(JsonLinesTest, AppendKeepsLinesAndTruncateDropsThem) {
  const fs::path path = dir_ / "metrics.jsonl";
  {
    JsonLinesWriter writer(path);
    writer.write({{"step", 1}});
  }
  {
    JsonLinesWriter writer(path, true);
    writer.write({{"step", 2}});
  }
  EXPECT_EQ(read_json_lines(path).size(), 2u);
  {
    JsonLinesWriter writer(path);
    writer.write({{"step", 3}});
  }
  const auto values = read_json_lines(path);
  ASSERT_EQ(values.size(), 1u);
  EXPECT_EQ(values[0].at("step"), 3);
}

TEST_F(JsonLinesTest, RejectsNonObjectsAndInvalidUtf8WithoutWriting) {
  const fs::path path = dir_ / "metrics.jsonl";
  JsonLinesWriter writer(path);
  try {
    writer.write(nlohmann::json::array({1, 2}));
    FAIL() << "expected DataError";
  } catch (const DataError& error) {
    const std::string message = error.what();
    EXPECT_EQ(message.rfind(path.string() + ": ", 0), 0u) << message;
    EXPECT_NE(message.find("JSON array"), std::string::npos) << message;
  }
  EXPECT_THROW(writer.write(nlohmann::json({{"name", "bad\xff"}})), DataError);
  EXPECT_EQ(read_plain(path), "");
}

TEST_F(JsonLinesTest, MovedWriterKeepsWritingAndMovedFromThrows) {
  const fs::path path = dir_ / "metrics.jsonl";
  JsonLinesWriter first(path);
  first.write({{"a", 1}});
  JsonLinesWriter second(std::move(first));
  second.write({{"b", 2}});
  EXPECT_THROW(first.write({{"c", 3}}), IoError);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(second.path(), path);
  EXPECT_EQ(read_plain(path), "{\"a\":1}\n{\"b\":2}\n");
}

TEST_F(JsonLinesTest, OpenFailureThrowsIoErrorNamingPath) {
  const fs::path blocker = dir_ / "file.txt";
  std::ofstream(blocker) << "x";
  const fs::path path = blocker / "metrics.jsonl";
  try {
    JsonLinesWriter writer(path);
    FAIL() << "expected IoError";
  } catch (const IoError& error) {
    const std::string message = error.what();
    EXPECT_EQ(message.rfind(path.string() + ": ", 0), 0u) << message;
    EXPECT_NE(message.find("Not a directory"), std::string::npos) << message;
  }
}

TEST_F(JsonLinesTest, FullDeviceThrowsIoErrorNamingPath) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  JsonLinesWriter writer("/dev/full", true);
  try {
    writer.write({{"step", 1}});
    FAIL() << "expected IoError";
  } catch (const IoError& error) {
    const std::string message = error.what();
    EXPECT_EQ(message.rfind("/dev/full: ", 0), 0u) << message;
    EXPECT_NE(message.find("No space left on device"), std::string::npos) << message;
  }
}

TEST_F(JsonLinesTest, ReadSkipsBlankLinesAndAcceptsCrLf) {
  const fs::path path = write_raw("{\"a\":1}\r\n\n   \n{\"b\":[true,null]}\n");
  const auto values = read_json_lines(path);
  ASSERT_EQ(values.size(), 2u);
  EXPECT_EQ(values[0], nlohmann::json({{"a", 1}}));
  EXPECT_EQ(values[1], nlohmann::json({{"b", {true, nullptr}}}));
  EXPECT_TRUE(read_json_lines(write_raw("")).empty());
}

TEST_F(JsonLinesTest, ReadReportsLineNumberOfMalformedLine) {
  expect_rejected("{\"a\":1}\n\n{\"b\":\n{\"c\":3}\n", "line 3: malformed JSON");
  expect_rejected("{\"a\":1}\n{\"a\":2} {\"a\":3}\n", "line 2: malformed JSON");
  expect_rejected(std::string("{\"a\":1}\n{}\0junk\n", 15), "line 2: malformed JSON");
}

TEST_F(JsonLinesTest, ReadReportsTruncatedLastLine) {
  expect_rejected("{\"step\":1}\n{\"step\":2}\n{\"st", "line 3: malformed JSON");
}

TEST_F(JsonLinesTest, ReadRejectsLinesThatAreNotObjects) {
  expect_rejected("{\"a\":1}\n[1,2]\n", "line 2: holds a JSON array, expected an object");
  expect_rejected("42\n", "line 1: holds a JSON number, expected an object");
}

TEST_F(JsonLinesTest, ReadMissingFileOrDirectoryThrowsIoError) {
  const fs::path path = dir_ / "absent.jsonl";
  try {
    static_cast<void>(read_json_lines(path));
    FAIL() << "expected IoError";
  } catch (const IoError& error) {
    EXPECT_EQ(std::string(error.what()).rfind(path.string() + ": ", 0), 0u) << error.what();
  }
  EXPECT_THROW(static_cast<void>(read_json_lines(dir_)), IoError);
}

// The listener (the TensorBoard writer's hook) sees each object once the line is in the file,
// and moves with the writer; an object that is refused does not reach it.
TEST_F(JsonLinesTest, TheListenerSeesEachWrittenObject) {
  const fs::path path = dir_ / "l.jsonl";
  std::vector<std::string> seen;
  JsonLinesWriter first(path);
  first.set_listener([&](const nlohmann::json& j) {
    seen.push_back(j.dump());
    EXPECT_EQ(read_json_lines(path).back(), j);  // already written
  });
  first.write({{"a", 1}});
  JsonLinesWriter moved = std::move(first);
  moved.write({{"b", 2}});
  EXPECT_THROW(moved.write(nlohmann::json::array()), DataError);
  EXPECT_EQ(seen, (std::vector<std::string>{R"({"a":1})", R"({"b":2})"}));
  moved.set_listener({});
  moved.write({{"c", 3}});
  EXPECT_EQ(seen.size(), 2U);
}

}  // namespace
}  // namespace descent::io
