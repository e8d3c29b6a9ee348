// docs/config.md's generated blocks (config_docs.hpp).
#include "descent/train/config_docs.hpp"

#include <algorithm>
#include <sstream>
#include <stdexcept>

#include "config_schema.hpp"
#include "descent/error.hpp"
#include "descent/optim/registry.hpp"

namespace descent::train {
namespace {

std::string code(std::string_view s) { return "`" + std::string(s) + "`"; }

std::string number(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

std::string key_table(std::string_view table) {
  std::string out = "| key | type | default | meaning |\n|---|---|---|---|\n";
  const TrainConfig defaults;
  for (const schema::Field& f : schema::fields()) {
    if (schema::table_of(f.key) != table) continue;
    std::string value = schema::value_text(f, defaults);
    const std::string shown = !f.default_doc.empty() ? std::string(f.default_doc) : value.empty() ? "unset" : code(value);
    out += "| " + code(table.empty() ? f.key : schema::leaf_of(f.key)) + " | " + std::string(schema::type_name(f)) +
           " | " + shown + " | " + std::string(f.doc) + " |\n";
  }
  return out;
}

std::string defaults(const optim::OptimizerEntry& e, const optim::OptimizerDefaults& d) {
  std::string out = "lr " + number(d.lr);
  const auto has = [&](std::string_view key) { return std::ranges::find(e.keys, key) != e.keys.end(); };
  if (has("momentum")) out += ", momentum " + number(d.momentum);
  if (has("rho")) out += ", rho " + number(d.rho);
  if (has("rho1")) out += ", rho1 0.9, rho2 0.999";
  if (has("delta")) out += ", delta " + number(d.delta);
  return out;
}

std::string optimizer_list() {
  std::string out = "| name | reads | textbook defaults | `form = \"pytorch\"` defaults | algorithm |\n|---|---|---|---|---|\n";
  for (const optim::OptimizerEntry& e : optim::optimizers()) {
    std::string keys;
    for (const std::string_view k : e.keys) keys += (keys.empty() ? "" : ", ") + code(k);
    out += "| " + code(e.name) + " | " + keys + " | " + defaults(e, e.textbook) + " | " +
           (e.has_pytorch_form ? defaults(e, e.pytorch) : "none (refused)") + " | " + std::string(e.doc) + " |\n";
  }
  return out;
}

std::string schedule_list() {
  std::string out = "| name | reads | eps_k |\n|---|---|---|\n";
  for (const optim::ScheduleEntry& e : optim::schedules()) {
    std::string keys;
    for (const std::string_view k : e.keys) keys += (keys.empty() ? "" : ", ") + code(k);
    out += "| " + code(e.name) + " | " + (keys.empty() ? "nothing" : keys) + " | " + std::string(e.doc) + " |\n";
  }
  return out;
}

// What the reader says about a few bad configs, each read for real.
std::string sample_errors() {
  struct Sample {
    std::string_view text;
    std::vector<std::string> overrides;
  };
  const Sample samples[] = {
      {"[optimizer]\nname = \"adam\"\nlr =\n", {}},
      {"[optimizer]\nlrr = 0.1\n", {}},
      {"[optimizer]\nbatch_size = 32\n", {}},
      {"[optimizer]\nlr = \"fast\"\n", {}},
      {"[optimizer]\nname = \"momentum\"\nmomentum = 1.0\n", {}},
      {"[model]\nhidden = [256, 0]\n", {}},
      {"[optimizer]\nname = \"adamm\"\n", {}},
      {"[schedule]\nname = \"cosin\"\n", {}},
      {"[data]\nformat = \"idx\"\ntrain_features = \"train.idx\"\ntrain_labels = \"\"\n", {}},
      {"", {"optimizer.lr=-1"}},
      {"", {"optimizer.lr"}},
  };
  std::string out = "```text\n";
  for (const Sample& s : samples) {
    try {
      parse_train_config(s.text, "exp.toml", s.overrides);
      throw std::logic_error("config_docs: a sample error was accepted");
    } catch (const ConfigError& e) {
      out += std::string(e.what()) + "\n";
    }
  }
  return out + "```\n";
}

constexpr std::string_view kBegin = "<!-- generated: ";
constexpr std::string_view kEnd = "<!-- end generated -->";

}  // namespace

std::vector<std::string> config_docs_blocks() {
  std::vector<std::string> out = {"keys"};
  for (const std::string_view t : schema::tables()) out.push_back("keys." + std::string(t));
  for (const char* b : {"optimizers", "schedules", "example", "errors"}) out.emplace_back(b);
  return out;
}

std::string config_docs_block(std::string_view name) {
  if (name == "keys") return key_table("");
  if (name.starts_with("keys.")) {
    const std::string_view table = name.substr(5);
    for (const std::string_view t : schema::tables())
      if (t == table) return key_table(table);
  }
  if (name == "optimizers") return optimizer_list();
  if (name == "schedules") return schedule_list();
  if (name == "example") {
    TrainConfig c = example_config();
    c.source.clear();
    return "```toml\n" + to_toml(c) + "```\n";
  }
  if (name == "errors") return sample_errors();
  throw std::invalid_argument("config_docs: no generated block named " + std::string(name));
}

std::string update_config_docs(std::string_view markdown) {
  std::string out;
  std::size_t at = 0;
  while (true) {
    const std::size_t begin = markdown.find(kBegin, at);
    if (begin == std::string_view::npos) break;
    const std::size_t name_end = markdown.find(" -->\n", begin);
    if (name_end == std::string_view::npos) throw std::invalid_argument("config_docs: unterminated block marker");
    const std::string_view name = markdown.substr(begin + kBegin.size(), name_end - begin - kBegin.size());
    const std::size_t body = name_end + 5;
    const std::size_t end = markdown.find(kEnd, body);
    if (end == std::string_view::npos)
      throw std::invalid_argument("config_docs: block " + std::string(name) + " has no end marker");
    out.append(markdown.substr(at, body - at)).append(config_docs_block(name));
    at = end;
  }
  return out.append(markdown.substr(at));
}

std::vector<std::string> example_overrides() {
  std::vector<std::string> out;
  for (const schema::Field& f : schema::fields())
    if (!f.example.empty()) out.push_back(std::string(f.key) + "=" + std::string(f.example));
  return out;
}

TrainConfig example_config() { return parse_train_config("", "example.toml", example_overrides()); }

}  // namespace descent::train
