#pragma once
// The grid of `descent compare` (docs/compare.md): a base training config, the keys to vary
// and their values, and the seeds. Each point of the grid is one setting of the varied keys;
// each (point, seed) is one run, trained as a normal run folder.
//
// A grid comes from a GRID.toml file:
//   config = "fashion_mlp.toml"       # the base config, relative to the grid file (required)
//   out = "runs/compare"              # the comparison folder, relative to the current folder (default runs/compare-<grid name>)
//   seeds = [1, 2, 3]                 # default [1]
//   jobs = 2                          # runs at a time (default: 1)
//   target_val_error = 0.15           # for time and steps to target (optional)
//   [set]                             # overrides for every run: "data.limit_train" = 10000
//   [vary]                            # keys varied for every group: a list, or "log:A:B:N" / "lin:A:B:N"
//   [[group]]                         # optional; the grid is the union of the groups' products
//   label = "adam"                    # the name of the method in the ranking (default: optimizer.name)
//   set = { "optimizer.name" = "adam" }
//   vary = { "optimizer.lr" = "log:1e-4:1e-2:3" }
// or from a config file and --vary KEY=V1,V2,... / --vary KEY=log:A:B:N, --seeds 1,2,3 on the
// command line. Keys are dotted config keys (docs/config.md), written either as quoted dotted
// keys or as nested tables. Every run's config is validated before anything is trained.
//
// Errors: ConfigError (IoError when a file cannot be read), one line naming the file, the
// line where known, and the key.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "descent/train/config.hpp"

namespace descent::compare {

// One value of a key: `toml` as --set takes it (strings quoted), `text` to show (unquoted).
struct Value {
  std::string toml, text;
  bool operator==(const Value&) const = default;
};

struct Axis {
  std::string key;
  std::vector<Value> values;
};

struct Group {
  std::string label;                                   // empty: optimizer.name of each point
  std::vector<std::pair<std::string, Value>> set;      // fixed keys of the group
  std::vector<Axis> vary;                              // after the grid's own [vary]
};

struct GridSpec {
  std::filesystem::path config;  // the base config
  std::filesystem::path out;     // empty: runs/compare-<stem of the source>
  std::vector<std::pair<std::string, Value>> set;
  std::vector<Axis> vary;
  std::vector<Group> groups;     // empty: one group without label, set or vary
  std::vector<std::uint64_t> seeds{1};
  int jobs = 0;                  // 0: not given
  std::optional<double> target_val_error;
  std::string source;            // the grid file, or the config file for --vary
};

// One point of the grid: the values of its keys (the group's set, then the varied keys).
struct Point {
  std::size_t index = 0;
  std::string method;   // the group's label, else the point's optimizer.name
  std::vector<std::pair<std::string, Value>> values;
  std::vector<std::pair<std::string, Value>> varied;  // only the varied keys (the point's name)
  std::string name;     // p<index>-<varied values>, safe as a folder name
  double lr = 0.0;      // optimizer.lr of the point's config (0 when the config leaves it unset)
};

struct Run {
  std::size_t point = 0;
  std::uint64_t seed = 0;
  std::string name;                    // <point name>-s<seed>: the run folder's name
  std::vector<std::string> overrides;  // --set arguments: the grid's set, the point's values, seed
};

struct Grid {
  GridSpec spec;
  std::vector<Point> points;
  std::vector<Run> runs;   // point by point, seeds inside
  std::string digest;      // sha256 of the base config and every run's name and overrides
};

// Reads GRID.toml. Throws IoError when it cannot be read, ConfigError naming the file, line
// and key for anything malformed.
GridSpec load_grid(const std::filesystem::path& path);
GridSpec parse_grid(std::string_view toml_text, const std::string& source, const std::filesystem::path& base_dir);

// "KEY=V1,V2,..." or "KEY=log:A:B:N" / "KEY=lin:A:B:N" (--vary). Throws ConfigError quoting it.
Axis parse_vary(std::string_view arg);
// "KEY=VALUE" (--set of descent compare: for every run). Throws ConfigError quoting it.
std::pair<std::string, Value> parse_set(std::string_view arg);
// "1,2,3" (--seeds). Throws ConfigError quoting it.
std::vector<std::uint64_t> parse_seeds(std::string_view arg);
// "log:A:B:N": N values from A to B evenly spaced in log, "lin:A:B:N" evenly spaced; each
// rounded to 3 significant digits. Throws ConfigError naming `where`.
std::vector<Value> expand_range(std::string_view spec, const std::string& where);

// The points and runs, every run's config loaded (base config + overrides) and validated.
// Throws ConfigError naming the grid and the point when a run's config is invalid, or when two
// points have the same values.
Grid expand(const GridSpec& spec);

}  // namespace descent::compare
