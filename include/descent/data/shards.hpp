#pragma once
// Sharded data sets: a training set written once, shuffled, as a directory of binary shard
// files with a checksummed index, read back as a stream with bounded memory (docs/data.md,
// "Sharded data sets"; `descent shard` writes them, data.format = "sharded" reads them).
//
// Directory layout:
//   DIR/index.json             the index (written last: a directory without it is no shard set)
//   DIR/train-00000.shard ...  the training examples, in the order of the one shuffle
//   DIR/validation-00000.shard, DIR/test-00000.shard   the held-out parts (small; read whole)
//
// A shard file, little-endian:
//   offset 0   8 bytes  magic "DSCSHARD"
//          8   u32      version (1)
//         12   u32      dtype: 1 = u8 (raw bytes, e.g. image pixels), 2 = f32
//         16   u64      d, features per example (the product of the index's shape)
//         24   u64      count, examples in this shard
//         32   16 bytes zero (reserved)
//         48   i64[count]       example ids (which source example and which copy of it)
//              i32[count]       labels in [0, classes)
//              dtype[count * d] features, row-major
// The file's size must be exactly 48 + count * (12 + d * sizeof(dtype)).
//
// The index (JSON) names format "descent-shards", version 1, dtype, the per-example shape,
// classes, the shuffle's seed, whether it was shuffled, the augmentation (shifts K), and per
// part (train, validation, test) its shards: file name, examples, bytes and the CRC-32 (zlib)
// of the whole file. Readers check all of it: a missing, truncated or corrupt file or an index
// that disagrees with a shard is one DataError naming the file and what is wrong.
#include <cstdint>
#include <filesystem>
#include <atomic>
#include <future>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace descent::data {

inline constexpr std::size_t shard_header_bytes = 48;
inline constexpr std::string_view shard_magic = "DSCSHARD";

enum class ShardDType : std::uint32_t { u8 = 1, f32 = 2 };

struct ShardEntry {
  std::string file;            // a plain file name inside the directory
  std::int64_t examples = 0;   // count in its header
  std::int64_t bytes = 0;      // its exact size
  std::uint32_t crc32 = 0;     // zlib crc32 of all its bytes
};

struct ShardPart {
  std::vector<ShardEntry> shards;
  std::int64_t examples() const;
};

struct ShardIndex {
  ShardDType dtype = ShardDType::f32;
  std::vector<std::int64_t> shape;  // per example; d = product
  std::int32_t classes = 0;
  std::uint64_t seed = 0;
  bool shuffled = true;
  std::int64_t augment_shifts = 0;
  std::string source;  // where the examples came from (informational)
  ShardPart train, validation, test;

  std::int64_t dim() const;
};

// The decoded header of a shard file.
struct ShardHeader {
  ShardDType dtype = ShardDType::f32;
  std::int64_t dim = 0, count = 0;
};

// Parses an index's JSON text. Throws DataError "<source>: ..." naming the field that is
// missing, of the wrong type or out of range (a shape whose product overflows, a count or size
// that disagrees with the dtype and shape, a file name with a '/').
ShardIndex parse_shard_index(std::string_view text, const std::string& source);
std::string shard_index_json(const ShardIndex& index);

// Parses the 48-byte header at the start of `bytes` and checks that bytes.size() is what the
// header implies. Throws DataError "<source>: ..." (short file, wrong magic or version, unknown
// dtype, a count or d so large the size overflows, a size that disagrees).
ShardHeader parse_shard_header(std::string_view bytes, const std::string& source);

// The expected size of a shard of `count` examples of `dim` features, or -1 on overflow.
std::int64_t shard_file_bytes(ShardDType dtype, std::int64_t dim, std::int64_t count);

// Encodes one shard (ids, labels and features, count = labels.size()).
std::string encode_shard(ShardDType dtype, std::int64_t dim, std::span<const std::int64_t> ids,
                         std::span<const std::int32_t> labels, std::span<const std::uint8_t> feature_bytes);

std::uint32_t crc32_of(std::string_view bytes);

// One shard in memory, checked against its index entry (size, checksum, header, labels).
// A shard file's bytes in their own anonymous memory mapping, unmapped when destroyed: the
// memory goes back to the system at once (a malloc'd buffer of this size may stay in the
// heap, and glibc raises its mmap threshold after such a free), which keeps the stream's RSS
// at the shards it holds.
class ShardBytes {
 public:
  ShardBytes() = default;
  explicit ShardBytes(std::size_t size);
  explicit ShardBytes(std::string_view bytes);  // a copy
  ShardBytes(ShardBytes&& other) noexcept;
  ShardBytes& operator=(ShardBytes&& other) noexcept;
  ~ShardBytes();
  char* data() { return data_; }
  const char* data() const { return data_; }
  std::size_t size() const { return size_; }
  std::string_view view() const { return {data_, size_}; }

 private:
  char* data_ = nullptr;
  std::size_t size_ = 0;
};

struct Shard {
  ShardHeader header;
  std::vector<std::int64_t> ids;
  std::vector<std::int32_t> labels;
  ShardBytes raw;  // the whole file: the features are read in place, not copied
  std::size_t features_offset = 0;
  // count * d * sizeof(dtype) bytes, row-major
  const std::uint8_t* features() const { return reinterpret_cast<const std::uint8_t*>(raw.data()) + features_offset; }
  std::size_t feature_bytes() const { return raw.size() - features_offset; }
};
// Checks `bytes` (the file `path`) against `entry` and `index` and decodes it (keeping the
// bytes: a shard's features are never copied).
Shard decode_shard(ShardBytes bytes, const ShardEntry& entry, const ShardIndex& index, const std::string& path);
// Reads and decodes DIR/entry.file. Throws IoError (unreadable) or DataError.
Shard read_shard(const std::filesystem::path& dir, const ShardEntry& entry, const ShardIndex& index);

// Reads DIR/index.json and checks that every listed file exists with its size (not the
// checksums: those are checked as each shard is read). Throws IoError / DataError.
ShardIndex read_shard_index(const std::filesystem::path& dir);

// The training part read as a stream: features of any example by index, holding per group
// of shards at most its current shard and the next (read ahead on a background thread).
//
// Groups (docs/data.md, "Shard groups"): with G groups, group g holds the train shards
// g, g + G, g + 2G, ... (in that order), and the stream's example indices are group-major:
// group 0's examples first, then group 1's, ..., so group g is the range
// [group_start(g), group_start(g) + group_size(g)). With G = 1 that is the set's own order.
// A stream may own only the groups [first_group, end_group) (an MPI rank's share): it opens
// and reads only their shard files, holds only their labels (the others' read as 0), and the
// features of another group's example come out as NaN (id -1): nobody may use them.
//
// Walking each group in order reads each of its shards once, whatever the interleaving of the
// groups. The labels of the owned examples are read once at open (4 bytes per example) so
// that a split's size and labels are known without the features.
class ShardStream {
 public:
  // scale: every feature is multiplied by it as float (as data::scale does). groups in
  // [1, train shards]; the owned groups [first_group, end_group), end_group = -1 meaning G.
  // Throws ConfigError for groups or an owned range out of bounds.
  ShardStream(std::filesystem::path dir, ShardIndex index, float scale, std::int64_t groups = 1,
              std::int64_t first_group = 0, std::int64_t end_group = -1);
  ~ShardStream();
  ShardStream(const ShardStream&) = delete;
  ShardStream& operator=(const ShardStream&) = delete;

  std::int64_t size() const { return total_; }
  std::int64_t dim() const { return dim_; }
  const std::vector<std::int32_t>& labels() const { return labels_; }
  std::int64_t groups() const { return static_cast<std::int64_t>(group_starts_.size()) - 1; }
  std::int64_t group_start(std::int64_t g) const { return group_starts_[static_cast<std::size_t>(g)]; }
  std::int64_t group_size(std::int64_t g) const { return group_start(g + 1) - group_start(g); }
  std::vector<std::int64_t> group_sizes() const;
  // The owned groups and the examples they hold (contiguous: the indices are group-major).
  std::int64_t first_group() const { return first_group_; }
  std::int64_t end_group() const { return end_group_; }
  bool owns(std::int64_t example) const { return example >= group_start(first_group_) && example < group_start(end_group_); }
  // The train shard files of group g, in its order.
  std::vector<std::string> group_files(std::int64_t g) const;
  // Writes the features of examples `idx` into out[b * d] (float or double), and their ids
  // (the shards' id column) into *ids when it is given, in the same walk.
  void features(std::span<const std::int64_t> idx, float* out, std::vector<std::int64_t>* ids = nullptr);
  void features(std::span<const std::int64_t> idx, double* out, std::vector<std::int64_t>* ids = nullptr);
  // Shards read from disk so far (prefetched or not): a test can check that a pass reads each once.
  std::int64_t shards_read() const { return shards_read_; }

 private:
  struct Loaded;
  // One group's place in the walk: its current shard and the one read ahead.
  struct Cursor {
    std::shared_ptr<const Loaded> current;
    std::size_t current_pos = 0;
    std::future<std::shared_ptr<const Loaded>> next;
    std::size_t next_pos = 0;
    bool has_next = false;
  };
  std::shared_ptr<const Loaded> shard_for(std::int64_t example, std::int64_t& row);
  std::shared_ptr<const Loaded> load(std::size_t pos);
  template <class T>
  void copy(std::span<const std::int64_t> idx, T* out, std::vector<std::int64_t>* ids);

  std::filesystem::path dir_;
  ShardIndex index_;
  float scale_ = 1.0F;
  std::int64_t dim_ = 0, total_ = 0;
  // The walk's positions: position p is train shard order_[p] (group-major), of group
  // group_of_[p], holding examples [starts_[p], starts_[p + 1]).
  std::vector<std::size_t> order_;
  std::vector<std::int64_t> group_of_;
  std::vector<std::int64_t> starts_;
  std::vector<std::int64_t> group_starts_;    // G + 1 example offsets
  std::vector<std::size_t> group_positions_;  // G + 1 position offsets
  std::int64_t first_group_ = 0, end_group_ = 1;
  std::vector<std::int32_t> labels_;
  std::vector<Cursor> cursors_;  // one per group
  std::atomic<std::int64_t> shards_read_{0};
};

// The debug switch of the sharded-data tests: when the environment variable
// DESCENT_SHARD_TRACE names a file, the example ids of every training batch gathered from a
// sharded set are appended to it, one per line (the file is opened once per process; the ids
// of other ranks' rows are left out), and the name of every train shard file the process
// opens (to read its labels at open, or the whole shard) to the file plus ".opened". Under
// mpirun with P > 1 ranks each rank writes its own pair: the file plus ".rank<r>" (call
// set_shard_trace_rank before any trace is written).
bool shard_trace_enabled();
void set_shard_trace_rank(int rank);
void trace_shard_examples(std::span<const std::int64_t> ids);
void trace_shard_opened(const std::string& file);

}  // namespace descent::data
