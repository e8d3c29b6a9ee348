#pragma once
// The training config: what `descent train CONFIG.toml --set key=value ...` reads.
//
// A config is a TOML file (https://toml.io, v1.0). The top-level keys are name, seed, threads,
// thread_rule, flush_denormals, deterministic, deterministic_block, allreduce_bucket_kb, epochs, eval_every_steps, log_every_steps, out_dir and progress. The tables [data], [model], [init],
// [optimizer], [schedule], [clip], [averaging], [sampler], [early_stopping], [checkpoint],
// [snapshots], [divergence] and [tensorboard] hold the fields of the structs below (the optimizer's four in
// descent/optim/config.hpp), under the same names. Every key is optional: a missing key keeps
// the default written here. The schema (src/train/config.cpp, schema::fields()) describes each
// key once: reading, range checks, to_toml and docs/config.md's key tables all come from it.
//
// Errors: every function here throws descent::ConfigError, and load_train_config also throws
// descent::IoError. A message starts with the file name. For a key written in the file it
// gives the line ("exp.toml, line 7: ..."). For a key set with --set it quotes the argument
// ("exp.toml: --set optimizer.lr=-1: ..."). It then names the dotted key and says what was
// expected:
//   exp.toml, line 7: optimizer.lr: expected a finite number > 0, got the float -0.5
//   exp.toml, line 3: optimizer.lrr: unknown key; did you mean optimizer.lr?
// These are checked:
//   - TOML syntax, which includes invalid UTF-8 (the message gives line and column);
//   - unknown keys and tables, with the closest valid key suggested when one is within edit
//     distance 2, or when the same name exists in another table;
//   - types: an integer is accepted where a float is expected, but not the reverse;
//   - ranges and enumerated names (documented per field below);
//   - paths that data.format requires;
//   - malformed --set arguments.
// The first error found is thrown. Nothing is read from disk except the config file itself.
//
// toml++ is an implementation detail of src/train/config.cpp. It is not part of this header.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "descent/nn/model_config.hpp"
#include "descent/optim/config.hpp"

namespace descent::train {

struct DataConfig {
  // "mnist" (a directory holding the four IDX files of MNIST/Fashion-MNIST) | "idx" | "csv" | "npy" |
  // "sharded" (a directory written by `descent shard`, streamed: data/shards.hpp).
  std::string format = "mnist";
  std::string dir = "/usr/share/datasets/fashion-mnist";  // formats "mnist" and "sharded"; must not be empty
  // idx and npy: the four files, all required. csv: train_features and test_features name the
  // two CSV files (each with the label in column csv_label_column); the *_labels keys are unused.
  std::string train_features, train_labels, test_features, test_labels;
  int csv_label_column = 0;  // csv only: 0-based; negative counts from the end (-1 = last)
  bool csv_header = false;   // csv only: the first row is a header
  double scale = 1.0 / 255.0;           // raw features are multiplied by this; finite, > 0
  std::string standardize = "none";     // none | global | per_feature (training-split statistics)
  std::int64_t validation_size = 10000;  // >= 0; carved from the end of the training file
  bool validation_shuffle = false;      // seeded shuffle of the training file before carving
  std::int64_t limit_train = 0, limit_test = 0;  // >= 0; 0 = all, else keep the first N
  // format "sharded": the train shards in this many interleaved groups (group g: shards g,
  // g + G, ...); each batch takes batch_size / G examples of each group, and an MPI rank reads
  // only its own groups (docs/data.md, "Shard groups"). >= 1; mpirun -np P needs P | G.
  std::int64_t shard_groups = 1;

  bool operator==(const DataConfig&) const = default;
};

// The [model] section: nn/model_config.hpp (the layer types and their keys live there).
using LayerConfig = nn::LayerConfig;
using ModelConfig = nn::ModelConfig;

struct InitConfig {
  // zeros | constant | uniform | normal | glorot_uniform | glorot_normal | fan_in_uniform |
  // he_normal | he_uniform | orthogonal | sparse (see docs/initialization.md)
  std::string weights = "he_uniform";
  double bias = 0.0;          // every bias starts at this value; finite
  double gain = 1.0;          // glorot_*, he_*, orthogonal; finite, > 0
  double output_gain = 1.0;   // the output layer's weights are multiplied by this once drawn; finite, >= 0
  std::int64_t sparse_k = 15;  // sparse: non-zero incoming weights per unit; >= 1

  bool operator==(const InitConfig&) const = default;
};

// OptimizerConfig, ScheduleConfig, ClipConfig and AveragingConfig: descent/optim/config.hpp.
using optim::AveragingConfig;
using optim::ClipConfig;
using optim::OptimizerConfig;
using optim::ScheduleConfig;

struct SamplerConfig {
  std::string kind = "reshuffle";  // sequential | shuffle_once | reshuffle | with_replacement | stream
  std::int64_t batch_size = 128;   // >= 0; 0 = full batch (the TOML value may be the string "full")
  bool drop_last = false;

  bool operator==(const SamplerConfig&) const = default;
};

struct EarlyStoppingConfig {
  bool enabled = true;
  std::string monitor = "val_error";  // val_error | val_loss
  std::int64_t patience = 5;          // epochs without improvement before stopping; >= 1
  double min_delta = 0.0;             // smallest decrease that counts as improvement; finite, >= 0

  bool operator==(const EarlyStoppingConfig&) const = default;
};

// Checkpoints (docs/reliability.md): the whole training state, written atomically into
// <run folder>/checkpoints/ so that `descent resume` continues the run exactly.
struct CheckpointConfig {
  std::int64_t every_epochs = 1;  // >= 0; write one after every N epochs (0: not by epoch)
  std::int64_t every_steps = 0;   // >= 0; write one after every N updates (0: not by step)
  std::int64_t keep = 3;          // >= 1; the newest K are kept, older ones removed
  bool operator==(const CheckpointConfig&) const = default;
};
// Snapshots of the weights along the trajectory (train/trajectory.hpp): the run keeps its
// initial weights (init.safetensors) always, and with every_steps = N > 0 the weights after
// every N updates in <run folder>/snapshots/step-<k>.safetensors (descent diagnose --what
// plane draws the trajectory from them, docs/diagnostics.md).
struct SnapshotsConfig {
  std::int64_t every_steps = 0;  // >= 0; 0: no snapshots (init.safetensors is written anyway)
  bool operator==(const SnapshotsConfig&) const = default;
};
// What to do when the loss or a gradient is NaN or infinite (a loss caught before the update; a
// gradient before it too, or right after it where its norm is summed in the update's pass:
// train/trainer.hpp).
struct DivergenceConfig {
  // stop: end the run with an error naming the step and the first non-finite gradient;
  // skip: drop the batch and go on; rollback: return to the last checkpoint and multiply the
  // learning rate by lr_scale.
  std::string policy = "stop";
  double lr_scale = 0.5;          // rollback: in (0, 1)
  std::int64_t max_events = 10;   // skip / rollback: stop after this many divergences; >= 1
  bool operator==(const DivergenceConfig&) const = default;
};
// Monitors during training (docs/diagnostics.md, "Monitors during training"): what each
// writes into metrics.jsonl (docs/metrics.md). 0 turns a monitor off; all are off by default.
struct DiagnosticsConfig {
  std::int64_t curvature_every = 0;   // >= 0: g'g, g'Hg, eq. 8.10 every N updates (8.2.1)
  bool curvature_update = false;      // also d'g + d'Hd/2 of the actual update d (one more Hv)
  bool observed_change = true;        // the minibatch's loss after the update (one more forward)
  std::int64_t lambda_max_every = 0;  // >= 0: a few Lanczos steps on the minibatch Hessian
  std::int64_t lanczos_steps = 5;     // in [1, 100]
  std::int64_t layers_every = 0;      // >= 0: per-parameter gradient and weight norms
  double cliff_factor = 0.0;          // >= 0 (0: off): a cliff is ||g|| > factor x running median
  std::int64_t cliff_window = 50;     // in [3, 100000]: the running median's window
  std::int64_t recurrent_every_epochs = 0;  // >= 0: recurrent matrices and ||dL/dh_t|| (8.2.5)
  std::int64_t recurrent_examples = 1000;   // >= 1: the first N training examples for ||dL/dh_t||
  bool operator==(const DiagnosticsConfig&) const = default;
};
// TensorBoard event files in <run folder>/tb/ (docs/tensorboard.md).
struct TensorBoardConfig {
  bool enabled = true;                      // write them: every scalar of metrics.jsonl
  std::int64_t histogram_every_steps = 500;  // >= 0; histograms of each parameter and its gradient every N updates (0: none)
  bool operator==(const TensorBoardConfig&) const = default;
};
// [second_order]: the settings of the second-order methods in `descent train`, used when
// optimizer.name names one (lbfgs, damped_newton, cg, bfgs, newton, newton_cg, saddle_free;
// optim/second_order.hpp, docs/optimizers.md). The objective of each step is the mean loss
// over the sampler's batch (sampler.batch_size; "full": every training example).
struct SecondOrderConfig {
  std::string line_search = "default";  // default (the method's) | strong_wolfe | armijo | none
  std::optional<double> c1;             // sufficient decrease, default 1e-4
  std::optional<double> c2;             // curvature, default 0.9 (cg: 0.1)
  int max_evaluations = 20;             // >= 1, per line search
  double step = 1.0;                    // > 0: the step without a line search, the first trial step otherwise
  int history = 10;                     // lbfgs: m pairs, >= 1
  std::optional<double> damping;        // lambda >= 0 (damped_newton 1, adapted; saddle_free 1e-3)
  bool adapt_damping = true;            // damped_newton: Levenberg-Marquardt adjustment
  int cg_iterations = 50;               // damped_newton, newton_cg: linear CG steps at most, >= 1
  int krylov = 20;                      // saddle_free: Lanczos steps, >= 1
  std::string beta = "pr+";             // cg: fr | pr | pr+
  std::int64_t restart = 0;             // cg: restart every N iterations (0: every dim, < 0: never)
  std::string batch = "resample";       // resample (a new batch per step) | fixed (the first batch_size examples)
  std::string curvature = "hessian";    // hessian | gauss_newton (G = J^T H_L J): the products of the methods that use H
  bool reuse_gradient = true;           // resample: the step's loss and gradient come from the trainer's pass (false: its own)
  bool operator==(const SecondOrderConfig&) const = default;
};
struct TrainConfig {
  std::string name = "run";   // the run folder's name: not empty, no '/', not "." or ".."
  // The TOML value is an integer in [0, 2^63-1]. A larger seed is written as a string of
  // decimal digits, and such a string is also accepted on input.
  std::uint64_t seed = 0;
  int threads = 0;            // 0 = all cores; in [0, 1024]
  // auto (timed on the run's first steps, train/thread_rule.hpp) | small_serial | tiny_serial | parallel
  std::string thread_rule = "auto";
  // Denormals read and written as zero on the run's threads (descent::set_flush_denormals).
  bool flush_denormals = true;
  // Deterministic mode (train/distributed.hpp): bit-identical with any thread count and rank count.
  bool deterministic = false;
  std::int64_t deterministic_block = 64;  // examples per block of the batch, in [1, 2^20]
  // Under mpirun: 0 = one all-reduce of the whole gradient after the backward pass; > 0 =
  // all-reduces of buckets of about this many KiB started during the backward pass (train/distributed.hpp).
  std::int64_t allreduce_bucket_kb = 0;
  std::int64_t epochs = 10;   // >= 1
  std::int64_t eval_every_steps = 0;  // >= 0; 0 = evaluate only at epoch ends
  std::int64_t log_every_steps = 1;   // >= 1; a "step" record in metrics.jsonl every this many updates
  std::string out_dir = "runs";       // parent folder of the run folder; not empty
  std::string progress = "auto";      // auto | bar | plain | none
  DataConfig data;
  ModelConfig model;
  InitConfig init;
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
  ClipConfig clip;
  AveragingConfig averaging;
  SamplerConfig sampler;
  EarlyStoppingConfig early_stopping;
  CheckpointConfig checkpoint;
  SnapshotsConfig snapshots;
  DivergenceConfig divergence;
  DiagnosticsConfig diagnostics;
  TensorBoardConfig tensorboard;
  SecondOrderConfig second_order;
  std::string source;  // the file name the config came from (not a TOML key)

  bool operator==(const TrainConfig&) const = default;
};

// Reads the TOML file at `path`, applies `overrides`, validates the result and returns it, with
// source = path.string(). Throws IoError if the file cannot be read (missing, a directory,
// unreadable, or larger than 16 MiB), and ConfigError as described at the top of this file.
//
// Each override is "key=value" with a dotted key, e.g. "optimizer.lr=0.01",
// "model.hidden=[100]", "sampler.batch_size=full", "name=\"x\"" or "name=x". The value is
// parsed as a TOML value. If it does not parse, the text after '=' is taken as a string. For
// a key whose type is string, the text is also taken as is when it parses as a non-string
// (name=2024 gives "2024"). Overrides are applied in order, so a later one wins. An override
// may set a key that the file leaves out.
// Cost: linear in the size of the file and the overrides.
TrainConfig load_train_config(const std::filesystem::path& path, const std::vector<std::string>& overrides = {});

// The same for TOML text already in memory. `source_name` names it in messages and in
// TrainConfig::source.
TrainConfig parse_train_config(std::string_view toml_text, const std::string& source_name,
                               const std::vector<std::string>& overrides = {});

// The config as TOML text, with every key written, defaults included. This is what a run
// writes to runs/<name>/config.toml. For any config these functions return,
// parse_train_config(to_toml(c), c.source) == c. Floats are written in their shortest form
// that reads back exactly, sampler.batch_size = 0 is written as "full", and `source` appears
// only in a comment. Does not validate and does not throw, except std::bad_alloc.
std::string to_toml(const TrainConfig& config);

// Every dotted key of the schema ("name", ..., "optimizer.lr", ...), in to_toml's order.
std::vector<std::string> config_keys();

}  // namespace descent::train
