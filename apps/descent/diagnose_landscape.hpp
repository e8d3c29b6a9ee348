#pragma once
// descent diagnose --what interpolation,plane (section 8.2.7, Fig. 8.2): the loss along the
// straight line from the run's initial weights to its final ones, and on a plane through them
// or around the final weights (diag/landscape.hpp; docs/diagnostics.md).
#include <filesystem>
#include <iosfwd>
#include <string>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "descent/diag/hessian.hpp"
#include "descent/train/data.hpp"
#include "descent/train/trainer.hpp"

namespace descent::cli {

struct LandscapeContext {
  const DiagnoseArgs& args;
  std::filesystem::path run_dir;
  train::Data& data;
  train::Model& model;          // its arena holds theta* (the --weights)
  std::filesystem::path weights;  // the file theta* came from
  diag::HessianOperator& hessian;  // over the first --examples of --split at theta* (--plane hessian)
};

// The fields of interpolation.json / plane.json (without the common ones); prints a summary on
// `out` and the progress on stderr.
nlohmann::json diagnose_interpolation(const LandscapeContext& c, std::ostream& out);
nlohmann::json diagnose_plane(const LandscapeContext& c, std::ostream& out);

// The file --weights names: model -> RUN_DIR/model.safetensors, init -> RUN_DIR/init.safetensors,
// anything else a path.
std::filesystem::path weights_file(const std::filesystem::path& run_dir, const std::string& weights);

}  // namespace descent::cli
