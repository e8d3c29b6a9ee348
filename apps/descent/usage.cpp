// The one-line message for a command line that CLI11 refused, with a suggestion where one
// helps: a misspelled command ("trian": did you mean train?), a config key given as an option
// ("--lr 0.1": use --set optimizer.lr=0.1), a misspelled option ("--nmae": did you mean
// --name?). Anything else keeps CLI11's own words.
#include <algorithm>
#include <sstream>
#include <string_view>

#include "commands.hpp"
#include "descent/error.hpp"
#include "descent/suggest.hpp"
#include "descent/train/config.hpp"

namespace descent::cli {
namespace {

// The candidate closest to `word` within edit distance 2 (the first on a tie), or "".
std::string closest(std::string_view word, const std::vector<std::string>& candidates) {
  const std::vector<std::string_view> views(candidates.begin(), candidates.end());
  return std::string(descent::closest(word, views));
}

// "a, b and c" (last_separator " and "); with separator " | ", "a | b | c".
std::string join(const std::vector<std::string>& items, const std::string& last_separator,
                 const std::string& separator = ", ") {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += i + 1 == items.size() ? last_separator : separator;
    out += items[i];
  }
  return out;
}

// The config keys `word` names: the key itself ("optimizer.lr", "epochs"), else every key whose
// last part it is ("lr": optimizer.lr); '-' counts as '_' ("batch-size").
std::vector<std::string> matching_keys(std::string word) {
  std::replace(word.begin(), word.end(), '-', '_');
  std::vector<std::string> matches;
  for (const std::string& key : train::config_keys()) {
    if (key == word) return {key};
    if (key.substr(key.rfind('.') + 1) == word) matches.push_back(key);
  }
  return matches;
}

bool is_option_like(const std::string& token) {
  if (token.size() < 2 || token[0] != '-') return false;
  const char c = token[1];
  return !(c >= '0' && c <= '9') && c != '.';  // "-1.5,2" is a value
}

std::vector<std::string> option_names(const CLI::App& command) {
  std::vector<std::string> names;
  for (const CLI::Option* o : command.get_options()) {
    for (const std::string& n : o->get_lnames()) names.push_back("--" + n);
  }
  return names;
}

// The message for an unknown option `token` (args[i]) of `command`.
std::string unknown_option(CLI::App& command, const std::vector<std::string>& args, std::size_t i) {
  const std::string& token = args[i];
  const std::size_t eq = token.find('=');
  const std::string name = token.substr(0, eq);
  const std::string shown = printable_excerpt(name, 80);
  const std::string where = "descent " + command.get_name();
  std::string value = "VALUE";
  if (eq != std::string::npos) {
    value = token.substr(eq + 1);
  } else if (i + 1 < args.size() && !is_option_like(args[i + 1])) {
    value = args[i + 1];
  }
  value = printable_excerpt(value, 80);

  if (command.get_option_no_throw("--set") != nullptr) {
    const std::size_t start = name.find_first_not_of('-');
    const std::vector<std::string> matches = matching_keys(start == std::string::npos ? "" : name.substr(start));
    if (matches.size() == 1) {
      return "unknown option " + shown + " for " + where + "; " + matches[0] + " is a config key: use --set " +
             matches[0] + "=" + value;
    }
    if (matches.size() > 1) {
      return "unknown option " + shown + " for " + where + "; config keys are set with --set KEY=VALUE, here " +
             join(matches, " or ");
    }
  }
  const std::vector<std::string> names = option_names(command);
  const std::string near = closest(name, names);
  if (!near.empty()) return "unknown option " + shown + " for " + where + "; did you mean " + near + "?";
  return "unknown option " + shown + " for " + where + "; its options are " + join(names, " and ") + " (" + where +
         " --help)";
}

}  // namespace

std::string usage_error(CLI::App& app, const std::vector<std::string>& args, const CLI::ParseError& error) {
  std::vector<std::string> commands;
  for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) commands.push_back(sub->get_name());
  std::size_t i = 0;
  while (i < args.size() && is_option_like(args[i])) {
    if (app.get_option_no_throw(args[i].substr(0, args[i].find('='))) == nullptr) {
      return "unknown option " + printable_excerpt(args[i], 80) + " before the command; the command comes first: descent " +
             join(commands, " | ", " | ") + " ... (descent --help)";
    }
    ++i;
  }
  if (i < args.size()) {
    const std::string& word = args[i];
    CLI::App* command = nullptr;
    for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
      if (sub->check_name(word)) command = sub;
    }
    if (command == nullptr) {
      const std::string near = closest(word, commands);
      const std::string shown = printable_excerpt(word, 80);
      if (!near.empty()) return "unknown command '" + shown + "'; did you mean 'descent " + near + "'?";
      return "unknown command '" + shown + "'; the commands are " + join(commands, " and ") + " (descent --help)";
    }
    for (std::size_t j = i + 1; j < args.size(); ++j) {
      if (args[j] == "--") break;
      const std::size_t eq = args[j].find('=');
      if (!is_option_like(args[j]) && eq != std::string::npos && command->get_option_no_throw("--set") != nullptr &&
          (j == i + 1 || !is_option_like(args[j - 1]))) {
        // "train x.toml lr=0.1": a key=value word where --set was meant.
        const std::vector<std::string> keys = matching_keys(args[j].substr(0, eq));
        if (keys.size() == 1) {
          return "unexpected argument " + printable_excerpt(args[j], 80) + "; to set " + keys[0] + " use --set " +
                 keys[0] + "=" + printable_excerpt(args[j].substr(eq + 1), 80);
        }
      }
      if (!is_option_like(args[j])) continue;
      if (command->get_option_no_throw(args[j].substr(0, args[j].find('='))) != nullptr) continue;
      return unknown_option(*command, args, j);
    }
    return printable_excerpt(error.what(), 300) + " (descent " + command->get_name() + " --help)";
  }
  return printable_excerpt(error.what(), 300) + " (descent --help)";
}

}  // namespace descent::cli
