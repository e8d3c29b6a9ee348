// A cache of decompressed IDX byte files (data/idx.hpp, read_idx_bytes_cached).
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <system_error>

#include "descent/data/idx.hpp"
#include "descent/error.hpp"
#include "descent/io/atomic_file.hpp"

namespace descent::data {
namespace {

std::uint64_t fnv1a(std::string_view text) {
  std::uint64_t h = 14695981039346656037ull;
  for (const char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

// The plain IDX file of a byte array: magic 00 00 08 NDIM, big-endian dimensions, the bytes.
std::string encode_idx(const ByteArray& a) {
  std::string out{'\0', '\0', '\x08', static_cast<char>(a.shape.size())};
  for (const std::int64_t d : a.shape) {
    const auto u = static_cast<std::uint32_t>(d);
    for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((u >> shift) & 0xFF);
  }
  out.append(reinterpret_cast<const char*>(a.values.data()), a.values.size());
  return out;
}

}  // namespace

std::filesystem::path idx_cache_dir() {
  if (const char* dir = std::getenv("DESCENT_CACHE_DIR")) {
    const std::string d = dir;
    if (d.empty() || d == "none") return {};
    return d;
  }
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg == '/') {
    return std::filesystem::path(xdg) / "descent";
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home == '/') {
    return std::filesystem::path(home) / ".cache" / "descent";
  }
  return {};
}

std::filesystem::path idx_cache_file(const std::filesystem::path& path) {
  const std::filesystem::path dir = idx_cache_dir();
  if (dir.empty() || path.extension() != ".gz") return {};
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  std::error_code ec;
  const std::filesystem::path absolute = std::filesystem::absolute(path, ec);
  if (ec) return {};
  const std::string key = absolute.string() + "|" + std::to_string(st.st_size) + "|" + std::to_string(st.st_mtim.tv_sec) +
                          "." + std::to_string(st.st_mtim.tv_nsec);
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(fnv1a(key)));
  return dir / (path.stem().string() + "-" + hex + ".idx");
}

ByteArray read_idx_bytes_cached(const std::filesystem::path& path) {
  const std::filesystem::path cached = idx_cache_file(path);
  if (cached.empty()) return read_idx_bytes(path);
  std::error_code ec;
  if (std::filesystem::is_regular_file(cached, ec)) {
    try {
      return read_idx_bytes(cached);
    } catch (const Error&) {
      // damaged: decompress again and rewrite it below
    }
  }
  ByteArray array = read_idx_bytes(path);
  try {
    std::filesystem::create_directories(cached.parent_path(), ec);
    if (!ec) io::write_file_atomic(cached, encode_idx(array));
  } catch (const Error&) {
    // best effort: an unwritable cache only costs the decompression next time
  }
  return array;
}

}  // namespace descent::data
