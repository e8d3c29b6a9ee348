#include "descent/data/sampler.hpp"

#include <algorithm>
#include <charconv>
#include <limits>
#include <numeric>
#include <optional>
#include <utility>

#include "descent/error.hpp"

namespace descent::data {

namespace {

constexpr std::string_view state_magic = "descent-sampler-state";
constexpr std::string_view state_version = "1";

std::optional<SamplerKind> find_kind(std::string_view name) {
  for (std::size_t i = 0; i < sampler_kind_names.size(); ++i) {
    if (sampler_kind_names[i] == name) {
      return static_cast<SamplerKind>(i);
    }
  }
  return std::nullopt;
}

bool is_valid_kind(SamplerKind kind) {
  const auto value = static_cast<int>(kind);
  return value >= 0 && static_cast<std::size_t>(value) < sampler_kind_names.size();
}

std::string valid_kind_list() {
  std::string list;
  for (const std::string_view name : sampler_kind_names) {
    if (!list.empty()) {
      list += ", ";
    }
    list += name;
  }
  return list;
}

// A bounded, printable rendering of untrusted text for error messages.
std::string quote(std::string_view text) {
  constexpr std::size_t max_shown = 40;
  std::string shown = "'";
  for (std::size_t i = 0; i < text.size() && i < max_shown; ++i) {
    const char c = text[i];
    shown += (c >= 0x20 && c < 0x7f) ? c : '?';
  }
  shown += text.size() > max_shown ? "'..." : "'";
  return shown;
}

std::int64_t count_batches(std::int64_t num_examples, std::int64_t batch_size, bool drop_last) {
  const std::int64_t full = num_examples / batch_size;
  return (drop_last || num_examples % batch_size == 0) ? full : full + 1;
}

bool kind_permutes(SamplerKind kind) {
  return kind == SamplerKind::shuffle_once || kind == SamplerKind::reshuffle ||
         kind == SamplerKind::stream;
}

// Fisher-Yates: order[i] swaps with a uniform position in [0, i], from the top down.
void shuffle_identity(std::vector<std::int64_t>& order, Rng& rng) {
  std::iota(order.begin(), order.end(), std::int64_t{0});
  for (std::size_t i = order.size(); i > 1; --i) {
    const auto j = static_cast<std::size_t>(rng.below(i));
    std::swap(order[i - 1], order[j]);
  }
}

[[noreturn]] void state_error(const std::string& what) {
  throw Error("sampler state: " + what);
}

// Reads save_state's text: one "key value" line per field, in a fixed order.
class StateReader {
 public:
  explicit StateReader(std::string_view text) : rest_(text) {}

  std::string_view field(std::string_view key) {
    ++line_;
    if (rest_.empty()) {
      state_error("line " + std::to_string(line_) + ": expected field '" + std::string(key) +
                  "', found the end of the text (truncated)");
    }
    const std::size_t end = rest_.find('\n');
    const std::string_view line = rest_.substr(0, end);
    rest_ = end == std::string_view::npos ? std::string_view{} : rest_.substr(end + 1);
    if (line.size() <= key.size() || line.substr(0, key.size()) != key || line[key.size()] != ' ') {
      state_error("line " + std::to_string(line_) + ": expected field '" + std::string(key) +
                  " <value>', found " + quote(line));
    }
    return line.substr(key.size() + 1);
  }

  void expect_end() const {
    if (!rest_.empty()) {
      state_error("unexpected text after the last field 'rng': " + quote(rest_));
    }
  }

 private:
  std::string_view rest_;
  int line_ = 0;
};

template <class Int>
Int parse_int(std::string_view key, std::string_view value) {
  Int result{};
  const char* first = value.data();
  const char* last = value.data() + value.size();
  const auto [end, error] = std::from_chars(first, last, result);
  if (value.empty() || error != std::errc{} || end != last) {
    state_error("field '" + std::string(key) + "': expected an integer, found " + quote(value));
  }
  return result;
}

std::int64_t parse_range(std::string_view key, std::string_view value, std::int64_t lo, std::int64_t hi) {
  const auto result = parse_int<std::int64_t>(key, value);
  if (result < lo || result > hi) {
    state_error("field '" + std::string(key) + "' = " + std::to_string(result) + " is outside [" +
                std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return result;
}

// A generator state, accepted only in the exact form Rng::save_state writes.
Rng parse_rng(std::string_view key, std::string_view value) {
  Rng rng;
  const std::string text(value);
  try {
    rng.load_state(text);
  } catch (const Error&) {
    state_error("field '" + std::string(key) + "': malformed generator state " + quote(value));
  }
  if (rng.save_state() != text) {
    state_error("field '" + std::string(key) + "': generator state is not in canonical form " +
                quote(value));
  }
  return rng;
}

void expect_option(std::string_view key, const std::string& saved, const std::string& mine) {
  if (saved != mine) {
    throw ConfigError("sampler state: field '" + std::string(key) + "' is " + saved +
                      " but this sampler was built with " + mine);
  }
}

}  // namespace

SamplerKind parse_sampler_kind(std::string_view name) {
  if (const auto kind = find_kind(name)) {
    return *kind;
  }
  throw ConfigError("sampler kind: unknown sampler " + quote(name) + "; expected one of " +
                    valid_kind_list());
}

std::string_view sampler_kind_name(SamplerKind kind) {
  if (!is_valid_kind(kind)) {
    throw ConfigError("sampler kind: value " + std::to_string(static_cast<int>(kind)) +
                      " is not a SamplerKind; expected one of " + valid_kind_list());
  }
  return sampler_kind_names[static_cast<std::size_t>(kind)];
}

Sampler::Sampler(std::int64_t num_examples, const SamplerOptions& options)
    : options_(options), num_examples_(num_examples), rng_(options.seed), order_rng_(options.seed) {
  if (!is_valid_kind(options.kind)) {
    throw ConfigError("sampler: kind " + std::to_string(static_cast<int>(options.kind)) +
                      " is not a SamplerKind; expected one of " + valid_kind_list());
  }
  if (num_examples <= 0) {
    throw ConfigError("sampler: num_examples must be positive, got " + std::to_string(num_examples));
  }
  if (options.batch_size < 0 || options.batch_size > num_examples) {
    throw ConfigError("sampler: batch_size must be in [0, " + std::to_string(num_examples) +
                      "] (0 = the full training set), got " + std::to_string(options.batch_size));
  }
  batch_size_ = options.batch_size == 0 ? num_examples : options.batch_size;
  batches_per_epoch_ = count_batches(num_examples, batch_size_, options.drop_last);
  if (!options.groups.empty()) {
    const auto g = static_cast<std::int64_t>(options.groups.size());
    if (!options.in_order && options.kind != SamplerKind::sequential)
      throw ConfigError("sampler: shard groups need the examples walked in order (in_order or sequential)");
    if (options.kind == SamplerKind::with_replacement || options.kind == SamplerKind::reshuffle)
      throw ConfigError("sampler: shard groups are walked in order; kind " + std::string(sampler_kind_name(options.kind)) +
                        " draws at random");
    if (options.batch_size <= 0 || options.batch_size % g != 0)
      throw ConfigError("sampler: batch_size = " + std::to_string(options.batch_size) + " is not a positive multiple of the " +
                        std::to_string(g) + " shard groups (each batch takes batch_size / groups examples of each)");
    const std::int64_t q = options.batch_size / g;
    std::int64_t total = 0, most = 0, least = std::numeric_limits<std::int64_t>::max();
    group_starts_.push_back(0);
    for (const std::int64_t size : options.groups) {
      if (size < 0 || size > num_examples - total)
        throw ConfigError("sampler: shard group sizes do not add up to the " + std::to_string(num_examples) + " examples");
      total += size;
      group_starts_.push_back(total);
      most = std::max(most, size);
      least = std::min(least, size);
    }
    if (total != num_examples)
      throw ConfigError("sampler: shard group sizes do not add up to the " + std::to_string(num_examples) + " examples");
    batches_per_epoch_ = options.drop_last ? least / q : (most + q - 1) / q;
    if (batches_per_epoch_ < 1)
      throw ConfigError("sampler: drop_last with a shard group of " + std::to_string(least) + " examples, fewer than " +
                        "batch_size / groups = " + std::to_string(q) + ": no whole batch");
  }
  if (permutes()) {
    if (static_cast<std::uint64_t>(num_examples) > order_.max_size()) {
      throw ConfigError("sampler: num_examples " + std::to_string(num_examples) +
                        " is too large for a permutation in memory");
    }
    order_.resize(static_cast<std::size_t>(num_examples));
    draw_order();
  }
}

bool Sampler::permutes() const { return kind_permutes(options_.kind); }

bool Sampler::exhausted() const { return options_.kind == SamplerKind::stream && epoch_ >= 1; }

std::int64_t Sampler::max_epochs() const {
  return options_.kind == SamplerKind::stream ? 1 : std::numeric_limits<std::int64_t>::max();
}

void Sampler::draw_order() {
  order_rng_ = rng_;
  shuffle_identity(order_, rng_);
  if (options_.in_order) std::iota(order_.begin(), order_.end(), std::int64_t{0});
}

bool Sampler::next(std::vector<std::int64_t>& out) {
  if (exhausted()) {
    return false;
  }
  if (position_ == batches_per_epoch_) {
    ++epoch_;
    position_ = 0;
    if (options_.kind == SamplerKind::reshuffle) {
      draw_order();
    }
    return false;
  }
  if (!group_starts_.empty()) {  // shard groups: q examples of each, in group order
    const auto g = group_starts_.size() - 1;
    const std::int64_t q = batch_size_ / static_cast<std::int64_t>(g);
    out.clear();
    pieces_.assign(1, 0);
    for (std::size_t i = 0; i < g; ++i) {
      const std::int64_t size = group_starts_[i + 1] - group_starts_[i];
      const std::int64_t lo = std::min(size, position_ * q), hi = std::min(size, lo + q);
      for (std::int64_t e = lo; e < hi; ++e) out.push_back(group_starts_[i] + e);
      pieces_.push_back(static_cast<std::int64_t>(out.size()));
    }
    ++position_;
    return true;
  }
  // position_ < batches_per_epoch_, so begin < num_examples_ and nothing overflows.
  const std::int64_t begin = position_ * batch_size_;
  const std::int64_t count = std::min(batch_size_, num_examples_ - begin);
  out.resize(static_cast<std::size_t>(count));
  switch (options_.kind) {
    case SamplerKind::sequential:
      std::iota(out.begin(), out.end(), begin);
      break;
    case SamplerKind::shuffle_once:
    case SamplerKind::reshuffle:
    case SamplerKind::stream:
      std::copy_n(order_.begin() + begin, count, out.begin());
      break;
    case SamplerKind::with_replacement:
      for (std::int64_t& index : out) {
        index = static_cast<std::int64_t>(rng_.below(static_cast<std::uint64_t>(num_examples_)));
      }
      break;
  }
  ++position_;
  return true;
}

std::string Sampler::save_state() const {
  std::string text;
  text += std::string(state_magic) + " " + std::string(state_version) + "\n";
  text += "kind " + std::string(sampler_kind_name(options_.kind)) + "\n";
  text += "num_examples " + std::to_string(num_examples_) + "\n";
  text += "batch_size " + std::to_string(options_.batch_size) + "\n";
  text += std::string("drop_last ") + (options_.drop_last ? "1" : "0") + "\n";
  text += "seed " + std::to_string(options_.seed) + "\n";
  text += "epoch " + std::to_string(epoch_) + "\n";
  text += "position " + std::to_string(position_) + "\n";
  text += "order_rng " + order_rng_.save_state() + "\n";
  text += "rng " + rng_.save_state() + "\n";
  return text;
}

void Sampler::load_state(const std::string& state) {
  StateReader reader(state);
  const std::string_view version = reader.field(state_magic);
  if (version != state_version) {
    state_error("unsupported version " + quote(version) + " (expected " + std::string(state_version) + ")");
  }
  const std::string_view kind_text = reader.field("kind");
  const auto kind = find_kind(kind_text);
  if (!kind) {
    state_error("field 'kind': unknown sampler " + quote(kind_text) + "; expected one of " +
                valid_kind_list());
  }
  const std::int64_t num_examples =
      parse_range("num_examples", reader.field("num_examples"), 1, INT64_MAX);
  const std::int64_t batch_size = parse_range("batch_size", reader.field("batch_size"), 0, num_examples);
  const bool drop_last = parse_range("drop_last", reader.field("drop_last"), 0, 1) == 1;
  const auto seed = parse_int<std::uint64_t>("seed", reader.field("seed"));
  const std::int64_t epoch = parse_range("epoch", reader.field("epoch"), 0, INT64_MAX);
  const std::int64_t effective_batch = batch_size == 0 ? num_examples : batch_size;
  const std::int64_t position =
      parse_range("position", reader.field("position"), 0,
                  std::max(count_batches(num_examples, effective_batch, drop_last),
                           group_starts_.empty() ? std::int64_t{0} : batches_per_epoch_));
  const Rng order_rng = parse_rng("order_rng", reader.field("order_rng"));
  Rng rng = parse_rng("rng", reader.field("rng"));
  reader.expect_end();

  expect_option("num_examples", std::to_string(num_examples), std::to_string(num_examples_));
  expect_option("kind", std::string(kind_text), std::string(sampler_kind_name(options_.kind)));
  expect_option("batch_size", std::to_string(batch_size), std::to_string(options_.batch_size));
  expect_option("drop_last", drop_last ? "1" : "0", options_.drop_last ? "1" : "0");
  expect_option("seed", std::to_string(seed), std::to_string(options_.seed));

  if (*kind == SamplerKind::stream && (epoch > 1 || (epoch == 1 && position != 0))) {
    state_error("a stream has a single epoch, found epoch " + std::to_string(epoch) + " position " +
                std::to_string(position));
  }
  const std::string seeded = Rng(seed).save_state();
  if (*kind != SamplerKind::reshuffle && order_rng.save_state() != seeded) {
    state_error("field 'order_rng' must be the generator seeded with " + std::to_string(seed) +
                " for a " + std::string(kind_text) + " sampler");
  }
  if (*kind == SamplerKind::sequential && rng.save_state() != seeded) {
    state_error("field 'rng' must be the generator seeded with " + std::to_string(seed) +
                " for a sequential sampler (it draws nothing)");
  }
  std::vector<std::int64_t> order;
  if (kind_permutes(*kind)) {
    order.resize(static_cast<std::size_t>(num_examples));
    Rng replay = order_rng;
    shuffle_identity(order, replay);
    if (replay.save_state() != rng.save_state()) {
      state_error("field 'rng' is not the generator state that follows drawing the permutation from "
                  "field 'order_rng'");
    }
    if (options_.in_order) std::iota(order.begin(), order.end(), std::int64_t{0});
  }

  epoch_ = epoch;
  position_ = position;
  order_rng_ = order_rng;
  rng_ = std::move(rng);
  order_ = std::move(order);
}

}  // namespace descent::data
