#pragma once
// The config schema (internal to src/train): one description per key, from which
// config.cpp reads, validates and writes (to_toml) a TrainConfig and config_docs.cpp writes
// docs/config.md's key tables. The defaults are TrainConfig's member initializers.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>

#include "descent/train/config.hpp"

namespace descent::train::schema {

class Reader;  // config.cpp

enum class Kind : std::uint8_t { boolean, text, choice, integer, number, optional_number, custom };

// Where a field lives in a TrainConfig.
using Access = std::variant<std::monostate, bool& (*)(TrainConfig&), std::string& (*)(TrainConfig&), int& (*)(TrainConfig&),
                            std::int64_t& (*)(TrainConfig&), double& (*)(TrainConfig&),
                            std::optional<double>& (*)(TrainConfig&)>;

struct Field {
  std::string_view key;  // dotted: "optimizer.lr"; the part before the dot is the table
  Kind kind = Kind::custom;
  Access access;
  std::string_view doc;      // docs/config.md's "meaning"
  std::string_view example;  // a TOML value unlike the default, for the complete example ("" none)
  bool non_empty = false;    // text: "" is refused
  std::span<const std::string_view> (*choices)() = nullptr;  // choice: the valid names
  std::int64_t lo = 0, hi = 0;                               // integer: the range
  bool (*ok)(double) = nullptr;                              // number: the range ...
  std::string_view expected;                                 // ... as messages say it
  // custom: its docs type and default, whether --set takes its value as text, how it is read,
  // and its TOML value ("" to leave the key out).
  std::string_view type;
  std::string_view default_doc;
  bool text = false;
  void (*read)(Reader&, TrainConfig&) = nullptr;
  std::string (*value)(const TrainConfig&) = nullptr;
};

// Every key, in the order to_toml writes them (top-level keys first, then table by table).
std::span<const Field> fields();
// The tables, in that order.
std::span<const std::string_view> tables();
// The table part of a key ("" at the top level) and the rest.
std::string_view table_of(std::string_view key);
std::string_view leaf_of(std::string_view key);
// The field's value in `config` as TOML text; "" for an unset optional (or a custom field
// that leaves its key out).
std::string value_text(const Field& field, const TrainConfig& config);
// "string", "integer", "float", "boolean", or a custom field's type.
std::string_view type_name(const Field& field);

}  // namespace descent::train::schema
