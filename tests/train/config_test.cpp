// Tests of the training config: defaults, a full file, --set overrides, the to_toml round
// trip, and one malformed config per error class. Each error test checks that the message names
// the file, the key and the line.
#include "descent/optim/registry.hpp"
#include "descent/train/config.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include "descent/error.hpp"

namespace descent::train {
namespace {

namespace fs = std::filesystem;

constexpr const char* kSource = "exp.toml";

// The message of the ConfigError that parsing `text` with `overrides` throws ("" and a test
// failure when it does not throw).
std::string config_error(std::string_view text, const std::vector<std::string>& overrides = {}) {
  try {
    parse_train_config(text, kSource, overrides);
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a ConfigError for:\n" << text;
  return "";
}

// Checks that `message` starts with the file name and contains every part.
void expect_message(const std::string& message, const std::vector<std::string>& parts) {
  EXPECT_EQ(message.rfind(kSource, 0), 0u) << message;
  for (const std::string& part : parts)
    EXPECT_NE(message.find(part), std::string::npos) << "missing '" << part << "' in: " << message;
}

std::string line(int n) { return std::string(kSource) + ", line " + std::to_string(n) + ":"; }

// The start of a TOML syntax error's message: toml++ also gives the column.
std::string syntax_at(int n, int column) {
  return std::string(kSource) + ", line " + std::to_string(n) + ", column " + std::to_string(column) +
         ": TOML syntax error: ";
}

// A scratch folder, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("descent_config_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  fs::path write(const std::string& name, std::string_view bytes) const {
    const fs::path p = path_ / name;
    std::ofstream out(p, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return p;
  }

 private:
  fs::path path_;
};

// Every key set to a value other than its default.
constexpr std::string_view kFullFile = R"(# a complete config
name = "fashion-adam"
seed = 42
threads = 2
epochs = 30
eval_every_steps = 100
out_dir = "/tmp/runs"
progress = "plain"

[data]
format = "csv"
dir = "/data/mnist"
train_features = "train.csv"
train_labels = "train_labels.csv"
test_features = "test.csv"
test_labels = "test_labels.csv"
csv_label_column = -1
csv_header = true
scale = 0.5
standardize = "per_feature"
validation_size = 5000
validation_shuffle = true
limit_train = 1000
limit_test = 200

[model]
type = "mlp"
hidden = [512, 128, 64]
activation = "tanh"
dtype = "f64"

[init]
weights = "glorot_normal"
bias = 0.1
gain = 1.5
output_gain = 0.125
sparse_k = 7

[optimizer]
name = "adam"
lr = 0.001
momentum = 0.5
nesterov = true
rho = 0.95
rho1 = 0.8
rho2 = 0.99
delta = 1e-6
weight_decay = 0.0005

[schedule]
name = "linear"
lr_end = 0.00001
tau = 2000

[sampler]
kind = "with_replacement"
batch_size = 32
drop_last = true

[early_stopping]
enabled = false
monitor = "val_loss"
patience = 3
min_delta = 0.001
)";

// ---- defaults and a full file ------------------------------------------------

TEST(ConfigTest, DefaultsAreTheDocumentedValues) {
  const TrainConfig c;
  EXPECT_EQ(c.name, "run");
  EXPECT_EQ(c.seed, 0u);
  EXPECT_EQ(c.threads, 0);
  EXPECT_EQ(c.epochs, 10);
  EXPECT_EQ(c.eval_every_steps, 0);
  EXPECT_EQ(c.out_dir, "runs");
  EXPECT_EQ(c.progress, "auto");
  EXPECT_EQ(c.data.format, "mnist");
  EXPECT_EQ(c.data.dir, "/usr/share/datasets/fashion-mnist");
  EXPECT_EQ(c.data.train_features, "");
  EXPECT_EQ(c.data.csv_label_column, 0);
  EXPECT_FALSE(c.data.csv_header);
  EXPECT_EQ(c.data.scale, 1.0 / 255.0);
  EXPECT_EQ(c.data.standardize, "none");
  EXPECT_EQ(c.data.validation_size, 10000);
  EXPECT_FALSE(c.data.validation_shuffle);
  EXPECT_EQ(c.data.limit_train, 0);
  EXPECT_EQ(c.data.limit_test, 0);
  EXPECT_EQ(c.model.type, "mlp");
  EXPECT_EQ(c.model.hidden, (std::vector<std::int64_t>{256, 256}));
  EXPECT_EQ(c.model.activation, "relu");
  EXPECT_EQ(c.model.dtype, "f32");
  EXPECT_EQ(c.init.weights, "he_uniform");
  EXPECT_EQ(c.init.bias, 0.0);
  EXPECT_EQ(c.init.gain, 1.0);
  EXPECT_EQ(c.init.output_gain, 1.0);
  EXPECT_EQ(c.init.sparse_k, 15);
  EXPECT_EQ(c.optimizer.name, "sgd");
  EXPECT_FALSE(c.optimizer.lr.has_value());  // unset: the algorithm's default
  EXPECT_FALSE(c.optimizer.momentum.has_value());
  EXPECT_FALSE(c.optimizer.nesterov);
  EXPECT_FALSE(c.optimizer.rho.has_value());
  EXPECT_FALSE(c.optimizer.rho1.has_value());
  EXPECT_FALSE(c.optimizer.rho2.has_value());
  EXPECT_FALSE(c.optimizer.delta.has_value());
  EXPECT_EQ(c.optimizer.form, "textbook");
  EXPECT_EQ(c.clip.global_norm, 0.0);
  EXPECT_EQ(c.averaging.kind, "none");
  EXPECT_EQ(c.optimizer.weight_decay, 0.0);
  EXPECT_EQ(c.schedule.name, "constant");
  EXPECT_EQ(c.schedule.lr_end, -1.0);
  EXPECT_EQ(c.schedule.tau, 0);
  EXPECT_EQ(c.sampler.kind, "reshuffle");
  EXPECT_EQ(c.sampler.batch_size, 128);
  EXPECT_FALSE(c.sampler.drop_last);
  EXPECT_TRUE(c.early_stopping.enabled);
  EXPECT_EQ(c.early_stopping.monitor, "val_error");
  EXPECT_EQ(c.early_stopping.patience, 5);
  EXPECT_EQ(c.early_stopping.min_delta, 0.0);
  EXPECT_EQ(c.source, "");
}

TEST(ConfigTest, EmptyFileGivesTheDefaults) {
  TrainConfig expected;
  expected.source = kSource;
  EXPECT_EQ(parse_train_config("", kSource), expected);
  EXPECT_EQ(parse_train_config("# only a comment\n\n   \n", kSource), expected);
  EXPECT_EQ(parse_train_config("[optimizer]\n[data]\n", kSource), expected);
}

TEST(ConfigTest, FullFileIsReadCorrectly) {
  const TrainConfig c = parse_train_config(kFullFile, kSource);
  EXPECT_EQ(c.source, kSource);
  EXPECT_EQ(c.name, "fashion-adam");
  EXPECT_EQ(c.seed, 42u);
  EXPECT_EQ(c.threads, 2);
  EXPECT_EQ(c.epochs, 30);
  EXPECT_EQ(c.eval_every_steps, 100);
  EXPECT_EQ(c.out_dir, "/tmp/runs");
  EXPECT_EQ(c.progress, "plain");
  EXPECT_EQ(c.data.format, "csv");
  EXPECT_EQ(c.data.dir, "/data/mnist");
  EXPECT_EQ(c.data.train_features, "train.csv");
  EXPECT_EQ(c.data.train_labels, "train_labels.csv");
  EXPECT_EQ(c.data.test_features, "test.csv");
  EXPECT_EQ(c.data.test_labels, "test_labels.csv");
  EXPECT_EQ(c.data.csv_label_column, -1);
  EXPECT_TRUE(c.data.csv_header);
  EXPECT_EQ(c.data.scale, 0.5);
  EXPECT_EQ(c.data.standardize, "per_feature");
  EXPECT_EQ(c.data.validation_size, 5000);
  EXPECT_TRUE(c.data.validation_shuffle);
  EXPECT_EQ(c.data.limit_train, 1000);
  EXPECT_EQ(c.data.limit_test, 200);
  EXPECT_EQ(c.model.type, "mlp");
  EXPECT_EQ(c.model.hidden, (std::vector<std::int64_t>{512, 128, 64}));
  EXPECT_EQ(c.model.activation, "tanh");
  EXPECT_EQ(c.model.dtype, "f64");
  EXPECT_EQ(c.init.weights, "glorot_normal");
  EXPECT_EQ(c.init.bias, 0.1);
  EXPECT_EQ(c.init.gain, 1.5);
  EXPECT_EQ(c.init.output_gain, 0.125);
  EXPECT_EQ(c.init.sparse_k, 7);
  EXPECT_EQ(c.optimizer.name, "adam");
  EXPECT_EQ(c.optimizer.lr, 0.001);
  EXPECT_EQ(c.optimizer.momentum, 0.5);
  EXPECT_TRUE(c.optimizer.nesterov);
  EXPECT_EQ(c.optimizer.rho, 0.95);
  EXPECT_EQ(c.optimizer.rho1, 0.8);
  EXPECT_EQ(c.optimizer.rho2, 0.99);
  EXPECT_EQ(c.optimizer.delta, 1e-6);
  EXPECT_EQ(c.optimizer.weight_decay, 0.0005);
  EXPECT_EQ(c.schedule.name, "linear");
  EXPECT_EQ(c.schedule.lr_end, 0.00001);
  EXPECT_EQ(c.schedule.tau, 2000);
  EXPECT_EQ(c.sampler.kind, "with_replacement");
  EXPECT_EQ(c.sampler.batch_size, 32);
  EXPECT_TRUE(c.sampler.drop_last);
  EXPECT_FALSE(c.early_stopping.enabled);
  EXPECT_EQ(c.early_stopping.monitor, "val_loss");
  EXPECT_EQ(c.early_stopping.patience, 3);
  EXPECT_EQ(c.early_stopping.min_delta, 0.001);
}

TEST(ConfigTest, OtherTomlSpellingsOfTheSameKeys) {
  // Dotted keys at the top level, inline tables, an integer for a float, "full", a big seed.
  const TrainConfig c = parse_train_config(
      "optimizer.lr = 1\n"
      "model = { hidden = [], activation = \"sigmoid\" }\n"
      "seed = \"18446744073709551615\"\n"
      "[sampler]\nbatch_size = \"full\"\n",
      kSource);
  EXPECT_EQ(c.optimizer.lr, 1.0);
  EXPECT_TRUE(c.model.hidden.empty());
  EXPECT_EQ(c.model.activation, "sigmoid");
  EXPECT_EQ(c.seed, std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(c.sampler.batch_size, 0);
}

TEST(ConfigTest, EveryEnumeratedNameIsAccepted) {
  const auto accepts = [](const std::string& key, const std::vector<std::string>& names) {
    for (const std::string& n : names) {
      std::string text = "[data]\ntrain_features = \"a\"\ntrain_labels = \"b\"\ntest_features = \"c\"\n"
                         "test_labels = \"d\"\n";
      EXPECT_NO_THROW(parse_train_config(text, kSource, {key + "=" + n})) << key << " = " << n;
    }
  };
  accepts("data.format", {"mnist", "idx", "csv", "npy"});
  accepts("data.standardize", {"none", "global", "per_feature"});
  accepts("model.type", {"mlp"});
  accepts("model.activation", {"relu", "tanh", "sigmoid", "identity"});
  accepts("model.dtype", {"f32", "f64", "bf16"});
  accepts("init.weights", {"zeros", "constant", "uniform", "normal", "glorot_uniform", "glorot_normal",
                           "fan_in_uniform", "he_normal", "he_uniform", "orthogonal", "sparse"});
  // The optimizers and schedules: every name of the registry (tests/optim/registry_test.cpp
  // builds and trains each one).
  const auto all = [](std::span<const std::string_view> names) { return std::vector<std::string>(names.begin(), names.end()); };
  ASSERT_EQ(optim::optimizer_name_list().size(), 12u);
  ASSERT_EQ(optim::schedule_name_list().size(), 7u);
  accepts("optimizer.name", all(optim::optimizer_name_list()));
  accepts("schedule.name", all(optim::schedule_name_list()));
  accepts("sampler.kind", {"sequential", "shuffle_once", "reshuffle", "with_replacement", "stream"});
  accepts("early_stopping.monitor", {"val_error", "val_loss"});
  accepts("progress", {"auto", "bar", "plain", "none"});
}

TEST(ConfigTest, RangeBoundariesThatAreAllowed) {
  const TrainConfig c = parse_train_config(
      "threads = 1024\nepochs = 1\n[optimizer]\nmomentum = 0\nrho = 0.0\nrho2 = 0.9999999\nweight_decay = 0\n"
      "[sampler]\nbatch_size = 0\n[early_stopping]\npatience = 1\n[data]\nvalidation_size = 0\n"
      "[schedule]\nlr_end = 0\n",
      kSource);
  EXPECT_EQ(c.threads, 1024);
  EXPECT_EQ(c.epochs, 1);
  EXPECT_EQ(c.optimizer.rho2, 0.9999999);
  EXPECT_EQ(c.sampler.batch_size, 0);
  EXPECT_EQ(c.data.validation_size, 0);
  EXPECT_EQ(c.schedule.lr_end, 0.0);
}

// ---- overrides -------------------------------------------------------------

TEST(ConfigTest, OverrideForms) {
  const std::string file = "name = \"base\"\n[optimizer]\nlr = 0.5\n";
  const auto with = [&](const std::string& arg) { return parse_train_config(file, kSource, {arg}); };
  EXPECT_EQ(with("optimizer.lr=0.01").optimizer.lr, 0.01);
  EXPECT_EQ(with("optimizer.lr=1").optimizer.lr, 1.0);
  EXPECT_EQ(with(" optimizer.lr = 0.25 ").optimizer.lr, 0.25);
  EXPECT_EQ(with("model.hidden=[100]").model.hidden, (std::vector<std::int64_t>{100}));
  EXPECT_EQ(with("model.hidden=[]").model.hidden, (std::vector<std::int64_t>{}));
  EXPECT_EQ(with("sampler.batch_size=full").sampler.batch_size, 0);
  EXPECT_EQ(with("sampler.batch_size=64").sampler.batch_size, 64);
  EXPECT_EQ(with("name=\"x\"").name, "x");
  EXPECT_EQ(with("name='lit'").name, "lit");
  EXPECT_EQ(with("name=x").name, "x");
  EXPECT_EQ(with("name=2024").name, "2024");
  EXPECT_EQ(with("name=true").name, "true");
  EXPECT_EQ(with("out_dir=/tmp/some dir").out_dir, "/tmp/some dir");
  EXPECT_EQ(with("data.dir=a=b").data.dir, "a=b");
  EXPECT_EQ(with("optimizer.name=adam").optimizer.name, "adam");
  EXPECT_EQ(with("optimizer.nesterov=true").optimizer.nesterov, true);
  EXPECT_EQ(with("seed=18446744073709551615").seed, std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(with("seed=7").seed, 7u);
  // A key whose table the file leaves out.
  EXPECT_EQ(with("early_stopping.patience=2").early_stopping.patience, 2);
  // Applied in order: the later one wins; the file's other keys stay.
  const TrainConfig c = parse_train_config(file, kSource, {"epochs=3", "optimizer.momentum=0.9", "epochs=4"});
  EXPECT_EQ(c.epochs, 4);
  EXPECT_EQ(c.optimizer.momentum, 0.9);
  EXPECT_EQ(c.optimizer.lr, 0.5);
  EXPECT_EQ(c.name, "base");
}

// ---- to_toml ---------------------------------------------------------------

TEST(ConfigTest, ToTomlRoundTripOfTheDefaults) {
  TrainConfig c;
  c.source = kSource;
  const std::string text = to_toml(c);
  EXPECT_EQ(parse_train_config(text, kSource), c);
  // Every key is written, including the defaults.
  for (const char* key : {"name = \"run\"", "seed = 0", "threads = 0", "epochs = 10", "eval_every_steps = 0",
                          "out_dir = \"runs\"", "progress = \"auto\"", "[data]", "format = \"mnist\"", "scale = ",
                          "[model]", "hidden = [256, 256]", "[init]", "weights = \"he_uniform\"", "[optimizer]",
                          "# lr unset", "# delta unset", "[schedule]", "lr_end = -1.0", "[sampler]",
                          "batch_size = 128", "[early_stopping]", "patience = 5", "min_delta = 0.0", "[clip]",
                          "global_norm = 0.0", "[averaging]", "kind = \"none\""})
    EXPECT_NE(text.find(key), std::string::npos) << key << " missing from:\n" << text;
}

TEST(ConfigTest, ToTomlRoundTripOfAFullConfig) {
  const TrainConfig c = parse_train_config(kFullFile, kSource);
  EXPECT_EQ(parse_train_config(to_toml(c), kSource), c);
}

TEST(ConfigTest, ToTomlRoundTripOfAwkwardValues) {
  TrainConfig c;
  c.source = "odd\nname\xff.toml";
  c.name = "quote\" back\\slash tab\t bell\x07 caf\xc3\xa9";
  c.seed = std::numeric_limits<std::uint64_t>::max();
  c.data.scale = 1.0 / 255.0;
  c.data.csv_label_column = std::numeric_limits<int>::min();
  c.optimizer.lr = 0.1 + 0.2;
  c.optimizer.delta = 5e-324;
  c.optimizer.weight_decay = 1e300;
  c.init.bias = -123456789.125;
  c.model.hidden = {};
  c.sampler.batch_size = 0;
  c.schedule.lr_end = -1e-17;
  c.epochs = std::numeric_limits<std::int64_t>::max();
  const std::string text = to_toml(c);
  EXPECT_NE(text.find("batch_size = \"full\""), std::string::npos) << text;
  EXPECT_NE(text.find("seed = \"18446744073709551615\""), std::string::npos) << text;
  EXPECT_EQ(parse_train_config(text, c.source), c);

  c.seed = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  const std::string text2 = to_toml(c);
  EXPECT_NE(text2.find("seed = 9223372036854775807\n"), std::string::npos) << text2;
  EXPECT_EQ(parse_train_config(text2, c.source), c);
}

// ---- errors: TOML syntax and not TOML at all ---------------------------------

TEST(ConfigErrorTest, SyntaxErrorNamesTheLine) {
  expect_message(config_error("name = \"x\"\n\n# comment\nepochs = \n"), {syntax_at(4, 10), "expected value"});
  expect_message(config_error("[optimizer\nlr = 1\n"), {syntax_at(1, 11), "table header"});
  expect_message(config_error("epochs = 3\nepochs = 4\n"), {syntax_at(2, 10), "redefine", "epochs"});
  expect_message(config_error("name = \"unterminated\n"), {syntax_at(1, 21)});
}

TEST(ConfigErrorTest, NotUtf8OrNotTomlAtAll) {
  expect_message(config_error(std::string_view("# ok\nname = \"\xff\xfe\"\n")), {syntax_at(2, 8), "utf-8"});
  expect_message(config_error(std::string_view("\x7f" "ELF\x02\x01\x01\x00\x00\x00", 10)), {syntax_at(1, 1)});
  expect_message(config_error(std::string_view("\x00\x01\x02\x03", 4)), {syntax_at(1, 1)});
  expect_message(config_error("{\"optimizer\": {\"lr\": 0.1}}"), {syntax_at(1, 1)});
}

// ---- errors: unknown keys ----------------------------------------------------

TEST(ConfigErrorTest, UnknownKeySuggestsTheClosest) {
  expect_message(config_error("[optimizer]\nlr = 0.1\nlrr = 0.2\n"),
                 {line(3), "optimizer.lrr: unknown key", "did you mean optimizer.lr?"});
  expect_message(config_error("epochs = 1\n[optimiser]\nlr = 1\n"),
                 {line(2), "optimiser: unknown key", "did you mean optimizer?"});
  expect_message(config_error("[early_stopping]\npatiense = 3\n"), {line(2), "did you mean early_stopping.patience?"});
  expect_message(config_error("\n\nseeds = 1\n"), {line(3), "seeds: unknown key", "did you mean seed?"});
  // Edit distance 2 is suggested, 3 is not.
  expect_message(config_error("[data]\nvalidaton_sze = 5\n"),
                 {line(2), "data.validaton_sze: unknown key; did you mean data.validation_size?"});
  const std::string far = config_error("[data]\nvaldaton_sze = 5\n");
  expect_message(far, {line(2), "data.valdaton_sze: unknown key"});
  EXPECT_EQ(far.find("did you mean"), std::string::npos) << far;
}

TEST(ConfigErrorTest, UnknownKeyInTheWrongTableSuggestsWhereItBelongs) {
  expect_message(config_error("[optimizer]\nbatch_size = 3\n"),
                 {line(2), "optimizer.batch_size: unknown key", "did you mean sampler.batch_size?"});
  expect_message(config_error("lr = 0.1\n"), {line(1), "lr: unknown key", "did you mean optimizer.lr?"});
  expect_message(config_error("[model]\nname = \"x\"\n"),
                 {line(2), "model.name: unknown key", "did you mean one of name, optimizer.name, schedule.name?"});
}

TEST(ConfigErrorTest, UnknownKeyFarFromAnyHasNoSuggestion) {
  const std::string m = config_error("epochs = 2\ncolour_scheme = \"dark\"\n");
  expect_message(m, {line(2), "colour_scheme: unknown key"});
  EXPECT_EQ(m.find("did you mean"), std::string::npos) << m;
  expect_message(config_error("[data]\n[data.extra]\nx = 1\n"), {line(2), "data.extra: unknown key"});
}

// ---- errors: wrong types ----------------------------------------------------

struct BadCase {
  std::string text;
  std::string key;  // the dotted key as the message names it
  int line;
  std::string expected;  // a part of the message saying what was expected or found
};

void expect_cases(const std::vector<BadCase>& cases) {
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.text);
    expect_message(config_error(c.text), {line(c.line), c.key + ": ", c.expected});
  }
}

TEST(ConfigErrorTest, WrongTypes) {
  expect_cases({
      {"[optimizer]\nlr = \"fast\"\n", "optimizer.lr", 2, "expected a finite number > 0, got the string \"fast\""},
      {"epochs = 2.5\n", "epochs", 1, "expected an integer >= 1, got the float 2.5"},
      {"[optimizer]\n\nnesterov = \"yes\"\n", "optimizer.nesterov", 3, "expected a boolean"},
      {"[data]\ncsv_header = 1\n", "data.csv_header", 2, "expected a boolean (true or false), got the integer 1"},
      {"[model]\nhidden = 256\n", "model.hidden", 2, "expected an array of integers >= 1"},
      {"[model]\nhidden = [\n  128,\n  \"a\",\n]\n", "model.hidden[1]", 4, "got the string \"a\""},
      {"[model]\nhidden = [1.5]\n", "model.hidden[0]", 2, "got the float 1.5"},
      {"name = 3\n", "name", 1, "expected a non-empty string, got the integer 3"},
      {"[data]\nformat = true\n", "data.format", 2, "expected a string, got the boolean true"},
      {"optimizer = 3\n", "optimizer", 1, "expected a table ([optimizer]), got the integer 3"},
      {"epochs = 3\n[name]\nx = 1\n", "name", 2, "got a table"},
      {"[sampler]\nbatch_size = \"half\"\n", "sampler.batch_size", 2, "expected an integer >= 0 or \"full\""},
      {"[sampler]\nbatch_size = 12.0\n", "sampler.batch_size", 2, "got the float 12.0"},
      {"seed = \"abc\"\n", "seed", 1, "expected an integer >= 0"},
      {"seed = \"18446744073709551616\"\n", "seed", 1, "expected an integer >= 0"},
      {"seed = 1.0\n", "seed", 1, "got the float 1.0"},
      {"[optimizer]\nlr = 2024-01-01\n", "optimizer.lr", 2, "got a date"},
      {"[optimizer]\nlr = [0.1]\n", "optimizer.lr", 2, "got an array"},
  });
}

// ---- errors: values out of range --------------------------------------------

TEST(ConfigErrorTest, ValuesOutOfRange) {
  expect_cases({
      {"[optimizer]\nlr = 0\n", "optimizer.lr", 2, "expected a finite number > 0, got the integer 0"},
      {"[optimizer]\nlr = -0.5\n", "optimizer.lr", 2, "expected a finite number > 0, got the float -0.5"},
      {"[optimizer]\nlr = nan\n", "optimizer.lr", 2, "got the float nan"},
      {"[optimizer]\nlr = inf\n", "optimizer.lr", 2, "got the float inf"},
      {"[optimizer]\nmomentum = 1.0\n", "optimizer.momentum", 2, "expected a number in [0, 1), got the float 1.0"},
      {"[optimizer]\nmomentum = -0.1\n", "optimizer.momentum", 2, "expected a number in [0, 1)"},
      {"[optimizer]\nrho = 1\n", "optimizer.rho", 2, "expected a number in [0, 1)"},
      {"[optimizer]\nrho1 = 1.5\n", "optimizer.rho1", 2, "expected a number in [0, 1)"},
      {"[optimizer]\nrho2 = -0.001\n", "optimizer.rho2", 2, "expected a number in [0, 1)"},
      {"[optimizer]\ndelta = 0\n", "optimizer.delta", 2, "expected a finite number > 0"},
      {"[optimizer]\nweight_decay = -1e-4\n", "optimizer.weight_decay", 2, "expected a finite number >= 0"},
      {"[sampler]\nbatch_size = -1\n", "sampler.batch_size", 2, "expected an integer >= 0 or \"full\""},
      {"epochs = 0\n", "epochs", 1, "expected an integer >= 1, got the integer 0"},
      {"eval_every_steps = -1\n", "eval_every_steps", 1, "expected an integer >= 0"},
      {"threads = -1\n", "threads", 1, "expected an integer in [0, 1024]"},
      {"threads = 5000\n", "threads", 1, "expected an integer in [0, 1024]"},
      {"seed = -1\n", "seed", 1, "expected an integer >= 0"},
      {"[early_stopping]\npatience = 0\n", "early_stopping.patience", 2, "expected an integer >= 1"},
      {"[early_stopping]\nmin_delta = -0.1\n", "early_stopping.min_delta", 2, "expected a finite number >= 0"},
      {"[data]\nvalidation_size = -1\n", "data.validation_size", 2, "expected an integer >= 0, got the integer -1"},
      {"[data]\nlimit_train = -5\n", "data.limit_train", 2, "expected an integer >= 0"},
      {"[data]\nlimit_test = -5\n", "data.limit_test", 2, "expected an integer >= 0"},
      {"[data]\nscale = 0\n", "data.scale", 2, "expected a finite number > 0"},
      {"[data]\ncsv_label_column = 3000000000\n", "data.csv_label_column", 2, "expected an integer in ["},
      {"[model]\nhidden = [0]\n", "model.hidden[0]", 2, "expected an integer in [1, 2147483647], got the integer 0"},
      {"[model]\nhidden = [256, -3]\n", "model.hidden[1]", 2, "got the integer -3"},
      {"[init]\ngain = 0\n", "init.gain", 2, "expected a finite number > 0"},
      {"[init]\noutput_gain = -0.5\n", "init.output_gain", 2, "expected a finite number >= 0"},
      {"[init]\noutput_gain = inf\n", "init.output_gain", 2, "expected a finite number >= 0"},
      {"[init]\nbias = -inf\n", "init.bias", 2, "expected a finite number"},
      {"[init]\nsparse_k = 0\n", "init.sparse_k", 2, "expected an integer >= 1"},
      {"[schedule]\ntau = -1\n", "schedule.tau", 2, "expected an integer >= 0"},
      {"[schedule]\nlr_end = nan\n", "schedule.lr_end", 2, "expected a finite number"},
      {"name = \"\"\n", "name", 1, "expected a non-empty string"},
      {"name = \"a/b\"\n", "name", 1, "expected a folder name"},
      {"name = \"..\"\n", "name", 1, "expected a folder name"},
      {"name = \"a\\u0000b\"\n", "name", 1, "without NUL"},
      {"out_dir = \"\"\n", "out_dir", 1, "expected a non-empty string"},
  });
}

// ---- errors: unknown names for enumerated strings --------------------------

TEST(ConfigErrorTest, UnknownEnumeratedNames) {
  expect_cases({
      {"[data]\nformat = \"hdf5\"\n", "data.format", 2, "unknown value \"hdf5\"; expected one of mnist, idx, csv, npy"},
      {"[data]\nstandardize = \"pca\"\n", "data.standardize", 2, "expected one of none, global, per_feature"},
      {"[model]\nactivation = \"gelu\"\n", "model.activation", 2, "expected one of relu, tanh, sigmoid, identity"},
      {"[model]\ndtype = \"f16\"\n", "model.dtype", 2, "expected one of f32, f64, bf16; did you mean bf16?"},
      {"[model]\ntype = \"cnn\"\n", "model.type", 2, "expected one of mlp"},
      {"progress = \"fancy\"\n", "progress", 1, "expected one of auto, bar, plain, none"},
      {"[early_stopping]\nmonitor = \"val_acc\"\n", "early_stopping.monitor", 2,
       "expected one of val_error, val_loss"},
      {"[sampler]\nkind = \"random\"\n", "sampler.kind", 2,
       "expected one of sequential, shuffle_once, reshuffle, with_replacement, stream"},
      {"[schedule]\nname = \"cosinus\"\n", "schedule.name", 2, "expected one of constant, linear, step"},
      {"[optimizer]\nname = \"adamm\"\n", "optimizer.name", 2,
       "expected one of sgd, momentum, nesterov, adagrad, rmsprop, rmsprop_nesterov, adadelta, adam, adamw, amsgrad, adamax, nadam, newton, damped_newton, newton_cg, saddle_free, cg, bfgs, "
       "lbfgs; did "
       "you mean adam?"},
      {"[init]\nweights = \"xavier\"\n", "init.weights", 2,
       "expected one of zeros, constant, uniform, normal, glorot_uniform, glorot_normal, fan_in_uniform, he_normal, "
       "he_uniform, orthogonal, sparse"},
  });
}

// ---- errors: paths that the data format requires ----------------------------

TEST(ConfigErrorTest, DataFormatRequiresItsPaths) {
  expect_message(config_error("epochs = 1\n[data]\nformat = \"idx\"\ntrain_features = \"a\"\n"),
                 {line(3), "data.train_labels: required when data.format = \"idx\""});
  expect_message(config_error("[data]\nformat = \"npy\"\ntrain_features = \"\"\n"),
                 {line(3), "data.train_features: required when data.format = \"npy\""});
  expect_message(config_error("[data]\nformat = \"csv\"\ntrain_features = \"a.csv\"\n"),
                 {line(2), "data.test_features: required when data.format = \"csv\""});
  expect_message(config_error("[data]\ndir = \"\"\n"), {line(2), "data.dir: required when data.format = \"mnist\""});
  // csv does not need the *_labels keys.
  const TrainConfig c =
      parse_train_config("[data]\nformat = \"csv\"\ntrain_features = \"a.csv\"\ntest_features = \"b.csv\"\n", kSource);
  EXPECT_EQ(c.data.format, "csv");
}

// ---- errors: bad --set -------------------------------------------------------

TEST(ConfigErrorTest, BadOverrides) {
  const std::string file = "[optimizer]\nlr = 0.1\n";
  expect_message(config_error(file, {"optimizer.lr"}), {"--set optimizer.lr: expected key=value"});
  expect_message(config_error(file, {"=0.1"}), {"--set =0.1: the key before '=' is empty"});
  expect_message(config_error(file, {"optimizer.lrr=0.01"}),
                 {"--set optimizer.lrr=0.01: optimizer.lrr: unknown key; did you mean optimizer.lr?"});
  expect_message(config_error(file, {"batch_size=32"}), {"batch_size: unknown key; did you mean sampler.batch_size?"});
  expect_message(config_error(file, {"optimizer=3"}), {"--set optimizer=3: optimizer is a table", "optimizer.name="});
  // The value is checked like a value of the file, and the message quotes the --set.
  expect_message(config_error(file, {"optimizer.lr=-1"}),
                 {"exp.toml: --set optimizer.lr=-1: optimizer.lr: expected a finite number > 0, got the integer -1"});
  expect_message(config_error(file, {"optimizer.lr=fast"}),
                 {"--set optimizer.lr=fast: optimizer.lr: expected a finite number > 0, got the string \"fast\""});
  expect_message(config_error(file, {"model.hidden=[64, 0]"}), {"--set model.hidden=[64, 0]: model.hidden[1]: "});
  expect_message(config_error(file, {"sampler.kind=shuffled"}),
                 {"--set sampler.kind=shuffled: sampler.kind: unknown value"});
  expect_message(config_error(file, {"name="}), {"--set name=: name: expected a non-empty string"});
  expect_message(config_error(file, {"name=caf\xe9"}), {"--set name=caf\xe9: name: the value is not valid text"});
  expect_message(config_error("", {"data.format=idx"}),
                 {"exp.toml: --set data.format=idx: data.train_features: required when data.format = \"idx\""});
  // A table of the file that is not a table.
  expect_message(config_error("\noptimizer = 1\n", {"optimizer.lr=0.1"}),
                 {line(2), "optimizer: expected a table ([optimizer]), got the integer 1"});
  // Messages about the file's own keys still give the file's line when overrides are present.
  expect_message(config_error("\n[optimizer]\nmomentum = 2\n", {"optimizer.lr=0.1"}), {line(3), "optimizer.momentum"});
}

// ---- files on disk -------------------------------------------------------------

TEST(ConfigFileTest, LoadsAFileAndNamesItInErrors) {
  const TempDir dir;
  const fs::path good = dir.write("good.toml", kFullFile);
  const TrainConfig c = load_train_config(good, {"epochs=7"});
  EXPECT_EQ(c.source, good.string());
  EXPECT_EQ(c.epochs, 7);
  EXPECT_EQ(c.optimizer.name, "adam");

  const fs::path bad = dir.write("bad.toml", "[optimizer]\n\nlr = -1\n");
  try {
    load_train_config(bad);
    ADD_FAILURE() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).rfind(bad.string() + ", line 3: optimizer.lr: ", 0), 0u) << e.what();
  }

  const fs::path binary = dir.write("model.bin", std::string_view("\x89PNG\r\n\x1a\n\x00\x00\xff", 11));
  try {
    load_train_config(binary);
    ADD_FAILURE() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).rfind(binary.string() + ", line 1", 0), 0u) << e.what();
  }
}

TEST(ConfigFileTest, MissingFileOrDirectoryIsAnIoError) {
  const TempDir dir;
  const fs::path missing = dir.path() / "missing.toml";
  try {
    load_train_config(missing);
    ADD_FAILURE() << "expected an IoError";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(missing.string()), std::string::npos) << e.what();
  }
  try {
    load_train_config(dir.path());
    ADD_FAILURE() << "expected an IoError";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("is a directory"), std::string::npos) << e.what();
  }
}

TEST(ConfigFileTest, ResolvedConfigWrittenToDiskReadsBack) {
  const TempDir dir;
  const TrainConfig c = parse_train_config(kFullFile, kSource, {"name=\"resolved run\"", "sampler.batch_size=full"});
  const fs::path path = dir.write("config.toml", to_toml(c));
  TrainConfig expected = c;
  expected.source = path.string();
  EXPECT_EQ(load_train_config(path), expected);
}

}  // namespace
}  // namespace descent::train

namespace descent::train {
namespace {

TEST(ConfigCheckpointDivergence, KeysParseAndBadValuesAreNamed) {
  const TrainConfig c = parse_train_config(
      "[checkpoint]\nevery_steps = 50\nkeep = 2\n[divergence]\npolicy = \"rollback\"\nlr_scale = 0.25\n", kSource);
  EXPECT_EQ(c.checkpoint.every_steps, 50);
  EXPECT_EQ(c.checkpoint.every_epochs, 1);
  EXPECT_EQ(c.checkpoint.keep, 2);
  EXPECT_EQ(c.divergence.policy, "rollback");
  EXPECT_EQ(c.divergence.lr_scale, 0.25);
  EXPECT_EQ(parse_train_config(to_toml(c), kSource), c);
  expect_message(config_error("[checkpoint]\nkeep = 0\n"), {line(2), "checkpoint.keep"});
  expect_message(config_error("[checkpoint]\nevery_steps = -1\n"), {line(2), "checkpoint.every_steps"});
  expect_message(config_error("[divergence]\npolicy = \"skp\"\n"), {line(2), "divergence.policy", "did you mean skip?"});
  expect_message(config_error("[divergence]\nlr_scale = 1.0\n"), {line(2), "divergence.lr_scale", "(0, 1)"});
  expect_message(config_error("", {"divergence.max_events=0"}), {"--set divergence.max_events=0", "divergence.max_events"});
}

}  // namespace
}  // namespace descent::train

// Regression inputs the config fuzzer found (fuzz/corpus/config/regress-*.toml): keys,
// values and parser descriptions holding line breaks or thousands of bytes. Each must give
// one ConfigError whose message is one line, starts with the file and stays short. Lines
// starting with "#--set " are passed as overrides, as the fuzz target does.
namespace descent::train {
namespace {

TEST(ConfigFuzzRegressions, HostileTextGivesOneShortLine) {
  const std::filesystem::path dir = std::filesystem::path(DESCENT_SOURCE_DIR) / "fuzz" / "corpus" / "config";
  int seen = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string file = entry.path().filename().string();
    if (!file.starts_with("regress-")) continue;
    ++seen;
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::string> overrides;
    std::size_t start = 0;
    while (start < text.size()) {
      std::size_t end = text.find('\n', start);
      if (end == std::string::npos) end = text.size();
      const std::string_view line = std::string_view(text).substr(start, end - start);
      if (line.starts_with("#--set ")) overrides.emplace_back(line.substr(7));
      start = end + 1;
    }
    const std::string message = config_error(text, overrides);
    SCOPED_TRACE(file + ": " + message);
    EXPECT_TRUE(message.starts_with(kSource));
    EXPECT_EQ(message.find('\n'), std::string::npos);
    EXPECT_LE(message.size(), 400u);
  }
  EXPECT_GE(seen, 7);
}

}  // namespace
}  // namespace descent::train
