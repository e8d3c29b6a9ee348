// The grid of `descent compare`: GRID.toml, --vary and --seeds, and its expansion into runs
// (compare/grid.hpp, docs/compare.md).
#include "descent/compare/grid.hpp"

#include <toml++/toml.h>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>

#include "descent/error.hpp"
#include "descent/io/atomic_file.hpp"
#include "descent/io/sha256.hpp"
#include "descent/optim/registry.hpp"

namespace descent::compare {
namespace {

namespace fs = std::filesystem;

std::string trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  const auto e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

// User text in a message: control characters as \xHH, at most 120 bytes (one short line).
std::string shown(std::string_view s) {
  std::string out;
  for (const char c : s.substr(0, 120)) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", u);
      out += buf;
    } else {
      out += c;
    }
  }
  if (s.size() > 120) out += "...";
  return out;
}

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') { out += "\\n"; continue; }
    out += c;
  }
  return out + "\"";
}

// A TOML node as a Value: strings quoted for --set, shown bare.
Value value_of(const toml::node& node) {
  if (const auto* s = node.as_string()) return {quote(s->get()), s->get()};
  std::ostringstream text;
  if (const auto* a = node.as_array()) text << *a;
  else if (const auto* t = node.as_table()) text << *t;
  else if (const auto* i = node.as_integer()) text << i->get();
  else if (const auto* b = node.as_boolean()) text << (b->get() ? "true" : "false");
  else if (const auto* f = node.as_floating_point()) {
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, f->get());
    std::string v(buf, r.ptr);
    if (v.find_first_of(".eEn") == std::string::npos) v += ".0";  // stays a float
    return {v, v};
  } else if (const auto* d = node.as_date()) text << *d;
  else if (const auto* tm = node.as_time()) text << *tm;
  else if (const auto* dt = node.as_date_time()) text << *dt;
  return {text.str(), text.str()};
}

std::string line_of(const std::string& source, const toml::node& node) {
  const auto line = node.source().begin.line;
  return line > 0 ? source + ", line " + std::to_string(line) : source;
}

// One text value of --vary: a TOML value when it parses as one, else a string.
Value value_of_text(std::string_view raw) {
  const std::string text = trim(raw);
  try {
    const toml::table t = toml::parse("v = " + text);
    if (const toml::node* v = t.get("v")) return value_of(*v);
  } catch (const toml::parse_error&) {
  }
  return {quote(text), text};
}

// Splits at commas outside brackets and quotes.
std::vector<std::string> split_values(std::string_view s) {
  std::vector<std::string> out;
  int depth = 0;
  bool quoted = false;
  std::string cur;
  for (const char c : s) {
    if (c == '"') quoted = !quoted;
    if (!quoted && (c == '[' || c == '{')) ++depth;
    if (!quoted && (c == ']' || c == '}')) --depth;
    if (c == ',' && depth == 0 && !quoted) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

bool parse_double(std::string_view s, double& out) {
  const std::string t = trim(s);
  if (t.empty()) return false;
  char* end = nullptr;
  out = std::strtod(t.c_str(), &end);
  return end == t.c_str() + t.size() && std::isfinite(out);
}

void check_key(const std::string& key, const std::string& where) {
  if (key.empty()) throw ConfigError(where + ": an empty key");
  static const std::set<std::string> keys = [] {
    const auto k = train::config_keys();
    return std::set<std::string>(k.begin(), k.end());
  }();
  if (keys.count(key) == 0) throw ConfigError(where + ": " + shown(key) + ": not a config key (docs/config.md lists them)");
}

// The leaves of a table as dotted keys: [set] and a group's set.
void flatten_set(const toml::table& table, const std::string& prefix, const std::string& source,
                 std::vector<std::pair<std::string, Value>>& out) {
  for (const auto& [k, node] : table) {
    const std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (const auto* t = node.as_table()) {
      flatten_set(*t, key, source, out);
      continue;
    }
    check_key(key, line_of(source, node));
    out.emplace_back(key, value_of(node));
  }
}

// The leaves of a [vary] table: a list of values, or a "log:"/"lin:" range.
void flatten_vary(const toml::table& table, const std::string& prefix, const std::string& source, std::vector<Axis>& out) {
  for (const auto& [k, node] : table) {
    const std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    const std::string where = line_of(source, node);
    if (const auto* t = node.as_table()) {
      flatten_vary(*t, key, source, out);
      continue;
    }
    check_key(key, where);
    Axis axis{key, {}};
    if (const auto* a = node.as_array()) {
      if (a->empty()) throw ConfigError(where + ": vary." + key + ": an empty list (give at least one value)");
      for (const auto& v : *a) axis.values.push_back(value_of(v));
    } else if (const auto* s = node.as_string()) {
      axis.values = expand_range(s->get(), where + ": vary." + key);
    } else {
      throw ConfigError(where + ": vary." + key +
                        ": expected a list of values or a range \"log:A:B:N\" / \"lin:A:B:N\", got " + shown(value_of(node).text));
    }
    for (const Axis& other : out) {
      if (other.key == key) throw ConfigError(where + ": vary." + key + ": varied twice");
    }
    out.push_back(std::move(axis));
  }
}

std::string safe_name(std::string_view s) {
  std::string out;
  for (const char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
                    c == '+' || c == '_';
    out += ok ? c : '-';
  }
  if (out.size() > 80) out.resize(80);
  return out;
}

std::string last_component(const std::string& key) {
  const auto dot = key.rfind('.');
  return dot == std::string::npos ? key : key.substr(dot + 1);
}

}  // namespace

std::vector<Value> expand_range(std::string_view spec, const std::string& where) {
  const std::string s = trim(spec);
  const bool log = s.rfind("log:", 0) == 0, lin = s.rfind("lin:", 0) == 0;
  const std::string bad = where + ": expected a range \"log:A:B:N\" or \"lin:A:B:N\" (N >= 1 values from A to B";
  if (!log && !lin) throw ConfigError(bad + "), got \"" + shown(s) + "\"");
  std::vector<std::string> parts;
  std::size_t from = 4;
  for (std::size_t at = s.find(':', from);; at = s.find(':', from)) {
    parts.push_back(s.substr(from, at == std::string::npos ? std::string::npos : at - from));
    if (at == std::string::npos) break;
    from = at + 1;
  }
  double a = 0, b = 0, n = 0;
  if (parts.size() != 3 || !parse_double(parts[0], a) || !parse_double(parts[1], b) || !parse_double(parts[2], n) ||
      n < 1 || n > 1000 || n != std::floor(n)) {
    throw ConfigError(bad + ", at most 1000), got \"" + shown(s) + "\"");
  }
  if (log && (a <= 0 || b <= 0)) throw ConfigError(where + ": a log range needs A > 0 and B > 0, got \"" + shown(s) + "\"");
  const int count = static_cast<int>(n);
  std::vector<Value> out;
  for (int i = 0; i < count; ++i) {
    const double t = count == 1 ? 0.0 : static_cast<double>(i) / (count - 1);
    const double v = log ? a * std::pow(b / a, t) : a + (b - a) * t;
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3g", v);
    std::string text = buf;
    if (text == "-0") text = "0";
    if (!out.empty() && out.back().toml == text) continue;  // rounding merged two values
    out.push_back({text, text});
  }
  return out;
}

GridSpec parse_grid(std::string_view toml_text, const std::string& source, const fs::path& base_dir) {
  toml::table root;
  try {
    root = toml::parse(toml_text, std::string_view(source));
  } catch (const toml::parse_error& e) {
    throw ConfigError(source + ", line " + std::to_string(e.source().begin.line) + ", column " +
                      std::to_string(e.source().begin.column) + ": TOML syntax error: " + shown(e.description()));
  }
  if (!root.contains("config")) {
    throw ConfigError(source + ": not a grid: no config key (the base training config the grid varies); to vary a "
                               "training config, give it with --vary KEY=V1,V2,...");
  }
  GridSpec spec;
  spec.source = source;
  bool has_config = false;
  for (const auto& [k, node] : root) {
    const std::string key(k.str());
    const std::string where = line_of(source, node);
    if (key == "config" || key == "out") {
      const auto* s = node.as_string();
      if (s == nullptr || s->get().empty()) throw ConfigError(where + ": " + key + ": expected a non-empty path string");
      fs::path p = s->get();
      if (p.is_relative() && key == "config") p = base_dir / p;  // out: relative to the current folder
      (key == "config" ? spec.config : spec.out) = p;
      has_config = has_config || key == "config";
    } else if (key == "seeds") {
      const auto* a = node.as_array();
      if (a == nullptr || a->empty()) throw ConfigError(where + ": seeds: expected a non-empty list of integers >= 0");
      spec.seeds.clear();
      for (const auto& v : *a) {
        const auto* i = v.as_integer();
        if (i == nullptr || i->get() < 0) throw ConfigError(where + ": seeds: expected a non-empty list of integers >= 0");
        spec.seeds.push_back(static_cast<std::uint64_t>(i->get()));
      }
      if (std::set<std::uint64_t>(spec.seeds.begin(), spec.seeds.end()).size() != spec.seeds.size()) {
        throw ConfigError(where + ": seeds: a seed is listed twice");
      }
    } else if (key == "jobs") {
      const auto* i = node.as_integer();
      if (i == nullptr || i->get() < 1 || i->get() > 256) throw ConfigError(where + ": jobs: expected an integer in [1, 256]");
      spec.jobs = static_cast<int>(i->get());
    } else if (key == "target_val_error") {
      const auto v = node.value<double>();
      if (!v || !(*v >= 0.0 && *v <= 1.0)) throw ConfigError(where + ": target_val_error: expected a number in [0, 1]");
      spec.target_val_error = *v;
    } else if (key == "set" || key == "vary") {
      const auto* t = node.as_table();
      if (t == nullptr) throw ConfigError(where + ": " + key + ": expected a table");
      if (key == "set") flatten_set(*t, "", source, spec.set);
      else flatten_vary(*t, "", source, spec.vary);
    } else if (key == "group") {
      const auto* a = node.as_array();
      if (a == nullptr || !a->is_array_of_tables()) throw ConfigError(where + ": group: expected [[group]] tables");
      for (const auto& g : *a) {
        Group group;
        for (const auto& [gk, gnode] : *g.as_table()) {
          const std::string gkey(gk.str());
          const std::string gwhere = line_of(source, gnode);
          if (gkey == "label") {
            const auto* s = gnode.as_string();
            if (s == nullptr || s->get().empty()) throw ConfigError(gwhere + ": group.label: expected a non-empty string");
            group.label = s->get();
          } else if (gkey == "set" || gkey == "vary") {
            const auto* t = gnode.as_table();
            if (t == nullptr) throw ConfigError(gwhere + ": group." + gkey + ": expected a table");
            if (gkey == "set") flatten_set(*t, "", source, group.set);
            else flatten_vary(*t, "", source, group.vary);
          } else {
            throw ConfigError(gwhere + ": group." + shown(gkey) + ": unknown key (a group has label, set and vary)");
          }
        }
        spec.groups.push_back(std::move(group));
      }
    } else {
      throw ConfigError(where + ": " + shown(key) +
                        ": unknown key (a grid has config, out, seeds, jobs, target_val_error, [set], [vary], [[group]])");
    }
  }
  if (!has_config) throw ConfigError(source + ": config: missing (the base training config the grid varies)");
  return spec;
}

GridSpec load_grid(const fs::path& path) {
  const std::string text = io::read_file(path, std::size_t{1} << 20);
  fs::path base = path.parent_path();
  return parse_grid(text, path.string(), base);
}

Axis parse_vary(std::string_view arg) {
  const std::string where = "--vary " + shown(arg);
  const auto eq = arg.find('=');
  if (eq == std::string_view::npos || trim(arg.substr(0, eq)).empty() || trim(arg.substr(eq + 1)).empty()) {
    throw ConfigError(where + ": expected KEY=V1,V2,... or KEY=log:A:B:N");
  }
  Axis axis{trim(arg.substr(0, eq)), {}};
  check_key(axis.key, where);
  const std::string rhs = trim(arg.substr(eq + 1));
  if (rhs.rfind("log:", 0) == 0 || rhs.rfind("lin:", 0) == 0) {
    axis.values = expand_range(rhs, where);
    return axis;
  }
  for (const std::string& v : split_values(rhs)) {
    if (trim(v).empty()) throw ConfigError(where + ": an empty value in the list");
    axis.values.push_back(value_of_text(v));
  }
  return axis;
}

std::pair<std::string, Value> parse_set(std::string_view arg) {
  const std::string where = "--set " + shown(arg);
  const auto eq = arg.find('=');
  if (eq == std::string_view::npos || trim(arg.substr(0, eq)).empty()) throw ConfigError(where + ": expected KEY=VALUE");
  const std::string key = trim(arg.substr(0, eq));
  check_key(key, where);
  return {key, value_of_text(arg.substr(eq + 1))};
}

std::vector<std::uint64_t> parse_seeds(std::string_view arg) {
  std::vector<std::uint64_t> seeds;
  for (const std::string& part : split_values(arg)) {
    const std::string t = trim(part);
    std::uint64_t v = 0;
    const auto r = std::from_chars(t.data(), t.data() + t.size(), v);
    if (t.empty() || r.ec != std::errc{} || r.ptr != t.data() + t.size()) {
      throw ConfigError("--seeds " + shown(arg) + ": expected integers >= 0 separated by commas, e.g. 1,2,3");
    }
    for (const std::uint64_t s : seeds) {
      if (s == v) throw ConfigError("--seeds " + shown(arg) + ": seed " + t + " is listed twice");
    }
    seeds.push_back(v);
  }
  return seeds;
}

Grid expand(const GridSpec& spec) {
  Grid grid;
  grid.spec = spec;
  if (spec.seeds.empty()) throw ConfigError(spec.source + ": seeds: no seed given");
  const train::TrainConfig base = train::load_train_config(spec.config);
  std::vector<Group> groups = spec.groups;
  if (groups.empty()) groups.push_back({});
  std::map<std::map<std::string, std::string>, std::string> seen;
  for (std::size_t gi = 0; gi < groups.size(); ++gi) {
    const Group& group = groups[gi];
    std::vector<Axis> axes = spec.vary;
    for (const Axis& a : group.vary) {
      for (const Axis& b : axes) {
        if (a.key == b.key) throw ConfigError(spec.source + ": " + a.key + ": varied both in [vary] and in a group");
      }
      axes.push_back(a);
    }
    std::vector<std::size_t> at(axes.size(), 0);
    for (;;) {
      Point p;
      p.index = grid.points.size();
      for (const auto& kv : group.set) p.values.push_back(kv);
      for (std::size_t i = 0; i < axes.size(); ++i) {
        p.values.emplace_back(axes[i].key, axes[i].values[at[i]]);
        p.varied.emplace_back(axes[i].key, axes[i].values[at[i]]);
      }
      std::vector<std::string> overrides;
      for (const auto& [k, v] : spec.set) overrides.push_back(k + "=" + v.toml);
      for (const auto& [k, v] : p.values) overrides.push_back(k + "=" + v.toml);
      char index[16];
      std::snprintf(index, sizeof index, "p%02zu", p.index);
      std::string where = spec.source + ": point " + index;
      for (const auto& [k, v] : p.values) where += " " + k + "=" + v.text;
      train::TrainConfig config;
      try {
        config = train::load_train_config(spec.config, overrides);
      } catch (const ConfigError& e) {
        throw ConfigError(where + ": " + e.what());
      }
      // What make_optimizer would refuse when the run starts (sgd with momentum, ...).
      if (const optim::KeyConflict c = optim::check_keys(config.optimizer); !c.key.empty()) {
        throw ConfigError(where + ": " + c.key + ": " + c.message);
      }
      p.method = !group.label.empty() ? group.label : config.optimizer.name;
      p.lr = config.optimizer.lr.value_or(0.0);
      std::string name = index;
      if (!group.label.empty()) name += "-" + group.label;
      for (const auto& [k, v] : p.varied) {
        name += "-" + (k == "optimizer.name" ? v.text : last_component(k) + v.text);
      }
      p.name = safe_name(name);
      // Two points that train the same thing are one point twice.
      std::map<std::string, std::string> key;
      for (const std::string& o : overrides) {
        const auto eq = o.find('=');
        key[o.substr(0, eq)] = o.substr(eq + 1);
      }
      if (const auto it = seen.find(key); it != seen.end()) {
        throw ConfigError(spec.source + ": points " + it->second + " and " + p.name + " are the same settings");
      }
      seen[key] = p.name;
      for (const std::uint64_t seed : spec.seeds) {
        Run r;
        r.point = p.index;
        r.seed = seed;
        r.name = p.name + "-s" + std::to_string(seed);
        r.overrides = overrides;
        r.overrides.push_back("seed=" + std::to_string(seed));
        grid.runs.push_back(std::move(r));
      }
      grid.points.push_back(std::move(p));
      // The next combination (the last axis fastest).
      std::size_t i = axes.size();
      while (i > 0) {
        --i;
        if (++at[i] < axes[i].values.size()) break;
        at[i] = 0;
        if (i == 0) { i = axes.size() + 1; break; }
      }
      if (axes.empty() || i == axes.size() + 1) break;
    }
  }
  // The digest: what the runs train (the base config, resolved, and every run's overrides).
  train::TrainConfig resolved = base;
  resolved.source.clear();
  std::string canonical = "descent-compare/1\n" + train::to_toml(resolved);
  for (const Run& r : grid.runs) {
    canonical += "\n[run " + r.name + "]";
    for (const std::string& o : r.overrides) canonical += "\n" + o;
  }
  grid.digest = io::sha256_hex(canonical);
  return grid;
}

}  // namespace descent::compare
