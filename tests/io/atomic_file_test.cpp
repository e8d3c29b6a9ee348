#include "descent/io/atomic_file.hpp"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "descent/error.hpp"

namespace descent::io {
namespace {

namespace fs = std::filesystem;

class AtomicFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("descent_atomic_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Names of the entries of the test directory.
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir_)) {
      names.push_back(entry.path().filename().string());
    }
    return names;
  }

  fs::path dir_;
};

void write_plain(const fs::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
}

std::string read_plain(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST_F(AtomicFileTest, WritesAndReadsBackBinaryContent) {
  const fs::path path = dir_ / "data.bin";
  const std::string content("hello\0world\n\xff", 13);
  write_file_atomic(path, content);
  EXPECT_EQ(read_plain(path), content);
  EXPECT_EQ(read_file(path, 13), content);
  EXPECT_EQ(entries(), std::vector<std::string>{"data.bin"});
}

TEST_F(AtomicFileTest, WritesEmptyFileAndLargeFile) {
  write_file_atomic(dir_ / "empty", "");
  EXPECT_EQ(fs::file_size(dir_ / "empty"), 0u);
  EXPECT_EQ(read_file(dir_ / "empty", 0), "");

  std::string large(3 * 1024 * 1024 + 7, '\0');
  for (std::size_t i = 0; i < large.size(); ++i) large[i] = static_cast<char>(i * 31 % 251);
  write_file_atomic(dir_ / "large", large);
  EXPECT_EQ(read_file(dir_ / "large", large.size()), large);
}

TEST_F(AtomicFileTest, RelativePathWithoutDirectoryWritesInCurrentDirectory) {
  const fs::path previous = fs::current_path();
  fs::current_path(dir_);
  write_file_atomic("relative.txt", "abc");
  fs::current_path(previous);
  EXPECT_EQ(read_plain(dir_ / "relative.txt"), "abc");
}

TEST_F(AtomicFileTest, OverwriteReplacesContentAndLeavesNoTemporaryFiles) {
  const fs::path path = dir_ / "config.toml";
  write_file_atomic(path, "first version, which is longer than the second");
  write_file_atomic(path, "second");
  EXPECT_EQ(read_plain(path), "second");
  EXPECT_EQ(entries(), std::vector<std::string>{"config.toml"});
}

TEST_F(AtomicFileTest, ConcurrentReaderSeesOnlyCompleteVersions) {
  const fs::path path = dir_ / "checkpoint";
  const std::string version_a(256 * 1024, 'a');
  const std::string version_b(128 * 1024, 'b');
  write_file_atomic(path, version_a);

  std::atomic<bool> done{false};
  std::atomic<int> reads{0};
  std::atomic<int> torn{0};
  std::thread reader([&] {
    while (!done.load()) {
      const std::string seen = read_plain(path);
      if (seen != version_a && seen != version_b) ++torn;
      ++reads;
    }
  });
  for (int i = 0; i < 20; ++i) write_file_atomic(path, i % 2 == 0 ? version_b : version_a);
  while (reads.load() < 5) std::this_thread::yield();
  done = true;
  reader.join();
  EXPECT_EQ(torn.load(), 0);
  EXPECT_EQ(read_plain(path), version_a);
}

TEST_F(AtomicFileTest, DirectoryThatIsARegularFileThrowsNamingPathAndKeepsItIntact) {
  const fs::path blocker = dir_ / "file.txt";
  write_plain(blocker, "previous content");
  const fs::path path = blocker / "child";
  try {
    write_file_atomic(path, "new content");
    FAIL() << "expected IoError";
  } catch (const IoError& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find(path.string()), std::string::npos) << message;
    EXPECT_NE(message.find("Not a directory"), std::string::npos) << message;
  }
  EXPECT_EQ(read_plain(blocker), "previous content");
  EXPECT_EQ(entries(), std::vector<std::string>{"file.txt"});
}

TEST_F(AtomicFileTest, MissingDirectoryThrowsNamingPath) {
  const fs::path path = dir_ / "missing" / "out.bin";
  try {
    write_file_atomic(path, "x");
    FAIL() << "expected IoError";
  } catch (const IoError& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find(path.string()), std::string::npos) << message;
    EXPECT_NE(message.find("No such file or directory"), std::string::npos) << message;
  }
  EXPECT_FALSE(fs::exists(dir_ / "missing"));
}

TEST_F(AtomicFileTest, FailedRenameOverDirectoryRemovesTemporaryAndKeepsTarget) {
  const fs::path target = dir_ / "target";
  fs::create_directory(target);
  write_plain(target / "inside", "kept");
  EXPECT_THROW(write_file_atomic(target, "x"), IoError);
  EXPECT_TRUE(fs::is_directory(target));
  EXPECT_EQ(read_plain(target / "inside"), "kept");
  EXPECT_EQ(entries(), std::vector<std::string>{"target"});
}

// A short write: RLIMIT_FSIZE makes write(2) stop at the limit and then fail with EFBIG,
// the same path a full disk (ENOSPC) takes.
TEST_F(AtomicFileTest, ShortWriteThrowsRemovesTemporaryAndKeepsPreviousFile) {
  const fs::path path = dir_ / "weights.bin";
  write_plain(path, "previous weights");

  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  const auto previous_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit limited = saved;
  limited.rlim_cur = 4096;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limited), 0);
  std::string message;
  try {
    write_file_atomic(path, std::string(10000, 'z'));
  } catch (const IoError& error) {
    message = error.what();
  }
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &saved), 0);
  std::signal(SIGXFSZ, previous_handler);

  EXPECT_NE(message.find(path.string()), std::string::npos) << message;
  EXPECT_NE(message.find("File too large"), std::string::npos) << message;
  EXPECT_EQ(read_plain(path), "previous weights");
  EXPECT_EQ(entries(), std::vector<std::string>{"weights.bin"});
}

TEST_F(AtomicFileTest, PathNamingADirectoryIsRejected) {
  EXPECT_THROW(write_file_atomic(dir_ / "sub/", "x"), IoError);
  EXPECT_TRUE(entries().empty());
}

TEST_F(AtomicFileTest, ReadFileMissingThrowsNamingPath) {
  const fs::path path = dir_ / "absent.txt";
  try {
    static_cast<void>(read_file(path, 100));
    FAIL() << "expected IoError";
  } catch (const IoError& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find(path.string()), std::string::npos) << message;
    EXPECT_NE(message.find("No such file or directory"), std::string::npos) << message;
  }
}

TEST_F(AtomicFileTest, ReadFileEnforcesLimit) {
  const fs::path path = dir_ / "hundred";
  write_plain(path, std::string(100, 'h'));
  EXPECT_EQ(read_file(path, 100), std::string(100, 'h'));
  try {
    static_cast<void>(read_file(path, 99));
    FAIL() << "expected IoError";
  } catch (const IoError& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find(path.string()), std::string::npos) << message;
    EXPECT_NE(message.find("holds 100 bytes, more than the limit of 99"), std::string::npos)
        << message;
  }
}

TEST_F(AtomicFileTest, ReadFileOfDirectoryThrows) {
  EXPECT_THROW(static_cast<void>(read_file(dir_, 100)), IoError);
}

}  // namespace
}  // namespace descent::io
