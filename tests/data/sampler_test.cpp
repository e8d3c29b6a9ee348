#include "descent/data/sampler.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "descent/error.hpp"

namespace descent::data {
namespace {

using Batch = std::vector<std::int64_t>;

constexpr SamplerKind all_kinds[] = {SamplerKind::sequential, SamplerKind::shuffle_once,
                                     SamplerKind::reshuffle, SamplerKind::with_replacement,
                                     SamplerKind::stream};

// The batches of one epoch, up to (and consuming) the false that ends it.
std::vector<Batch> take_epoch(Sampler& sampler) {
  std::vector<Batch> batches;
  Batch batch;
  while (sampler.next(batch)) {
    batches.push_back(batch);
  }
  return batches;
}

Batch concat(const std::vector<Batch>& batches) {
  Batch all;
  for (const Batch& b : batches) {
    all.insert(all.end(), b.begin(), b.end());
  }
  return all;
}

std::vector<std::int64_t> sizes(const std::vector<Batch>& batches) {
  std::vector<std::int64_t> result;
  for (const Batch& b : batches) {
    result.push_back(static_cast<std::int64_t>(b.size()));
  }
  return result;
}

bool is_permutation_of_range(Batch indices, std::int64_t n) {
  std::sort(indices.begin(), indices.end());
  Batch expected(static_cast<std::size_t>(n));
  std::iota(expected.begin(), expected.end(), std::int64_t{0});
  return indices == expected;
}

// The next `calls` results of next(): each a batch, or {-1} for a false.
std::vector<Batch> record(Sampler& sampler, int calls) {
  std::vector<Batch> trace;
  Batch batch;
  for (int i = 0; i < calls; ++i) {
    if (sampler.next(batch)) {
      trace.push_back(batch);
    } else {
      trace.push_back({-1});
    }
  }
  return trace;
}

template <class Fn>
std::string error_message(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// ---- kind names --------------------------------------------------------------

TEST(SamplerKindTest, NamesRoundTrip) {
  for (const SamplerKind kind : all_kinds) {
    EXPECT_EQ(parse_sampler_kind(sampler_kind_name(kind)), kind);
  }
  EXPECT_EQ(sampler_kind_name(SamplerKind::sequential), "sequential");
  EXPECT_EQ(sampler_kind_name(SamplerKind::shuffle_once), "shuffle_once");
  EXPECT_EQ(sampler_kind_name(SamplerKind::reshuffle), "reshuffle");
  EXPECT_EQ(sampler_kind_name(SamplerKind::with_replacement), "with_replacement");
  EXPECT_EQ(sampler_kind_name(SamplerKind::stream), "stream");
}

TEST(SamplerKindTest, UnknownNameListsTheValidOnes) {
  EXPECT_THROW(parse_sampler_kind("Reshuffle"), ConfigError);
  EXPECT_THROW(parse_sampler_kind(""), ConfigError);
  const std::string message = error_message([] { parse_sampler_kind("shuffle"); });
  EXPECT_NE(message.find("'shuffle'"), std::string::npos) << message;
  for (const std::string_view name : sampler_kind_names) {
    EXPECT_NE(message.find(name), std::string::npos) << message;
  }
  EXPECT_THROW(sampler_kind_name(static_cast<SamplerKind>(9)), ConfigError);
}

// ---- options -----------------------------------------------------------------

TEST(SamplerOptionsTest, BadOptionsThrowConfigError) {
  EXPECT_THROW(Sampler(0, {}), ConfigError);
  EXPECT_THROW(Sampler(-5, {}), ConfigError);
  EXPECT_THROW(Sampler(10, {.batch_size = -1}), ConfigError);
  EXPECT_THROW(Sampler(10, {.batch_size = 11}), ConfigError);
  EXPECT_THROW(Sampler(10, {.kind = static_cast<SamplerKind>(5)}), ConfigError);
  const std::string message = error_message([] { Sampler(10, {.batch_size = 11}); });
  EXPECT_NE(message.find("batch_size"), std::string::npos) << message;
  EXPECT_NE(message.find("11"), std::string::npos) << message;
  EXPECT_NE(error_message([] { Sampler(0, {}); }).find("num_examples"), std::string::npos);
  EXPECT_NO_THROW(Sampler(10, {.batch_size = 10}));
  EXPECT_NO_THROW(Sampler(1, {.batch_size = 1}));
}

TEST(SamplerOptionsTest, AccessorsAndBatchCounts) {
  const Sampler s(10, {.kind = SamplerKind::sequential, .batch_size = 3, .seed = 4});
  EXPECT_EQ(s.num_examples(), 10);
  EXPECT_EQ(s.batch_size(), 3);
  EXPECT_EQ(s.batches_per_epoch(), 4);
  EXPECT_EQ(s.options().seed, 4u);
  EXPECT_EQ(s.epoch(), 0);
  EXPECT_EQ(s.position(), 0);
  EXPECT_FALSE(s.exhausted());
  EXPECT_EQ(Sampler(10, {.batch_size = 3, .drop_last = true}).batches_per_epoch(), 3);
  EXPECT_EQ(Sampler(9, {.batch_size = 3}).batches_per_epoch(), 3);
  EXPECT_EQ(Sampler(9, {.batch_size = 3, .drop_last = true}).batches_per_epoch(), 3);
  EXPECT_EQ(Sampler(10, {.batch_size = 0}).batch_size(), 10);
  EXPECT_EQ(Sampler(10, {.batch_size = 0}).batches_per_epoch(), 1);
  // No overflow near the int64 limit (sequential and with_replacement hold no permutation).
  const Sampler huge(INT64_MAX, {.kind = SamplerKind::sequential, .batch_size = 2});
  EXPECT_EQ(huge.batches_per_epoch(), INT64_MAX / 2 + 1);
  const Sampler huge_iid(INT64_MAX, {.kind = SamplerKind::with_replacement, .batch_size = 2, .drop_last = true});
  EXPECT_EQ(huge_iid.batches_per_epoch(), INT64_MAX / 2);
}

// ---- sequential ----------------------------------------------------------------

TEST(SequentialSamplerTest, ExactOrderEveryEpoch) {
  Sampler s(10, {.kind = SamplerKind::sequential, .batch_size = 3});
  for (int epoch = 0; epoch < 3; ++epoch) {
    const auto batches = take_epoch(s);
    ASSERT_EQ(batches.size(), 4u);
    EXPECT_EQ(batches[0], (Batch{0, 1, 2}));
    EXPECT_EQ(batches[1], (Batch{3, 4, 5}));
    EXPECT_EQ(batches[2], (Batch{6, 7, 8}));
    EXPECT_EQ(batches[3], (Batch{9}));
    EXPECT_EQ(s.epoch(), epoch + 1);
  }
}

TEST(SequentialSamplerTest, PositionAndEpochCounters) {
  Sampler s(5, {.kind = SamplerKind::sequential, .batch_size = 2});
  Batch b = {42};
  EXPECT_TRUE(s.next(b));
  EXPECT_EQ(s.position(), 1);
  EXPECT_TRUE(s.next(b));
  EXPECT_TRUE(s.next(b));
  EXPECT_EQ(b, (Batch{4}));
  EXPECT_EQ(s.position(), 3);
  EXPECT_EQ(s.epoch(), 0);
  EXPECT_FALSE(s.next(b));
  EXPECT_EQ(b, (Batch{4})) << "out must be unchanged when next() returns false";
  EXPECT_EQ(s.position(), 0);
  EXPECT_EQ(s.epoch(), 1);
  EXPECT_TRUE(s.next(b));
  EXPECT_EQ(b, (Batch{0, 1}));
}

// ---- batch sizes ---------------------------------------------------------------

TEST(SamplerBatchSizeTest, DropLastFalseKeepsThePartialBatch) {
  for (const SamplerKind kind : all_kinds) {
    Sampler s(10, {.kind = kind, .batch_size = 3, .drop_last = false, .seed = 1});
    EXPECT_EQ(sizes(take_epoch(s)), (std::vector<std::int64_t>{3, 3, 3, 1})) << sampler_kind_name(kind);
  }
}

TEST(SamplerBatchSizeTest, DropLastTrueDropsThePartialBatch) {
  for (const SamplerKind kind : all_kinds) {
    Sampler s(10, {.kind = kind, .batch_size = 3, .drop_last = true, .seed = 1});
    const auto batches = take_epoch(s);
    EXPECT_EQ(sizes(batches), (std::vector<std::int64_t>{3, 3, 3})) << sampler_kind_name(kind);
    if (kind != SamplerKind::with_replacement) {
      std::set<std::int64_t> distinct;
      for (const std::int64_t i : concat(batches)) {
        distinct.insert(i);
      }
      EXPECT_EQ(distinct.size(), 9u) << sampler_kind_name(kind);
    }
  }
}

TEST(SamplerBatchSizeTest, FullBatchReturnsAllExamplesInOneBatch) {
  for (const SamplerKind kind : all_kinds) {
    Sampler s(7, {.kind = kind, .batch_size = 0, .seed = 3});
    const auto batches = take_epoch(s);
    ASSERT_EQ(batches.size(), 1u) << sampler_kind_name(kind);
    ASSERT_EQ(batches[0].size(), 7u);
    if (kind != SamplerKind::with_replacement) {
      EXPECT_TRUE(is_permutation_of_range(batches[0], 7)) << sampler_kind_name(kind);
    }
  }
  Sampler seq(7, {.kind = SamplerKind::sequential, .batch_size = 0});
  EXPECT_EQ(take_epoch(seq)[0], (Batch{0, 1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(take_epoch(seq)[0], (Batch{0, 1, 2, 3, 4, 5, 6}));
}

TEST(SamplerBatchSizeTest, OnlineBatchSizeOne) {
  for (const SamplerKind kind : all_kinds) {
    Sampler s(6, {.kind = kind, .batch_size = 1, .seed = 8});
    const auto batches = take_epoch(s);
    EXPECT_EQ(sizes(batches), (std::vector<std::int64_t>(6, 1))) << sampler_kind_name(kind);
    if (kind != SamplerKind::with_replacement) {
      EXPECT_TRUE(is_permutation_of_range(concat(batches), 6)) << sampler_kind_name(kind);
    }
  }
  Sampler seq(3, {.kind = SamplerKind::sequential, .batch_size = 1});
  EXPECT_EQ(take_epoch(seq), (std::vector<Batch>{{0}, {1}, {2}}));
}

TEST(SamplerBatchSizeTest, NoReallocationOnceOutHasCapacity) {
  for (const SamplerKind kind : all_kinds) {
    Sampler s(100, {.kind = kind, .batch_size = 16, .seed = 2});
    Batch out;
    out.reserve(16);
    const std::int64_t* data = out.data();
    while (s.next(out)) {
      EXPECT_EQ(out.data(), data) << sampler_kind_name(kind);
    }
  }
}

// ---- shuffle_once ----------------------------------------------------------------

TEST(ShuffleOnceSamplerTest, SamePermutationEveryEpoch) {
  Sampler s(50, {.kind = SamplerKind::shuffle_once, .batch_size = 7, .seed = 11});
  const Batch first = concat(take_epoch(s));
  EXPECT_TRUE(is_permutation_of_range(first, 50));
  Batch identity(50);
  std::iota(identity.begin(), identity.end(), std::int64_t{0});
  EXPECT_NE(first, identity);
  for (int epoch = 1; epoch < 5; ++epoch) {
    EXPECT_EQ(concat(take_epoch(s)), first) << "epoch " << epoch;
  }
  EXPECT_EQ(s.epoch(), 5);
}

TEST(ShuffleOnceSamplerTest, SeedSelectsThePermutation) {
  Sampler a(50, {.kind = SamplerKind::shuffle_once, .batch_size = 7, .seed = 11});
  Sampler b(50, {.kind = SamplerKind::shuffle_once, .batch_size = 7, .seed = 11});
  Sampler c(50, {.kind = SamplerKind::shuffle_once, .batch_size = 7, .seed = 12});
  const Batch order_a = concat(take_epoch(a));
  EXPECT_EQ(order_a, concat(take_epoch(b)));
  EXPECT_NE(order_a, concat(take_epoch(c)));
}

// ---- reshuffle -------------------------------------------------------------------

TEST(ReshuffleSamplerTest, FreshPermutationEachEpoch) {
  Sampler s(40, {.kind = SamplerKind::reshuffle, .batch_size = 6, .seed = 5});
  std::vector<Batch> orders;
  for (int epoch = 0; epoch < 6; ++epoch) {
    orders.push_back(concat(take_epoch(s)));
    EXPECT_TRUE(is_permutation_of_range(orders.back(), 40)) << "epoch " << epoch;
  }
  for (std::size_t i = 0; i < orders.size(); ++i) {
    for (std::size_t j = i + 1; j < orders.size(); ++j) {
      EXPECT_NE(orders[i], orders[j]) << "epochs " << i << " and " << j;
    }
  }
}

// Fisher-Yates draws each of the n! orders with probability 1/n!; an off-by-one (Sattolo's
// cyclic shuffle, or swapping with any position) would skew or miss some of them.
TEST(ReshuffleSamplerTest, PermutationsOfThreeAreUniform) {
  Sampler s(3, {.kind = SamplerKind::reshuffle, .batch_size = 0, .seed = 21});
  constexpr int epochs = 6000;
  std::map<Batch, int> counts;
  Batch batch;
  for (int epoch = 0; epoch < epochs; ++epoch) {
    ASSERT_TRUE(s.next(batch));
    ++counts[batch];
    ASSERT_FALSE(s.next(batch));
  }
  ASSERT_EQ(counts.size(), 6u);
  const double expected = epochs / 6.0;
  const double sigma = std::sqrt(epochs * (1.0 / 6.0) * (5.0 / 6.0));
  for (const auto& [order, count] : counts) {
    EXPECT_NEAR(count, expected, 5.0 * sigma);
  }
}

TEST(ReshuffleSamplerTest, SameSeedSameSequenceDifferentSeedDifferent) {
  Sampler a(30, {.kind = SamplerKind::reshuffle, .batch_size = 4, .seed = 99});
  Sampler b(30, {.kind = SamplerKind::reshuffle, .batch_size = 4, .seed = 99});
  Sampler c(30, {.kind = SamplerKind::reshuffle, .batch_size = 4, .seed = 100});
  const auto trace_a = record(a, 40);
  EXPECT_EQ(trace_a, record(b, 40));
  EXPECT_NE(trace_a, record(c, 40));
}

// ---- with_replacement ----------------------------------------------------------

TEST(WithReplacementSamplerTest, DrawsAreUniformAndIndependent) {
  constexpr std::int64_t n = 10;
  Sampler s(n, {.kind = SamplerKind::with_replacement, .batch_size = n, .seed = 17});
  EXPECT_EQ(s.batches_per_epoch(), 1);
  constexpr int batches = 10000;
  std::vector<int> counts(n, 0);
  double distinct_sum = 0.0;
  Batch batch;
  for (int i = 0; i < batches; ++i) {
    ASSERT_TRUE(s.next(batch));
    ASSERT_EQ(batch.size(), static_cast<std::size_t>(n));
    std::set<std::int64_t> distinct;
    for (const std::int64_t index : batch) {
      ASSERT_GE(index, 0);
      ASSERT_LT(index, n);
      ++counts[static_cast<std::size_t>(index)];
      distinct.insert(index);
    }
    distinct_sum += static_cast<double>(distinct.size());
    ASSERT_FALSE(s.next(batch));
  }
  EXPECT_EQ(s.epoch(), batches);
  // Each index: Binomial(100000, 1/10), sigma ~ 95.
  const double draws = static_cast<double>(batches) * n;
  const double sigma = std::sqrt(draws * 0.1 * 0.9);
  for (std::int64_t i = 0; i < n; ++i) {
    EXPECT_NEAR(counts[static_cast<std::size_t>(i)], draws / n, 5.0 * sigma) << "index " << i;
  }
  // Ten i.i.d. draws from ten values show 10 (1 - 0.9^10) = 6.513 distinct values on
  // average (standard deviation ~1.0 per batch, ~0.01 for the mean of 10000 batches);
  // sampling without replacement would always show 10.
  const double expected_distinct = 10.0 * (1.0 - std::pow(0.9, 10));
  EXPECT_NEAR(distinct_sum / batches, expected_distinct, 0.06);
}

TEST(WithReplacementSamplerTest, BatchCountPerEpoch) {
  Sampler s(25, {.kind = SamplerKind::with_replacement, .batch_size = 4, .seed = 3});
  EXPECT_EQ(s.batches_per_epoch(), 7);
  for (int epoch = 0; epoch < 3; ++epoch) {
    EXPECT_EQ(sizes(take_epoch(s)), (std::vector<std::int64_t>{4, 4, 4, 4, 4, 4, 1}));
  }
  Sampler d(25, {.kind = SamplerKind::with_replacement, .batch_size = 4, .drop_last = true, .seed = 3});
  EXPECT_EQ(d.batches_per_epoch(), 6);
  EXPECT_EQ(take_epoch(d).size(), 6u);
  EXPECT_FALSE(d.exhausted());
}

TEST(WithReplacementSamplerTest, SameSeedSameSequenceDifferentSeedDifferent) {
  Sampler a(30, {.kind = SamplerKind::with_replacement, .batch_size = 4, .seed = 1});
  Sampler b(30, {.kind = SamplerKind::with_replacement, .batch_size = 4, .seed = 1});
  Sampler c(30, {.kind = SamplerKind::with_replacement, .batch_size = 4, .seed = 2});
  const auto trace_a = record(a, 30);
  EXPECT_EQ(trace_a, record(b, 30));
  EXPECT_NE(trace_a, record(c, 30));
}

// ---- stream ----------------------------------------------------------------------

TEST(StreamSamplerTest, EachExampleOnceThenExhausted) {
  Sampler s(23, {.kind = SamplerKind::stream, .batch_size = 5, .seed = 13});
  Batch seen;
  Batch batch;
  int batches = 0;
  while (s.next(batch)) {
    seen.insert(seen.end(), batch.begin(), batch.end());
    ++batches;
    EXPECT_FALSE(s.exhausted());
  }
  EXPECT_EQ(batches, 5);
  EXPECT_TRUE(is_permutation_of_range(seen, 23));
  EXPECT_TRUE(s.exhausted());
  EXPECT_EQ(s.epoch(), 1);
  batch = {77};
  for (int i = 0; i < 10; ++i) {
    EXPECT_FALSE(s.next(batch));
  }
  EXPECT_EQ(batch, (Batch{77}));
  EXPECT_EQ(s.epoch(), 1);
  EXPECT_EQ(s.position(), 0);
  EXPECT_TRUE(s.exhausted());
}

TEST(StreamSamplerTest, NeverRepeatsAcrossTheDriverLoop) {
  Sampler s(31, {.kind = SamplerKind::stream, .batch_size = 4, .seed = 6});
  std::set<std::int64_t> seen;
  Batch batch;
  int epochs = 0;
  while (!s.exhausted() && epochs < 100) {
    while (s.next(batch)) {
      for (const std::int64_t i : batch) {
        EXPECT_TRUE(seen.insert(i).second) << "index " << i << " repeated";
      }
    }
    ++epochs;
  }
  EXPECT_EQ(epochs, 1);
  EXPECT_EQ(seen.size(), 31u);
  Batch identity(31);
  std::iota(identity.begin(), identity.end(), std::int64_t{0});
  Sampler again(31, {.kind = SamplerKind::stream, .batch_size = 31, .seed = 6});
  ASSERT_TRUE(again.next(batch));
  EXPECT_NE(batch, identity) << "a stream walks a random permutation";
}

TEST(StreamSamplerTest, DropLastLeavesTheRemainderUnused) {
  Sampler s(10, {.kind = SamplerKind::stream, .batch_size = 4, .drop_last = true, .seed = 2});
  const auto batches = take_epoch(s);
  EXPECT_EQ(sizes(batches), (std::vector<std::int64_t>{4, 4}));
  EXPECT_TRUE(s.exhausted());
  Batch b;
  EXPECT_FALSE(s.next(b));
}

// max_epochs() is what the sampler really hands out: counted by driving it, not taken on trust.
TEST(SamplerKindsTest, MaxEpochsIsWhatTheSamplerHandsOut) {
  for (const SamplerKind kind : all_kinds) {
    for (const bool drop_last : {false, true}) {
      Sampler s(23, {.kind = kind, .batch_size = 5, .drop_last = drop_last, .seed = 4});
      std::int64_t batches = 0, epochs = 0;
      Batch batch;
      while (!s.exhausted() && epochs < 7) {
        while (s.next(batch)) ++batches;
        ++epochs;
      }
      const std::int64_t expected_epochs = std::min<std::int64_t>(7, s.max_epochs());
      EXPECT_EQ(epochs, expected_epochs) << sampler_kind_name(kind);
      EXPECT_EQ(batches, expected_epochs * s.batches_per_epoch()) << sampler_kind_name(kind);
      EXPECT_EQ(s.max_epochs() == 1, kind == SamplerKind::stream);
    }
  }
}

TEST(SamplerKindsTest, NonStreamKindsAreNeverExhausted) {
  for (const SamplerKind kind : all_kinds) {
    if (kind == SamplerKind::stream) {
      continue;
    }
    Sampler s(5, {.kind = kind, .batch_size = 2, .seed = 1});
    for (int epoch = 0; epoch < 4; ++epoch) {
      EXPECT_EQ(take_epoch(s).size(), 3u);
      EXPECT_FALSE(s.exhausted());
    }
    EXPECT_EQ(s.epoch(), 4);
  }
}

// ---- save_state / load_state -------------------------------------------------------

TEST(SamplerStateTest, RestoredSamplerYieldsIdenticalFutureBatches) {
  for (const SamplerKind kind : all_kinds) {
    const SamplerOptions options{.kind = kind, .batch_size = 4, .seed = 7};
    // 17 examples, 5 batches an epoch: stop at every offset of the first three epochs,
    // including right after an epoch's last batch and right after its end was reported.
    for (int skip = 0; skip <= 18; ++skip) {
      Sampler original(17, options);
      record(original, skip);
      const std::string state = original.save_state();
      Sampler restored(17, options);
      restored.load_state(state);
      EXPECT_EQ(restored.epoch(), original.epoch());
      EXPECT_EQ(restored.position(), original.position());
      EXPECT_EQ(restored.exhausted(), original.exhausted());
      EXPECT_TRUE(restored.save_state() == state);
      EXPECT_EQ(record(restored, 25), record(original, 25))
          << sampler_kind_name(kind) << " after " << skip << " calls";
    }
  }
}

TEST(SamplerStateTest, LoadingRewindsAnAdvancedSampler) {
  for (const SamplerKind kind : all_kinds) {
    const SamplerOptions options{.kind = kind, .batch_size = 3, .drop_last = true, .seed = 31};
    Sampler s(11, options);
    record(s, 4);
    const std::string state = s.save_state();
    const auto expected = record(s, 12);
    s.load_state(state);
    EXPECT_EQ(record(s, 12), expected) << sampler_kind_name(kind);
  }
}

TEST(SamplerStateTest, StateHasTheDocumentedForm) {
  Sampler s(12, {.kind = SamplerKind::reshuffle, .batch_size = 5, .seed = 9});
  record(s, 2);
  const std::string state = s.save_state();
  EXPECT_EQ(state.rfind("descent-sampler-state 1\nkind reshuffle\nnum_examples 12\nbatch_size 5\n"
                        "drop_last 0\nseed 9\nepoch 0\nposition 2\norder_rng ",
                        0),
            0u)
      << state;
  EXPECT_LT(state.size(), 16000u);
  // The permutation is not in the text: a large sampler's state is no longer.
  Sampler big(100000, {.kind = SamplerKind::reshuffle, .batch_size = 5, .seed = 9});
  EXPECT_LT(big.save_state().size(), 16000u);
}

// Replaces the value of the line that starts with `key ` in a saved state.
std::string with_field(const std::string& state, const std::string& key, const std::string& value) {
  const std::size_t start = state.find("\n" + key + " ");
  EXPECT_NE(start, std::string::npos) << key;
  const std::size_t value_start = start + key.size() + 2;
  const std::size_t end = state.find('\n', value_start);
  return state.substr(0, value_start) + value + state.substr(end);
}

TEST(SamplerStateTest, GarbageStateThrowsAndLeavesTheSamplerUnchanged) {
  const SamplerOptions options{.kind = SamplerKind::reshuffle, .batch_size = 4, .seed = 3};
  Sampler source(10, options);
  record(source, 4);
  const std::string good = source.save_state();

  Sampler other(10, {.kind = SamplerKind::reshuffle, .batch_size = 4, .seed = 3});
  record(other, 9);  // into epoch 2: a later permutation, a different generator state
  const std::string other_state = other.save_state();
  const std::string other_rng = other_state.substr(other_state.find("\nrng ") + 5);

  const std::vector<std::string> garbage = {
      "",
      "hello",
      "descent-sampler-state 2\n" + good.substr(good.find('\n') + 1),
      good.substr(0, good.size() / 2),
      good.substr(0, good.find("\nrng ") + 1),
      good + "extra\n",
      with_field(good, "kind", "shuffled"),
      with_field(good, "num_examples", "ten"),
      with_field(good, "num_examples", "0"),
      with_field(good, "num_examples", "99999999999999999999999"),
      with_field(good, "batch_size", "11"),
      with_field(good, "batch_size", "-1"),
      with_field(good, "drop_last", "2"),
      with_field(good, "seed", "-3"),
      with_field(good, "seed", "3x"),
      with_field(good, "epoch", "-1"),
      with_field(good, "epoch", " 0"),
      with_field(good, "position", "4"),
      with_field(good, "rng", "1 2 3"),
      with_field(good, "rng", other_rng.substr(0, other_rng.size() - 1) + " 7"),
      // A well-formed generator state that does not follow from order_rng.
      with_field(good, "rng", other_rng.substr(0, other_rng.size() - 1)),
      with_field(good, "order_rng", "garbage"),
  };
  Sampler target(10, options);
  record(target, 2);
  const std::string before = target.save_state();
  for (std::size_t i = 0; i < garbage.size(); ++i) {
    const std::string message = error_message([&] { target.load_state(garbage[i]); });
    EXPECT_NE(message.find("sampler state"), std::string::npos) << "case " << i << ": " << message;
    EXPECT_TRUE(target.save_state() == before) << "case " << i;
  }
  EXPECT_THROW(target.load_state(with_field(good, "position", "9")), Error);
  EXPECT_NE(error_message([&] { target.load_state(with_field(good, "position", "9")); }).find("position"),
            std::string::npos);
}

TEST(SamplerStateTest, InconsistentKindSpecificStateThrows) {
  Sampler stream(10, {.kind = SamplerKind::stream, .batch_size = 4, .seed = 3});
  const std::string good = stream.save_state();
  EXPECT_THROW(stream.load_state(with_field(good, "epoch", "2")), Error);
  // A shuffle_once or stream permutation comes from the seeded generator.
  Sampler reshuffled(10, {.kind = SamplerKind::reshuffle, .batch_size = 4, .seed = 3});
  record(reshuffled, 4);
  const std::string later = reshuffled.save_state();
  const std::string order_rng_line = later.substr(later.find("\norder_rng "));
  const std::string tampered = good.substr(0, good.find("\norder_rng ")) + order_rng_line;
  EXPECT_THROW(stream.load_state(tampered), Error);
  Sampler seq(10, {.kind = SamplerKind::sequential, .batch_size = 4, .seed = 3});
  const std::string seq_state = seq.save_state();
  const std::string rng_line = later.substr(later.find("\nrng "));
  EXPECT_THROW(seq.load_state(seq_state.substr(0, seq_state.find("\nrng ")) + rng_line), Error);
}

TEST(SamplerStateTest, StateFromDifferentOptionsThrowsConfigError) {
  const SamplerOptions options{.kind = SamplerKind::reshuffle, .batch_size = 4, .seed = 3};
  const std::string state = Sampler(10, options).save_state();
  EXPECT_THROW(Sampler(11, options).load_state(state), ConfigError);
  EXPECT_THROW(Sampler(10, {.kind = SamplerKind::shuffle_once, .batch_size = 4, .seed = 3}).load_state(state),
               ConfigError);
  EXPECT_THROW(Sampler(10, {.kind = SamplerKind::reshuffle, .batch_size = 5, .seed = 3}).load_state(state),
               ConfigError);
  EXPECT_THROW(Sampler(10, {.kind = SamplerKind::reshuffle, .batch_size = 4, .drop_last = true, .seed = 3})
                   .load_state(state),
               ConfigError);
  EXPECT_THROW(Sampler(10, {.kind = SamplerKind::reshuffle, .batch_size = 4, .seed = 4}).load_state(state),
               ConfigError);
  const std::string message = error_message(
      [&] { Sampler(10, {.kind = SamplerKind::reshuffle, .batch_size = 5, .seed = 3}).load_state(state); });
  EXPECT_NE(message.find("batch_size"), std::string::npos) << message;
}

}  // namespace
}  // namespace descent::data
