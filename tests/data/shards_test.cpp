// The shard format (data/shards.hpp): round trip, the stream's bounded reads, and one clear
// error for every kind of malformed file.
#include "descent/data/shards.hpp"
#include "descent/data/sampler.hpp"

#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "descent/error.hpp"
#include "descent/io/atomic_file.hpp"
#include "support/expect_error.hpp"

namespace descent::data {
namespace {

namespace fs = std::filesystem;
using descent::testing::expect_error;

class ShardsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("descent_shards_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Three train shards of 4, 4, 2 examples of 3 f32 features: feature j of example i is
  // 10 i + j, its label i % 3, its id 100 + i.
  ShardIndex write_set() {
    ShardIndex index;
    index.dtype = ShardDType::f32;
    index.shape = {3};
    index.classes = 3;
    index.seed = 7;
    const std::int64_t sizes[] = {4, 4, 2};
    std::int64_t next = 0;
    for (int s = 0; s < 3; ++s) {
      std::vector<std::int64_t> ids;
      std::vector<std::int32_t> labels;
      std::vector<float> f;
      for (std::int64_t i = 0; i < sizes[s]; ++i, ++next) {
        ids.push_back(100 + next);
        labels.push_back(static_cast<std::int32_t>(next % 3));
        for (int j = 0; j < 3; ++j) f.push_back(static_cast<float>(10 * next + j));
      }
      std::vector<std::uint8_t> bytes(f.size() * 4);
      std::memcpy(bytes.data(), f.data(), bytes.size());
      const std::string enc = encode_shard(ShardDType::f32, 3, ids, labels, bytes);
      const std::string name = "train-" + std::to_string(s) + ".shard";
      io::write_file_atomic(dir_ / name, enc);
      index.train.shards.push_back({name, sizes[s], static_cast<std::int64_t>(enc.size()), crc32_of(enc)});
    }
    io::write_file_atomic(dir_ / "index.json", shard_index_json(index));
    return index;
  }

  std::string read(const std::string& name) { return io::read_file(dir_ / name, 1 << 20); }
  void write(const std::string& name, const std::string& bytes) { io::write_file_atomic(dir_ / name, bytes); }

  fs::path dir_;
};

TEST_F(ShardsTest, RoundTripAndHeaderLayout) {
  write_set();
  const std::string bytes = read("train-0.shard");
  // By hand: 48 + 4 * (8 + 4 + 3 * 4) bytes, magic, version 1, dtype 2, d 3, count 4.
  ASSERT_EQ(bytes.size(), 48u + 4u * 24u);
  EXPECT_EQ(bytes.substr(0, 8), "DSCSHARD");
  std::uint32_t u32 = 0;
  std::uint64_t u64 = 0;
  std::memcpy(&u32, bytes.data() + 8, 4);
  EXPECT_EQ(u32, 1u);
  std::memcpy(&u32, bytes.data() + 12, 4);
  EXPECT_EQ(u32, 2u);
  std::memcpy(&u64, bytes.data() + 16, 8);
  EXPECT_EQ(u64, 3u);
  std::memcpy(&u64, bytes.data() + 24, 8);
  EXPECT_EQ(u64, 4u);
  // zlib's crc32 directly, not through crc32_of.
  const ShardIndex index = read_shard_index(dir_);
  EXPECT_EQ(index.train.shards[0].crc32,
            static_cast<std::uint32_t>(::crc32(0, reinterpret_cast<const Bytef*>(bytes.data()), static_cast<uInt>(bytes.size()))));
  EXPECT_EQ(index.train.examples(), 10);
  EXPECT_EQ(index.seed, 7u);
  const Shard s = read_shard(dir_, index.train.shards[1], index);
  EXPECT_EQ(s.ids, (std::vector<std::int64_t>{104, 105, 106, 107}));
  EXPECT_EQ(s.labels, (std::vector<std::int32_t>{1, 2, 0, 1}));
}

TEST_F(ShardsTest, StreamReturnsEveryExampleScaledAndReadsEachShardOnceInOrder) {
  ShardIndex index = write_set();
  ShardStream stream(dir_, std::move(index), 0.5F);
  ASSERT_EQ(stream.size(), 10);
  EXPECT_EQ(stream.labels()[7], 1);
  std::vector<float> out(3 * 3);
  for (std::int64_t b = 0; b < 10; b += 3) {
    std::vector<std::int64_t> idx;
    for (std::int64_t i = b; i < std::min<std::int64_t>(10, b + 3); ++i) idx.push_back(i);
    std::vector<std::int64_t> ids;
    stream.features(idx, out.data(), &ids);
    for (std::size_t i = 0; i < idx.size(); ++i) {
      for (int j = 0; j < 3; ++j) EXPECT_EQ(out[i * 3 + j], 0.5F * static_cast<float>(10 * idx[i] + j));
    }
    EXPECT_EQ(ids.front(), 100 + b);
    EXPECT_EQ(ids.back(), 100 + idx.back());
  }
  EXPECT_EQ(stream.shards_read(), 3);  // three shards, each read once (the last two ahead of need)
}

TEST_F(ShardsTest, MissingIndexOrDirectory) {
  expect_error<IoError>([&] { read_shard_index(dir_ / "nope"); }, {"nope", "not a directory"});
  expect_error<IoError>([&] { read_shard_index(dir_); }, {"index.json", "missing"});
}

TEST_F(ShardsTest, TruncatedShardIsNamed) {
  write_set();
  const std::string bytes = read("train-1.shard");
  write("train-1.shard", bytes.substr(0, bytes.size() - 5));
  expect_error<DataError>([&] { read_shard_index(dir_); }, {"train-1.shard", "truncated"});
  expect_error<DataError>([&] { parse_shard_header(bytes.substr(0, bytes.size() - 5), "x.shard"); },
                          {"x.shard", "truncated", "need 144"});
  expect_error<DataError>([&] { parse_shard_header(bytes.substr(0, 20), "x.shard"); }, {"x.shard", "48-byte header"});
}

TEST_F(ShardsTest, WrongMagicVersionDtype) {
  std::string bytes = (write_set(), read("train-0.shard"));
  std::string b = bytes;
  b[0] = 'X';
  expect_error<DataError>([&] { parse_shard_header(b, "s"); }, {"s: ", "wrong magic"});
  b = bytes;
  b[8] = 9;
  expect_error<DataError>([&] { parse_shard_header(b, "s"); }, {"version 9"});
  b = bytes;
  b[12] = 7;
  expect_error<DataError>([&] { parse_shard_header(b, "s"); }, {"dtype code 7"});
}

TEST_F(ShardsTest, WrongChecksumIsNamedWhenTheShardIsRead) {
  ShardIndex index = write_set();
  std::string bytes = read("train-2.shard");
  bytes[bytes.size() - 1] ^= 1;  // one bit of the last feature
  write("train-2.shard", bytes);
  const ShardIndex again = read_shard_index(dir_);  // sizes agree: the index check passes
  expect_error<DataError>([&] { read_shard(dir_, again.train.shards[2], again); }, {"train-2.shard", "checksum mismatch"});
  ShardStream stream(dir_, std::move(index), 1.0F);
  std::vector<float> out(3);
  const std::int64_t last = 9;
  expect_error<DataError>([&] { stream.features(std::span<const std::int64_t>(&last, 1), out.data()); },
                          {"train-2.shard", "checksum"});
}

TEST_F(ShardsTest, HeaderDisagreeingWithIndex) {
  write_set();
  // A valid shard of 2 examples in place of the 4-example one, its checksum in the index:
  // the sizes disagree with the index.
  std::vector<std::int64_t> ids = {1, 2};
  std::vector<std::int32_t> labels = {0, 0};
  std::vector<std::uint8_t> f(2 * 3 * 4, 0);
  write("train-0.shard", encode_shard(ShardDType::f32, 3, ids, labels, f));
  expect_error<DataError>([&] { read_shard_index(dir_); }, {"train-0.shard", "index.json says 144"});
  // An index entry whose bytes disagree with its examples.
  std::string text = read("index.json");
  const auto at = text.find("\"bytes\": 144");
  ASSERT_NE(at, std::string::npos) << text;
  text.replace(at, 12, "\"bytes\": 145");
  expect_error<DataError>([&] { parse_shard_index(text, "i.json"); }, {"i.json", "parts.train[0]", "disagrees"});
}

TEST_F(ShardsTest, LabelOutsideTheClassesIsRefused) {
  ShardIndex index = write_set();
  std::string bytes = read("train-0.shard");
  const std::int32_t label = 3;  // classes = 3
  std::memcpy(bytes.data() + 48 + 4 * 8, &label, 4);
  write("train-0.shard", bytes);
  index.train.shards[0].crc32 = crc32_of(bytes);
  expect_error<DataError>([&] { read_shard(dir_, index.train.shards[0], index); }, {"train-0.shard", "label 3", "[0, 3)"});
}

TEST_F(ShardsTest, HugeCountsDoNotOverflow) {
  std::string b = (write_set(), read("train-0.shard"));
  const std::uint64_t huge = ~std::uint64_t{0} / 2;
  std::memcpy(b.data() + 24, &huge, 8);
  expect_error<DataError>([&] { parse_shard_header(b, "s"); }, {"larger than 2^40"});
  const std::uint64_t count = std::uint64_t{1} << 40, dim = std::uint64_t{1} << 32;
  std::memcpy(b.data() + 24, &count, 8);
  std::memcpy(b.data() + 16, &dim, 8);
  expect_error<DataError>([&] { parse_shard_header(b, "s"); }, {"s: "});
  EXPECT_EQ(shard_file_bytes(ShardDType::f32, std::int64_t{1} << 32, std::int64_t{1} << 40), -1);
  std::string text = read("index.json");
  const auto at = text.find("\"examples\": 4,");
  ASSERT_NE(at, std::string::npos) << text;
  text.replace(at, 14, "\"examples\": 99999999999999999999,");
  expect_error<DataError>([&] { parse_shard_index(text, "i.json"); }, {"i.json", "examples"});
  expect_error<DataError>([&] { parse_shard_index(R"({"format": "descent-shards", "version": 1, "dtype": "u8",
      "shape": [4294967296, 4294967296], "classes": 2, "seed": 0, "shuffled": true, "augment_shifts": 0,
      "parts": {"train": []}})", "i.json"); },
                          {"i.json", "2^32"});
}

TEST_F(ShardsTest, MalformedIndexFields) {
  const auto err = [](const std::string& text, const std::string& fragment) {
    expect_error<DataError>([&] { parse_shard_index(text, "i.json"); }, {"i.json: ", fragment});
  };
  err("{", "not valid JSON");
  err("[]", "not a JSON object");
  err(R"({"format": "other"})", "descent-shards");
  err(R"({"format": "descent-shards", "version": 2})", "version 2");
  err(R"({"format": "descent-shards", "version": 1, "dtype": "f16"})", "dtype");
  const std::string head = R"({"format": "descent-shards", "version": 1, "dtype": "u8", "shape": [2], "classes": 2,
      "seed": 0, "shuffled": true, "augment_shifts": 0, )";
  err(head + R"("parts": {}})", "missing \"train\"");
  err(head + R"("parts": {"train": []}})", "no shards");
  err(head + R"("parts": {"train": [{"file": "../x", "examples": 1, "bytes": 62, "crc32": 0}]}})", "plain file name");
  err(head + R"("parts": {"train": [{"file": "x", "examples": 0, "bytes": 48, "crc32": 0}]}})", "\"examples\" = 0");
  err(head + R"("parts": {"train": [{"file": "x", "examples": 1, "bytes": 62}]}})", "missing \"crc32\"");
  // 48 + 1 * (12 + 2) = 62 is right.
  EXPECT_EQ(parse_shard_index(head + R"("parts": {"train": [{"file": "x", "examples": 1, "bytes": 62, "crc32": 5}]}})", "i")
                .train.shards[0]
                .crc32,
            5u);
}

// Shard groups: 3 shards (4, 4, 2 examples) in 2 groups: group 0 = shards 0 and 2 (examples
// 0-3 and 8-9 of the set, stream indices 0-5), group 1 = shard 1 (set examples 4-7, stream
// indices 6-9). A stream owning group 1 alone opens only train-1.shard, holds its labels, and
// gives NaN (id -1) for group 0's rows; owning everything it reads each shard once when the
// groups are walked interleaved.
TEST_F(ShardsTest, GroupsInterleaveShardsAndAStreamReadsOnlyItsOwnGroups) {
  ShardIndex index = write_set();
  // By hand: the set example behind each stream index.
  const std::int64_t set_example[10] = {0, 1, 2, 3, 8, 9, 4, 5, 6, 7};
  {
    ShardStream all(dir_, index, 1.0F, 2);
    EXPECT_EQ(all.groups(), 2);
    EXPECT_EQ(all.group_sizes(), (std::vector<std::int64_t>{6, 4}));
    EXPECT_EQ(all.group_files(0), (std::vector<std::string>{"train-0.shard", "train-2.shard"}));
    EXPECT_EQ(all.group_files(1), (std::vector<std::string>{"train-1.shard"}));
    // Two examples of each group per batch, as the grouped sampler hands them out.
    for (std::int64_t k = 0; k < 3; ++k) {
      std::vector<std::int64_t> idx;
      for (std::int64_t i = 2 * k; i < std::min<std::int64_t>(6, 2 * k + 2); ++i) idx.push_back(i);
      for (std::int64_t i = 6 + 2 * k; i < std::min<std::int64_t>(10, 6 + 2 * k + 2); ++i) idx.push_back(i);
      std::vector<float> out(idx.size() * 3);
      std::vector<std::int64_t> ids;
      all.features(idx, out.data(), &ids);
      for (std::size_t i = 0; i < idx.size(); ++i) {
        const std::int64_t e = set_example[idx[i]];
        EXPECT_EQ(ids[i], 100 + e);
        EXPECT_EQ(all.labels()[static_cast<std::size_t>(idx[i])], e % 3);
        EXPECT_EQ(out[i * 3 + 2], static_cast<float>(10 * e + 2));
      }
    }
    EXPECT_EQ(all.shards_read(), 3);  // each once, though the groups took turns
  }
  // Owning group 1 alone: group 0's shards are never opened: corrupting them changes nothing.
  write("train-0.shard", "garbage");
  write("train-2.shard", "garbage");
  ShardStream mine(dir_, index, 1.0F, 2, 1, 2);
  EXPECT_FALSE(mine.owns(5));
  EXPECT_TRUE(mine.owns(6));
  EXPECT_EQ(mine.labels()[0], 0);  // not read
  EXPECT_EQ(mine.labels()[7], 5 % 3);
  const std::vector<std::int64_t> idx = {4, 5, 6, 7};
  std::vector<double> out(idx.size() * 3);
  std::vector<std::int64_t> ids;
  mine.features(idx, out.data(), &ids);
  EXPECT_TRUE(std::isnan(out[0]) && std::isnan(out[5]));
  EXPECT_EQ(ids, (std::vector<std::int64_t>{-1, -1, 104, 105}));
  EXPECT_EQ(out[6], 40.0);
  EXPECT_EQ(mine.shards_read(), 1);
  // Out of range.
  expect_error<ConfigError>([&] { ShardStream(dir_, index, 1.0F, 4); }, {"4 shard groups need between 1 and the set's 3 train shards"});
}

// The grouped walk of the sampler (SamplerOptions::groups): groups of 6 and 4 examples, batch
// 4 (2 of each): batches {0,1,6,7}, {2,3,8,9}, {4,5}: 3 per epoch, pieces marking the groups;
// with drop_last 2. A state saved mid-epoch continues there.
TEST(SamplerGroups, EachBatchTakesItsShareOfEveryGroupInOrder) {
  SamplerOptions o;
  o.kind = SamplerKind::shuffle_once;
  o.batch_size = 4;
  o.in_order = true;
  o.groups = {6, 4};
  Sampler s(10, o);
  EXPECT_EQ(s.batches_per_epoch(), 3);
  std::vector<std::int64_t> batch;
  ASSERT_TRUE(s.next(batch));
  EXPECT_EQ(batch, (std::vector<std::int64_t>{0, 1, 6, 7}));
  EXPECT_EQ(s.pieces(), (std::vector<std::int64_t>{0, 2, 4}));
  Sampler resumed(10, o);
  resumed.load_state(s.save_state());
  ASSERT_TRUE(resumed.next(batch));
  EXPECT_EQ(batch, (std::vector<std::int64_t>{2, 3, 8, 9}));
  ASSERT_TRUE(resumed.next(batch));
  EXPECT_EQ(batch, (std::vector<std::int64_t>{4, 5}));
  EXPECT_EQ(resumed.pieces(), (std::vector<std::int64_t>{0, 2, 2}));
  EXPECT_FALSE(resumed.next(batch));
  ASSERT_TRUE(resumed.next(batch));  // the next epoch starts over
  EXPECT_EQ(batch, (std::vector<std::int64_t>{0, 1, 6, 7}));
  o.drop_last = true;
  EXPECT_EQ(Sampler(10, o).batches_per_epoch(), 2);
  o.drop_last = false;
  o.batch_size = 3;
  expect_error<ConfigError>([&] { Sampler(10, o); }, {"batch_size = 3 is not a positive multiple of the 2 shard groups"});
  o.batch_size = 4;
  o.groups = {6, 3};
  expect_error<ConfigError>([&] { Sampler(10, o); }, {"shard group sizes do not add up to the 10 examples"});
}

// The samplers' in_order option (a sharded set is read in its own order): stream walks
// 0..n-1 once, and a state saved mid-way continues there.
TEST(SamplerInOrder, StreamWalksTheExamplesInOrderOnceAndResumesInPlace) {
  SamplerOptions o;
  o.kind = SamplerKind::stream;
  o.batch_size = 3;
  o.in_order = true;
  o.seed = 9;
  Sampler s(10, o);
  std::vector<std::int64_t> batch, seen;
  ASSERT_TRUE(s.next(batch));
  seen = batch;
  Sampler resumed(10, o);
  resumed.load_state(s.save_state());
  while (resumed.next(batch)) seen.insert(seen.end(), batch.begin(), batch.end());
  std::vector<std::int64_t> want(10);
  std::iota(want.begin(), want.end(), 0);
  EXPECT_EQ(seen, want);
  EXPECT_TRUE(resumed.exhausted());
  o.in_order = false;  // without it: a permutation, not the identity
  Sampler shuffled(10, o);
  seen.clear();
  while (shuffled.next(batch)) seen.insert(seen.end(), batch.begin(), batch.end());
  EXPECT_NE(seen, want);
}

}  // namespace
}  // namespace descent::data
