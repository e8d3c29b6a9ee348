// The one-line message for a command line that CLI11 refused, with a suggestion where one
// helps: a misspelled command ("trian": did you mean train?), a config key given as an option
// ("--lr 0.1": use --set optimizer.lr=0.1), a misspelled option ("--nmae": did you mean
// --name?). Anything else keeps CLI11's own words.
#include <algorithm>
#include <sstream>
#include <string_view>

#include "commands.hpp"
#include "descent/error.hpp"
#include "descent/train/config.hpp"

namespace descent::cli {
namespace {

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

// The candidate closest to `word` within edit distance 2 (the first on a tie), or "".
std::string closest(std::string_view word, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t best_distance = 3;
  for (const std::string& c : candidates) {
    if (word.size() > c.size() + 2 || c.size() > word.size() + 2) continue;
    const std::size_t d = edit_distance(word, c);
    if (d < best_distance) {
      best = c;
      best_distance = d;
    }
  }
  return best;
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

// Every dotted config key, from the resolved default config as to_toml writes it ("key = ..."
// under "[table]", or "# key unset: ..." for a key without a default).
std::vector<std::string> config_keys() {
  std::vector<std::string> keys;
  std::istringstream in(train::to_toml(train::TrainConfig{}));
  std::string line, table;
  while (std::getline(in, line)) {
    if (line.rfind("[[", 0) == 0) break;  // arrays of tables (model.layers) come last
    if (line.rfind('[', 0) == 0) {
      table = line.substr(1, line.find(']') - 1);
      continue;
    }
    std::string key;
    if (line.rfind("# ", 0) == 0 && line.find(" unset") != std::string::npos) {
      key = line.substr(2, line.find(" unset") - 2);
    } else if (const std::size_t eq = line.find(" = "); eq != std::string::npos && line[0] != '#') {
      key = line.substr(0, eq);
    }
    if (key.empty() || key.find(' ') != std::string::npos) continue;
    keys.push_back(table.empty() ? key : table + "." + key);
  }
  return keys;
}

// The config keys `word` names: the key itself ("optimizer.lr", "epochs"), else every key whose
// last part it is ("lr": optimizer.lr); '-' counts as '_' ("batch-size").
std::vector<std::string> matching_keys(std::string word) {
  std::replace(word.begin(), word.end(), '-', '_');
  std::vector<std::string> matches;
  for (const std::string& key : config_keys()) {
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
