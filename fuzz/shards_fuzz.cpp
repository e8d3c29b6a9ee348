// libFuzzer target: the shard set's readers (data/shards.hpp): parse_shard_index on the
// index's JSON, and parse_shard_header + decode_shard on a shard file. The first byte picks
// the reader (even: index, odd: shard); the rest is the file.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "contract.hpp"
#include "descent/data/shards.hpp"

using namespace descent;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    const std::string source = "fuzz/index.json";
    fuzz::expect_result_or_error<DataError>(source, [&] {
      const data::ShardIndex index = data::parse_shard_index(bytes, source);
      const std::int64_t d = index.dim();
      fuzz::require(d >= 1 && d <= (std::int64_t{1} << 32), "features per example outside [1, 2^32]");
      fuzz::require(index.classes >= 1, "no classes");
      for (const data::ShardPart* part : {&index.train, &index.validation, &index.test}) {
        for (const data::ShardEntry& e : part->shards) {
          fuzz::require(e.examples >= 1 && e.bytes == data::shard_file_bytes(index.dtype, d, e.examples),
                        "an entry's size disagrees with its examples");
          fuzz::require(e.file.find('/') == std::string::npos, "a file name with a '/'");
        }
      }
      fuzz::require(!index.train.shards.empty(), "no training shards");
    });
    return 0;
  }
  const std::string source = "fuzz.shard";
  fuzz::expect_result_or_error<DataError>(source, [&] {
    const data::ShardHeader h = data::parse_shard_header(bytes, source);
    fuzz::require(data::shard_file_bytes(h.dtype, h.dim, h.count) == static_cast<std::int64_t>(bytes.size()),
                  "header accepted for a size it does not imply");
    // Decode it against an index that agrees with its header (the checksum taken from the
    // bytes), so that the label checks run.
    data::ShardIndex index;
    index.dtype = h.dtype;
    index.shape = {h.dim};
    index.classes = 3;
    const data::ShardEntry entry{"fuzz.shard", h.count, static_cast<std::int64_t>(bytes.size()), data::crc32_of(bytes)};
    const data::Shard s = data::decode_shard(data::ShardBytes(bytes), entry, index, source);
    fuzz::require(s.labels.size() == static_cast<std::size_t>(h.count) && s.ids.size() == s.labels.size(),
                  "column sizes differ from the count");
    for (const std::int32_t label : s.labels) fuzz::require(label >= 0 && label < 3, "label outside [0, 3)");
  });
  return 0;
}
