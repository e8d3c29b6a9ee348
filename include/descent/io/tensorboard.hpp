#pragma once
// TensorBoard event files, written by hand (docs/tensorboard.md says why not libprotobuf).
//
// An event file is a sequence of TFRecord records, each
//   uint64 length (little-endian) | uint32 masked CRC-32C of those 8 bytes |
//   `length` bytes of data        | uint32 masked CRC-32C of the data
// with mask(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8 (mod 2^32). Each record's data is
// one tensorflow.Event protobuf message; the fields written here are
//   Event          wall_time = 1 (double), step = 2 (int64), file_version = 3 (string,
//                  "brain.Event:2", in the file's first event), summary = 5 (Summary)
//   Summary        value = 1 (repeated Summary.Value)
//   Summary.Value  tag = 1 (string), simple_value = 2 (float), histo = 5 (HistogramProto)
//   HistogramProto min = 1, max = 2, num = 3, sum = 4, sum_squares = 5 (double),
//                  bucket_limit = 6, bucket = 7 (packed repeated double)
// The file is named events.out.tfevents.<unix seconds>.<host name>; TensorBoard reads every
// such file under --logdir.
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace descent::io {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, initial value and final xor
// 0xFFFFFFFF) of `data`, continuing from a previous result `crc` (0 to start):
// crc32c("123456789") == 0xE3069283. Table-driven, one byte per step.
std::uint32_t crc32c(std::string_view data, std::uint32_t crc = 0);

// TFRecord's mask of a CRC: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
std::uint32_t mask_crc32c(std::uint32_t crc);

// One TFRecord: length, masked CRC of the length, data, masked CRC of the data.
std::string frame_record(std::string_view data);

// A histogram of a tensor's values in TensorBoard's HistogramProto form. bucket[i] counts the
// values x with bucket_limit[i-1] <= x < bucket_limit[i] (bucket_limit[-1] = -infinity), as
// TensorFlow's histograms do; the last limit is DBL_MAX. Non-finite values are left out.
struct Histogram {
  double min = 0, max = 0, num = 0, sum = 0, sum_squares = 0;
  std::vector<double> bucket_limit, bucket;
};

// The histogram of `values` with `buckets` buckets of equal width between the smallest and the
// largest finite value (one bucket when they are equal). num == 0 when no value is finite.
Histogram make_histogram(std::span<const float> values, int buckets = 30);
Histogram make_histogram(std::span<const double> values, int buckets = 30);

struct ScalarValue {
  std::string tag;
  float value = 0;
};
struct HistogramValue {
  std::string tag;
  Histogram histogram;
};

// Serialized Event messages (the record data, not framed).
std::string encode_file_version_event(double wall_time);
std::string encode_scalars_event(double wall_time, std::int64_t step, std::span<const ScalarValue> values);
std::string encode_histograms_event(double wall_time, std::int64_t step, std::span<const HistogramValue> values);

// "events.out.tfevents.<seconds>.<host name>" for a file started at `wall_time`.
std::string event_file_name(double wall_time);

// Seconds since the Unix epoch, as an Event's wall_time.
double unix_seconds();

// Appends framed records to an event file. Each write hands its whole record to the kernel
// before returning (a killed process leaves whole records, plus at most one cut short at the
// end); flush() fsyncs. Move-only.
class EventFileWriter {
 public:
  // A new file at `path` (truncated if it exists) that starts with the file_version event.
  // Throws IoError naming the path.
  static EventFileWriter create(const std::filesystem::path& path, double wall_time);
  // An existing file cut back to its first `length` bytes and opened for appending (a resume:
  // what was written after a checkpoint goes away). Throws DataError naming the path when the
  // file is shorter than `length`, IoError when it cannot be opened or cut.
  static EventFileWriter reopen(const std::filesystem::path& path, std::uint64_t length);

  EventFileWriter(EventFileWriter&& other) noexcept;
  EventFileWriter& operator=(EventFileWriter&& other) noexcept;
  EventFileWriter(const EventFileWriter&) = delete;
  EventFileWriter& operator=(const EventFileWriter&) = delete;
  ~EventFileWriter();

  // Writes one record holding `event` (a serialized Event). Throws IoError naming the path;
  // a record written in part is cut away again.
  void write(std::string_view event);
  // fsyncs the file. Throws IoError naming the path.
  void flush();
  // Bytes in the file (what a checkpoint records).
  std::uint64_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  EventFileWriter(std::filesystem::path path, int fd, std::uint64_t size);
  std::filesystem::path path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

}  // namespace descent::io
