#pragma once
// The parts of docs/config.md written by the code itself, from the config schema
// (src/train/config.cpp) and the optimizer registry (optim/registry.hpp): the key tables,
// the lists of optimizers and schedules, the complete example and the sample errors. In the
// Markdown, each block sits between "<!-- generated: NAME -->" and "<!-- end generated -->";
// tests/train/config_docs_test.cpp checks that docs/config.md holds exactly what these
// functions write (DESCENT_UPDATE_DOCS=1 makes it rewrite the file instead).
#include <string>
#include <string_view>
#include <vector>

#include "descent/train/config.hpp"

namespace descent::train {

// The names of the blocks: "keys" (the top-level keys), "keys.data", ..., "optimizers",
// "schedules", "example", "errors".
std::vector<std::string> config_docs_blocks();
// One block's Markdown. Throws std::invalid_argument for an unknown name.
std::string config_docs_block(std::string_view name);
// `markdown` with the text of every generated block replaced by what config_docs_block
// writes now. Throws std::invalid_argument for an unknown or unterminated block.
std::string update_config_docs(std::string_view markdown);

// The --set arguments that give every key of the schema its example value (the complete
// example of docs/config.md), and the config they make.
std::vector<std::string> example_overrides();
TrainConfig example_config();

}  // namespace descent::train
