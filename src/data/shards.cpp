#include "descent/data/shards.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <new>
#include <utility>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <system_error>

#include "descent/error.hpp"
#include "descent/io/atomic_file.hpp"

namespace descent::data {
namespace {

constexpr std::uint32_t kVersion = 1;
constexpr std::size_t kMaxIndexBytes = std::size_t{64} << 20;
// Far beyond any real data set, small enough that every size computed from them fits in int64.
constexpr std::int64_t kMaxCount = std::int64_t{1} << 40;
constexpr std::int64_t kMaxDim = std::int64_t{1} << 32;

std::size_t dtype_bytes(ShardDType t) { return t == ShardDType::u8 ? 1 : 4; }
const char* dtype_name(ShardDType t) { return t == ShardDType::u8 ? "u8" : "f32"; }

template <class T>
T load_le(const char* p) {
  T v{};
  std::memcpy(&v, p, sizeof(T));  // the supported platforms are little-endian (docs/design.md)
  return v;
}
template <class T>
void store_le(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}

[[noreturn]] void bad(const std::string& source, const std::string& what) { throw DataError(source + ": " + what); }

using nlohmann::json;

const json& field(const json& j, const char* key, const std::string& where, const std::string& source) {
  if (!j.is_object() || !j.contains(key)) bad(source, where + "missing \"" + key + "\"");
  return j.at(key);
}

std::int64_t integer(const json& j, const char* key, std::int64_t lo, std::int64_t hi, const std::string& where,
                     const std::string& source) {
  const json& v = field(j, key, where, source);
  if (!v.is_number_integer()) bad(source, where + "\"" + key + "\" is not an integer");
  const bool neg = v.is_number_unsigned() ? false : v.get<std::int64_t>() < 0;
  if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(hi))
    bad(source, where + "\"" + key + "\" is out of range");
  const std::int64_t x = neg ? v.get<std::int64_t>() : static_cast<std::int64_t>(v.get<std::uint64_t>());
  if (x < lo || x > hi)
    bad(source, where + "\"" + key + "\" = " + std::to_string(x) + " is outside [" + std::to_string(lo) + ", " +
                    std::to_string(hi) + "]");
  return x;
}

std::string text(const json& j, const char* key, const std::string& where, const std::string& source) {
  const json& v = field(j, key, where, source);
  if (!v.is_string()) bad(source, where + "\"" + key + "\" is not a string");
  return v.get<std::string>();
}

ShardPart parse_part(const json& j, const char* name, const ShardIndex& index, const std::string& source) {
  ShardPart part;
  const json& parts = field(j, "parts", "", source);
  if (!parts.is_object()) bad(source, "\"parts\" is not an object");
  if (!parts.contains(name)) {
    if (std::string_view(name) == "train") bad(source, "parts: missing \"train\"");
    return part;
  }
  const json& list = parts.at(name);
  if (!list.is_array()) bad(source, std::string("parts.") + name + " is not an array");
  std::int64_t total = 0;
  for (std::size_t i = 0; i < list.size(); ++i) {
    const std::string where = std::string("parts.") + name + "[" + std::to_string(i) + "]: ";
    ShardEntry e;
    e.file = text(list[i], "file", where, source);
    if (e.file.empty() || e.file.find('/') != std::string::npos || e.file == "." || e.file == ".." ||
        e.file.find('\0') != std::string::npos || e.file.size() > 255)
      bad(source, where + "\"file\" is not a plain file name");
    e.examples = integer(list[i], "examples", 1, kMaxCount, where, source);
    e.bytes = integer(list[i], "bytes", 0, std::numeric_limits<std::int64_t>::max(), where, source);
    e.crc32 = static_cast<std::uint32_t>(integer(list[i], "crc32", 0, 0xFFFFFFFFll, where, source));
    const std::int64_t want = shard_file_bytes(index.dtype, index.dim(), e.examples);
    if (want < 0 || want != e.bytes)
      bad(source, where + "\"bytes\" = " + std::to_string(e.bytes) + " disagrees with " + std::to_string(e.examples) +
                      " examples of " + std::to_string(index.dim()) + " " + dtype_name(index.dtype) + " features");
    if (total > kMaxCount - e.examples) bad(source, std::string("parts.") + name + ": too many examples");
    total += e.examples;
    part.shards.push_back(std::move(e));
  }
  if (std::string_view(name) == "train" && part.shards.empty()) bad(source, "parts.train lists no shards");
  return part;
}

}  // namespace

ShardBytes::ShardBytes(std::size_t size) : size_(size) {
  if (size == 0) return;
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  data_ = static_cast<char*>(p);
}
ShardBytes::ShardBytes(std::string_view bytes) : ShardBytes(bytes.size()) {
  if (!bytes.empty()) std::memcpy(data_, bytes.data(), bytes.size());
}
ShardBytes::ShardBytes(ShardBytes&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
ShardBytes& ShardBytes::operator=(ShardBytes&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::munmap(data_, size_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}
ShardBytes::~ShardBytes() {
  if (data_ != nullptr) ::munmap(data_, size_);
}

std::int64_t ShardPart::examples() const {
  std::int64_t n = 0;
  for (const ShardEntry& e : shards) n += e.examples;
  return n;
}

std::int64_t ShardIndex::dim() const {
  std::int64_t d = 1;
  for (const std::int64_t s : shape) d *= s;
  return d;
}

std::int64_t shard_file_bytes(ShardDType dtype, std::int64_t dim, std::int64_t count) {
  if (dim < 1 || dim > kMaxDim || count < 0 || count > kMaxCount) return -1;
  const auto row = static_cast<std::int64_t>(12 + static_cast<std::size_t>(dim) * dtype_bytes(dtype));
  if (count > 0 && row > (std::numeric_limits<std::int64_t>::max() - static_cast<std::int64_t>(shard_header_bytes)) / count)
    return -1;
  return static_cast<std::int64_t>(shard_header_bytes) + count * row;
}

std::uint32_t crc32_of(std::string_view bytes) {
  uLong crc = crc32(0L, Z_NULL, 0);
  const auto* p = reinterpret_cast<const Bytef*>(bytes.data());
  std::size_t left = bytes.size();
  while (left > 0) {
    const auto chunk = static_cast<uInt>(std::min<std::size_t>(left, std::size_t{1} << 30));
    crc = crc32(crc, p, chunk);
    p += chunk;
    left -= chunk;
  }
  return static_cast<std::uint32_t>(crc);
}

ShardIndex parse_shard_index(std::string_view bytes, const std::string& source) {
  json j;
  try {
    j = json::parse(bytes);
  } catch (const json::exception&) {
    bad(source, "not valid JSON");
  }
  if (!j.is_object()) bad(source, "not a JSON object");
  if (text(j, "format", "", source) != "descent-shards") bad(source, "\"format\" is not \"descent-shards\"");
  const std::int64_t version = integer(j, "version", 0, 1 << 30, "", source);
  if (version != kVersion) bad(source, "version " + std::to_string(version) + " is not supported (this build reads 1)");
  ShardIndex index;
  const std::string dtype = text(j, "dtype", "", source);
  if (dtype == "u8") {
    index.dtype = ShardDType::u8;
  } else if (dtype == "f32") {
    index.dtype = ShardDType::f32;
  } else {
    bad(source, "\"dtype\" is not \"u8\" or \"f32\"");
  }
  const json& shape = field(j, "shape", "", source);
  if (!shape.is_array() || shape.empty() || shape.size() > 4) bad(source, "\"shape\" is not an array of 1 to 4 sizes");
  std::int64_t d = 1;
  for (const json& s : shape) {
    if (!s.is_number_integer() || s.get<std::int64_t>() < 1) bad(source, "\"shape\" holds a size that is not a positive integer");
    const auto v = s.get<std::int64_t>();
    if (v > kMaxDim || d > kMaxDim / v) bad(source, "\"shape\" has more than 2^32 features per example");
    d *= v;
    index.shape.push_back(v);
  }
  index.classes = static_cast<std::int32_t>(integer(j, "classes", 1, 1'000'000, "", source));
  index.seed = field(j, "seed", "", source).is_number_unsigned()
                   ? field(j, "seed", "", source).get<std::uint64_t>()
                   : static_cast<std::uint64_t>(integer(j, "seed", 0, std::numeric_limits<std::int64_t>::max(), "", source));
  const json& shuffled = field(j, "shuffled", "", source);
  if (!shuffled.is_boolean()) bad(source, "\"shuffled\" is not true or false");
  index.shuffled = shuffled.get<bool>();
  index.augment_shifts = integer(j, "augment_shifts", 0, 64, "", source);
  if (j.contains("source") && j.at("source").is_string()) index.source = j.at("source").get<std::string>();
  index.train = parse_part(j, "train", index, source);
  index.validation = parse_part(j, "validation", index, source);
  index.test = parse_part(j, "test", index, source);
  return index;
}

std::string shard_index_json(const ShardIndex& index) {
  json parts = json::object();
  const auto part = [](const ShardPart& p) {
    json list = json::array();
    for (const ShardEntry& e : p.shards)
      list.push_back({{"file", e.file}, {"examples", e.examples}, {"bytes", e.bytes}, {"crc32", e.crc32}});
    return list;
  };
  parts["train"] = part(index.train);
  if (!index.validation.shards.empty()) parts["validation"] = part(index.validation);
  if (!index.test.shards.empty()) parts["test"] = part(index.test);
  const json j = {{"format", "descent-shards"},
                  {"version", kVersion},
                  {"dtype", dtype_name(index.dtype)},
                  {"shape", index.shape},
                  {"classes", index.classes},
                  {"seed", index.seed},
                  {"shuffled", index.shuffled},
                  {"augment_shifts", index.augment_shifts},
                  {"source", index.source},
                  {"examples", {{"train", index.train.examples()},
                                {"validation", index.validation.examples()},
                                {"test", index.test.examples()}}},
                  {"parts", parts}};
  return j.dump(1) + "\n";
}

ShardHeader parse_shard_header(std::string_view bytes, const std::string& source) {
  if (bytes.size() < shard_header_bytes)
    bad(source, "truncated: " + std::to_string(bytes.size()) + " bytes, shorter than the 48-byte header");
  if (bytes.substr(0, 8) != shard_magic) bad(source, "not a descent shard (wrong magic)");
  const auto version = load_le<std::uint32_t>(bytes.data() + 8);
  if (version != kVersion) bad(source, "shard version " + std::to_string(version) + " is not supported (this build reads 1)");
  const auto dtype = load_le<std::uint32_t>(bytes.data() + 12);
  if (dtype != 1 && dtype != 2) bad(source, "unknown dtype code " + std::to_string(dtype));
  ShardHeader h;
  h.dtype = static_cast<ShardDType>(dtype);
  const auto dim = load_le<std::uint64_t>(bytes.data() + 16);
  const auto count = load_le<std::uint64_t>(bytes.data() + 24);
  if (dim < 1 || dim > static_cast<std::uint64_t>(kMaxDim)) bad(source, "feature count " + std::to_string(dim) + " is outside [1, 2^32]");
  if (count > static_cast<std::uint64_t>(kMaxCount)) bad(source, "example count " + std::to_string(count) + " is larger than 2^40");
  h.dim = static_cast<std::int64_t>(dim);
  h.count = static_cast<std::int64_t>(count);
  const std::int64_t want = shard_file_bytes(h.dtype, h.dim, h.count);
  if (want < 0) bad(source, "the header's sizes overflow");
  if (static_cast<std::uint64_t>(want) != bytes.size()) {
    bad(source, std::string(static_cast<std::int64_t>(bytes.size()) < want ? "truncated: " : "too long: ") +
                    std::to_string(bytes.size()) + " bytes, the header's " + std::to_string(h.count) + " examples of " +
                    std::to_string(h.dim) + " " + dtype_name(h.dtype) + " features need " + std::to_string(want));
  }
  return h;
}

std::string encode_shard(ShardDType dtype, std::int64_t dim, std::span<const std::int64_t> ids,
                         std::span<const std::int32_t> labels, std::span<const std::uint8_t> feature_bytes) {
  const auto count = static_cast<std::int64_t>(labels.size());
  const std::int64_t size = shard_file_bytes(dtype, dim, count);
  if (size < 0 || ids.size() != labels.size() ||
      feature_bytes.size() != static_cast<std::size_t>(count) * static_cast<std::size_t>(dim) * dtype_bytes(dtype))
    throw ShapeError("encode_shard: the ids, labels and features disagree");
  std::string out;
  out.reserve(static_cast<std::size_t>(size));
  out.append(shard_magic);
  store_le<std::uint32_t>(out, kVersion);
  store_le<std::uint32_t>(out, static_cast<std::uint32_t>(dtype));
  store_le<std::uint64_t>(out, static_cast<std::uint64_t>(dim));
  store_le<std::uint64_t>(out, static_cast<std::uint64_t>(count));
  out.append(16, '\0');
  out.append(reinterpret_cast<const char*>(ids.data()), ids.size_bytes());
  out.append(reinterpret_cast<const char*>(labels.data()), labels.size_bytes());
  out.append(reinterpret_cast<const char*>(feature_bytes.data()), feature_bytes.size());
  return out;
}

Shard decode_shard(ShardBytes bytes, const ShardEntry& entry, const ShardIndex& index, const std::string& path) {
  if (static_cast<std::int64_t>(bytes.size()) != entry.bytes)
    bad(path, "holds " + std::to_string(bytes.size()) + " bytes, the index says " + std::to_string(entry.bytes) +
                  (static_cast<std::int64_t>(bytes.size()) < entry.bytes ? " (truncated)" : ""));
  Shard s;
  s.header = parse_shard_header(bytes.view(), path);
  const std::uint32_t crc = crc32_of(bytes.view());
  if (crc != entry.crc32)
    bad(path, "checksum mismatch (crc32 " + std::to_string(crc) + ", the index says " + std::to_string(entry.crc32) +
                  "): the file is corrupt");
  if (s.header.dtype != index.dtype || s.header.dim != index.dim() || s.header.count != entry.examples)
    bad(path, "the header (" + std::to_string(s.header.count) + " examples of " + std::to_string(s.header.dim) + " " +
                  dtype_name(s.header.dtype) + ") disagrees with the index (" + std::to_string(entry.examples) + " of " +
                  std::to_string(index.dim()) + " " + dtype_name(index.dtype) + ")");
  const auto n = static_cast<std::size_t>(s.header.count);
  const char* p = bytes.data() + shard_header_bytes;
  s.ids.resize(n);
  s.labels.resize(n);
  if (n > 0) {  // an empty vector's data() may be null, which memcpy must not get even for 0 bytes
    std::memcpy(s.ids.data(), p, n * 8);
    std::memcpy(s.labels.data(), p + n * 8, n * 4);
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (s.labels[i] < 0 || s.labels[i] >= index.classes)
      bad(path, "example " + std::to_string(i) + " has label " + std::to_string(s.labels[i]) + ", outside [0, " +
                    std::to_string(index.classes) + ")");
  }
  s.features_offset = shard_header_bytes + n * 12;
  s.raw = std::move(bytes);
  return s;
}

Shard read_shard(const std::filesystem::path& dir, const ShardEntry& entry, const ShardIndex& index) {
  const std::filesystem::path path = dir / entry.file;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw IoError(path.string() + ": cannot open: " + std::strerror(errno));
  ShardBytes bytes(static_cast<std::size_t>(entry.bytes));
  std::size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t r = ::read(fd, bytes.data() + got, std::min<std::size_t>(bytes.size() - got, std::size_t{1} << 30));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      const int e = errno;
      ::close(fd);
      throw IoError(path.string() + ": cannot read: " + std::strerror(e));
    }
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  char extra = 0;
  const bool longer = got == bytes.size() && ::read(fd, &extra, 1) == 1;
  ::close(fd);
  if (got < bytes.size() || longer)
    bad(path.string(), std::string(longer ? "is longer than" : "holds " + std::to_string(got) + " bytes, fewer than") +
                           " the " + std::to_string(entry.bytes) + " bytes index.json says" + (longer ? "" : " (truncated)"));
  return decode_shard(std::move(bytes), entry, index, path.string());
}

ShardIndex read_shard_index(const std::filesystem::path& dir) {
  const std::filesystem::path path = dir / "index.json";
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) throw IoError(dir.string() + ": not a directory (data.dir of a sharded data set)");
  if (!std::filesystem::exists(path, ec))
    throw IoError(path.string() + ": missing: not a shard set (descent shard writes index.json last)");
  ShardIndex index = parse_shard_index(io::read_file(path, kMaxIndexBytes), path.string());
  for (const ShardPart* part : {&index.train, &index.validation, &index.test}) {
    for (const ShardEntry& e : part->shards) {
      const std::filesystem::path file = dir / e.file;
      const auto size = std::filesystem::file_size(file, ec);
      if (ec) throw IoError(file.string() + ": listed in index.json but cannot be read: " + ec.message());
      if (static_cast<std::int64_t>(size) != e.bytes)
        bad(file.string(), "holds " + std::to_string(size) + " bytes, index.json says " + std::to_string(e.bytes) +
                               (static_cast<std::int64_t>(size) < e.bytes ? " (truncated)" : ""));
    }
  }
  return index;
}

// ---- the stream ----------------------------------------------------------------------------

struct ShardStream::Loaded {
  Shard shard;
};

ShardStream::ShardStream(std::filesystem::path dir, ShardIndex index, float scale, std::int64_t groups,
                         std::int64_t first_group, std::int64_t end_group)
    : dir_(std::move(dir)), index_(std::move(index)), scale_(scale), dim_(index_.dim()) {
  const auto shards = static_cast<std::int64_t>(index_.train.shards.size());
  if (groups < 1 || groups > shards)
    throw ConfigError((dir_ / "index.json").string() + ": " + std::to_string(groups) +
                      " shard groups need between 1 and the set's " + std::to_string(shards) + " train shards");
  if (end_group < 0) end_group = groups;
  if (first_group < 0 || first_group >= end_group || end_group > groups)
    throw ConfigError("shard stream: owned groups [" + std::to_string(first_group) + ", " + std::to_string(end_group) +
                      ") are not within [0, " + std::to_string(groups) + ")");
  first_group_ = first_group;
  end_group_ = end_group;
  // Group-major positions: group g's shards g, g + G, ... in order.
  const auto n_shards = static_cast<std::size_t>(shards);
  order_.reserve(n_shards);
  group_of_.reserve(n_shards);
  starts_.reserve(n_shards + 1);
  for (std::int64_t g = 0; g < groups; ++g) {
    group_positions_.push_back(order_.size());
    group_starts_.push_back(total_);
    for (auto s = static_cast<std::size_t>(g); s < n_shards; s += static_cast<std::size_t>(groups)) {
      order_.push_back(s);
      group_of_.push_back(g);
      starts_.push_back(total_);
      total_ += index_.train.shards[s].examples;
    }
  }
  group_positions_.push_back(order_.size());
  group_starts_.push_back(total_);
  starts_.push_back(total_);
  cursors_.resize(static_cast<std::size_t>(groups));
  // The label column alone of the owned shards (read_shard_index checked the sizes); checked
  // again with the checksum when the shard is read whole. Other groups' labels stay 0.
  labels_.assign(static_cast<std::size_t>(total_), 0);
  for (std::size_t p = group_positions_[static_cast<std::size_t>(first_group_)];
       p < group_positions_[static_cast<std::size_t>(end_group_)]; ++p) {
    const ShardEntry& e = index_.train.shards[order_[p]];
    const std::filesystem::path path = dir_ / e.file;
    trace_shard_opened(e.file);
    std::ifstream in(path, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(shard_header_bytes + static_cast<std::size_t>(e.examples) * 8));
    auto* dst = labels_.data() + starts_[p];
    if (!in.read(reinterpret_cast<char*>(dst), static_cast<std::streamsize>(e.examples * 4)))
      throw IoError(path.string() + ": cannot read its labels");
    for (std::int64_t i = 0; i < e.examples; ++i) {
      if (dst[i] < 0 || dst[i] >= index_.classes)
        bad(path.string(), "example " + std::to_string(i) + " has label " + std::to_string(dst[i]) + ", outside [0, " +
                               std::to_string(index_.classes) + ")");
    }
  }
}

ShardStream::~ShardStream() {
  for (Cursor& c : cursors_) {
    if (c.has_next && c.next.valid()) c.next.wait();
  }
}

std::vector<std::int64_t> ShardStream::group_sizes() const {
  std::vector<std::int64_t> sizes;
  for (std::int64_t g = 0; g < groups(); ++g) sizes.push_back(group_size(g));
  return sizes;
}

std::vector<std::string> ShardStream::group_files(std::int64_t g) const {
  std::vector<std::string> files;
  for (std::size_t p = group_positions_[static_cast<std::size_t>(g)]; p < group_positions_[static_cast<std::size_t>(g) + 1];
       ++p)
    files.push_back(index_.train.shards[order_[p]].file);
  return files;
}

std::shared_ptr<const ShardStream::Loaded> ShardStream::load(std::size_t pos) {
  auto loaded = std::make_shared<Loaded>();
  const ShardEntry& e = index_.train.shards[order_[pos]];
  trace_shard_opened(e.file);
  loaded->shard = read_shard(dir_, e, index_);
  ++shards_read_;
  return loaded;
}

std::shared_ptr<const ShardStream::Loaded> ShardStream::shard_for(std::int64_t example, std::int64_t& row) {
  if (example < 0 || example >= total_) throw ShapeError("shard stream: example " + std::to_string(example) + " outside [0, " + std::to_string(total_) + ")");
  const auto it = std::upper_bound(starts_.begin(), starts_.end(), example);
  const auto p = static_cast<std::size_t>(it - starts_.begin() - 1);
  row = example - starts_[p];
  const auto g = static_cast<std::size_t>(group_of_[p]);
  Cursor& c = cursors_[g];
  if (c.current && c.current_pos == p) return c.current;
  c.current.reset();  // at most the new shard and the one read ahead are held, per group
  if (c.has_next && c.next_pos == p) {
    c.has_next = false;
    c.current = c.next.get();
  } else {
    if (c.has_next) {
      c.has_next = false;
      c.next.get();  // dropped: the walk jumped elsewhere
    }
    c.current = load(p);
  }
  c.current_pos = p;
  if (p + 1 < group_positions_[g + 1]) {  // the group's next shard
    c.next_pos = p + 1;
    c.has_next = true;
    c.next = std::async(std::launch::async, [this, n = p + 1] { return load(n); });
  }
  // Labels read at open must be the ones the checksummed shard holds.
  if (!std::equal(c.current->shard.labels.begin(), c.current->shard.labels.end(), labels_.begin() + starts_[p]))
    bad((dir_ / index_.train.shards[order_[p]].file).string(), "its labels changed since the data set was opened");
  return c.current;
}

template <class T>
void ShardStream::copy(std::span<const std::int64_t> idx, T* out, std::vector<std::int64_t>* ids) {
  const auto d = static_cast<std::size_t>(dim_);
  if (ids != nullptr) ids->resize(idx.size());
  for (std::size_t i = 0; i < idx.size(); ++i) {
    T* dst = out + i * d;
    if (!owns(idx[i])) {  // another rank's row: never read, never used
      if (idx[i] < 0 || idx[i] >= total_) throw ShapeError("shard stream: example " + std::to_string(idx[i]) + " outside [0, " + std::to_string(total_) + ")");
      std::fill(dst, dst + d, std::numeric_limits<T>::quiet_NaN());
      if (ids != nullptr) (*ids)[i] = -1;
      continue;
    }
    std::int64_t row = 0;
    const std::shared_ptr<const Loaded> l = shard_for(idx[i], row);
    if (ids != nullptr) (*ids)[i] = l->shard.ids[static_cast<std::size_t>(row)];
    if (index_.dtype == ShardDType::u8) {
      const std::uint8_t* src = l->shard.features() + static_cast<std::size_t>(row) * d;
      for (std::size_t j = 0; j < d; ++j) dst[j] = static_cast<T>(static_cast<float>(src[j]) * scale_);
    } else {
      const std::uint8_t* src = l->shard.features() + static_cast<std::size_t>(row) * d * 4;
      for (std::size_t j = 0; j < d; ++j) {
        float v = 0;
        std::memcpy(&v, src + j * 4, 4);
        dst[j] = static_cast<T>(v * scale_);
      }
    }
  }
}

void ShardStream::features(std::span<const std::int64_t> idx, float* out, std::vector<std::int64_t>* ids) {
  copy(idx, out, ids);
}
void ShardStream::features(std::span<const std::int64_t> idx, double* out, std::vector<std::int64_t>* ids) {
  copy(idx, out, ids);
}

namespace {
// The trace files (DESCENT_SHARD_TRACE): written by the training thread (ids) and by the
// read-ahead threads (opened files), so behind a mutex.
struct Trace {
  std::mutex mutex;
  std::string suffix;
  std::unique_ptr<std::ofstream> ids, opened;
};
Trace& trace() {
  static Trace t;
  return t;
}
const char* trace_path() {
  static const char* path = std::getenv("DESCENT_SHARD_TRACE");
  return path != nullptr && *path != '\0' ? path : nullptr;
}
std::ofstream& trace_file(std::unique_ptr<std::ofstream>& f, const char* extra) {
  if (!f) f = std::make_unique<std::ofstream>(std::string(trace_path()) + trace().suffix + extra, std::ios::app);
  return *f;
}
void check_trace(const std::ofstream& f, const char* extra) {
  if (!f) throw IoError(std::string(trace_path()) + trace().suffix + extra + ": cannot write the DESCENT_SHARD_TRACE file");
}
}  // namespace

bool shard_trace_enabled() { return trace_path() != nullptr; }

void set_shard_trace_rank(int rank) {
  const std::lock_guard<std::mutex> lock(trace().mutex);
  trace().suffix = ".rank" + std::to_string(rank);
}

void trace_shard_examples(std::span<const std::int64_t> ids) {
  if (trace_path() == nullptr) return;
  const std::lock_guard<std::mutex> lock(trace().mutex);
  std::ofstream& out = trace_file(trace().ids, "");
  for (const std::int64_t id : ids) {
    if (id >= 0) out << id << '\n';  // -1: another rank's row
  }
  out.flush();
  check_trace(out, "");
}

void trace_shard_opened(const std::string& file) {
  if (trace_path() == nullptr) return;
  const std::lock_guard<std::mutex> lock(trace().mutex);
  std::ofstream& out = trace_file(trace().opened, ".opened");
  out << file << '\n';
  out.flush();
  check_trace(out, ".opened");
}

}  // namespace descent::data
