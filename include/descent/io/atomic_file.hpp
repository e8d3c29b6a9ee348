#pragma once
// Whole-file reads and crash-safe whole-file writes (checkpoints, configs, exported weights).
//
// An atomic write never leaves a half-written file behind: readers see either the old
// content or the new content, also after a crash or power loss, because the new bytes go to
// a temporary file in the same directory that is flushed to the device and then renamed over
// the target (rename(2) replaces a directory entry atomically within one file system).
// Reference: POSIX rename(2) and fsync(2); the directory fsync makes the rename durable.
#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>

namespace descent::io {

// Replaces the file at `path` with `bytes`, atomically.
//
// Steps: create "<dir>/.<name>.tmp-<random>" (exclusive create, mode 0666 minus the umask),
// write all bytes (short writes are retried, EINTR is retried), fsync it, close it, rename it
// over `path`, fsync the directory. A missing parent directory is not created.
//
// Throws IoError naming `path` (and the step and strerror) if any step fails: the directory is
// missing or unwritable, the disk is full (ENOSPC or a write that makes no progress), fsync or
// close fails, or the rename fails. Up to the rename, a failure removes the temporary file and
// leaves any existing file at `path` untouched. A failure of the final directory fsync is
// reported as well, but then the new content is already in place (only its durability is in
// doubt). Cost: one pass over `bytes` plus two fsyncs.
void write_file_atomic(const std::filesystem::path& path, std::string_view bytes);

// The whole content of the file at `path`.
//
// Throws IoError naming `path` if the file is missing or unreadable, or if it holds more than
// `max_bytes` bytes (checked against its size before the buffer is allocated, and again while
// reading, so a file that grows meanwhile cannot exceed the limit). Cost: one pass over the
// file, O(file size) memory.
std::string read_file(const std::filesystem::path& path, std::size_t max_bytes);

}  // namespace descent::io
