#include "descent/io/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <utility>

#include "descent/error.hpp"

namespace descent::io {
namespace {

constexpr std::size_t max_io_chunk = std::size_t{1} << 30;
constexpr int max_temporary_name_attempts = 64;

std::string quoted(const std::filesystem::path& path) { return "'" + path.string() + "'"; }

[[noreturn]] void fail(const std::filesystem::path& path, const std::string& step, int error) {
  throw IoError(path.string() + ": " + step + ": " + std::strerror(error));
}

// Closes the descriptor on scope exit unless it was closed explicitly.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  // Returns 0 or the errno of close(2).
  int close() {
    const int fd = fd_;
    fd_ = -1;
    return ::close(fd) == 0 ? 0 : errno;
  }

 private:
  int fd_;
};

// Removes the temporary file on scope exit unless it was renamed into place.
class TemporaryFile {
 public:
  explicit TemporaryFile(std::filesystem::path path) : path_(std::move(path)) {}
  TemporaryFile(const TemporaryFile&) = delete;
  TemporaryFile& operator=(const TemporaryFile&) = delete;
  ~TemporaryFile() {
    if (!committed_) ::unlink(path_.c_str());
  }
  const std::filesystem::path& path() const { return path_; }
  void commit() { committed_ = true; }

 private:
  std::filesystem::path path_;
  bool committed_ = false;
};

std::string random_suffix() {
  static std::atomic<std::uint64_t> counter{0};
  const auto ticks = static_cast<std::uint64_t>(
      std::chrono::steady_clock::now().time_since_epoch().count());
  std::uint64_t mixed = ticks ^ (static_cast<std::uint64_t>(::getpid()) << 32) ^
                        (counter.fetch_add(1) * 0x9E3779B97F4A7C15ULL);
  mixed ^= mixed >> 31;
  mixed *= 0xBF58476D1CE4E5B9ULL;
  mixed ^= mixed >> 29;
  static constexpr char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  std::string suffix;
  for (int i = 0; i < 12; ++i) {
    suffix.push_back(digits[mixed % 36]);
    mixed /= 36;
  }
  return suffix;
}

// Writes all of `bytes`; returns 0 or an errno (ENOSPC for a write that makes no progress).
int write_all(int fd, std::string_view bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const std::size_t chunk = std::min(bytes.size() - done, max_io_chunk);
    const ssize_t written = ::write(fd, bytes.data() + done, chunk);
    if (written < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (written == 0) return ENOSPC;
    done += static_cast<std::size_t>(written);
  }
  return 0;
}

}  // namespace

void write_file_atomic(const std::filesystem::path& path, std::string_view bytes) {
  if (path.filename().empty()) {
    throw IoError(path.string() + ": cannot write: the path names a directory, expected a file");
  }
  const std::filesystem::path directory =
      path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
  const std::string base_name = "." + path.filename().string() + ".tmp-";

  int fd = -1;
  std::filesystem::path temporary_path;
  for (int attempt = 0; attempt < max_temporary_name_attempts; ++attempt) {
    temporary_path = directory / (base_name + random_suffix());
    fd = ::open(temporary_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0 || errno != EEXIST) break;
  }
  if (fd < 0) {
    fail(path, "cannot create a temporary file in " + quoted(directory), errno);
  }
  FileDescriptor file(fd);
  TemporaryFile temporary(temporary_path);

  if (const int error = write_all(file.get(), bytes); error != 0) {
    fail(path, "cannot write " + std::to_string(bytes.size()) + " bytes to temporary file " +
                   quoted(temporary_path),
         error);
  }
  if (::fsync(file.get()) != 0) {
    fail(path, "cannot fsync temporary file " + quoted(temporary_path), errno);
  }
  if (const int error = file.close(); error != 0) {
    fail(path, "cannot close temporary file " + quoted(temporary_path), error);
  }
  if (::rename(temporary_path.c_str(), path.c_str()) != 0) {
    fail(path, "cannot rename temporary file " + quoted(temporary_path) + " over it", errno);
  }
  temporary.commit();

  const int directory_fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (directory_fd < 0) {
    fail(path, "written, but cannot open directory " + quoted(directory) + " to fsync it", errno);
  }
  FileDescriptor directory_file(directory_fd);
  // Some file systems cannot fsync a directory (EINVAL); the rename is then as durable as
  // that file system makes it.
  if (::fsync(directory_file.get()) != 0 && errno != EINVAL) {
    fail(path, "written, but cannot fsync directory " + quoted(directory), errno);
  }
}

std::string read_file(const std::filesystem::path& path, std::size_t max_bytes) {
  int fd = -1;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) fail(path, "cannot open for reading", errno);
  FileDescriptor file(fd);

  struct stat status {};
  if (::fstat(file.get(), &status) != 0) fail(path, "cannot stat", errno);
  if (S_ISDIR(status.st_mode)) {
    throw IoError(path.string() + ": is a directory, expected a regular file");
  }
  const auto too_large = [&](const std::string& size) {
    return IoError(path.string() + ": file holds " + size + " bytes, more than the limit of " +
                   std::to_string(max_bytes) + " bytes");
  };
  const auto claimed = static_cast<std::uint64_t>(std::max<off_t>(status.st_size, 0));
  if (claimed > max_bytes) throw too_large(std::to_string(claimed));

  std::string content(static_cast<std::size_t>(claimed), '\0');
  std::size_t total = 0;
  std::array<char, 65536> spill{};
  for (;;) {
    char* destination = nullptr;
    std::size_t room = 0;
    if (total < content.size()) {
      destination = content.data() + total;
      room = std::min(content.size() - total, max_io_chunk);
    } else {
      destination = spill.data();
      room = spill.size();
    }
    const ssize_t got = ::read(file.get(), destination, room);
    if (got < 0) {
      if (errno == EINTR) continue;
      fail(path, "read failed", errno);
    }
    if (got == 0) break;
    const auto count = static_cast<std::size_t>(got);
    if (destination == spill.data()) {
      if (count > max_bytes - total) throw too_large("at least " + std::to_string(total + count));
      content.append(spill.data(), count);
    }
    total += count;
  }
  content.resize(total);
  return content;
}

}  // namespace descent::io
