// The training config: TOML text -> TrainConfig (validated) -> TOML text.
//
// Parsing has five steps. (1) toml++ parses the file into a table. (2) Each --set is parsed as
// a one-value TOML document and moved into that table. (3) Every key in the table is checked
// against the schema (kKeys). (4) Each field is read with its type and range checked.
// (5) Fields that depend on each other are checked.
// A node keeps its source region: a node from the file has the file's path and a line, and a
// node from an override has the path "--set ARG". Messages point at the right place this way.
#include "descent/train/config.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <climits>
#include <cmath>
#include <fstream>
#include <limits>
#include <set>
#include <span>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "descent/error.hpp"

namespace descent::train {
namespace {

constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();
constexpr std::uintmax_t kMaxConfigBytes = 16u << 20;

constexpr std::array<std::string_view, 11> kTables = {"data",      "model",          "init",      "optimizer",
                                                      "schedule",  "clip",           "sampler",   "early_stopping",
                                                      "averaging", "checkpoint",     "divergence"};

// Every key a config may hold. `text`: the value is a string, so a --set value is taken
// literally even when it parses as another TOML type.
struct KeySpec {
  std::string_view key;
  bool text;
};
constexpr std::array<KeySpec, 69> kKeys = {{
    {"name", true},
    {"seed", false},
    {"threads", false},
    {"epochs", false},
    {"eval_every_steps", false},
    {"out_dir", true},
    {"progress", true},
    {"data.format", true},
    {"data.dir", true},
    {"data.train_features", true},
    {"data.train_labels", true},
    {"data.test_features", true},
    {"data.test_labels", true},
    {"data.csv_label_column", false},
    {"data.csv_header", false},
    {"data.scale", false},
    {"data.standardize", true},
    {"data.validation_size", false},
    {"data.validation_shuffle", false},
    {"data.limit_train", false},
    {"data.limit_test", false},
    {"model.type", true},
    {"model.hidden", false},
    {"model.activation", true},
    {"model.dtype", true},
    {"model.layers", false},
    {"init.weights", true},
    {"init.bias", false},
    {"init.gain", false},
    {"init.sparse_k", false},
    {"optimizer.name", true},
    {"optimizer.lr", false},
    {"optimizer.momentum", false},
    {"optimizer.nesterov", false},
    {"optimizer.rho", false},
    {"optimizer.rho1", false},
    {"optimizer.rho2", false},
    {"optimizer.delta", false},
    {"optimizer.weight_decay", false},
    {"optimizer.form", true},
    {"optimizer.centered", false},
    {"optimizer.amsgrad", false},
    {"schedule.name", true},
    {"schedule.lr_end", false},
    {"schedule.tau", false},
    {"schedule.gamma", false},
    {"schedule.every", false},
    {"schedule.decay", false},
    {"schedule.warmup", false},
    {"schedule.factor", false},
    {"schedule.patience", false},
    {"clip.global_norm", false},
    {"clip.value", false},
    {"clip.param_norm", false},
    {"averaging.kind", true},
    {"averaging.rho", false},
    {"sampler.kind", true},
    {"sampler.batch_size", false},
    {"sampler.drop_last", false},
    {"early_stopping.enabled", false},
    {"early_stopping.monitor", true},
    {"early_stopping.patience", false},
    {"early_stopping.min_delta", false},
    {"checkpoint.every_epochs", false},
    {"checkpoint.every_steps", false},
    {"checkpoint.keep", false},
    {"divergence.policy", true},
    {"divergence.lr_scale", false},
    {"divergence.max_events", false},
}};

constexpr std::string_view kDivergence[] = {"stop", "skip", "rollback"};
constexpr std::string_view kFormats[] = {"mnist", "idx", "csv", "npy"};
constexpr std::string_view kStandardize[] = {"none", "global", "per_feature"};
constexpr std::string_view kModelTypes[] = {"mlp", "sequential"};
constexpr std::string_view kLayerTypes[] = {"linear",  "conv2d",    "maxpool2d", "avgpool2d", "flatten",
                                            "unflatten", "batchnorm", "dropout", "relu",      "tanh",
                                            "sigmoid", "rnn",       "lstm",      "gru"};

// The keys a layer of each type takes besides "type", in the order to_toml writes them.
// The output size is called units (linear), channels (conv2d) or hidden (recurrent); all
// three fill LayerConfig::units.
std::span<const std::string_view> layer_keys(std::string_view type) {
  static constexpr std::string_view kLinear[] = {"units", "bias"};
  static constexpr std::string_view kConv[] = {"channels", "kernel", "stride", "padding", "bias"};
  static constexpr std::string_view kPool[] = {"kernel", "stride"};
  static constexpr std::string_view kUnflatten[] = {"shape"};
  static constexpr std::string_view kBatchNorm[] = {"eps", "momentum"};
  static constexpr std::string_view kDropout[] = {"p"};
  static constexpr std::string_view kRecurrent[] = {"hidden", "input_size", "return_sequence", "truncate"};
  static constexpr std::string_view kLstm[] = {"hidden", "input_size", "return_sequence", "truncate", "forget_bias"};
  if (type == "linear") return kLinear;
  if (type == "conv2d") return kConv;
  if (type == "maxpool2d" || type == "avgpool2d") return kPool;
  if (type == "unflatten") return kUnflatten;
  if (type == "batchnorm") return kBatchNorm;
  if (type == "dropout") return kDropout;
  if (type == "rnn" || type == "gru") return kRecurrent;
  if (type == "lstm") return kLstm;
  return {};
}
constexpr std::string_view kActivations[] = {"relu", "tanh", "sigmoid", "identity"};
constexpr std::string_view kDtypes[] = {"f32", "f64"};
constexpr std::string_view kWeightInits[] = {"zeros",          "constant",      "uniform",        "normal",
                                             "glorot_uniform", "glorot_normal", "fan_in_uniform", "he_normal",
                                             "he_uniform",     "orthogonal",    "sparse"};
constexpr std::string_view kOptimizers[] = {"sgd",  "momentum", "nesterov", "adagrad", "rmsprop", "rmsprop_nesterov",
                                            "adadelta", "adam", "adamw",   "amsgrad", "adamax", "nadam"};
constexpr std::string_view kForms[] = {"textbook", "pytorch"};
constexpr std::string_view kSchedules[] = {"constant", "linear", "step", "exponential", "inverse_time", "cosine", "plateau"};
constexpr std::string_view kAveraging[] = {"none", "arithmetic", "exponential"};
constexpr std::string_view kSamplers[] = {"sequential", "shuffle_once", "reshuffle", "with_replacement", "stream"};
constexpr std::string_view kMonitors[] = {"val_error", "val_loss"};
constexpr std::string_view kProgress[] = {"auto", "bar", "plain", "none"};

const KeySpec* find_key(std::string_view key) {
  for (const KeySpec& k : kKeys)
    if (k.key == key) return &k;
  return nullptr;
}

bool is_table_name(std::string_view name) {
  return std::find(kTables.begin(), kTables.end(), name) != kTables.end();
}

// Levenshtein distance (insertions, deletions, substitutions), O(|a| |b|).
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0u : 1u)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// The closest candidate within edit distance 2 (the first one on a tie), or "".
std::string_view closest(std::string_view word, std::span<const std::string_view> candidates) {
  std::string_view best;
  std::size_t best_distance = 3;
  for (std::string_view c : candidates) {
    // The distance is at least the difference in length: skipping those keeps a hostile
    // 16 MiB key from costing O(|key|) per candidate.
    if (word.size() > c.size() + 2 || c.size() > word.size() + 2) continue;
    const std::size_t d = edit_distance(word, c);
    if (d < best_distance) {
      best = c;
      best_distance = d;
    }
  }
  return best;
}

// "; did you mean X?" for an unknown dotted key: the closest valid key or table within edit
// distance 2, else the valid keys with the same last component (a key in the wrong table).
std::string key_suggestion(std::string_view key) {
  std::vector<std::string_view> names(kTables.begin(), kTables.end());
  for (const KeySpec& k : kKeys) names.push_back(k.key);
  const std::string_view best = closest(key, names);
  if (!best.empty()) return "; did you mean " + std::string(best) + "?";
  const std::string_view leaf = key.substr(key.rfind('.') + 1);
  std::vector<std::string_view> same_leaf;
  for (const KeySpec& k : kKeys)
    if (k.key.substr(k.key.rfind('.') + 1) == leaf) same_leaf.push_back(k.key);
  if (same_leaf.empty()) return "";
  std::string out = same_leaf.size() == 1 ? "; did you mean " : "; did you mean one of ";
  for (std::size_t i = 0; i < same_leaf.size(); ++i) out += (i > 0 ? ", " : "") + std::string(same_leaf[i]);
  return out + "?";
}

// A TOML basic string: quoted, with '"', '\' and control characters escaped.
std::string quote(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out = "\"";
  for (const char ch : s) {
    const auto u = static_cast<unsigned char>(ch);
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\t': out += "\\t"; break;
      case '\n': out += "\\n"; break;
      case '\f': out += "\\f"; break;
      case '\r': out += "\\r"; break;
      default:
        if (u < 0x20 || u == 0x7F) {
          out += "\\u00";
          out += kHex[u >> 4];
          out += kHex[u & 0xF];
        } else {
          out += ch;
        }
    }
  }
  return out + "\"";
}

// A double as a TOML float: the shortest text that reads back to the same value.
std::string format_float(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::array<char, 64> buf{};
  const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  std::string s(buf.data(), r.ptr);
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

std::string join(std::span<const std::string_view> names) {
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i) out += (i > 0 ? ", " : "") + std::string(names[i]);
  return out;
}

// A string from the config quoted for a message: at most 60 bytes, else cut to 57 at a
// UTF-8 boundary and followed by "...".
std::string quote_short(std::string_view s) {
  if (s.size() <= 60) return quote(s);
  std::size_t cut = 57;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return quote(s.substr(0, cut)) + "...";
}

// What a node holds, for messages: "the float -0.5", "the string \"fast\"", "a table".
std::string describe(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string: return "the string " + quote_short(n.as_string()->get());
    case toml::node_type::integer: return "the integer " + std::to_string(n.as_integer()->get());
    case toml::node_type::floating_point: return "the float " + format_float(n.as_floating_point()->get());
    case toml::node_type::boolean: return n.as_boolean()->get() ? "the boolean true" : "the boolean false";
    case toml::node_type::array: return "an array";
    case toml::node_type::table: return "a table";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    case toml::node_type::none: break;
  }
  return "nothing";
}

std::string trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return "";
  const auto last = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(first, last - first + 1));
}

// Text from the config (a toml++ description quoting the input, a key, a --set argument)
// for a one-line message.
std::string one_line(std::string_view s, std::size_t max_bytes = std::string_view::npos) {
  return printable_excerpt(s, max_bytes);
}

// Reads the fields of a merged table and says where a bad value came from.
class Reader {
 public:
  Reader(const toml::table& root, const std::string& source) : root_(root), source_(source) {}

  // "FILE, line N" for a node of the file, "FILE: --set ARG" for a node of an override, else "FILE".
  std::string where(const toml::node* node) const {
    if (node != nullptr) {
      const toml::source_region& s = node->source();
      if (s.path != nullptr && s.path != root_.source().path) return source_ + ": " + one_line(*s.path, 80);
      if (s.begin.line > 0) return source_ + ", line " + std::to_string(s.begin.line);
    }
    return source_;
  }

  [[noreturn]] void fail(std::string_view key, const toml::node* node, const std::string& what) const {
    throw ConfigError(where(node) + ": " + std::string(key) + ": " + what);
  }

  [[noreturn]] void fail_type(std::string_view key, const toml::node& node, const std::string& expected) const {
    fail(key, &node, "expected " + expected + ", got " + describe(node));
  }

  // Unknown keys and tables, and tables given as values.
  void check_keys() const {
    for (auto&& [k, v] : root_) {
      const std::string key(k.str());
      if (is_table_name(key)) {
        const toml::table* table = v.as_table();
        if (table == nullptr) fail_type(key, v, "a table ([" + key + "])");
        for (auto&& [k2, v2] : *table) {
          const std::string dotted = key + "." + std::string(k2.str());
          if (find_key(dotted) == nullptr) fail_unknown(dotted, k2, v2);
        }
      } else if (find_key(key) == nullptr) {
        fail_unknown(key, k, v);
      }
    }
  }

  // The node at a dotted key, or nullptr. Marks the key as read.
  const toml::node* node(std::string_view key) {
    if (find_key(key) == nullptr)
      throw std::logic_error("descent config: key " + std::string(key) + " is not in the schema");
    read_.insert(key);
    const auto dot = key.find('.');
    if (dot == std::string_view::npos) return root_.get(key);
    const toml::table* table = root_.get_as<toml::table>(key.substr(0, dot));
    return table == nullptr ? nullptr : table->get(key.substr(dot + 1));
  }

  // Throws std::logic_error unless every key of the schema was read (a bug of this file).
  void check_all_read() const {
    for (const KeySpec& k : kKeys)
      if (read_.count(k.key) == 0)
        throw std::logic_error("descent config: key " + std::string(k.key) + " is never read");
  }

  const toml::node* boolean(std::string_view key, bool& out) {
    const toml::node* n = node(key);
    if (n == nullptr) return n;
    if (!n->is_boolean()) fail_type(key, *n, "a boolean (true or false)");
    out = n->as_boolean()->get();
    return n;
  }

  const toml::node* string(std::string_view key, std::string& out, bool non_empty) {
    const toml::node* n = node(key);
    if (n == nullptr) return n;
    if (!n->is_string()) fail_type(key, *n, non_empty ? "a non-empty string" : "a string");
    const std::string& s = n->as_string()->get();
    if (non_empty && s.empty()) fail_type(key, *n, "a non-empty string");
    if (s.find('\0') != std::string::npos) fail_type(key, *n, "a string without NUL characters");
    out = s;
    return n;
  }

  const toml::node* choice(std::string_view key, std::string& out, std::span<const std::string_view> names) {
    std::string value = out;
    const toml::node* n = string(key, value, false);
    if (n == nullptr) return n;
    if (std::find(names.begin(), names.end(), value) == names.end()) {
      const std::string_view near = closest(value, names);
      fail(key, n,
           "unknown value " + quote_short(value) + "; expected one of " + join(names) +
               (near.empty() ? "" : "; did you mean " + std::string(near) + "?"));
    }
    out = value;
    return n;
  }

  static std::string int_range(std::int64_t lo, std::int64_t hi) {
    if (hi == kInt64Max) return "an integer >= " + std::to_string(lo);
    return "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  }

  void check_int(std::string_view key, const toml::node& n, std::int64_t lo, std::int64_t hi) const {
    if (!n.is_integer()) fail_type(key, n, int_range(lo, hi));
    const std::int64_t v = n.as_integer()->get();
    if (v < lo || v > hi) fail_type(key, n, int_range(lo, hi));
  }

  template <typename Int>
  const toml::node* integer(std::string_view key, Int& out, std::int64_t lo, std::int64_t hi) {
    const toml::node* n = node(key);
    if (n == nullptr) return n;
    check_int(key, *n, lo, hi);
    out = static_cast<Int>(n->as_integer()->get());
    return n;
  }

  // A finite number (an integer is accepted) for which `ok` holds; `expected` says which.
  template <typename Predicate>
  const toml::node* number(std::string_view key, double& out, Predicate ok, std::string_view expected) {
    const toml::node* n = node(key);
    if (n == nullptr) return n;
    double v = 0.0;
    if (n->is_integer()) {
      v = static_cast<double>(n->as_integer()->get());
    } else if (n->is_floating_point()) {
      v = n->as_floating_point()->get();
    } else {
      fail_type(key, *n, std::string(expected));
    }
    if (!std::isfinite(v) || !ok(v)) fail_type(key, *n, std::string(expected));
    out = v;
    return n;
  }

  // The same for a hyperparameter that may be left unset.
  template <class Predicate>
  const toml::node* number(std::string_view key, std::optional<double>& out, Predicate ok, std::string_view expected) {
    double v = 0.0;
    const toml::node* n = number(key, v, ok, expected);
    if (n != nullptr) out = v;
    return n;
  }

  // An integer in [0, 2^63-1] or a string of decimal digits up to 2^64-1.
  void seed(std::uint64_t& out) {
    static constexpr std::string_view kKey = "seed";
    static const std::string expected =
        "an integer >= 0 (or, above 2^63-1, a string of decimal digits up to 18446744073709551615)";
    const toml::node* n = node(kKey);
    if (n == nullptr) return;
    if (n->is_integer()) {
      const std::int64_t v = n->as_integer()->get();
      if (v < 0) fail_type(kKey, *n, expected);
      out = static_cast<std::uint64_t>(v);
      return;
    }
    if (!n->is_string()) fail_type(kKey, *n, expected);
    const std::string& s = n->as_string()->get();
    std::uint64_t v = 0;
    const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || s.front() == '-' || s.front() == '+' || r.ec != std::errc() || r.ptr != s.data() + s.size())
      fail_type(kKey, *n, expected);
    out = v;
  }

  // An integer >= 0 or the string "full" (0).
  void batch_size(std::int64_t& out) {
    static constexpr std::string_view kKey = "sampler.batch_size";
    static const std::string expected = "an integer >= 0 or \"full\" (0, the whole training split)";
    const toml::node* n = node(kKey);
    if (n == nullptr) return;
    if (n->is_string()) {
      if (n->as_string()->get() != "full") fail_type(kKey, *n, expected);
      out = 0;
      return;
    }
    if (!n->is_integer() || n->as_integer()->get() < 0) fail_type(kKey, *n, expected);
    out = n->as_integer()->get();
  }

  void hidden(std::vector<std::int64_t>& out) {
    static constexpr std::string_view kKey = "model.hidden";
    const toml::node* n = node(kKey);
    if (n == nullptr) return;
    const toml::array* a = n->as_array();
    if (a == nullptr) fail_type(kKey, *n, "an array of integers >= 1, e.g. [256, 256]");
    std::vector<std::int64_t> sizes;
    for (std::size_t i = 0; i < a->size(); ++i) {
      const toml::node& e = *a->get(i);
      check_int(std::string(kKey) + "[" + std::to_string(i) + "]", e, 1, INT32_MAX);
      sizes.push_back(e.as_integer()->get());
    }
    out = std::move(sizes);
  }

  // model.layers: an array of tables, each with a "type" and that type's keys.
  void layers(std::vector<LayerConfig>& out) {
    static constexpr std::string_view kKey = "model.layers";
    const toml::node* n = node(kKey);
    if (n == nullptr) return;
    const toml::array* a = n->as_array();
    if (a == nullptr) fail_type(kKey, *n, "an array of tables ([[model.layers]] or [{type = \"linear\"}, ...])");
    std::vector<LayerConfig> result;
    for (std::size_t i = 0; i < a->size(); ++i) {
      const std::string at = std::string(kKey) + "[" + std::to_string(i) + "]";
      const toml::node& e = *a->get(i);
      const toml::table* t = e.as_table();
      if (t == nullptr) fail_type(at, e, "a table with a type, e.g. {type = \"relu\"}");
      result.push_back(layer(at, *t, e));
    }
    out = std::move(result);
  }

 private:
  LayerConfig layer(const std::string& at, const toml::table& t, const toml::node& whole) const {
    LayerConfig l;
    const toml::node* type = t.get("type");
    if (type == nullptr) fail(at, &whole, "missing key type; expected one of " + join(kLayerTypes));
    if (!type->is_string()) fail_type(at + ".type", *type, "one of " + join(kLayerTypes));
    l.type = type->as_string()->get();
    if (std::find(std::begin(kLayerTypes), std::end(kLayerTypes), l.type) == std::end(kLayerTypes)) {
      const std::string_view near = closest(l.type, kLayerTypes);
      fail(at + ".type", type,
           "unknown layer type " + quote_short(l.type) + "; expected one of " + join(kLayerTypes) +
               (near.empty() ? "" : "; did you mean " + std::string(near) + "?"));
    }
    const std::span<const std::string_view> allowed = layer_keys(l.type);
    for (auto&& [k, v] : t) {
      const std::string_view key = k.str();
      if (key == "type" || std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
      const std::string_view near = closest(key, allowed);
      const std::string keys = allowed.empty() ? "none besides type" : join(allowed);
      fail(at + "." + one_line(key, 64), &v,
           "unknown key for a " + l.type + " layer (it takes " + keys + ")" +
               (near.empty() ? "" : "; did you mean " + std::string(near) + "?"));
    }
    const auto get = [&](std::string_view key) -> const toml::node* { return t.get(key); };
    const auto required = [&](std::string_view key) -> const toml::node& {
      const toml::node* v = get(key);
      if (v == nullptr) fail(at, &whole, "a " + l.type + " layer needs " + std::string(key));
      return *v;
    };
    const auto integer = [&](const toml::node& v, std::string_view key, std::int64_t lo) {
      check_int(at + "." + std::string(key), v, lo, INT32_MAX);
      return v.as_integer()->get();
    };
    const auto boolean = [&](std::string_view key, bool& field) {
      if (const toml::node* v = get(key)) {
        if (!v->is_boolean()) fail_type(at + "." + std::string(key), *v, "a boolean (true or false)");
        field = v->as_boolean()->get();
      }
    };
    const auto real = [&](std::string_view key, double& field, bool (*ok)(double), std::string_view expected) {
      if (const toml::node* v = get(key)) {
        const double x = v->is_integer() ? static_cast<double>(v->as_integer()->get())
                         : v->is_floating_point() ? v->as_floating_point()->get()
                                                  : std::numeric_limits<double>::quiet_NaN();
        if (!std::isfinite(x) || !ok(x)) fail_type(at + "." + std::string(key), *v, std::string(expected));
        field = x;
      }
    };
    if (l.type == "linear") {
      if (const toml::node* v = get("units")) l.units = integer(*v, "units", 1);
      boolean("bias", l.bias);
    } else if (l.type == "conv2d") {
      l.units = integer(required("channels"), "channels", 1);
      l.kernel = integer(required("kernel"), "kernel", 1);
      if (const toml::node* v = get("stride")) l.stride = integer(*v, "stride", 1);
      if (const toml::node* v = get("padding")) l.padding = integer(*v, "padding", 0);
      boolean("bias", l.bias);
    } else if (l.type == "maxpool2d" || l.type == "avgpool2d") {
      l.kernel = integer(required("kernel"), "kernel", 1);
      if (const toml::node* v = get("stride")) l.stride = integer(*v, "stride", 1);
    } else if (l.type == "unflatten") {
      const toml::node& v = required("shape");
      const toml::array* a = v.as_array();
      if (a == nullptr || a->empty() || a->size() > 3)
        fail_type(at + ".shape", v, "an array of 1 to 3 integers >= 1, e.g. [1, 28, 28]");
      for (std::size_t j = 0; j < a->size(); ++j)
        l.shape.push_back(integer(*a->get(j), "shape[" + std::to_string(j) + "]", 1));
    } else if (l.type == "batchnorm") {
      real("eps", l.eps, [](double x) { return x >= 0; }, "a finite number >= 0");
      real("momentum", l.momentum, [](double x) { return x >= 0 && x <= 1; }, "a number in [0, 1]");
    } else if (l.type == "dropout") {
      real("p", l.p, [](double x) { return x >= 0 && x < 1; }, "a number in [0, 1)");
    } else if (l.type == "rnn" || l.type == "lstm" || l.type == "gru") {
      l.units = integer(required("hidden"), "hidden", 1);
      l.input_size = integer(required("input_size"), "input_size", 1);
      boolean("return_sequence", l.return_sequence);
      if (const toml::node* v = get("truncate")) l.truncate = integer(*v, "truncate", 0);
      real("forget_bias", l.forget_bias, [](double) { return true; }, "a finite number");
    }
    return l;
  }

  [[noreturn]] void fail_unknown(const std::string& key, const toml::key& k, const toml::node& v) const {
    const bool has_line = k.source().begin.line > 0;
    const std::string at = has_line ? source_ + ", line " + std::to_string(k.source().begin.line) : where(&v);
    throw ConfigError(at + ": " + one_line(key, 64) + ": unknown key" + key_suggestion(key));
  }

  const toml::table& root_;
  const std::string& source_;
  std::set<std::string_view> read_;
};

// Moves one --set argument into `root`.
void apply_override(toml::table& root, const std::string& arg, const std::string& source) {
  const std::string at = source + ": --set " + one_line(arg, 80) + ": ";
  const auto eq = arg.find('=');
  if (eq == std::string::npos)
    throw ConfigError(at + "expected key=value with a dotted key, e.g. optimizer.lr=0.01");
  const std::string key = trim(std::string_view(arg).substr(0, eq));
  const std::string text = trim(std::string_view(arg).substr(eq + 1));
  if (key.empty()) throw ConfigError(at + "the key before '=' is empty; expected key=value, e.g. optimizer.lr=0.01");
  if (is_table_name(key))
    throw ConfigError(at + key + " is a table; set one of its keys, e.g. " + key + "." +
                      std::string(std::find_if(kKeys.begin(), kKeys.end(), [&](const KeySpec& k) {
                                    return k.key.starts_with(key + ".");
                                  })->key.substr(key.size() + 1)) +
                      "=...");
  const KeySpec* spec = find_key(key);
  if (spec == nullptr) throw ConfigError(at + one_line(key, 64) + ": unknown key" + key_suggestion(key));

  const std::string origin = "--set " + arg;
  toml::table parsed;
  bool literal = true;
  try {
    parsed = toml::parse("v = " + text, std::string_view(origin));
    const toml::node* v = parsed.get("v");
    literal = parsed.size() != 1 || v == nullptr || (spec->text && !v->is_string());
  } catch (const toml::parse_error&) {
    literal = true;
  }
  if (literal) {
    try {
      parsed = toml::parse("v = " + quote(text), std::string_view(origin));
    } catch (const toml::parse_error& e) {
      throw ConfigError(at + key + ": the value is not valid text (" + one_line(e.description()) + ")");
    }
  }
  toml::node& value = *parsed.get("v");

  toml::table* table = &root;
  std::string_view leaf = key;
  if (const auto dot = key.find('.'); dot != std::string::npos) {
    const std::string table_name = key.substr(0, dot);
    leaf = std::string_view(key).substr(dot + 1);
    toml::node* existing = root.get(table_name);
    if (existing == nullptr) existing = root.insert(table_name, toml::table{}).first->second.as_table();
    table = existing->as_table();
    if (table == nullptr) {
      Reader reader(root, source);
      reader.fail_type(table_name, *existing, "a table ([" + table_name + "])");
    }
  }
  table->insert_or_assign(leaf, std::move(value));
}

void read_fields(Reader& r, TrainConfig& c) {
  if (const toml::node* n = r.string("name", c.name, true);
      n != nullptr && (c.name.find('/') != std::string::npos || c.name == "." || c.name == ".."))
    r.fail_type("name", *n, "a folder name (not empty, no '/', not \".\" or \"..\")");
  r.seed(c.seed);
  r.integer("threads", c.threads, 0, 1024);
  r.integer("epochs", c.epochs, 1, kInt64Max);
  r.integer("eval_every_steps", c.eval_every_steps, 0, kInt64Max);
  r.string("out_dir", c.out_dir, true);
  r.choice("progress", c.progress, kProgress);

  DataConfig& d = c.data;
  r.choice("data.format", d.format, kFormats);
  r.string("data.dir", d.dir, false);
  r.string("data.train_features", d.train_features, false);
  r.string("data.train_labels", d.train_labels, false);
  r.string("data.test_features", d.test_features, false);
  r.string("data.test_labels", d.test_labels, false);
  r.integer("data.csv_label_column", d.csv_label_column, INT_MIN, INT_MAX);
  r.boolean("data.csv_header", d.csv_header);
  r.number("data.scale", d.scale, [](double v) { return v > 0; }, "a finite number > 0");
  r.choice("data.standardize", d.standardize, kStandardize);
  r.integer("data.validation_size", d.validation_size, 0, kInt64Max);
  r.boolean("data.validation_shuffle", d.validation_shuffle);
  r.integer("data.limit_train", d.limit_train, 0, kInt64Max);
  r.integer("data.limit_test", d.limit_test, 0, kInt64Max);

  ModelConfig& m = c.model;
  r.choice("model.type", m.type, kModelTypes);
  r.hidden(m.hidden);
  r.choice("model.activation", m.activation, kActivations);
  r.choice("model.dtype", m.dtype, kDtypes);
  r.layers(m.layers);

  InitConfig& i = c.init;
  r.choice("init.weights", i.weights, kWeightInits);
  r.number("init.bias", i.bias, [](double) { return true; }, "a finite number");
  r.number("init.gain", i.gain, [](double v) { return v > 0; }, "a finite number > 0");
  r.integer("init.sparse_k", i.sparse_k, 1, kInt64Max);

  OptimizerConfig& o = c.optimizer;
  const auto unit = [](double v) { return v >= 0 && v < 1; };
  r.choice("optimizer.name", o.name, kOptimizers);
  r.number("optimizer.lr", o.lr, [](double v) { return v > 0; }, "a finite number > 0");
  r.number("optimizer.momentum", o.momentum, unit, "a number in [0, 1)");
  r.boolean("optimizer.nesterov", o.nesterov);
  r.number("optimizer.rho", o.rho, unit, "a number in [0, 1)");
  r.number("optimizer.rho1", o.rho1, unit, "a number in [0, 1)");
  r.number("optimizer.rho2", o.rho2, unit, "a number in [0, 1)");
  r.number("optimizer.delta", o.delta, [](double v) { return v > 0; }, "a finite number > 0");
  r.number("optimizer.weight_decay", o.weight_decay, [](double v) { return v >= 0; }, "a finite number >= 0");
  r.choice("optimizer.form", o.form, kForms);
  r.boolean("optimizer.centered", o.centered);
  r.boolean("optimizer.amsgrad", o.amsgrad);

  ScheduleConfig& s = c.schedule;
  r.choice("schedule.name", s.name, kSchedules);
  r.number("schedule.lr_end", s.lr_end, [](double) { return true; }, "a finite number (< 0: lr / 100)");
  r.integer("schedule.tau", s.tau, 0, kInt64Max);
  r.number("schedule.gamma", s.gamma, [](double v) { return v > 0 && v <= 1; }, "a number in (0, 1]");
  r.integer("schedule.every", s.every, 1, kInt64Max);
  r.number("schedule.decay", s.decay, [](double v) { return v >= 0; }, "a finite number >= 0");
  r.integer("schedule.warmup", s.warmup, 0, kInt64Max);
  r.number("schedule.factor", s.factor, [](double v) { return v > 0 && v < 1; }, "a number in (0, 1)");
  r.integer("schedule.patience", s.patience, 0, kInt64Max);

  ClipConfig& cl = c.clip;
  const auto non_negative = [](double v) { return v >= 0; };
  r.number("clip.global_norm", cl.global_norm, non_negative, "a finite number >= 0 (0: off)");
  r.number("clip.value", cl.value, non_negative, "a finite number >= 0 (0: off)");
  r.number("clip.param_norm", cl.param_norm, non_negative, "a finite number >= 0 (0: off)");

  AveragingConfig& av = c.averaging;
  r.choice("averaging.kind", av.kind, kAveraging);
  r.number("averaging.rho", av.rho, unit, "a number in [0, 1)");

  SamplerConfig& sa = c.sampler;
  r.choice("sampler.kind", sa.kind, kSamplers);
  r.batch_size(sa.batch_size);
  r.boolean("sampler.drop_last", sa.drop_last);

  EarlyStoppingConfig& e = c.early_stopping;
  r.boolean("early_stopping.enabled", e.enabled);
  r.choice("early_stopping.monitor", e.monitor, kMonitors);
  r.integer("early_stopping.patience", e.patience, 1, kInt64Max);
  r.number("early_stopping.min_delta", e.min_delta, [](double v) { return v >= 0; }, "a finite number >= 0");

  CheckpointConfig& ck = c.checkpoint;
  r.integer("checkpoint.every_epochs", ck.every_epochs, 0, kInt64Max);
  r.integer("checkpoint.every_steps", ck.every_steps, 0, kInt64Max);
  r.integer("checkpoint.keep", ck.keep, 1, 1000000);

  DivergenceConfig& dv = c.divergence;
  r.choice("divergence.policy", dv.policy, kDivergence);
  r.number("divergence.lr_scale", dv.lr_scale, [](double v) { return v > 0 && v < 1; }, "a number in (0, 1)");
  r.integer("divergence.max_events", dv.max_events, 1, kInt64Max);
}

// The paths that data.format needs must be set. The message points at the path key when the
// config sets it (to ""), else at data.format.
void check_paths(Reader& r, const TrainConfig& c) {
  const DataConfig& d = c.data;
  const toml::node* format = r.node("data.format");
  const auto require = [&](std::string_view key, const std::string& value, std::string_view what) {
    if (!value.empty()) return;
    const toml::node* own = r.node(key);
    r.fail(key, own != nullptr ? own : format,
           "required when data.format = " + quote(d.format) + "; expected the path of " + std::string(what));
  };
  if (d.format == "mnist") {
    require("data.dir", d.dir, "the directory holding the four IDX files");
  } else {
    require("data.train_features", d.train_features,
            d.format == "csv" ? "the training CSV file" : "the training features file");
    if (d.format != "csv") require("data.train_labels", d.train_labels, "the training labels file");
    require("data.test_features", d.test_features, d.format == "csv" ? "the test CSV file" : "the test features file");
    if (d.format != "csv") require("data.test_labels", d.test_labels, "the test labels file");
  }
}

// model.type and model.layers agree: a sequential model lists its layers, an mlp does not.
void check_model(Reader& r, const TrainConfig& c) {
  const ModelConfig& m = c.model;
  const toml::node* type = r.node("model.type");
  const toml::node* layers = r.node("model.layers");
  if (m.type == "sequential" && m.layers.empty())
    r.fail("model.layers", layers != nullptr ? layers : type,
           "model.type = \"sequential\" needs at least one layer, e.g. layers = [{type = \"linear\"}]");
  if (m.type == "mlp" && !m.layers.empty())
    r.fail("model.layers", layers, "is only read with model.type = \"sequential\" (model.type is \"mlp\")");
}

void line(std::string& out, std::string_view key, const std::string& value) {
  out.append(key).append(" = ").append(value).append("\n");
}

}  // namespace

TrainConfig parse_train_config(std::string_view toml_text, const std::string& source_name,
                               const std::vector<std::string>& overrides) {
  toml::table root;
  try {
    root = toml::parse(toml_text, std::string_view(source_name));
  } catch (const toml::parse_error& e) {
    throw ConfigError(source_name + ", line " + std::to_string(e.source().begin.line) + ", column " +
                      std::to_string(e.source().begin.column) + ": TOML syntax error: " + one_line(e.description()));
  }
  for (const std::string& arg : overrides) apply_override(root, arg, source_name);

  Reader reader(root, source_name);
  reader.check_keys();
  TrainConfig config;
  config.source = source_name;
  read_fields(reader, config);
  reader.check_all_read();
  check_paths(reader, config);
  check_model(reader, config);
  return config;
}

TrainConfig load_train_config(const std::filesystem::path& path, const std::vector<std::string>& overrides) {
  const std::string name = path.string();
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw IoError(name + ": is a directory; expected a TOML config file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(name + ": cannot open the config file (missing or unreadable)");
  std::string text;
  std::array<char, 65536> buf{};
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    text.append(buf.data(), static_cast<std::size_t>(in.gcount()));
    if (text.size() > kMaxConfigBytes)
      throw IoError(name + ": the config file is larger than " + std::to_string(kMaxConfigBytes >> 20) +
                    " MiB; expected a small TOML file");
  }
  if (in.bad()) throw IoError(name + ": reading the config file failed");
  return parse_train_config(text, name, overrides);
}

std::string to_toml(const TrainConfig& c) {
  // A TOML comment must be valid UTF-8 without control characters: keep printable ASCII only.
  std::string source;
  for (const char ch : c.source) source += (ch >= 0x20 && ch < 0x7F) ? ch : '?';
  std::string out = "# descent training config, resolved: every key, defaults included.\n";
  if (!source.empty()) out += "# From " + source + ".\n";
  line(out, "name", quote(c.name));
  const bool small_seed = c.seed <= static_cast<std::uint64_t>(kInt64Max);
  line(out, "seed", small_seed ? std::to_string(c.seed) : quote(std::to_string(c.seed)));
  line(out, "threads", std::to_string(c.threads));
  line(out, "epochs", std::to_string(c.epochs));
  line(out, "eval_every_steps", std::to_string(c.eval_every_steps));
  line(out, "out_dir", quote(c.out_dir));
  line(out, "progress", quote(c.progress));

  const DataConfig& d = c.data;
  out += "\n[data]\n";
  line(out, "format", quote(d.format));
  line(out, "dir", quote(d.dir));
  line(out, "train_features", quote(d.train_features));
  line(out, "train_labels", quote(d.train_labels));
  line(out, "test_features", quote(d.test_features));
  line(out, "test_labels", quote(d.test_labels));
  line(out, "csv_label_column", std::to_string(d.csv_label_column));
  line(out, "csv_header", d.csv_header ? "true" : "false");
  line(out, "scale", format_float(d.scale));
  line(out, "standardize", quote(d.standardize));
  line(out, "validation_size", std::to_string(d.validation_size));
  line(out, "validation_shuffle", d.validation_shuffle ? "true" : "false");
  line(out, "limit_train", std::to_string(d.limit_train));
  line(out, "limit_test", std::to_string(d.limit_test));

  const ModelConfig& m = c.model;
  out += "\n[model]\n";
  line(out, "type", quote(m.type));
  std::string hidden = "[";
  for (std::size_t i = 0; i < m.hidden.size(); ++i) hidden += (i > 0 ? ", " : "") + std::to_string(m.hidden[i]);
  line(out, "hidden", hidden + "]");
  line(out, "activation", quote(m.activation));
  line(out, "dtype", quote(m.dtype));
  if (!m.layers.empty()) {
    out += "layers = [\n";
    for (const LayerConfig& l : m.layers) {
      out += "  {type = " + quote(l.type);
      for (const std::string_view key : layer_keys(l.type)) {
        std::string value;
        if (key == "units" || key == "channels" || key == "hidden") {
          if (l.units == 0) continue;
          value = std::to_string(l.units);
        } else if (key == "kernel") {
          value = std::to_string(l.kernel);
        } else if (key == "stride") {
          if (l.stride == 0) continue;
          value = std::to_string(l.stride);
        } else if (key == "padding") {
          value = std::to_string(l.padding);
        } else if (key == "bias") {
          value = l.bias ? "true" : "false";
        } else if (key == "shape") {
          value = "[";
          for (std::size_t j = 0; j < l.shape.size(); ++j) value += (j > 0 ? ", " : "") + std::to_string(l.shape[j]);
          value += "]";
        } else if (key == "eps") {
          value = format_float(l.eps);
        } else if (key == "momentum") {
          value = format_float(l.momentum);
        } else if (key == "p") {
          value = format_float(l.p);
        } else if (key == "input_size") {
          value = std::to_string(l.input_size);
        } else if (key == "return_sequence") {
          value = l.return_sequence ? "true" : "false";
        } else if (key == "truncate") {
          value = std::to_string(l.truncate);
        } else if (key == "forget_bias") {
          value = format_float(l.forget_bias);
        }
        out.append(", ").append(key).append(" = ").append(value);
      }
      out += "},\n";
    }
    out += "]\n";
  }

  const InitConfig& i = c.init;
  out += "\n[init]\n";
  line(out, "weights", quote(i.weights));
  line(out, "bias", format_float(i.bias));
  line(out, "gain", format_float(i.gain));
  line(out, "sparse_k", std::to_string(i.sparse_k));

  const OptimizerConfig& o = c.optimizer;
  out += "\n[optimizer]\n";
  line(out, "name", quote(o.name));
  line(out, "form", quote(o.form));
  const auto optional = [&out](std::string_view key, const std::optional<double>& v) {
    if (v) {
      line(out, key, format_float(*v));
    } else {
      out.append("# ").append(key).append(" unset: the algorithm's default\n");
    }
  };
  optional("lr", o.lr);
  optional("momentum", o.momentum);
  line(out, "nesterov", o.nesterov ? "true" : "false");
  optional("rho", o.rho);
  optional("rho1", o.rho1);
  optional("rho2", o.rho2);
  optional("delta", o.delta);
  line(out, "weight_decay", format_float(o.weight_decay));
  line(out, "centered", o.centered ? "true" : "false");
  line(out, "amsgrad", o.amsgrad ? "true" : "false");

  const ScheduleConfig& s = c.schedule;
  out += "\n[schedule]\n";
  line(out, "name", quote(s.name));
  line(out, "lr_end", format_float(s.lr_end));
  line(out, "tau", std::to_string(s.tau));
  line(out, "gamma", format_float(s.gamma));
  line(out, "every", std::to_string(s.every));
  line(out, "decay", format_float(s.decay));
  line(out, "warmup", std::to_string(s.warmup));
  line(out, "factor", format_float(s.factor));
  line(out, "patience", std::to_string(s.patience));

  const ClipConfig& cl = c.clip;
  out += "\n[clip]\n";
  line(out, "global_norm", format_float(cl.global_norm));
  line(out, "value", format_float(cl.value));
  line(out, "param_norm", format_float(cl.param_norm));

  const AveragingConfig& av = c.averaging;
  out += "\n[averaging]\n";
  line(out, "kind", quote(av.kind));
  line(out, "rho", format_float(av.rho));

  const SamplerConfig& sa = c.sampler;
  out += "\n[sampler]\n";
  line(out, "kind", quote(sa.kind));
  line(out, "batch_size", sa.batch_size == 0 ? quote("full") : std::to_string(sa.batch_size));
  line(out, "drop_last", sa.drop_last ? "true" : "false");

  const EarlyStoppingConfig& e = c.early_stopping;
  out += "\n[early_stopping]\n";
  line(out, "enabled", e.enabled ? "true" : "false");
  line(out, "monitor", quote(e.monitor));
  line(out, "patience", std::to_string(e.patience));
  line(out, "min_delta", format_float(e.min_delta));

  const CheckpointConfig& ck = c.checkpoint;
  out += "\n[checkpoint]\n";
  line(out, "every_epochs", std::to_string(ck.every_epochs));
  line(out, "every_steps", std::to_string(ck.every_steps));
  line(out, "keep", std::to_string(ck.keep));

  const DivergenceConfig& dv = c.divergence;
  out += "\n[divergence]\n";
  line(out, "policy", quote(dv.policy));
  line(out, "lr_scale", format_float(dv.lr_scale));
  line(out, "max_events", std::to_string(dv.max_events));
  return out;
}

}  // namespace descent::train
