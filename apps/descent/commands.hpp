#pragma once
// The subcommands of the descent CLI.
#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace descent::cli {

struct TrainArgs {
  std::string config;
  std::vector<std::string> overrides;
  std::string out;
  std::string name;
};
void add_train(CLI::App& app, TrainArgs& args);
int run_train(const TrainArgs& args);

struct EvalArgs {
  std::string model;
  std::string config;
  std::vector<std::string> overrides;
  std::string split = "test";
};
void add_eval(CLI::App& app, EvalArgs& args);
int run_eval(const EvalArgs& args);

}  // namespace descent::cli
