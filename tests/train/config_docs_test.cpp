// docs/config.md against the code: its generated blocks (key tables, optimizer and schedule
// lists, the complete example, sample errors) must be exactly what config_docs.hpp writes,
// and the complete example must hold every key with a value unlike its default, so that a
// key that to_toml does not write back fails the round trip.
#include "descent/train/config_docs.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "../../src/train/config_schema.hpp"

namespace descent::train {
namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Set DESCENT_UPDATE_DOCS=1 to rewrite docs/config.md's generated blocks instead.
TEST(ConfigDocs, ConfigMdHoldsWhatTheCodeWrites) {
  const fs::path path = fs::path(DESCENT_SOURCE_DIR) / "docs" / "config.md";
  const std::string text = slurp(path);
  ASSERT_FALSE(text.empty()) << path;
  for (const std::string& block : config_docs_blocks())
    EXPECT_NE(text.find("<!-- generated: " + block + " -->\n"), std::string::npos) << "docs/config.md lacks block " << block;
  const std::string updated = update_config_docs(text);
  if (updated != text && std::getenv("DESCENT_UPDATE_DOCS") != nullptr) {
    std::ofstream(path, std::ios::binary) << updated;
    GTEST_SKIP() << "rewrote " << path;
  }
  EXPECT_EQ(updated, text) << "docs/config.md is out of date: run DESCENT_UPDATE_DOCS=1 build/bin/train_tests "
                              "--gtest_filter=ConfigDocs.*";
}

// Values for the keys whose example the complete example cannot hold at once (they belong
// to another model type or optimizer); each is checked in a config of its own.
const std::map<std::string_view, std::vector<std::string>> kOwnConfigs = {
    {"model.type", {"model.type=sequential", "model.layers=[{type = \"linear\"}]"}},
    {"model.layers", {"model.type=sequential", "model.layers=[{type = \"linear\", units = 7}, {type = \"linear\"}]"}},
    {"optimizer.nesterov", {"optimizer.name=momentum", "optimizer.nesterov=true"}},
    {"optimizer.centered", {"optimizer.name=rmsprop", "optimizer.centered=true"}},
};

// Every key of the schema, set to a value unlike its default, reads back from to_toml.
TEST(ConfigDocs, EveryKeyRoundTripsThroughToToml) {
  const TrainConfig defaults;
  const TrainConfig example = example_config();
  EXPECT_EQ(parse_train_config(to_toml(example), example.source), example);
  for (const schema::Field& f : schema::fields()) {
    SCOPED_TRACE(f.key);
    TrainConfig c = example;
    if (f.example.empty()) {
      const auto own = kOwnConfigs.find(f.key);
      ASSERT_NE(own, kOwnConfigs.end()) << "the key has neither an example value nor a config here";
      c = parse_train_config("", "own.toml", own->second);
      EXPECT_EQ(parse_train_config(to_toml(c), c.source), c);
    }
    EXPECT_NE(schema::value_text(f, c), schema::value_text(f, defaults)) << "the test value is the default";
    // The key's own line is in the text, with the value read back.
    EXPECT_NE(to_toml(c).find(std::string(schema::leaf_of(f.key)) + " = " + schema::value_text(f, c)), std::string::npos);
  }
}

}  // namespace
}  // namespace descent::train
