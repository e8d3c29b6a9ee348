#pragma once
// JSON Lines files for metrics: one compact JSON object per line, "\n"-terminated.
//
// Reference: https://jsonlines.org/ (UTF-8, one JSON value per line, "\n" separators).
// This header exposes nlohmann::json; code that includes it needs nlohmann-json on its
// include path (the library itself uses it privately).
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <vector>

namespace descent::io {

// Appends JSON objects to a file, one line each. Every write() hands its complete line to the
// kernel in one write(2) call sequence before returning (no user-space buffering), so a killed
// process leaves only complete lines behind; flush() additionally fsyncs the file so the lines
// survive a power loss. Move-only; the destructor closes the file.
class JsonLinesWriter {
 public:
  // Opens `path` for writing, creating it (mode 0666 minus the umask) if missing; truncates an
  // existing file unless `append`. Throws IoError naming `path` and strerror if it cannot.
  explicit JsonLinesWriter(const std::filesystem::path& path, bool append = false);
  JsonLinesWriter(JsonLinesWriter&& other) noexcept;
  JsonLinesWriter& operator=(JsonLinesWriter&& other) noexcept;
  JsonLinesWriter(const JsonLinesWriter&) = delete;
  JsonLinesWriter& operator=(const JsonLinesWriter&) = delete;
  ~JsonLinesWriter();

  // Writes `object` as one compact line (NaN and infinities become null, as nlohmann-json
  // writes them). Throws DataError naming the path if `object` is not a JSON object or holds a
  // string that is not valid UTF-8 (nothing is written then); IoError naming the path if the
  // write fails (e.g. ENOSPC, EFBIG: the part of the line written is cut away again, so the
  // file keeps whole lines only) or the writer was moved from.
  void write(const nlohmann::json& object);

  // fsyncs the file. Throws IoError naming the path on failure.
  void flush();

  const std::filesystem::path& path() const { return path_; }

  // Called with each object after its line is written (the TensorBoard writer mirrors the
  // records of metrics.jsonl this way); one listener at a time, an empty one removes it. An
  // exception from the listener leaves write() (the line stays written).
  using Listener = std::function<void(const nlohmann::json&)>;
  void set_listener(Listener listener) { listener_ = std::move(listener); }
  const Listener& listener() const { return listener_; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  Listener listener_;
};

// All lines of a JSON Lines file, each parsed as a JSON object. Lines holding only whitespace
// are skipped. Throws IoError naming `path` if it cannot be read, DataError naming `path` and
// the 1-based line number if a line is not valid JSON or not an object (a truncated last line
// included). Cost: one pass over the file; memory for the parsed values.
std::vector<nlohmann::json> read_json_lines(const std::filesystem::path& path);

}  // namespace descent::io
