#pragma once
// Minibatch samplers: which training examples go into each minibatch, in which order.
//
// Reference: I. Goodfellow, Y. Bengio, A. Courville, "Deep Learning", MIT Press 2016,
// section 8.1.3 "Batch and Minibatch Algorithms". Minibatches must be selected at random so
// that two consecutive minibatches are independent; for very large data sets it is enough to
// shuffle once and keep that order; sampling with replacement gives unbiased i.i.d.
// minibatch gradient estimates; a single pass over a stream (each example used once)
// follows the gradient of the true generalization error. docs/sampling.md has one section
// per sampler.
//
// A Sampler hands out example indices in [0, n); the caller gathers the rows. Each kind is
// driven the same way:
//
//   std::vector<std::int64_t> batch;
//   while (!sampler.exhausted()) {
//     while (sampler.next(batch)) { /* one step on the rows in `batch` */ }
//     /* end of an epoch: sampler.epoch() epochs are complete */
//   }
//
// (For kinds other than `stream` the outer loop runs until the caller stops it.)
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "descent/init/rng.hpp"

namespace descent::data {

// sequential       0, 1, ..., n-1 in this order every epoch (no randomness).
// shuffle_once     one seeded permutation, drawn at construction and reused every epoch.
// reshuffle        a fresh uniform permutation every epoch (Fisher-Yates with Rng::below).
// with_replacement every index of every batch drawn i.i.d. uniformly from [0, n).
// stream           one permutation walked once: each example is used at most once, ever.
enum class SamplerKind { sequential, shuffle_once, reshuffle, with_replacement, stream };

// The config names, in declaration order: "sequential", "shuffle_once", "reshuffle",
// "with_replacement", "stream".
inline constexpr std::array<std::string_view, 5> sampler_kind_names = {
    "sequential", "shuffle_once", "reshuffle", "with_replacement", "stream"};

// The kind named `name` (exact, case-sensitive). Throws ConfigError naming the field
// (sampler kind), the value given and the valid names.
SamplerKind parse_sampler_kind(std::string_view name);

// The config name of `kind`. Throws ConfigError for a value outside the enumeration.
std::string_view sampler_kind_name(SamplerKind kind);

struct SamplerOptions {
  SamplerKind kind = SamplerKind::reshuffle;
  // Examples per minibatch: 1 is online learning; 0 means the whole training set in one
  // batch (with `sequential` that is deterministic batch gradient descent; with
  // `with_replacement` it is a bootstrap resample of n i.i.d. draws).
  std::int64_t batch_size = 32;
  // Drop the last, partial batch of an epoch (n not a multiple of batch_size).
  bool drop_last = false;
  std::uint64_t seed = 0;
  // The permuting kinds (shuffle_once, reshuffle, stream) walk 0..n-1 in order instead of a
  // drawn permutation: for data already shuffled once when written (a sharded set,
  // data/shards.hpp), read shard after shard. The generator is still advanced as without it.
  bool in_order = false;
  // Shard groups (data/shards.hpp, docs/data.md "Shard groups"): with G = groups.size() > 1
  // the examples 0..n-1 are G consecutive ranges of these sizes (sum n), each walked in
  // order, and batch k takes examples [k q, (k+1) q) of every group, q = batch_size / G,
  // group 0's first (fewer, or none, from a group that has run out). An epoch is
  // ceil(max size / q) batches, or floor(min size / q) with drop_last: every batch whole.
  // Needs in_order (or sequential), a batch_size > 0 that G divides; pieces() says where
  // each group's examples begin in the last batch. The order does not depend on anything
  // else (not on how many MPI ranks share the batch).
  std::vector<std::int64_t> groups = {};
};

class Sampler {
 public:
  // A sampler over examples 0..num_examples-1. Throws ConfigError if num_examples <= 0,
  // batch_size < 0 or batch_size > num_examples, or the kind is not an enumerator.
  // Cost: O(n) time and memory for the permuting kinds (shuffle_once, reshuffle, stream),
  // O(1) for sequential and with_replacement.
  Sampler(std::int64_t num_examples, const SamplerOptions& options);

  // Writes the indices of the next minibatch into `out` (resized; it allocates only when
  // its capacity is too small) and returns true. When the epoch's batches are all drawn it
  // returns false instead, counts the epoch as completed and prepares the next one (a
  // reshuffle draws its new permutation here); the next call begins the next epoch. For
  // `stream` there is no next epoch: after the first false, exhausted() is true and every
  // call returns false. `out` is left unchanged whenever false is returned.
  //
  // Every epoch has batches_per_epoch() batches of batch_size() indices except that, when
  // drop_last is false and batch_size does not divide n, the last one holds n mod
  // batch_size indices (n=10, B=3: 3,3,3,1; with drop_last: 3,3,3). This holds for
  // with_replacement too, so one epoch is n draws (or the largest multiple of B below n).
  // Cost: O(batch size) per batch; O(n) once per epoch for reshuffle.
  bool next(std::vector<std::int64_t>& out);

  // Epochs completed: the number of times next() has returned false at an epoch's end
  // (for `stream` at most 1).
  std::int64_t epoch() const { return epoch_; }

  // ceil(n / B) batches per epoch, or floor(n / B) with drop_last (B = batch_size()).
  std::int64_t batches_per_epoch() const { return batches_per_epoch_; }

  // Batches drawn so far in the current epoch, in [0, batches_per_epoch()]. It equals
  // batches_per_epoch() after the epoch's last batch and returns to 0 when next() reports
  // the epoch's end.
  std::int64_t position() const { return position_; }

  // True only for `stream`, once next() has reported the end of its single epoch.
  bool exhausted() const;

  // The most epochs this sampler can hand out: 1 for `stream` (it walks its permutation once),
  // INT64_MAX for the other kinds (they never run out). Every kind's length is known up front,
  // so a caller can plan on min(epochs wanted, max_epochs()) x batches_per_epoch() steps
  // (the trainer's learning-rate schedule does).
  std::int64_t max_epochs() const;

  std::int64_t num_examples() const { return num_examples_; }

  // With groups: G + 1 offsets into the last batch, group g's examples at
  // [pieces()[g], pieces()[g + 1]). Empty without groups.
  const std::vector<std::int64_t>& pieces() const { return pieces_; }

  // The effective batch size: options().batch_size, or num_examples() where that is 0.
  std::int64_t batch_size() const { return batch_size_; }

  const SamplerOptions& options() const { return options_; }

  // The complete state (options, epoch, position, generator) as text. A sampler built with
  // the same num_examples and options that loads this text yields exactly the same future
  // batches as this one. The current permutation is not written out: the text holds the
  // generator state from just before the permutation was drawn, and load_state draws it
  // again, so the text has a fixed size (about 13 kB) whatever n is.
  std::string save_state() const;

  // Restores a state written by save_state. Throws Error (message starting "sampler
  // state:" and naming the field) on malformed or inconsistent text, and ConfigError if
  // the state was saved by a sampler with a different num_examples, kind, batch_size,
  // drop_last or seed. The sampler is unchanged when it throws. Cost: O(n) for the
  // permuting kinds (the permutation is drawn again), O(1) otherwise.
  void load_state(const std::string& state);

 private:
  bool permutes() const;
  // Draws a uniform permutation of 0..n-1 into order_ (Fisher-Yates), recording the
  // generator state it starts from in order_rng_.
  void draw_order();

  SamplerOptions options_;
  std::int64_t num_examples_ = 0;
  std::int64_t batch_size_ = 0;
  std::int64_t batches_per_epoch_ = 0;
  std::int64_t epoch_ = 0;
  std::int64_t position_ = 0;
  Rng rng_;
  Rng order_rng_;
  std::vector<std::int64_t> order_;
  std::vector<std::int64_t> group_starts_;  // with groups: G + 1 offsets of the ranges
  std::vector<std::int64_t> pieces_;
};

}  // namespace descent::data
