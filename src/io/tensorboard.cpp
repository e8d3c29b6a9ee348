#include "descent/io/tensorboard.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "descent/error.hpp"

namespace descent::io {
namespace {

constexpr std::array<std::uint32_t, 256> make_crc32c_table() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1U) != 0 ? (c >> 1) ^ 0x82F63B78U : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr std::array<std::uint32_t, 256> kCrc32cTable = make_crc32c_table();

// ---- protobuf wire format (https://protobuf.dev/programming-guides/encoding/) ----------
enum Wire : std::uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void put_key(std::string& out, std::uint32_t field, Wire wire) { put_varint(out, (field << 3) | wire); }
void put_fixed(std::string& out, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
void put_double(std::string& out, std::uint32_t field, double v) {
  put_key(out, field, kFixed64);
  put_fixed(out, std::bit_cast<std::uint64_t>(v), 8);
}
void put_float(std::string& out, std::uint32_t field, float v) {
  put_key(out, field, kFixed32);
  put_fixed(out, std::bit_cast<std::uint32_t>(v), 4);
}
void put_bytes(std::string& out, std::uint32_t field, std::string_view bytes) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, bytes.size());
  out.append(bytes);
}
void put_packed_doubles(std::string& out, std::uint32_t field, const std::vector<double>& values) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, values.size() * 8);
  for (const double v : values) put_fixed(out, std::bit_cast<std::uint64_t>(v), 8);
}

// Event's wall_time = 1, step = 2 (int64 as a varint: two's complement, 10 bytes if negative).
std::string event_head(double wall_time, std::int64_t step) {
  std::string e;
  put_double(e, 1, wall_time);
  if (step != 0) {  // proto3: a zero is left out
    put_key(e, 2, kVarint);
    put_varint(e, static_cast<std::uint64_t>(step));
  }
  return e;
}

std::string encode_histogram(const Histogram& h) {
  std::string out;
  put_double(out, 1, h.min);
  put_double(out, 2, h.max);
  put_double(out, 3, h.num);
  put_double(out, 4, h.sum);
  put_double(out, 5, h.sum_squares);
  put_packed_doubles(out, 6, h.bucket_limit);
  put_packed_doubles(out, 7, h.bucket);
  return out;
}

template <class T>
Histogram histogram_of(std::span<const T> values, int buckets) {
  Histogram h;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const T x : values) {
    if (!std::isfinite(x)) continue;
    const auto v = static_cast<double>(x);
    lo = std::min(lo, v);
    hi = std::max(hi, v);
    h.num += 1;
    h.sum += v;
    h.sum_squares += v * v;
  }
  if (h.num == 0) return h;
  h.min = lo;
  h.max = hi;
  const int n = lo == hi ? 1 : std::max(buckets, 1);
  // Limits lo + (hi - lo) i / n for i = 1 .. n-1, then DBL_MAX: every finite value has a bucket.
  for (int i = 1; i < n; ++i) h.bucket_limit.push_back(lo + (hi - lo) * i / n);
  h.bucket_limit.push_back(std::numeric_limits<double>::max());
  h.bucket.assign(h.bucket_limit.size(), 0.0);
  for (const T x : values) {
    if (!std::isfinite(x)) continue;
    const auto b = std::upper_bound(h.bucket_limit.begin(), h.bucket_limit.end(), static_cast<double>(x));
    h.bucket[static_cast<std::size_t>(b - h.bucket_limit.begin())] += 1;
  }
  return h;
}

}  // namespace

std::uint32_t crc32c(std::string_view data, std::uint32_t crc) {
  crc = ~crc;
  for (const char ch : data) crc = kCrc32cTable[(crc ^ static_cast<unsigned char>(ch)) & 0xFFU] ^ (crc >> 8);
  return ~crc;
}

std::uint32_t mask_crc32c(std::uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8U; }

std::string frame_record(std::string_view data) {
  std::string out;
  out.reserve(data.size() + 16);
  put_fixed(out, data.size(), 8);
  const std::uint32_t length_crc = mask_crc32c(crc32c(out));
  put_fixed(out, length_crc, 4);
  out.append(data);
  put_fixed(out, mask_crc32c(crc32c(data)), 4);
  return out;
}

Histogram make_histogram(std::span<const float> values, int buckets) { return histogram_of(values, buckets); }
Histogram make_histogram(std::span<const double> values, int buckets) { return histogram_of(values, buckets); }

std::string encode_file_version_event(double wall_time) {
  std::string e = event_head(wall_time, 0);
  put_bytes(e, 3, "brain.Event:2");
  return e;
}

std::string encode_scalars_event(double wall_time, std::int64_t step, std::span<const ScalarValue> values) {
  std::string summary;
  for (const ScalarValue& v : values) {
    std::string value;
    put_bytes(value, 1, v.tag);
    put_float(value, 2, v.value);
    put_bytes(summary, 1, value);
  }
  std::string e = event_head(wall_time, step);
  put_bytes(e, 5, summary);
  return e;
}

std::string encode_histograms_event(double wall_time, std::int64_t step, std::span<const HistogramValue> values) {
  std::string summary;
  for (const HistogramValue& v : values) {
    std::string value;
    put_bytes(value, 1, v.tag);
    put_bytes(value, 5, encode_histogram(v.histogram));
    put_bytes(summary, 1, value);
  }
  std::string e = event_head(wall_time, step);
  put_bytes(e, 5, summary);
  return e;
}

std::string event_file_name(double wall_time) {
  std::array<char, 256> host{};
  if (::gethostname(host.data(), host.size() - 1) != 0 || host[0] == '\0') std::strcpy(host.data(), "localhost");
  std::string name(host.data());
  std::replace(name.begin(), name.end(), '/', '_');
  return "events.out.tfevents." + std::to_string(static_cast<std::int64_t>(wall_time)) + "." + name;
}

double unix_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// ---- EventFileWriter ------------------------------------------------------------------

EventFileWriter::EventFileWriter(std::filesystem::path path, int fd, std::uint64_t size)
    : path_(std::move(path)), fd_(fd), size_(size) {}

EventFileWriter::EventFileWriter(EventFileWriter&& other) noexcept
    : path_(std::move(other.path_)), fd_(std::exchange(other.fd_, -1)), size_(other.size_) {}

EventFileWriter& EventFileWriter::operator=(EventFileWriter&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    size_ = other.size_;
  }
  return *this;
}

EventFileWriter::~EventFileWriter() {
  if (fd_ >= 0) ::close(fd_);
}

namespace {
int open_for_writing(const std::filesystem::path& path, int flags) {
  int fd = -1;
  do {
    fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | flags, 0666);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) throw IoError(path.string() + ": cannot open the TensorBoard event file: " + std::strerror(errno));
  return fd;
}
}  // namespace

EventFileWriter EventFileWriter::create(const std::filesystem::path& path, double wall_time) {
  EventFileWriter w(path, open_for_writing(path, O_CREAT | O_TRUNC | O_APPEND), 0);
  w.write(encode_file_version_event(wall_time));
  return w;
}

EventFileWriter EventFileWriter::reopen(const std::filesystem::path& path, std::uint64_t length) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    throw IoError(path.string() + ": cannot open the TensorBoard event file: " + std::strerror(errno));
  }
  if (static_cast<std::uint64_t>(st.st_size) < length) {
    throw DataError(path.string() + ": holds " + std::to_string(st.st_size) + " bytes, fewer than the " +
                    std::to_string(length) + " the checkpoint recorded");
  }
  EventFileWriter w(path, open_for_writing(path, O_APPEND), length);
  int cut = 0;
  do {
    cut = ::ftruncate(w.fd_, static_cast<off_t>(length));
  } while (cut != 0 && errno == EINTR);
  if (cut != 0) throw IoError(path.string() + ": cannot cut the TensorBoard event file back: " + std::strerror(errno));
  return w;
}

void EventFileWriter::write(std::string_view event) {
  if (fd_ < 0) throw IoError(path_.string() + ": TensorBoard event writer is closed (moved from)");
  const std::string record = frame_record(event);
  const auto fail = [&](int error) {
    int cut = 0;
    do {
      cut = ::ftruncate(fd_, static_cast<off_t>(size_));
    } while (cut != 0 && errno == EINTR);
    throw IoError(path_.string() + ": cannot write a TensorBoard event: " + std::strerror(error));
  };
  std::size_t done = 0;
  while (done < record.size()) {
    const ssize_t written = ::write(fd_, record.data() + done, record.size() - done);
    if (written < 0) {
      if (errno == EINTR) continue;
      fail(errno);
    }
    if (written == 0) fail(ENOSPC);
    done += static_cast<std::size_t>(written);
  }
  size_ += record.size();
}

void EventFileWriter::flush() {
  if (fd_ < 0) throw IoError(path_.string() + ": TensorBoard event writer is closed (moved from)");
  if (::fsync(fd_) != 0) throw IoError(path_.string() + ": cannot fsync the TensorBoard event file: " + std::strerror(errno));
}

}  // namespace descent::io
