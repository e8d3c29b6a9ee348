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
#include <type_traits>
#include <utility>
#include <variant>

#include "config_schema.hpp"
#include "descent/error.hpp"
#include "descent/optim/registry.hpp"
#include "descent/optim/second_order.hpp"
#include "descent/train/second_order_loop.hpp"
#include "descent/train/thread_rule.hpp"
#include "descent/suggest.hpp"

namespace descent::train {
namespace {

constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t kInt64Min = std::numeric_limits<std::int64_t>::min();
constexpr std::uintmax_t kMaxConfigBytes = 16u << 20;

constexpr std::string_view kDivergence[] = {"stop", "skip", "rollback"};
constexpr std::string_view kFormats[] = {"mnist", "idx", "csv", "npy", "sharded"};
constexpr std::string_view kStandardize[] = {"none", "global", "per_feature"};
constexpr std::string_view kModelTypes[] = {"mlp", "sequential"};
constexpr std::string_view kActivations[] = {"relu", "tanh", "sigmoid", "identity"};
constexpr std::string_view kDtypes[] = {"f32", "f64", "bf16"};
constexpr std::string_view kWeightInits[] = {"zeros",          "constant",      "uniform",        "normal",
                                             "glorot_uniform", "glorot_normal", "fan_in_uniform", "he_normal",
                                             "he_uniform",     "orthogonal",    "sparse"};
constexpr std::string_view kForms[] = {"textbook", "pytorch"};
constexpr std::string_view kAveraging[] = {"none", "arithmetic", "exponential"};
constexpr std::string_view kSamplers[] = {"sequential", "shuffle_once", "reshuffle", "with_replacement", "stream"};
constexpr std::string_view kMonitors[] = {"val_error", "val_loss"};
constexpr std::string_view kProgress[] = {"auto", "bar", "plain", "none"};
// [second_order] (optimizer.name = a second-order method: train/second_order_loop.hpp).
constexpr std::string_view kLineSearches[] = {"default", "strong_wolfe", "armijo", "none"};
constexpr std::string_view kCgBetas[] = {"fr", "pr", "pr+"};
constexpr std::string_view kSecondOrderBatches[] = {"resample", "fixed"};
constexpr std::string_view kCurvatures[] = {"hessian", "gauss_newton"};
// optimizer.name: the first-order registry's names, then the second-order methods'.
std::span<const std::string_view> train_optimizer_names() {
  static const std::vector<std::string_view> names = [] {
    const auto first = optim::optimizer_name_list();
    std::vector<std::string_view> v(first.begin(), first.end());
    for (const optim::SecondOrderMethodEntry& e : optim::second_order_methods()) v.push_back(e.name);
    return v;
  }();
  return names;
}

using schema::Field;
using schema::Kind;

const Field* find_key(std::string_view key) {
  for (const Field& f : schema::fields())
    if (f.key == key) return &f;
  return nullptr;
}

bool is_table_name(std::string_view name) {
  const auto t = schema::tables();
  return std::find(t.begin(), t.end(), name) != t.end();
}

// Whether --set takes the value of this key as text even when it parses as another type.
bool is_text(const Field& f) { return f.kind == Kind::text || f.kind == Kind::choice || f.text; }

// "; did you mean X?" for an unknown dotted key: the closest valid key or table within edit
// distance 2, else the valid keys with the same last component (a key in the wrong table).
std::string key_suggestion(std::string_view key) {
  std::vector<std::string_view> names(schema::tables().begin(), schema::tables().end());
  for (const Field& k : schema::fields()) names.push_back(k.key);
  const std::string_view best = closest(key, names);
  if (!best.empty()) return "; did you mean " + std::string(best) + "?";
  const std::string_view leaf = key.substr(key.rfind('.') + 1);
  std::vector<std::string_view> same_leaf;
  for (const Field& k : schema::fields())
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

}  // namespace

namespace schema {

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
    for (const Field& k : schema::fields())
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

  // model.layers: read by the layer registry (nn/model_config.hpp), which checks each layer.
  void layers(std::vector<LayerConfig>& out) {
    static constexpr std::string_view kKey = "model.layers";
    const toml::node* n = node(kKey);
    if (n == nullptr) return;
    out = nn::read_layers(value(*n), kKey);
  }

 private:
  // A node as the layer registry reads it: its value, what it is and where it was written.
  nn::ConfigValue value(const toml::node& n) const {
    using Type = nn::ConfigValue::Type;
    nn::ConfigValue v;
    v.described = describe(n);
    v.where = where(&n);
    if (const auto* i = n.as_integer()) {
      v.type = Type::integer;
      v.integer = i->get();
    } else if (const auto* f = n.as_floating_point()) {
      v.type = Type::floating;
      v.floating = f->get();
    } else if (const auto* b = n.as_boolean()) {
      v.type = Type::boolean;
      v.boolean = b->get();
    } else if (const auto* s = n.as_string()) {
      v.type = Type::string;
      v.string = s->get();
    } else if (const auto* a = n.as_array()) {
      v.type = Type::array;
      for (const toml::node& e : *a) v.items.push_back(value(e));
    } else if (const auto* t = n.as_table()) {
      v.type = Type::table;
      for (auto&& [k, e] : *t) v.entries.push_back({std::string(k.str()), value(e)});
    }
    return v;
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

}  // namespace schema

namespace {

using schema::Reader;

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
                      std::string(std::find_if(schema::fields().begin(), schema::fields().end(), [&](const Field& k) {
                                    return k.key.starts_with(key + ".");
                                  })->key.substr(key.size() + 1)) +
                      "=...");
  const Field* spec = find_key(key);
  if (spec == nullptr) throw ConfigError(at + one_line(key, 64) + ": unknown key" + key_suggestion(key));

  const std::string origin = "--set " + arg;
  toml::table parsed;
  bool literal = true;
  try {
    parsed = toml::parse("v = " + text, std::string_view(origin));
    const toml::node* v = parsed.get("v");
    literal = parsed.size() != 1 || v == nullptr || (is_text(*spec) && !v->is_string());
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

// ---- the schema ------------------------------------------------------------------------

template <auto M>
auto& top(TrainConfig& c) {
  return c.*M;
}
template <auto S, auto M>
auto& in(TrainConfig& c) {
  return (c.*S).*M;
}

template <const auto& Array>
std::span<const std::string_view> names() {
  return Array;
}

Field base(std::string_view key, Kind kind, schema::Access at, std::string_view example, std::string_view doc) {
  Field f;
  f.key = key;
  f.kind = kind;
  f.access = at;
  f.example = example;
  f.doc = doc;
  return f;
}
// A key with its own reader and writer: `type` and `default_doc` for the docs ("" : the
// default config's value), `text`: --set takes its value as text.
Field custom(std::string_view key, std::string_view type, bool text, void (*read)(Reader&, TrainConfig&),
             std::string (*value)(const TrainConfig&), std::string_view example, std::string_view doc,
             std::string_view default_doc = "") {
  Field f = base(key, Kind::custom, std::monostate(), example, doc);
  f.type = type;
  f.text = text;
  f.read = read;
  f.value = value;
  f.default_doc = default_doc;
  return f;
}
Field flag(std::string_view key, bool& (*at)(TrainConfig&), std::string_view example, std::string_view doc) {
  return base(key, Kind::boolean, at, example, doc);
}
Field text(std::string_view key, std::string& (*at)(TrainConfig&), bool non_empty, std::string_view example,
           std::string_view doc) {
  Field f = base(key, Kind::text, at, example, doc);
  f.non_empty = non_empty;
  return f;
}
Field choice(std::string_view key, std::string& (*at)(TrainConfig&), std::span<const std::string_view> (*names)(),
             std::string_view example, std::string_view doc) {
  Field f = base(key, Kind::choice, at, example, doc);
  f.choices = names;
  return f;
}
Field integer(std::string_view key, schema::Access at, std::int64_t lo, std::int64_t hi, std::string_view example,
              std::string_view doc) {
  Field f = base(key, Kind::integer, at, example, doc);
  f.lo = lo;
  f.hi = hi;
  return f;
}
Field integer(std::string_view key, int& (*at)(TrainConfig&), std::int64_t lo, std::int64_t hi, std::string_view example,
              std::string_view doc) {
  return integer(key, schema::Access(at), lo, hi, example, doc);
}
Field integer(std::string_view key, std::int64_t& (*at)(TrainConfig&), std::int64_t lo, std::int64_t hi,
              std::string_view example, std::string_view doc) {
  return integer(key, schema::Access(at), lo, hi, example, doc);
}
Field number(std::string_view key, schema::Access at, Kind kind, bool (*ok)(double), std::string_view expected,
             std::string_view example, std::string_view doc) {
  Field f = base(key, kind, at, example, doc);
  f.ok = ok;
  f.expected = expected;
  return f;
}
Field number(std::string_view key, double& (*at)(TrainConfig&), bool (*ok)(double), std::string_view expected,
             std::string_view example, std::string_view doc) {
  return number(key, schema::Access(at), Kind::number, ok, expected, example, doc);
}
Field number(std::string_view key, std::optional<double>& (*at)(TrainConfig&), bool (*ok)(double),
             std::string_view expected, std::string_view example, std::string_view doc) {
  return number(key, schema::Access(at), Kind::optional_number, ok, expected, example, doc);
}

bool any(double) { return true; }
bool positive(double v) { return v > 0; }
bool non_negative(double v) { return v >= 0; }
bool unit(double v) { return v >= 0 && v < 1; }             // [0, 1)
bool open_unit(double v) { return v > 0 && v < 1; }         // (0, 1)
bool half_open_unit(double v) { return v > 0 && v <= 1; }   // (0, 1]

void read_name(Reader& r, TrainConfig& c) {
  if (const toml::node* n = r.string("name", c.name, true);
      n != nullptr && (c.name.find('/') != std::string::npos || c.name == "." || c.name == ".."))
    r.fail_type("name", *n, "a folder name (not empty, no '/', not \".\" or \"..\")");
}
std::string seed_value(const TrainConfig& c) {
  const bool small_seed = c.seed <= static_cast<std::uint64_t>(kInt64Max);
  return small_seed ? std::to_string(c.seed) : quote(std::to_string(c.seed));
}
std::string batch_size_value(const TrainConfig& c) {
  return c.sampler.batch_size == 0 ? quote("full") : std::to_string(c.sampler.batch_size);
}
std::string hidden_value(const TrainConfig& c) {
  const ModelConfig& m = c.model;
  std::string hidden = "[";
  for (std::size_t i = 0; i < m.hidden.size(); ++i) hidden += (i > 0 ? ", " : "") + std::to_string(m.hidden[i]);
  return hidden + "]";
}
std::string layers_value(const TrainConfig& c);

}  // namespace

namespace schema {

std::span<const Field> fields() {
  using T = TrainConfig;
  using D = DataConfig;
  using M = ModelConfig;
  using I = InitConfig;
  using O = OptimizerConfig;
  using S = ScheduleConfig;
  using Cl = ClipConfig;
  using Av = AveragingConfig;
  using Sa = SamplerConfig;
  using E = EarlyStoppingConfig;
  using Ck = CheckpointConfig;
  using Sn = SnapshotsConfig;
  using Dv = DivergenceConfig;
  using Dg = DiagnosticsConfig;
  using Tb = TensorBoardConfig;
  using So = SecondOrderConfig;
  static const Field kFields[] = {
      custom("name", "string", true, read_name, [](const TrainConfig& c) { return quote(c.name); }, "\"fashion-adam\"",
             "Name of the run folder `<out_dir>/<name>`. Must not be empty, contain `/`, or be `.` or `..`."),
      custom("seed", "integer", false, [](Reader& r, TrainConfig& c) { r.seed(c.seed); }, seed_value, "42",
             "Seeds everything random in the run: initialization, the validation shuffle and the sampler. It is a value "
             "in [0, 2^63-1], or a string of decimal digits for a seed up to 2^64-1 (`seed = \"18446744073709551615\"`)."),
      integer("threads", &top<&T::threads>, 0, 1024, "2", "Worker threads, in [0, 1024]. 0 means all cores (metrics.jsonl's header records how many were used)."),
      choice("thread_rule", &top<&T::thread_rule>, thread_rule_names, "\"parallel\"",
             "Which matrix products run on one thread rather than on all `threads`: `auto` times the run's first "
             "steps (about 80) under each rule, alternating, and keeps the fastest for the rest of the run (a "
             "`thread_rule` record in metrics.jsonl); `small_serial` (products under 2^23 multiply-adds on one "
             "thread: the built-in rule), `tiny_serial` (under 2^20) or `parallel` (every product split) fix it. "
             "`auto` keeps `small_serial` without timing anything with 1 thread, with `deterministic`, under mpirun, "
             "for second-order methods and in runs under 10 times the timed steps. A split can change a product's rounding: with `auto` two "
             "runs of one config agree only to rounding when they choose different rules; a fixed rule repeats bit "
             "for bit (docs/performance.md, session 11)."),
      flag("flush_denormals", &top<&T::flush_denormals>, "false",
           "Denormal floats (magnitude below 2^-126) read and written as zero on the run's threads (the CPU's "
           "flush-to-zero and denormals-are-zero modes, as PyTorch's `torch.set_flush_denormal(True)`). On by "
           "default: on Intel CPUs every operation on a denormal costs about a hundred cycles, and Adam's second "
           "moments drift into that range (its update pass ran 1.4x slower after a few epochs, docs/performance.md, "
           "session 11). `false` keeps IEEE gradual underflow."),
      flag("deterministic", &top<&T::deterministic>, "true",
           "Bit-identical results with any thread count and any number of MPI ranks (docs/distributed.md): the "
           "gradient is summed over fixed blocks of `deterministic_block` examples in a fixed order, and the matrix "
           "products run in fixed tiles. Needs a power-of-two number of ranks and no batch normalization or dropout."),
      integer("deterministic_block", &top<&T::deterministic_block>, 1, 1 << 20, "32",
              "With `deterministic`: the examples per block of the batch, in [1, 2^20]. Results depend on it (not on "
              "threads or ranks)."),
      integer("allreduce_bucket_kb", &top<&T::allreduce_bucket_kb>, 0, 1 << 20, "256",
              "Under mpirun, without `deterministic`: 0 sums the gradient in one all-reduce after the backward pass; "
              "N > 0 starts a non-blocking all-reduce of each bucket of about N KiB of gradient as soon as the "
              "backward pass has finished it (the last layers first), overlapping communication with the rest of the "
              "pass (docs/distributed.md). In [0, 2^20]; the result is the same bit for bit with 2 ranks."),
      integer("epochs", &top<&T::epochs>, 1, kInt64Max, "30",
              "Maximum number of passes over the training split, >= 1. Early stopping may end the run sooner."),
      integer("eval_every_steps", &top<&T::eval_every_steps>, 0, kInt64Max, "500",
              "Also evaluate on the training and validation splits every this many steps, >= 0 (an `eval` record in "
              "metrics.jsonl and a line on screen). 0 means only at the end of each epoch."),
      integer("log_every_steps", &top<&T::log_every_steps>, 1, kInt64Max, "10",
              "Write a `step` record to metrics.jsonl every this many updates, >= 1: the updates 0, N, 2N, ... (each "
              "record holds that update's own figures). The epoch records' means (`grad_norm_mean`) still cover every "
              "update. Keeps batch-1 runs' metrics.jsonl small."),
      text("out_dir", &top<&T::out_dir>, true, "\"experiments\"", "Parent folder of the run folder. Must not be empty."),
      choice("progress", &top<&T::progress>, names<kProgress>, "\"plain\"",
             "What training shows: `auto` (a bar on a terminal, plain lines otherwise), `bar`, `plain` (one line per "
             "evaluation on stderr) or `none`: nothing at all, on stdout or stderr, but warnings and errors. The other "
             "modes end with the summary line and the report's path on stdout. docs/progress.md shows each."),

      choice("data.format", &in<&T::data, &D::format>, names<kFormats>, "\"idx\"",
             "`mnist`: `dir` holds the four IDX files of MNIST or Fashion-MNIST. `idx`, `npy`: the four files are named "
             "by the path keys. `csv`: two CSV files, each with the label in a column. `sharded`: `dir` holds a shard set "
             "written by `descent shard`, streamed with bounded memory (docs/data.md; `standardize` must be `none`, the "
             "sampler `stream`, `sequential` or `shuffle_once`; `validation_size` and the limits are the shard set's)."),
      text("data.dir", &in<&T::data, &D::dir>, false, "\"\"",
           "The MNIST directory (format `mnist`) or the shard set's directory (format `sharded`); required there."),
      text("data.train_features", &in<&T::data, &D::train_features>, false, "\"/data/fashion/train-images-idx3-ubyte\"",
           "`idx`/`npy`: the training features file. `csv`: the training CSV file. Required for these formats."),
      text("data.train_labels", &in<&T::data, &D::train_labels>, false, "\"/data/fashion/train-labels-idx1-ubyte\"",
           "`idx`/`npy`: the training labels file (required). Unused by `csv`."),
      text("data.test_features", &in<&T::data, &D::test_features>, false, "\"/data/fashion/t10k-images-idx3-ubyte\"",
           "`idx`/`npy`: the test features file. `csv`: the test CSV file. Required for these formats."),
      text("data.test_labels", &in<&T::data, &D::test_labels>, false, "\"/data/fashion/t10k-labels-idx1-ubyte\"",
           "`idx`/`npy`: the test labels file (required). Unused by `csv`."),
      integer("data.csv_label_column", &in<&T::data, &D::csv_label_column>, INT_MIN, INT_MAX, "-1",
              "`csv` only: the 0-based column of the label. A negative value counts from the end (-1 is the last column)."),
      flag("data.csv_header", &in<&T::data, &D::csv_header>, "true", "`csv` only: the first row is a header and is skipped."),
      number("data.scale", &in<&T::data, &D::scale>, positive, "a finite number > 0", "0.5",
             "The raw features are multiplied by this, > 0. The default, 1/255, maps bytes to [0, 1]."),
      choice("data.standardize", &in<&T::data, &D::standardize>, names<kStandardize>, "\"per_feature\"",
             "`none`; `global` (subtract the mean and divide by the standard deviation of all training features); "
             "`per_feature` (the same for each feature on its own). The statistics come from the training split only."),
      integer("data.validation_size", &in<&T::data, &D::validation_size>, 0, kInt64Max, "5000",
              "Examples carved from the end of the training file for validation, >= 0."),
      flag("data.validation_shuffle", &in<&T::data, &D::validation_shuffle>, "true",
           "Shuffle the training file (seeded by `seed`) before carving the validation split."),
      integer("data.limit_train", &in<&T::data, &D::limit_train>, 0, kInt64Max, "20000",
              "Keep only the first N training examples, >= 0. 0 means all. Meant for quick runs and tests."),
      integer("data.limit_test", &in<&T::data, &D::limit_test>, 0, kInt64Max, "5000",
              "Keep only the first N test examples, >= 0. 0 means all."),
      integer("data.shard_groups", &in<&T::data, &D::shard_groups>, 1, 65536, "4",
              "`sharded` only: the training shards in G interleaved groups (group g: shards g, g + G, g + 2G, ...), "
              "each walked in order; every batch takes `batch_size` / G examples of each group, group 0's first, so "
              "`batch_size` must be a multiple of G and G at most the number of training shards. Under `mpirun -np P` "
              "rank r reads only groups [r G / P, (r+1) G / P): P must divide G. The batches depend on G, not on P "
              "(docs/data.md, \"Shard groups\"); with `deterministic` G must be a power of two."),

      choice("model.type", &in<&T::model, &M::type>, names<kModelTypes>, "",
             "`mlp`: a multilayer perceptron built from `hidden` and `activation`. `sequential`: the modules of "
             "`layers`, in order."),
      custom("model.hidden", "array of integers", false, [](Reader& r, TrainConfig& c) { r.hidden(c.model.hidden); },
             hidden_value, "[512, 128]", "`mlp`: widths of the hidden layers, each >= 1. `[]` gives softmax regression."),
      choice("model.activation", &in<&T::model, &M::activation>, names<kActivations>, "\"tanh\"",
             "`mlp`: hidden-layer activation: `relu`, `tanh`, `sigmoid` or `identity`."),
      choice("model.dtype", &in<&T::model, &M::dtype>, names<kDtypes>, "\"f64\"",
             "Parameter and activation precision: `f32`, `f64`, or `bf16`: mixed precision, the matrix products of "
             "the dense layers with bf16 inputs and float32 accumulation, everything else float32 (weights, "
             "gradients, optimizer state, loss, checkpoints). `bf16` needs a CPU with AVX512-BF16 or AMX-BF16 "
             "unless `model.bf16_emulate` is set."),
      flag("model.bf16_emulate", &in<&T::model, &M::bf16_emulate>, "true",
           "`bf16` on a CPU without bf16 instructions: run anyway, the products emulated (inputs rounded to bf16, "
           "products in float32; slower than `f32`). Without it such a CPU is refused."),
      custom("model.layers", "array of tables", false, [](Reader& r, TrainConfig& c) { r.layers(c.model.layers); },
             layers_value, "", "`sequential` only, at least one: see below.", "`[]`"),

      choice("init.weights", &in<&T::init, &I::weights>, names<kWeightInits>, "\"glorot_uniform\"",
             "The weight scheme: `zeros`, `constant`, `uniform`, `normal`, `glorot_uniform`, `glorot_normal`, "
             "`fan_in_uniform`, `he_normal`, `he_uniform`, `orthogonal` or `sparse`."),
      number("init.bias", &in<&T::init, &I::bias>, any, "a finite number", "0.01", "Every bias starts at this value."),
      number("init.gain", &in<&T::init, &I::gain>, positive, "a finite number > 0", "1.5",
             "Scale factor of the `glorot_*`, `he_*` and `orthogonal` schemes, > 0."),
      number("init.output_gain", &in<&T::init, &I::output_gain>, non_negative, "a finite number >= 0", "0.1",
             "The output layer's weights (the model's last weight matrix) are multiplied by this once drawn, >= 0; the "
             "other layers' draws are unchanged. 0 starts the output at zero: every class equally likely, loss ln K "
             "(docs/initialization.md)."),
      integer("init.sparse_k", &in<&T::init, &I::sparse_k>, 1, kInt64Max, "10",
              "`sparse`: non-zero incoming weights per unit, >= 1. It must not exceed a layer's fan-in, which is checked "
              "when the model is built."),

      choice("optimizer.name", &in<&T::optimizer, &O::name>, train_optimizer_names, "\"adam\"",
             "The algorithm: one of the optimizers listed below, or a second-order method (`lbfgs`, `damped_newton`, "
             "`cg`, `bfgs`, `newton`, `newton_cg`, `saddle_free`) set up by `[second_order]`."),
      choice("optimizer.form", &in<&T::optimizer, &O::form>, names<kForms>, "\"pytorch\"",
             "`textbook` (the book's equations) or `pytorch` (torch.optim's: learning rate outside the velocity, its "
             "Nesterov reformulation, delta outside the root)."),
      number("optimizer.lr", &in<&T::optimizer, &O::lr>, positive, "a finite number > 0", "0.002",
             "The learning rate epsilon (its start value under a schedule), > 0. Unset: the algorithm's default (the "
             "list below)."),
      number("optimizer.momentum", &in<&T::optimizer, &O::momentum>, unit, "a number in [0, 1)", "0.5",
             "Momentum coefficient alpha, in [0, 1). Unset: 0.9 for `momentum`, `nesterov`, `rmsprop_nesterov`, 0 "
             "otherwise. `sgd` refuses a momentum > 0."),
      flag("optimizer.nesterov", &in<&T::optimizer, &O::nesterov>, "",
           "With `name = \"momentum\"`: use Nesterov momentum (the same as `name = \"nesterov\"`). Ignored by "
           "the others."),
      number("optimizer.rho", &in<&T::optimizer, &O::rho>, unit, "a number in [0, 1)", "0.95",
             "Decay rate of the squared-gradient average (`rmsprop`, `rmsprop_nesterov`, `adadelta`), in [0, 1)."),
      number("optimizer.rho1", &in<&T::optimizer, &O::rho1>, unit, "a number in [0, 1)", "0.85",
             "Adam's first-moment decay, in [0, 1). Unset: 0.9."),
      number("optimizer.rho2", &in<&T::optimizer, &O::rho2>, unit, "a number in [0, 1)", "0.99",
             "Adam's second-moment decay, in [0, 1). Unset: 0.999."),
      number("optimizer.delta", &in<&T::optimizer, &O::delta>, positive, "a finite number > 0", "1e-07",
             "The small constant for numerical stability, > 0. Unset: the algorithm's default (the list below)."),
      number("optimizer.weight_decay", &in<&T::optimizer, &O::weight_decay>, non_negative, "a finite number >= 0",
             "0.0001",
             "L2 weight decay coefficient, >= 0 (added to the gradient). `adamw` applies it decoupled from the "
             "gradient (default 0.01 there)."),
      flag("optimizer.centered", &in<&T::optimizer, &O::centered>, "",
           "`rmsprop`: PyTorch's centered variant (divides by an estimate of the variance). Refused by the others."),
      flag("optimizer.amsgrad", &in<&T::optimizer, &O::amsgrad>, "true",
           "`adam`/`adamw`: the AMSGrad maximum of the second moment. Refused by the others."),

      choice("schedule.name", &in<&T::schedule, &S::name>, optim::schedule_name_list, "\"cosine\"",
             "The schedule: one of those listed below."),
      number("schedule.lr_end", &in<&T::schedule, &S::lr_end>, any, "a finite number (< 0: lr / 100)", "0.00001",
             "`linear`: eps_tau; a negative value means lr / 100, the textbook's rule of thumb. `cosine`, `plateau`: "
             "the floor (negative: 0)."),
      integer("schedule.tau", &in<&T::schedule, &S::tau>, 0, kInt64Max, "10000",
              "`linear`, `cosine`: the step at which the decay ends, >= 0. 0 means the run's total number of steps "
              "(epochs x steps per epoch)."),
      number("schedule.gamma", &in<&T::schedule, &S::gamma>, half_open_unit, "a number in (0, 1]", "0.5",
             "`step`, `exponential`: the factor, in (0, 1]."),
      integer("schedule.every", &in<&T::schedule, &S::every>, 1, kInt64Max, "2000", "`step`: updates between drops, >= 1."),
      number("schedule.decay", &in<&T::schedule, &S::decay>, non_negative, "a finite number >= 0", "0.01",
             "`inverse_time`: the decay per update, >= 0."),
      integer("schedule.warmup", &in<&T::schedule, &S::warmup>, 0, kInt64Max, "500", "`cosine`: warmup updates, >= 0."),
      number("schedule.factor", &in<&T::schedule, &S::factor>, open_unit, "a number in (0, 1)", "0.5",
             "`plateau`: the cut, in (0, 1)."),
      integer("schedule.patience", &in<&T::schedule, &S::patience>, 0, kInt64Max, "3",
              "`plateau`: epochs without improvement before a cut, >= 0 (the cut comes at the next one)."),

      number("clip.global_norm", &in<&T::clip, &Cl::global_norm>, non_negative, "a finite number >= 0 (0: off)", "5.0",
             "Rescale the whole gradient to norm c when its norm exceeds c."),
      number("clip.value", &in<&T::clip, &Cl::value>, non_negative, "a finite number >= 0 (0: off)", "1.0",
             "Clamp every component to [-c, c]."),
      number("clip.param_norm", &in<&T::clip, &Cl::param_norm>, non_negative, "a finite number >= 0 (0: off)", "2.0",
             "Rescale each parameter tensor's gradient to norm c when its norm exceeds c."),

      choice("averaging.kind", &in<&T::averaging, &Av::kind>, names<kAveraging>, "\"exponential\"",
             "`none`, `arithmetic` (the running mean of all iterates) or `exponential` (a moving average)."),
      number("averaging.rho", &in<&T::averaging, &Av::rho>, unit, "a number in [0, 1)", "0.99",
             "`exponential`: theta_avg <- rho theta_avg + (1 - rho) theta, in [0, 1)."),

      choice("sampler.kind", &in<&T::sampler, &Sa::kind>, names<kSamplers>, "\"with_replacement\"",
             "`sequential`, `shuffle_once`, `reshuffle`, `with_replacement` or `stream`."),
      custom("sampler.batch_size", "integer or `\"full\"`", false,
             [](Reader& r, TrainConfig& c) { r.batch_size(c.sampler.batch_size); }, batch_size_value, "64",
             "Examples per minibatch, >= 0. 1 is online learning. 0 or `\"full\"` is the whole training split (batch "
             "gradient descent)."),
      flag("sampler.drop_last", &in<&T::sampler, &Sa::drop_last>, "true", "Drop the last, partial minibatch of each epoch."),

      flag("early_stopping.enabled", &in<&T::early_stopping, &E::enabled>, "false",
           "Stop early. If false, all `epochs` run, but the best parameters are still the ones kept."),
      choice("early_stopping.monitor", &in<&T::early_stopping, &E::monitor>, names<kMonitors>, "\"val_loss\"",
             "The validation metric: `val_error` (0-1 error) or `val_loss` (the surrogate, cross-entropy)."),
      integer("early_stopping.patience", &in<&T::early_stopping, &E::patience>, 1, kInt64Max, "8",
              "Epochs without improvement before stopping, >= 1."),
      number("early_stopping.min_delta", &in<&T::early_stopping, &E::min_delta>, non_negative, "a finite number >= 0",
             "0.001", "The smallest decrease of the metric that counts as an improvement, >= 0."),

      integer("checkpoint.every_epochs", &in<&T::checkpoint, &Ck::every_epochs>, 0, kInt64Max, "2",
              "Write one after every N epochs, >= 0 (0: not by epoch)."),
      integer("checkpoint.every_steps", &in<&T::checkpoint, &Ck::every_steps>, 0, kInt64Max, "1000",
              "Write one after every N updates, >= 0 (0: not by step)."),
      integer("checkpoint.keep", &in<&T::checkpoint, &Ck::keep>, 1, 1000000, "5",
              "Keep the newest K, in [1, 1000000]; older ones are removed."),

      integer("snapshots.every_steps", &in<&T::snapshots, &Sn::every_steps>, 0, kInt64Max, "100",
              "Save the weights after every N updates as `snapshots/step-<k>.safetensors`, >= 0 (0: none; "
              "`init.safetensors` is written in every run)."),

      choice("divergence.policy", &in<&T::divergence, &Dv::policy>, names<kDivergence>, "\"rollback\"",
             "`stop`: end the run with an error naming the step and the first parameter tensor whose gradient is not "
             "finite. `skip`: drop the batch and go on. `rollback`: return to the newest checkpoint and multiply the "
             "learning rate by `lr_scale`."),
      number("divergence.lr_scale", &in<&T::divergence, &Dv::lr_scale>, open_unit, "a number in (0, 1)", "0.25",
             "`rollback`: the factor, in (0, 1). It compounds over rollbacks and multiplies every rate of the schedule."),
      integer("divergence.max_events", &in<&T::divergence, &Dv::max_events>, 1, kInt64Max, "3",
              "`skip` and `rollback`: the run stops with the error after this many divergences, >= 1."),

      integer("diagnostics.curvature_every", &in<&T::diagnostics, &Dg::curvature_every>, 0, kInt64Max, "10",
              "The curvature monitor (section 8.2.1) every N updates, >= 0 (0: off): g'g, g'Hg (one exact "
              "Hessian-vector product through the step's tape), eq. 8.10's predicted change and the ratio "
              "lr g'Hg / (2 g'g), on the step's minibatch; a `curvature` record in metrics.jsonl."),
      flag("diagnostics.curvature_update", &in<&T::diagnostics, &Dg::curvature_update>, "true",
           "The curvature monitor also predicts the change of the update the optimizer actually made, "
           "d'g + d'Hd / 2 (one more Hessian-vector product): differs from eq. 8.10 under momentum, Adam, clipping."),
      flag("diagnostics.observed_change", &in<&T::diagnostics, &Dg::observed_change>, "false",
           "The curvature monitor measures the minibatch's loss after the update (one more forward pass, in "
           "evaluation mode) to set against the predicted change."),
      integer("diagnostics.lambda_max_every", &in<&T::diagnostics, &Dg::lambda_max_every>, 0, kInt64Max, "100",
              "lambda_max of the minibatch Hessian every N updates, >= 0 (0: off): `lanczos_steps` Lanczos steps "
              "warm-started from the last Ritz vector; written into that step's `curvature` record."),
      integer("diagnostics.lanczos_steps", &in<&T::diagnostics, &Dg::lanczos_steps>, 1, 100, "8",
              "Lanczos steps (Hessian-vector products) per lambda_max, in [1, 100]."),
      integer("diagnostics.layers_every", &in<&T::diagnostics, &Dg::layers_every>, 0, kInt64Max, "50",
              "Per-parameter gradient and weight norms every N updates, >= 0 (0: off); a `layers` record."),
      number("diagnostics.cliff_factor", &in<&T::diagnostics, &Dg::cliff_factor>, non_negative,
             "a finite number >= 0 (0: off)", "5.0",
             "Cliff detection (section 8.2.4): a step whose gradient norm exceeds this multiple of the running "
             "median of the last `cliff_window` norms gets a `cliff` record; the final record counts them."),
      integer("diagnostics.cliff_window", &in<&T::diagnostics, &Dg::cliff_window>, 3, 100000, "100",
              "The number of recent gradient norms whose median a cliff is measured against, in [3, 100000]. "
              "Detection starts once the window is full."),
      integer("diagnostics.recurrent_every_epochs", &in<&T::diagnostics, &Dg::recurrent_every_epochs>, 0, kInt64Max,
              "1",
              "Recurrent models (section 8.2.5), every N epochs, >= 0 (0: off): eigenvalues and singular values of "
              "each recurrent matrix (per gate), the norms of dL/dh_t and their growth rate per time step; a `recurrent` record."),
      integer("diagnostics.recurrent_examples", &in<&T::diagnostics, &Dg::recurrent_examples>, 1, kInt64Max, "500",
              "The recurrent monitor's norms of dL/dh_t are measured on the first N training examples, >= 1."),
      flag("tensorboard.enabled", &in<&T::tensorboard, &Tb::enabled>, "false",
           "Write TensorBoard event files into the run folder's `tb/`: every scalar of metrics.jsonl "
           "(docs/tensorboard.md)."),
      integer("tensorboard.histogram_every_steps", &in<&T::tensorboard, &Tb::histogram_every_steps>, 0, kInt64Max,
              "100",
              "Histograms of each parameter tensor and of its gradient every N updates (at steps 0, N, 2N, ...), "
              ">= 0 (0: none)."),

      choice("second_order.line_search", &in<&T::second_order, &So::line_search>, names<kLineSearches>,
             "\"strong_wolfe\"",
             "Second-order methods (optimizer.name = `lbfgs`, `damped_newton`, ...): the line search. `default`: none "
             "for `newton`, `damped_newton` and `saddle_free`, `strong_wolfe` for the others; `armijo` backtracks."),
      number("second_order.c1", &in<&T::second_order, &So::c1>, open_unit, "a number in (0, 1)", "0.0001",
             "Sufficient-decrease constant of the line search, 0 < c1 < c2 (default 1e-4)."),
      number("second_order.c2", &in<&T::second_order, &So::c2>, open_unit, "a number in (0, 1)", "0.9",
             "Curvature constant of the strong Wolfe conditions, c1 < c2 < 1 (default 0.9; `cg`: 0.1)."),
      integer("second_order.max_evaluations", &in<&T::second_order, &So::max_evaluations>, 1, 100000, "30",
              "Evaluations of the loss and gradient per line search at most, in [1, 100000]."),
      number("second_order.step", &in<&T::second_order, &So::step>, positive, "a finite number > 0", "0.5",
             "The step length without a line search; the first trial step with one (before any history). A "
             "`divergence.policy = \"rollback\"` multiplies it by `divergence.lr_scale`."),
      integer("second_order.history", &in<&T::second_order, &So::history>, 1, 100000, "20",
              "`lbfgs`: the number m of (s, y) pairs kept, in [1, 100000]."),
      number("second_order.damping", &in<&T::second_order, &So::damping>, non_negative, "a finite number >= 0", "1.0",
             "lambda of (H + lambda I) d = -g, >= 0: `damped_newton` starts there (default 1), `saddle_free` keeps it "
             "(default 1e-3)."),
      flag("second_order.adapt_damping", &in<&T::second_order, &So::adapt_damping>, "false",
           "`damped_newton`: adjust lambda by the Levenberg-Marquardt rule of Martens (2010) after every step."),
      integer("second_order.cg_iterations", &in<&T::second_order, &So::cg_iterations>, 1, 1000000, "100",
              "`damped_newton`, `newton_cg`: linear conjugate-gradient steps (Hessian-vector products) per "
              "iteration at most, >= 1."),
      integer("second_order.krylov", &in<&T::second_order, &So::krylov>, 1, 100000, "30",
              "`saddle_free`: Lanczos steps (the Krylov subspace's dimension), >= 1."),
      choice("second_order.beta", &in<&T::second_order, &So::beta>, names<kCgBetas>, "\"fr\"",
             "`cg`: Fletcher-Reeves (`fr`), Polak-Ribiere (`pr`) or `pr+` (max(beta, 0))."),
      integer("second_order.restart", &in<&T::second_order, &So::restart>, kInt64Min, kInt64Max, "100",
              "`cg`: restart with d = -g every N iterations (0: every dim; < 0: never)."),
      choice("second_order.batch", &in<&T::second_order, &So::batch>, names<kSecondOrderBatches>, "\"fixed\"",
             "The objective of each step when `sampler.batch_size` is a number: `resample` (the sampler's next batch; "
             "the method's history is kept, the loss and gradient are evaluated again on the new batch) or `fixed` "
             "(the first batch_size training examples throughout). With `batch_size = \"full\"` every step sees all "
             "training examples."),
      choice("second_order.curvature", &in<&T::second_order, &So::curvature>, names<kCurvatures>, "\"gauss_newton\"",
             "The curvature the methods that use it multiply by (`damped_newton`, `newton_cg`, `newton`, "
             "`saddle_free`): `hessian` (exact Hv) or `gauss_newton` (G v, G = J^T H_L J: positive semi-definite, so "
             "conjugate gradient never meets negative curvature; Martens 2010). Other methods: `hessian` only."),
      flag("second_order.reuse_gradient", &in<&T::second_order, &So::reuse_gradient>, "false",
           "With `batch = \"resample\"`: each step's loss, gradient and recorded forward pass at the new batch are "
           "the trainer's own pass (one pass fewer per step, the same numbers), when the batch fits one chunk of "
           "1,024 examples and the run is not deterministic or distributed; `false` records a pass of its own."),
  };
  return kFields;
}

std::span<const std::string_view> tables() {
  static const std::vector<std::string_view> kTables = [] {
    std::vector<std::string_view> out;
    for (const Field& f : fields()) {
      const std::string_view t = table_of(f.key);
      if (!t.empty() && std::find(out.begin(), out.end(), t) == out.end()) out.push_back(t);
    }
    return out;
  }();
  return kTables;
}

std::string_view table_of(std::string_view key) {
  const auto dot = key.find('.');
  return dot == std::string_view::npos ? std::string_view() : key.substr(0, dot);
}
std::string_view leaf_of(std::string_view key) { return key.substr(key.find('.') + 1); }

std::string value_text(const Field& f, const TrainConfig& config) {
  // The accessors give mutable references; nothing is written through them here.
  auto& c = const_cast<TrainConfig&>(config);
  switch (f.kind) {
    case Kind::boolean: return std::get<bool& (*)(TrainConfig&)>(f.access)(c) ? "true" : "false";
    case Kind::text:
    case Kind::choice: return quote(std::get<std::string& (*)(TrainConfig&)>(f.access)(c));
    case Kind::integer:
      if (const auto* at = std::get_if<int& (*)(TrainConfig&)>(&f.access)) return std::to_string((*at)(c));
      return std::to_string(std::get<std::int64_t& (*)(TrainConfig&)>(f.access)(c));
    case Kind::number: return format_float(std::get<double& (*)(TrainConfig&)>(f.access)(c));
    case Kind::optional_number: {
      const std::optional<double>& v = std::get<std::optional<double>& (*)(TrainConfig&)>(f.access)(c);
      return v ? format_float(*v) : std::string();
    }
    case Kind::custom: return f.value(config);
  }
  return {};
}

std::string_view type_name(const Field& f) {
  switch (f.kind) {
    case Kind::boolean: return "boolean";
    case Kind::text:
    case Kind::choice: return "string";
    case Kind::integer: return "integer";
    case Kind::number:
    case Kind::optional_number: return "float";
    case Kind::custom: break;
  }
  return f.type;
}

}  // namespace schema

namespace {

void read_field(Reader& r, TrainConfig& c, const Field& f) {
  switch (f.kind) {
    case Kind::boolean: r.boolean(f.key, std::get<bool& (*)(TrainConfig&)>(f.access)(c)); break;
    case Kind::text: r.string(f.key, std::get<std::string& (*)(TrainConfig&)>(f.access)(c), f.non_empty); break;
    case Kind::choice: r.choice(f.key, std::get<std::string& (*)(TrainConfig&)>(f.access)(c), f.choices()); break;
    case Kind::integer:
      if (const auto* at = std::get_if<int& (*)(TrainConfig&)>(&f.access)) {
        r.integer(f.key, (*at)(c), f.lo, f.hi);
      } else {
        r.integer(f.key, std::get<std::int64_t& (*)(TrainConfig&)>(f.access)(c), f.lo, f.hi);
      }
      break;
    case Kind::number: r.number(f.key, std::get<double& (*)(TrainConfig&)>(f.access)(c), f.ok, f.expected); break;
    case Kind::optional_number:
      r.number(f.key, std::get<std::optional<double>& (*)(TrainConfig&)>(f.access)(c), f.ok, f.expected);
      break;
    case Kind::custom: f.read(r, c); break;
  }
}

void read_fields(Reader& r, TrainConfig& c) {
  for (const Field& f : schema::fields()) read_field(r, c, f);
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
  } else if (d.format == "sharded") {
    require("data.dir", d.dir, "the shard set's directory (descent shard --out)");
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

std::string layers_value(const TrainConfig& c) {
  const ModelConfig& m = c.model;
  if (m.layers.empty()) return "";
  std::string out = "[\n";
  for (const LayerConfig& l : m.layers) {
    out += "  {type = " + quote(l.type);
    for (const auto& [key, value] : nn::layer_options(l)) {
      out.append(", ").append(key).append(" = ");
      if (const auto* i = std::get_if<std::int64_t>(&value)) {
        out += std::to_string(*i);
      } else if (const auto* b = std::get_if<bool>(&value)) {
        out += *b ? "true" : "false";
      } else if (const auto* x = std::get_if<double>(&value)) {
        out += format_float(*x);
      } else {
        const auto& list = std::get<std::vector<std::int64_t>>(value);
        out += "[";
        for (std::size_t j = 0; j < list.size(); ++j) out += (j > 0 ? ", " : "") + std::to_string(list[j]);
        out += "]";
      }
    }
    out += "},\n";
  }
  return out + "]";
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
  check_second_order(config);  // [second_order]'s cross-key rules (c1 < c2): one line naming the key
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

std::vector<std::string> config_keys() {
  std::vector<std::string> keys;
  for (const Field& f : schema::fields()) keys.emplace_back(f.key);
  return keys;
}

std::string to_toml(const TrainConfig& c) {
  // A TOML comment must be valid UTF-8 without control characters: keep printable ASCII only.
  std::string source;
  for (const char ch : c.source) source += (ch >= 0x20 && ch < 0x7F) ? ch : '?';
  std::string out = "# descent training config, resolved: every key, defaults included.\n";
  if (!source.empty()) out += "# From " + source + ".\n";
  std::string_view table;
  for (const Field& f : schema::fields()) {
    if (const std::string_view t = schema::table_of(f.key); t != table) {
      out.append("\n[").append(t).append("]\n");
      table = t;
    }
    const std::string_view key = schema::leaf_of(f.key);
    const std::string value = schema::value_text(f, c);
    if (!value.empty()) {
      line(out, key, value);
    } else if (f.kind == Kind::optional_number) {
      out.append("# ").append(key).append(" unset: the algorithm's default\n");
    }
  }
  return out;
}

}  // namespace descent::train
