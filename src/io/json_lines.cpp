#include "descent/io/json_lines.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <system_error>
#include <string>
#include <utility>

#include "descent/error.hpp"

namespace descent::io {

JsonLinesWriter::JsonLinesWriter(const std::filesystem::path& path, bool append) : path_(path) {
  const int mode = O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC);
  do {
    fd_ = ::open(path_.c_str(), mode, 0666);
  } while (fd_ < 0 && errno == EINTR);
  if (fd_ < 0) {
    throw IoError(path_.string() + ": cannot open for writing JSON lines: " +
                  std::strerror(errno));
  }
}

JsonLinesWriter::JsonLinesWriter(JsonLinesWriter&& other) noexcept
    : path_(std::move(other.path_)), fd_(std::exchange(other.fd_, -1)), listener_(std::move(other.listener_)) {}

JsonLinesWriter& JsonLinesWriter::operator=(JsonLinesWriter&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    listener_ = std::move(other.listener_);
  }
  return *this;
}

JsonLinesWriter::~JsonLinesWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void JsonLinesWriter::write(const nlohmann::json& object) {
  if (fd_ < 0) throw IoError(path_.string() + ": JSON lines writer is closed (moved from)");
  if (!object.is_object()) {
    throw DataError(path_.string() + ": cannot write a JSON " + std::string(object.type_name()) +
                    " as a JSON line, expected an object");
  }
  std::string line;
  try {
    line = object.dump();
  } catch (const nlohmann::json::exception& error) {
    throw DataError(path_.string() + ": cannot serialize JSON line: " + error.what());
  }
  line.push_back('\n');
  // A write that fails part way (disk full, file size limit) is undone, so that the file
  // still holds whole lines only.
  const off_t start = ::lseek(fd_, 0, SEEK_END);
  const auto fail = [&](int error) {
    if (start >= 0) {
      int cut = 0;
      do {
        cut = ::ftruncate(fd_, start);
      } while (cut != 0 && errno == EINTR);
    }
    throw IoError(path_.string() + ": cannot write JSON line: " + std::strerror(error));
  };
  std::size_t done = 0;
  while (done < line.size()) {
    const ssize_t written = ::write(fd_, line.data() + done, line.size() - done);
    if (written < 0) {
      if (errno == EINTR) continue;
      fail(errno);
    }
    if (written == 0) fail(ENOSPC);
    done += static_cast<std::size_t>(written);
  }
  if (listener_) listener_(object);
}

void JsonLinesWriter::flush() {
  if (fd_ < 0) throw IoError(path_.string() + ": JSON lines writer is closed (moved from)");
  if (::fsync(fd_) != 0) {
    throw IoError(path_.string() + ": cannot fsync JSON lines: " + std::strerror(errno));
  }
}

std::vector<nlohmann::json> read_json_lines(const std::filesystem::path& path) {
  std::error_code error_code;
  if (std::filesystem::is_directory(path, error_code)) {
    throw IoError(path.string() + ": is a directory, expected a JSON lines file");
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    throw IoError(path.string() + ": cannot open for reading: " + std::strerror(errno));
  }
  std::vector<nlohmann::json> values;
  std::string line;
  std::size_t line_number = 0;
  while (std::getline(file, line)) {
    ++line_number;
    const bool blank = std::all_of(line.begin(), line.end(), [](char c) {
      return c == ' ' || c == '\t' || c == '\r' || c == '\n';
    });
    if (blank) continue;
    const std::string where = path.string() + ": line " + std::to_string(line_number) + ": ";
    if (const std::size_t nul = line.find('\0'); nul != std::string::npos) {
      throw DataError(where + "malformed JSON: NUL byte at byte " + std::to_string(nul) +
                      " of the line, expected one JSON object per line");
    }
    nlohmann::json value;
    try {
      value = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& error) {
      throw DataError(where + "malformed JSON at byte " + std::to_string(error.byte) +
                      " of the line, expected one JSON object per line (" + error.what() + ")");
    }
    if (!value.is_object()) {
      throw DataError(where + "holds a JSON " + std::string(value.type_name()) +
                      ", expected an object");
    }
    values.push_back(std::move(value));
  }
  if (file.bad()) {
    throw IoError(path.string() + ": read failed after line " + std::to_string(line_number));
  }
  return values;
}

}  // namespace descent::io
