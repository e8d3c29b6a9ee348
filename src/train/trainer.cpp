#include "descent/train/trainer.hpp"

#include "descent/train/early_stopping.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <csignal>
#include <iomanip>
#include <limits>
#include <numeric>
#include <optional>
#include <ostream>
#include <span>
#include <sstream>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "descent/data/sampler.hpp"
#include "descent/data/shards.hpp"
#include "descent/io/atomic_file.hpp"
#include "descent/io/json_lines.hpp"
#include "descent/io/model_file.hpp"
#include "descent/io/sha256.hpp"
#include "descent/loss/loss.hpp"
#include "descent/nn/conv.hpp"
#include "descent/nn/initialize.hpp"
#include "descent/nn/normalization.hpp"
#include "descent/nn/recurrent.hpp"
#include "descent/optim/optimizer.hpp"
#include "descent/optim/registry.hpp"
#include "descent/train/callbacks.hpp"
#include "descent/train/checkpoint.hpp"
#include "descent/train/distributed.hpp"
#include "descent/train/model_card.hpp"
#include "descent/train/monitors.hpp"
#include "descent/train/run_folder.hpp"
#include "descent/train/second_order_loop.hpp"
#include "descent/train/step.hpp"
#include "descent/train/thread_rule.hpp"
#include "descent/train/trajectory.hpp"
#include "descent/train/tensorboard.hpp"
#include "descent/tensor/kernels.hpp"
#include "descent/tensor/parallel.hpp"
#include "descent/version.hpp"
#include "mixed_precision.hpp"
#include "step_bf16.hpp"

namespace descent::train {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::unique_ptr<optim::Optimizer> make_optimizer(const TrainConfig& c, std::int64_t total_steps, double lr_scale) {
  if (is_second_order(c)) return make_second_order_optimizer(c, lr_scale);  // train/second_order_loop.hpp
  if (const optim::KeyConflict k = optim::check_keys(c.optimizer); !k.key.empty())
    throw ConfigError(c.source + ": " + k.key + ": " + k.message);
  return optim::make_optimizer(c.optimizer, c.schedule, c.clip, c.averaging, total_steps, lr_scale);
}

std::string first_non_finite_gradient(ParameterArena& arena) {
  for (std::size_t i = 0; i < arena.count(); ++i) {
    const ParamId id{static_cast<std::int32_t>(i)};
    if (!kernels::all_finite(arena.grad(id))) return arena.entry(id).name;
  }
  return "(none)";
}

// A module that needs n > 1 examples per minibatch to train (batch normalization: the
// variance of one value is undefined). Refuse, before training starts, a sampler that would
// give it fewer.
void check_min_batch(nn::Sequential& net, const TrainConfig& config, std::int64_t n) {
  const std::int64_t need = net.min_batch_size();
  if (need <= 1) return;
  std::string who;
  for (std::size_t i = 0; i < net.size() && who.empty(); ++i) {
    if (net.at(i).min_batch_size() == need) who = net.at(i).describe();
  }
  const std::int64_t batch = config.sampler.batch_size == 0 ? n : config.sampler.batch_size;
  if (batch < need || n < need) {
    throw ConfigError(config.source + ": sampler.batch_size: " + who + " needs at least " + std::to_string(need) +
                      " examples per batch");
  }
  const std::int64_t rest = n % batch;
  if (!config.sampler.drop_last && rest != 0 && rest < need)
    throw ConfigError(config.source + ": sampler.drop_last: the last batch of each epoch would hold " +
                      std::to_string(rest) + " example(s) (" + std::to_string(n) + " = " + std::to_string(n / batch) +
                      " x " + std::to_string(batch) + " + " + std::to_string(rest) + "), which " + who +
                      " cannot train on; set sampler.drop_last = true or change sampler.batch_size");
}

}  // namespace

std::unique_ptr<optim::Optimizer> make_optimizer(const TrainConfig& config, std::int64_t total_steps) {
  return make_optimizer(config, total_steps, 1.0);
}

void initialize_model(Model& model, const TrainConfig& config) {
  nn::InitSpec spec;
  spec.weights = init::parse_scheme(config.init.weights);
  spec.options = init::default_options(spec.weights);
  spec.options.gain = config.init.gain;
  spec.options.sparse_k = config.init.sparse_k;
  spec.bias = config.init.bias;
  spec.output_gain = config.init.output_gain;
  spec.seed = config.seed;
  nn::initialize_model(model, spec);
}

Evaluation evaluate(Model& model, const Split& split, std::int64_t batch, std::vector<std::int64_t>* confusion) {
  return evaluate(*model.net, split, batch, confusion);
}

namespace {

std::atomic<int> g_stop_signal{0};

// Doubles go into the checkpoint's JSON as their bit patterns: exact, and infinities too.
std::uint64_t bits(double v) { return std::bit_cast<std::uint64_t>(v); }
double from_bits(const nlohmann::json& j) { return std::bit_cast<double>(j.get<std::uint64_t>()); }

const char* signal_name(int signal) {
  switch (signal) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    default: return "a signal";
  }
}

// Parsed once: the loop does not compare strings per step.
enum class DivergencePolicy { stop, skip, rollback };
DivergencePolicy parse_divergence_policy(const std::string& name) {
  if (name == "skip") return DivergencePolicy::skip;
  if (name == "rollback") return DivergencePolicy::rollback;
  return DivergencePolicy::stop;  // config.cpp admits no other name
}

// Everything of a run that is not a tensor and changes as it trains: with the parameters,
// the optimizer's, sampler's, dropout generators' and early stopping's states it decides the
// rest of the run.
struct LoopState {
  std::int64_t k = 0;      // updates done
  std::int64_t epoch = 1;  // the epoch in progress (or next to start)
  bool finished = false;   // the training loop is over; only the final evaluation is left
  // The epoch in progress.
  std::int64_t epoch_steps = 0, epoch_examples = 0;
  double grad_norm_sum = 0, running_loss = 0, running_correct = 0, running_seen = 0;
  double epoch_seconds = 0;  // spent in this epoch by earlier processes
  double wall_seconds = 0;   // spent by earlier processes
  // Divergence handling.
  double lr_scale = 1.0;
  std::int64_t divergences = 0;
  // The result so far.
  std::int64_t epochs_run = 0, best_epoch = 0;
  bool stopped_early = false;
  double best_validation_error = 0, best_validation_loss = 0, grad_norm_at_stop = 0;

  // Calls f(name, field) for every field: the one list that writing and reading share.
  template <class Self, class F>
  static void fields(Self& s, F&& f) {
    f("k", s.k);
    f("epoch", s.epoch);
    f("finished", s.finished);
    f("epoch_steps", s.epoch_steps);
    f("epoch_examples", s.epoch_examples);
    f("grad_norm_sum", s.grad_norm_sum);
    f("running_loss", s.running_loss);
    f("running_correct", s.running_correct);
    f("running_seen", s.running_seen);
    f("epoch_seconds", s.epoch_seconds);
    f("wall_seconds", s.wall_seconds);
    f("lr_scale", s.lr_scale);
    f("divergences", s.divergences);
    f("epochs_run", s.epochs_run);
    f("best_epoch", s.best_epoch);
    f("stopped_early", s.stopped_early);
    f("best_validation_error", s.best_validation_error);
    f("best_validation_loss", s.best_validation_loss);
    f("grad_norm_at_stop", s.grad_norm_at_stop);
  }

  nlohmann::json to_json() const {
    nlohmann::json j = nlohmann::json::object();
    fields(*this, [&](const char* name, const auto& v) {
      if constexpr (std::is_same_v<std::decay_t<decltype(v)>, double>) {
        j[name] = bits(v);
      } else {
        j[name] = v;
      }
    });
    return j;
  }

  static LoopState from_json(const nlohmann::json& j) {
    LoopState s;
    fields(s, [&](const char* name, auto& v) {
      using V = std::decay_t<decltype(v)>;
      if constexpr (std::is_same_v<V, double>) {
        v = from_bits(j.at(name));
      } else {
        v = j.at(name).get<V>();
      }
    });
    if (s.k < 0 || s.epoch < 1 || s.epoch_steps < 0 || !(s.lr_scale > 0)) throw DataError("inconsistent counters");
    return s;
  }
};

// One training run, fresh or resumed from a checkpoint: the loop's core. What is not the
// loop is a callback (train/callbacks.hpp, early stopping and checkpoints below, the caller's).
class Session final : public Run {
 public:
  Session(const TrainConfig& config, std::ostream* log, RunFolder& folder, const Checkpoint* from,
          const std::vector<Callback*>& extra)
      : config_(config), folder_(folder), t0_(Clock::now()), progress_(log, config.progress, config.epochs, 1) {
    if (config_.threads > 0) set_num_threads(config_.threads);
    precision_ = enter_precision(config_);  // model.dtype = "bf16" (mixed_precision.hpp)
    flush_.emplace(config_.flush_denormals);  // on every thread of the pool, put back when the session ends
    result_.run_dir = folder.path();
    ckpt_dir_ = result_.run_dir / "checkpoints";
    data_ = load_data(config_);
    // Its messages name the file and line of a layer that does not fit.
    model_ = build_model(config_.model, data_.dim, data_.num_classes, config_.seed);
    initialize_model(model_, config_);
    data::SamplerOptions so;
    so.kind = data::parse_sampler_kind(config_.sampler.kind);
    so.batch_size = config_.sampler.batch_size;
    so.drop_last = config_.sampler.drop_last;
    so.seed = config_.seed + 1;  // a stream of its own, independent of the initialization's
    so.in_order = data_.train.stream != nullptr;  // a sharded set: shuffled once when written
    if (data_.train.stream && data_.train.stream->groups() > 1) so.groups = data_.train.stream->group_sizes();
    sampler_ = std::make_unique<data::Sampler>(data_.train.size(), so);
    steps_per_epoch_ = sampler_->batches_per_epoch();
    // The steps that will run: a stream runs out after its one epoch, whatever `epochs` says;
    // the schedule's horizon, the header and the display count on these.
    planned_epochs_ = std::min(config_.epochs, sampler_->max_epochs());
    planned_steps_ = planned_epochs_ > std::numeric_limits<std::int64_t>::max() / steps_per_epoch_
                         ? std::numeric_limits<std::int64_t>::max()
                         : planned_epochs_ * steps_per_epoch_;
    check_min_batch(*model_.net, config_, data_.train.size());
    check_parallel_config(config_, *model_.net);
    batch_gradient_ = needs_batch_gradient(config_);
    eval_batch_ = evaluation_chunk(*model_.net);
    progress_ = Progress(log, config_.progress, planned_epochs_, steps_per_epoch_);
    // Early stopping may end the run before its last epoch: the ETA is then an upper bound.
    progress_.set_eta_is_upper_bound(config_.early_stopping.enabled && config_.early_stopping.patience < planned_epochs_);
    trajectory_.emplace(*model_.arena, result_.run_dir, config_.snapshots.every_steps,
                        model_metadata(config_, data_, model_, 0));
    callbacks_ = {&metrics_records_, &progress_display_};
    if (is_second_order(config_)) {  // its records follow the step record
      second_order_ = make_second_order_callback(config_, *model_.arena);
      callbacks_.push_back(second_order_.get());
    }
    // [diagnostics] (train/monitors.hpp): before early stopping, so the epoch that stops the
    // run still gets its records.
    if (Monitors::any(config_.diagnostics)) {
      monitors_ = std::make_unique<Monitors>(config_.diagnostics, *model_.net, *model_.arena);
      callbacks_.push_back(monitors_.get());
    }
    callbacks_.push_back(&early_stop_);
    callbacks_.push_back(&*trajectory_);
    callbacks_.insert(callbacks_.end(), extra.begin(), extra.end());
    if (config_.tensorboard.enabled) {
      tensorboard_ = std::make_unique<TensorBoardWriter>(config_.tensorboard, result_.run_dir);
      callbacks_.push_back(tensorboard_.get());
    }
    callbacks_.push_back(&periodic_checkpoint_);
    ParameterArena& arena = *model_.arena;
    best_ = arena.values().clone();
    best_buffers_ = arena.buffer_size() > 0 ? arena.buffers().clone() : Tensor();
    // The run folder is made only once the data and the model are known to be good.
    folder_.open();
    const std::filesystem::path metrics_path = result_.run_dir / "metrics.jsonl";
    if (from == nullptr) {
      const std::string config_text = to_toml(config_);
      io::write_file_atomic(result_.run_dir / "config.toml", config_text);
      optimizer_ = make_optimizer(config_, planned_steps_, 1.0);
      if (tensorboard_) tensorboard_->start();
      metrics_ = open_metrics(metrics_path, /*append=*/false);
      write_header(config_text);  // a resume finds it in the file (the checkpoints count its bytes)
    } else {
      restore(*from, metrics_path);
      if (tensorboard_ && !tensorboard_->started()) tensorboard_->start();  // a checkpoint from before tb/
    }
    // The gradient norm is taken by the update's own pass (no pass and parallel region of its
    // own) when nothing reads it before the update: no callback of the caller's, no monitors,
    // no second-order callback, and not under the skip policy (which must see a non-finite
    // gradient before the parameters move), and only where the optimizer has a fused loop to
    // take it in (steps_by_parameter: without one, step_measured would take it in a pass of its
    // own anyway, and a non-finite gradient should then be caught before the update, as
    // always). Deterministic and distributed runs measure it in batch_gradient.
    norm_in_update_ = extra.empty() && !monitors_ && !second_order_ && divergence_ != DivergencePolicy::skip &&
                      !batch_gradient_ && optimizer_->steps_by_parameter();
    progress_.line(std::string(from != nullptr ? "descent: resuming " + result_.run_dir.string() + " at step " +
                                                     std::to_string(state_.k) + " (epoch " +
                                                     std::to_string(state_.epoch) + ")\n"
                                               : "") +
                   "descent: " + std::to_string(data_.train.size()) + " train / " +
                   std::to_string(data_.validation.size()) + " validation / " + std::to_string(data_.test.size()) +
                   " test examples; " + model_.net->describe() + ", " + std::to_string(arena.size()) +
                   " parameters; " + optimizer_->describe());
    if (planned_epochs_ < config_.epochs) {
      progress_.line("descent: the stream sampler uses each of the " + std::to_string(data_.train.size()) +
                     " training examples once: " + std::to_string(planned_steps_) + " steps, " +
                     std::to_string(planned_epochs_) + " epoch (epochs = " + std::to_string(config_.epochs) +
                     " cannot be reached); the schedule is planned for " + std::to_string(planned_steps_) + " steps");
    }
    setup_thread_rule(from);
    trajectory_->begin(from == nullptr, state_.k);  // init.safetensors at step 0
    if (from == nullptr) {
      initial_evaluation();
      epoch_t0_ = Clock::now();  // epoch 1's clock starts here: the setup and the epoch-0 evaluation are not its time
      save_checkpoint();         // step 0: a resume or a rollback always has a start
    }
  }

  RunResult go() {
    while (!state_.finished) {
      if (state_.epoch > config_.epochs || sampler_->exhausted()) {
        finish(StopReason::completed, "");
        break;
      }
      const EpochEnd end = run_epoch();
      if (end == EpochEnd::rolled_back) continue;  // start again from the checkpoint's position
      end_epoch(end == EpochEnd::stopped);
    }
    return final_evaluation();
  }

  // ---- Run: what callbacks see ---------------------------------------------------------
  const TrainConfig& config() const override { return config_; }
  nn::Module& net() override { return *model_.net; }
  ParameterArena& arena() override { return *model_.arena; }
  optim::Optimizer& optimizer() override { return *optimizer_; }
  const data::Data& data() const override { return data_; }
  const std::filesystem::path& run_dir() const override { return result_.run_dir; }
  io::JsonLinesWriter& metrics() override { return *metrics_; }
  Progress& progress() override { return progress_; }
  double wall_seconds() const override { return state_.wall_seconds + seconds_since(t0_); }
  std::int64_t epochs() const override { return planned_epochs_; }
  std::int64_t steps() const override { return planned_steps_; }
  // Under mpirun the chunks are shared out over the ranks (train/distributed.hpp).
  Evaluation evaluate(const data::Split& split) override { return evaluate_shared(*model_.net, split, eval_batch_); }

 private:
  // ---- early stopping and checkpoints: callbacks that hold the session's state ---------

  // Early stopping (section 7.8) on the monitored figure; keeps the best parameters.
  class EarlyStop final : public Callback {
   public:
    explicit EarlyStop(Session& s) : s_(s) {}
    bool on_epoch_end(const EpochContext& c) override {
      const bool stop = s_.stopper_.update(c.epoch, c.monitored);
      if (s_.stopper_.improved()) {
        s_.best_.copy_from(c.evaluated);
        if (s_.best_buffers_.defined()) s_.best_buffers_.copy_from(s_.model_.arena->buffers());
        s_.state_.best_epoch = c.epoch;
        s_.state_.best_validation_error = c.validation != nullptr ? c.validation->error : 0.0;
        s_.state_.best_validation_loss = c.validation != nullptr ? c.validation->loss : 0.0;
      }
      if (stop) {
        c.stop_message = "early stopping: no improvement of the " + s_.config_.early_stopping.monitor + " for " +
                         std::to_string(s_.stopper_.bad_epochs()) + " epochs; restoring epoch " +
                         std::to_string(s_.state_.best_epoch);
      }
      return stop;
    }

   private:
    Session& s_;
  };

  // checkpoint.every_steps and checkpoint.every_epochs (the first, the rollback's and the
  // last checkpoints are the core's).
  class PeriodicCheckpoint final : public Callback {
   public:
    explicit PeriodicCheckpoint(Session& s) : s_(s) {}
    bool on_step(const StepContext& c) override {
      const std::int64_t every = s_.config_.checkpoint.every_steps;
      if (every > 0 && (c.step + 1) % every == 0) s_.save_checkpoint();
      return false;
    }
    bool on_epoch_end(const EpochContext& c) override {
      const std::int64_t every = s_.config_.checkpoint.every_epochs;
      if (!s_.stopping_ && every > 0 && c.epoch % every == 0 && s_.saved_at_ != s_.state_.k) s_.save_checkpoint();
      return false;
    }

   private:
    Session& s_;
  };

  // ---- checkpoints -------------------------------------------------------------------
  // The checkpoint of the current state, to be encoded at once (it holds views of live tensors).
  Checkpoint snapshot() {
    ParameterArena& arena = *model_.arena;
    Checkpoint c;
    c.step = state_.k;
    c.config_toml = to_toml(config_);
    // Views, not copies: the checkpoint is encoded before anything changes them.
    c.tensors.emplace_back("params", arena.values());
    c.tensors.emplace_back("best", best_);
    if (best_buffers_.defined()) {
      c.tensors.emplace_back("buffers", arena.buffers());
      c.tensors.emplace_back("best_buffers", best_buffers_);
    }
    nlohmann::json state = {{"loop", state_.to_json()},
                             {"sampler", sampler_->save_state()},
                             {"early_stopping",
                              {{"best", bits(stopper_.best())},
                               {"best_epoch", stopper_.best_epoch()},
                               {"bad_epochs", stopper_.bad_epochs()}}}};
    nlohmann::json dropout = nlohmann::json::array();  // the generators of modules that draw (Dropout)
    for (std::size_t i = 0; i < model_.net->size(); ++i) {
      if (model_.net->at(i).has_rng()) dropout.push_back(model_.net->at(i).rng_state());
    }
    state["dropout"] = dropout;
    nlohmann::json callbacks = nlohmann::json::object();
    for (const Callback* cb : callbacks_) {
      if (const std::string key = cb->state_key(); !key.empty()) callbacks[key] = cb->save_state();
    }
    if (!callbacks.empty()) state["callbacks"] = std::move(callbacks);
    state["run_id"] = folder_.id();
    if (!thread_rule_.empty()) state["thread_rule"] = thread_rule_;  // a resume keeps it
    if (state_.k > 0) {  // before the first update the optimizer holds nothing yet
      const optim::OptimizerState o = optimizer_->save_state();
      nlohmann::json schedules = nlohmann::json::array();
      for (const auto& sc : o.schedules) {
        nlohmann::json values = nlohmann::json::array();
        for (const double v : sc) values.push_back(bits(v));
        schedules.push_back(values);
      }
      state["optimizer"] = {{"names", o.names},
                            {"counter_names", o.counter_names},
                            {"counters", o.counters},
                            {"schedules", schedules}};
      for (std::size_t i = 0; i < o.tensors.size(); ++i) {
        c.tensors.emplace_back("optimizer." + std::to_string(i), o.tensors[i]);
      }
    }
    metrics_->flush();
    std::error_code ec;
    const auto bytes = std::filesystem::file_size(metrics_->path(), ec);
    if (ec) throw IoError(metrics_->path().string() + ": cannot read its size: " + ec.message());
    state["metrics_bytes"] = bytes;
    c.state = std::move(state);
    return c;
  }

  void save_checkpoint() {
    state_.wall_seconds += seconds_since(t0_);
    state_.epoch_seconds += seconds_since(epoch_t0_);
    t0_ = epoch_t0_ = Clock::now();
    const Checkpoint c = snapshot();
    last_checkpoint_ = write_checkpoint(ckpt_dir_, c, config_.checkpoint.keep);
    saved_at_ = state_.k;
  }

  // Puts the run back in the state of `c`: parameters, buffers, best copies, optimizer
  // (rebuilt for the checkpoint's learning-rate scale, or `lr_scale` when given: a rollback),
  // sampler, dropout generators, counters; metrics.jsonl is cut back to what it held then and
  // reopened for appending.
  void restore(const Checkpoint& c, const std::filesystem::path metrics_path,  // a copy: metrics_ is reset below
               std::optional<double> lr_scale = std::nullopt) {
    const std::string source = result_.run_dir.string();
    ParameterArena& arena = *model_.arena;
    try {
      state_ = LoopState::from_json(c.state.at("loop"));
      if (lr_scale) state_.lr_scale = *lr_scale;
      arena.values().copy_from(c.tensor("params", arena.values(), source));
      best_.copy_from(c.tensor("best", best_, source));
      if (best_buffers_.defined()) {
        arena.buffers().copy_from(c.tensor("buffers", arena.buffers(), source));
        best_buffers_.copy_from(c.tensor("best_buffers", best_buffers_, source));
      }
      sampler_->load_state(c.state.at("sampler").get<std::string>());
      const nlohmann::json& dropout = c.state.at("dropout");
      std::size_t next = 0;
      for (std::size_t i = 0; i < model_.net->size(); ++i) {
        if (model_.net->at(i).has_rng()) {
          if (next >= dropout.size()) throw DataError("fewer dropout generator states than dropout layers");
          model_.net->at(i).set_rng_state(dropout.at(next++).get<std::string>());
        }
      }
      if (c.state.contains("callbacks")) {
        const nlohmann::json& saved = c.state.at("callbacks");
        for (Callback* cb : callbacks_) {
          const std::string key = cb->state_key();
          if (!key.empty() && saved.contains(key)) cb->load_state(saved.at(key));
        }
      }
      optimizer_ = make_optimizer(config_, planned_steps_, state_.lr_scale);
      if (c.state.contains("optimizer")) {
        const nlohmann::json& o = c.state.at("optimizer");
        optim::OptimizerState os;
        os.names = o.at("names").get<std::vector<std::string>>();
        os.counter_names = o.at("counter_names").get<std::vector<std::string>>();
        os.counters = o.at("counters").get<std::vector<std::int64_t>>();
        for (const auto& sc : o.at("schedules")) {
          std::vector<double> values;
          for (const auto& v : sc) values.push_back(from_bits(v));
          os.schedules.push_back(std::move(values));
        }
        for (std::size_t i = 0; i < os.names.size(); ++i) {
          os.tensors.push_back(c.tensor("optimizer." + std::to_string(i), arena.values(), source));
        }
        optimizer_->load_state(arena, os);
      }
      const nlohmann::json& stop = c.state.at("early_stopping");
      stopper_.restore(from_bits(stop.at("best")), stop.at("best_epoch").get<std::int64_t>(),
                       stop.at("bad_epochs").get<std::int64_t>());
      const auto bytes = c.state.at("metrics_bytes").get<std::uintmax_t>();
      metrics_.reset();
      cut_metrics(metrics_path, bytes, (ckpt_dir_ / checkpoint_file_name(c.step)).string());
      metrics_ = open_metrics(metrics_path, /*append=*/true);
    } catch (const nlohmann::json::exception& e) {
      throw DataError(source + ": checkpoint state: " + e.what());
    } catch (const DataError& e) {
      const std::string what = e.what();
      throw DataError(what.starts_with(source) ? what : source + ": " + what);
    }
    t0_ = epoch_t0_ = Clock::now();
    saved_at_ = state_.k;
  }

  // ---- the first records ------------------------------------------------------------

  // metrics.jsonl's first line: what the records that follow are about (docs/metrics.md).
  void write_header(const std::string& config_text) {
    nlohmann::json examples = nlohmann::json::object();
    examples["train"] = data_.train.size();
    examples["validation"] = data_.validation.size();
    examples["test"] = data_.test.size();
    metrics_->write({{"kind", "header"},
                     {"step", 0},
                     {"epoch", 0},
                     {"version", descent::version},
                     {"run_id", folder_.id()},
                     {"config_digest", "sha256:" + io::sha256_hex(config_text)},
                     {"examples", examples},
                     {"batch_size", sampler_->batch_size()},
                     {"steps_per_epoch", steps_per_epoch_},
                     {"sampler", config_.sampler.kind},
                     {"epochs", planned_epochs_},
                     {"steps", planned_steps_},
                     {"log_every_steps", config_.log_every_steps},
                     {"threads", num_threads()},
                     {"thread_rule", config_.thread_rule},
                     {"flush_denormals", config_.flush_denormals},
                     {"wall_s", wall_seconds()}});
  }

  // The initial parameters evaluated before the first update (epoch 0): each callback's
  // on_evaluation with epoch 0 (metrics.jsonl's epoch-0 record, the display's line). What a
  // callback returns is ignored: the run has not started.
  void initial_evaluation() {
    const Evaluation tr = evaluate(data_.train);
    std::optional<Evaluation> va;
    if (data_.validation.size() > 0) va = evaluate(data_.validation);
    const EvalContext ctx{*this, 0, 0, false, tr, va ? &*va : nullptr};
    for (Callback* c : callbacks_) (void)c->on_evaluation(ctx);
  }

  // metrics.jsonl's writer; with tensorboard.enabled every record goes to the event file as well.
  std::unique_ptr<io::JsonLinesWriter> open_metrics(const std::filesystem::path& path, bool append) {
    auto writer = std::make_unique<io::JsonLinesWriter>(path, append);
    if (tensorboard_) writer->set_listener([tb = tensorboard_.get()](const nlohmann::json& r) { tb->record(r); });
    return writer;
  }

  // ---- the loop ----------------------------------------------------------------------

  enum class EpochEnd { done, stopped, rolled_back };

  // Trains the rest of the epoch in progress: per minibatch, sample, the gradient
  // (train::compute_gradient), the divergence policy, before_update, the update, the
  // counters, then each callback's on_step (and on_evaluation when eval_every_steps is due).
  // Returns stopped when a callback stopped the run, rolled_back when a divergence rolled it
  // back to a checkpoint (the epoch loop starts again from there).
  EpochEnd run_epoch() {
    ParameterArena& arena = *model_.arena;
    epoch_t0_ = Clock::now();
    while (sampler_->next(idx_)) {
      if (rule_tuner_) rule_tuner_->begin_step();
      kernels::bf16::Buffer* x16 = batch_bf16(data_.train, static_cast<std::int64_t>(idx_.size()), batch_gradient_, bx16_);
      data_.train.gather(idx_, bx_, by_, x16 != nullptr ? x16->data() : nullptr);
      const bool keep_iterate = divergence_ == DivergencePolicy::skip && optimizer_->has_interim();
      if (keep_iterate) before_prepare_ = arena.values().clone();
      // deterministic, or several MPI ranks (train/distributed.hpp): the batch in pieces, reduced.
      // The gradient norm: taken by the update's pass (norm_in_update_), or here before it.
      Gradient g = batch_gradient_ ? batch_gradient(*model_.net, arena, *optimizer_, tape_, bx_, by_, state_.k, config_,
                                                    sampler_->pieces())
                                   : compute_gradient(*model_.net, arena, *optimizer_, tape_, bx_, x16, by_, state_.k,
                                                      /*measure_norm=*/!norm_in_update_);
      if (!g.finite()) {
        if (!diverged(g.loss_value, keep_iterate)) return EpochEnd::rolled_back;
        continue;  // skipped
      }
      std::string stop_message;
      StepContext ctx{.run = *this,
                      .step = state_.k,
                      .epoch = state_.epoch,
                      .position = sampler_->position(),
                      .steps_per_epoch = steps_per_epoch_,
                      .x = bx_,
                      .y = by_,
                      .tape = tape_,
                      .gradient = g,
                      .lr = optimizer_->learning_rate(state_.k),
                      .stop_message = stop_message};
      for (Callback* c : callbacks_) c->before_update(ctx);
      // The update, with the sums of squares its pass can take (optim::Optimizer::step_measured):
      // the gradient's when the norm was not taken above, the step's for the trajectory.
      optim::Optimizer::StepSums sums{.gradient = norm_in_update_, .step = optimizer_->measures_in_update()};
      optimizer_->step_measured(arena, state_.k, sums);
      if (sums.gradient) {
        g.grad_norm = std::sqrt(sums.gradient_squares);
        if (!std::isfinite(g.grad_norm)) {  // a finite loss, a non-finite gradient: caught after the update
          if (!diverged(g.loss_value, keep_iterate, /*updated=*/true)) return EpochEnd::rolled_back;
          continue;  // not reached: norm_in_update_ is off under the skip policy
        }
      }
      ctx.step_squares = sums.step_squares;
      if (rule_tuner_) end_tuned_step();
      ++state_.k;
      ++state_.epoch_steps;
      state_.epoch_examples += by_.numel();
      state_.grad_norm_sum += g.grad_norm;
      const auto b = static_cast<double>(by_.numel());
      state_.running_loss += g.loss_value * b;
      state_.running_correct +=
          b - static_cast<double>(g.errors >= 0 ? g.errors : loss::count_errors(g.logits.value(), by_));
      state_.running_seen += b;
      ctx.epoch_loss = state_.running_loss / state_.running_seen;
      ctx.epoch_accuracy = state_.running_correct / state_.running_seen;
      std::optional<Evaluation> tr, va;
      if (config_.eval_every_steps > 0 && state_.k % config_.eval_every_steps == 0) {
        tr = evaluate(data_.train);
        if (data_.validation.size() > 0) va = evaluate(data_.validation);
      }
      const EvalContext ectx{*this, state_.k, state_.epoch, false, tr ? *tr : Evaluation{}, va ? &*va : nullptr};
      for (Callback* c : callbacks_) {
        if (c->on_step(ctx) || (tr && c->on_evaluation(ectx))) {
          stop_message_ = stop_message;
          return EpochEnd::stopped;
        }
      }
      check_stop_request();
    }
    return EpochEnd::done;
  }

  // The threading rule (config `thread_rule`, train/thread_rule.hpp): a named rule, the one a
  // checkpoint of this run recorded, or (auto) timed on the next steps. Auto times nothing
  // with 1 thread (every rule is the same), in deterministic mode (its products run in fixed
  // tiles, and nothing in it may depend on a timing), under mpirun (a rank's step waits on
  // the others), for second-order methods (their own loop) and in a run shorter than 10 times
  // the timed steps (the timing would not pay).
  void setup_thread_rule(const Checkpoint* from) {
    const ThreadRule& built_in = thread_rules().front();
    std::string name = config_.thread_rule;
    if (from != nullptr && name == "auto") {
      if (const auto it = from->state.find("thread_rule"); it != from->state.end() && it->is_string())
        name = it->get<std::string>();
    }
    if (name == "auto" && num_threads() > 1 && !config_.deterministic && !batch_gradient_ && !is_second_order(config_)) {
      rule_tuner_ = std::make_unique<ThreadRuleTuner>(std::vector<ThreadRule>(thread_rules().begin(), thread_rules().end()));
      if (planned_steps_ - state_.k < 10 * rule_tuner_->schedule_steps()) rule_tuner_.reset();
    }
    if (rule_tuner_) return;  // thread_rule_ stays empty until the choice
    const ThreadRule& rule = name == "auto" ? built_in : thread_rule(name);
    rule.apply();
    thread_rule_ = rule.name;
  }

  // After a step timed by rule_tuner_: when it was the last of the schedule, the choice goes
  // to metrics.jsonl (a "thread_rule" record) and to the display, and the tuner goes.
  void end_tuned_step() {
    rule_tuner_->end_step();
    if (!rule_tuner_->done()) return;
    thread_rule_ = rule_tuner_->chosen().name;
    nlohmann::json medians = nlohmann::json::object();
    const std::vector<double> m = rule_tuner_->medians();
    for (std::size_t i = 0; i < m.size(); ++i) medians[std::string(rule_tuner_->candidates()[i].name)] = 1e3 * m[i];
    metrics_->write({{"kind", "thread_rule"},
                     {"step", state_.k + 1},
                     {"epoch", state_.epoch},
                     {"rule", thread_rule_},
                     {"timed_steps", rule_tuner_->schedule_steps()},
                     {"median_ms", medians},
                     {"wall_s", wall_seconds()}});
    progress_.line("descent: thread rule " + rule_tuner_->summary());
    rule_tuner_.reset();
  }

  // A non-finite loss or gradient at update k, caught before the parameters changed. Returns
  // true when the batch is skipped, false after a rollback; throws for "stop" and past
  // divergence.max_events.
  // `updated`: the gradient's norm was taken in the update's pass (norm_in_update_), which has
  // already moved the parameters (never under the skip policy; a rollback puts them back).
  bool diverged(double loss_value, bool keep_iterate, bool updated = false) {
    ParameterArena& arena = *model_.arena;
    const DivergenceConfig& d = config_.divergence;
    const std::string what = "training diverged at step " + std::to_string(state_.k) + " (epoch " +
                             std::to_string(state_.epoch) + "): loss " + std::to_string(loss_value) +
                             ", first non-finite gradient in '" + first_non_finite_gradient(arena) + "'";
    ++state_.divergences;
    const bool stop = divergence_ == DivergencePolicy::stop;
    if (stop || state_.divergences > d.max_events) {
      const std::string message =
          what + (stop ? "" : "; this is divergence " + std::to_string(state_.divergences) +
                                  ", more than divergence.max_events = " + std::to_string(d.max_events) + " (policy " +
                                  d.policy + ")") +
          (updated ? "; the update was applied (the gradient's norm is taken in the update's pass); the checkpoints "
                     "hold the parameters before it"
                   : "; the parameters were not updated");
      write_stopped_record(*metrics_, {.reason = "diverged", .step = state_.k, .epoch = state_.epoch, .message = message,
                                       .wall_s = wall_seconds(),
                                       .details = {{"policy", d.policy}, {"loss", loss_value},
                                                   {"divergences", state_.divergences}}});
      throw NumericError(message);
    }
    if (divergence_ == DivergencePolicy::skip) {
      if (keep_iterate) {
        arena.values().copy_from(before_prepare_);
        optimizer_->discard_prepared();
      }
      metrics_->write({{"kind", "divergence"}, {"step", state_.k}, {"epoch", state_.epoch}, {"policy", "skip"},
                       {"loss", loss_value}, {"wall_s", wall_seconds()}});
      progress_.line(what + "; batch skipped");
      return true;
    }
    // rollback: to the newest checkpoint; but when the run diverged again at the very step
    // the last rollback returned to, no rate can help from there (weights huge but finite):
    // to the newest checkpoint before it, and the newer files go.
    std::vector<std::string> warnings;
    std::optional<Checkpoint> c;
    if (rolled_back_to_ >= 0 && state_.k == rolled_back_to_) {
      c = load_latest_checkpoint(ckpt_dir_, &warnings, nullptr, rolled_back_to_);
      for (const auto& p : list_checkpoints(ckpt_dir_)) {
        if (c && p.filename().string() > checkpoint_file_name(c->step)) std::filesystem::remove(p);
      }
    }
    if (!c) c = load_latest_checkpoint(ckpt_dir_, &warnings);
    for (const std::string& w : warnings) progress_.line("descent: warning: " + w);
    if (!c) throw NumericError(what + "; no checkpoint in " + ckpt_dir_.string() + " to roll back to");
    const double scale = state_.lr_scale * d.lr_scale;
    const std::int64_t events = state_.divergences;
    const double wall_so_far = state_.wall_seconds + seconds_since(t0_);
    restore(*c, metrics_->path(), scale);
    state_.divergences = events;
    state_.wall_seconds = wall_so_far;
    metrics_->write({{"kind", "divergence"}, {"step", state_.k}, {"epoch", state_.epoch}, {"policy", "rollback"},
                     {"loss", loss_value}, {"lr_scale", scale}, {"wall_s", wall_seconds()}});
    progress_.line(what + "; rolled back to step " + std::to_string(state_.k) + ", learning rate scaled to " +
                   std::to_string(scale) + " of the configured one");
    save_checkpoint();  // the new scale survives a crash from here on
    rolled_back_to_ = state_.k;
    return false;
  }

  // The epoch's evaluation (of the averaged iterate under Polyak averaging), its counters
  // closed, then each callback's on_evaluation and on_epoch_end. `stopped`: a callback
  // stopped the run in this epoch's on_step; the run ends after this.
  void end_epoch(bool stopped) {
    ParameterArena& arena = *model_.arena;
    if (state_.epoch_steps == 0) {
      finish(stopped ? StopReason::callback : StopReason::completed, stop_message_);
      return;
    }
    const std::int64_t epoch = state_.epoch;
    const double epoch_seconds = state_.epoch_seconds + seconds_since(epoch_t0_);
    const double grad_norm_mean = state_.grad_norm_sum / static_cast<double>(state_.epoch_steps);
    // Polyak averaging: evaluation (and the kept weights) use the averaged iterate.
    Tensor iterate;
    const Tensor avg = optimizer_->averaged();
    if (avg.defined()) {
      iterate = arena.values().clone();
      arena.values().copy_from(avg);
    }
    const bool use_val = data_.validation.size() > 0;
    const Evaluation tr = evaluate(data_.train);
    const Evaluation va = evaluate(data_.validation);
    if (iterate.defined()) arena.values().copy_from(iterate);  // training goes on from the iterate
    const double rate = epoch_seconds > 0 ? static_cast<double>(state_.epoch_examples) / epoch_seconds : 0.0;
    const double lr = optimizer_->learning_rate(state_.k);
    const double monitored = use_val ? (monitor_loss_ ? va.loss : va.error) : (monitor_loss_ ? tr.loss : tr.error);
    optimizer_->observe(monitored);
    state_.epochs_run = epoch;
    state_.grad_norm_at_stop = grad_norm_mean;
    state_.epoch = epoch + 1;
    state_.epoch_steps = state_.epoch_examples = 0;
    state_.grad_norm_sum = state_.running_loss = state_.running_correct = state_.running_seen = 0;
    state_.epoch_seconds = 0;
    epoch_t0_ = Clock::now();

    stopping_ = stopped;
    std::string message = stop_message_;
    const Evaluation* validation = use_val ? &va : nullptr;
    const EvalContext ectx{*this, state_.k, epoch, true, tr, validation};
    const EpochContext ctx{.run = *this,
                           .epoch = epoch,
                           .step = state_.k,
                           .train = tr,
                           .validation = validation,
                           .monitored = monitored,
                           .grad_norm_mean = grad_norm_mean,
                           .examples_per_s = rate,
                           .lr = lr,
                           .evaluated = avg.defined() ? avg : arena.values(),
                           .stop_message = message};
    for (Callback* c : callbacks_) {
      if (c->on_evaluation(ectx) || c->on_epoch_end(ctx)) {
        stopped = true;
        break;
      }
    }
    if (stopped) {
      finish(StopReason::callback, message);
      return;
    }
    check_stop_request();
  }

  // The training loop is over: each callback's on_stop, then the last checkpoint says so, and
  // a resume only redoes the final evaluation.
  void finish(StopReason reason, const std::string& message) {
    if (reason == StopReason::callback) state_.stopped_early = true;
    const StopContext ctx{*this, reason, message, state_.k, state_.epochs_run};
    for (Callback* c : callbacks_) c->on_stop(ctx);
    state_.finished = true;
    save_checkpoint();
  }

  RunResult final_evaluation() {
    ParameterArena& arena = *model_.arena;
    arena.values().copy_from(best_);
    if (best_buffers_.defined()) arena.buffers().copy_from(best_buffers_);
    RunResult& r = result_;
    r.epochs_run = state_.epochs_run;
    r.steps = state_.k;
    r.best_epoch = state_.best_epoch;
    r.stopped_early = state_.stopped_early;
    r.best_validation_error = state_.best_validation_error;
    r.best_validation_loss = state_.best_validation_loss;
    r.grad_norm_at_stop = state_.grad_norm_at_stop;
    r.divergences = state_.divergences;
    r.last_checkpoint = last_checkpoint_;
    // Why the loop ended: every epoch ran, a callback (early stopping) stopped it, or the
    // sampler ran out (a stream) before `epochs`.
    r.sampler_exhausted = !state_.stopped_early && sampler_->exhausted() && state_.epochs_run < config_.epochs;
    r.shows_progress = progress_.shows();
    std::string ended = r.stopped_early ? "stopped" : "epochs", message;
    if (r.sampler_exhausted) {
      ended = "sampler_exhausted";
      message = "the stream sampler ran out after " + std::to_string(state_.k) + " steps (" +
                std::to_string(state_.epochs_run) + " epoch of epochs = " + std::to_string(config_.epochs) +
                "): a stream uses each training example at most once";
      progress_.line(message);
    }
    r.train = evaluate(data_.train);
    r.test = evaluate(data_.test);
    r.wall_seconds = wall_seconds();
    io::save_parameters(r.run_dir / "model.safetensors", arena, model_metadata(config_, data_, model_, r.best_epoch));
    nlohmann::json final_record = {{"kind", "final"},
                                   {"epochs", r.epochs_run},
                     {"steps", r.steps},
                     {"best_epoch", r.best_epoch},
                     {"stopped_early", r.stopped_early},
                     {"grad_norm_at_stop", r.grad_norm_at_stop},
                     {"best_val_error", r.best_validation_error},
                     {"best_val_loss", r.best_validation_loss},
                     {"train_loss", r.train.loss},
                     {"train_error", r.train.error},
                     {"test_loss", r.test.loss},
                     {"test_error", r.test.error},
                     {"test_accuracy", 1.0 - r.test.error},
                     {"divergences", r.divergences},
                     {"ended", ended},
                     {"step", r.steps},
                     {"epoch", r.epochs_run},
                     {"wall_s", r.wall_seconds}};
    if (!message.empty()) final_record["message"] = message;
    for (const Callback* c : callbacks_) c->final_fields(final_record);
    metrics_->write(final_record);
    metrics_->flush();
    return r;
  }

  // SIGINT / SIGTERM (request_stop): the current step is done; write a checkpoint and stop.
  void check_stop_request() {
    const int signal = g_stop_signal.load(std::memory_order_relaxed);
    if (signal == 0) return;
    if (saved_at_ != state_.k) save_checkpoint();
    const std::string message = std::string("interrupted by ") + signal_name(signal) + " after step " +
                                std::to_string(state_.k) + " (epoch " + std::to_string(state_.epoch) + "); checkpoint " +
                                last_checkpoint_.string() + " written; continue with: descent resume " +
                                result_.run_dir.string();
    write_stopped_record(*metrics_, {.reason = "interrupted", .step = state_.k, .epoch = state_.epoch,
                                     .message = message, .wall_s = wall_seconds(),
                                     .details = {{"signal", signal_name(signal)},
                                                 {"checkpoint", last_checkpoint_.string()}}});  // a resume cuts it away
    throw Interrupted(message, signal);
  }

  const TrainConfig& config_;
  RunFolder& folder_;
  Clock::time_point t0_, epoch_t0_ = Clock::now();
  Progress progress_;
  RunResult result_;
  std::filesystem::path ckpt_dir_, last_checkpoint_;
  Data data_;
  Model model_;
  std::unique_ptr<data::Sampler> sampler_;
  std::int64_t steps_per_epoch_ = 0;
  std::int64_t planned_epochs_ = 0, planned_steps_ = 0;  // what will run: epochs, or fewer for a stream
  std::unique_ptr<optim::Optimizer> optimizer_;
  std::unique_ptr<io::JsonLinesWriter> metrics_;
  LoopState state_;
  EarlyStopping stopper_{config_.early_stopping.patience, config_.early_stopping.min_delta, config_.early_stopping.enabled};
  Tensor best_, best_buffers_, before_prepare_;
  std::int64_t saved_at_ = -1;
  std::int64_t rolled_back_to_ = -1;  // the step of the last rollback's checkpoint (diverged())
  std::int64_t eval_batch_ = 1000;  // the model's evaluation chunk (Module::eval_chunk)
  const DivergencePolicy divergence_ = parse_divergence_policy(config_.divergence.policy);
  const bool monitor_loss_ = config_.early_stopping.monitor == "val_loss";
  // The callbacks in order: metrics, progress, the monitors ([diagnostics]), early stopping,
  // the caller's, checkpoints.
  MetricsRecords metrics_records_;
  ProgressDisplay progress_display_;
  EarlyStop early_stop_{*this};
  PeriodicCheckpoint periodic_checkpoint_{*this};
  std::unique_ptr<Monitors> monitors_;
  // The threading rule: the one before the run (put back when the session ends, also when
  // its constructor throws), the tuner while it times the first steps, the rule's name once
  // fixed (checkpoints record it).
  struct KeepThreadRule {
    ThreadRule before{"before", kernels::gemm_serial_below(), elementwise_serial_below(), elementwise_follow_below()};
    KeepThreadRule() = default;
    KeepThreadRule(const KeepThreadRule&) = delete;
    KeepThreadRule& operator=(const KeepThreadRule&) = delete;
    ~KeepThreadRule() { before.apply(); }
  } rule_before_;
  std::unique_ptr<ThreadRuleTuner> rule_tuner_;
  std::string thread_rule_;
  std::unique_ptr<Callback> second_order_;  // optimizer.name = a second-order method
  std::optional<Trajectory> trajectory_;  // init.safetensors, snapshots, path length
  std::unique_ptr<TensorBoardWriter> tensorboard_;  // tensorboard.enabled: before the checkpoints
  std::vector<Callback*> callbacks_;
  std::string stop_message_;  // what the callback that stopped the run in on_step said
  bool stopping_ = false;     // the epoch ending is the last one
  std::unique_ptr<precision::Scope> precision_;  // bf16 products for this run, restored after
  std::optional<FlushDenormalsScope> flush_;     // config flush_denormals, restored after
  bool batch_gradient_ = false;  // deterministic or under mpirun (train/distributed.hpp)
  bool norm_in_update_ = false;  // the gradient norm taken in the update's pass (constructor)
  std::vector<std::int64_t> idx_;
  Tensor bx_, by_;
  kernels::bf16::Buffer bx16_;  // bf16 bits of bx_ in a bf16 run (batch_bf16)
  autodiff::Tape tape_;
};

}  // namespace

void request_stop(int signal) noexcept { g_stop_signal.store(signal, std::memory_order_relaxed); }
void clear_stop_request() noexcept { g_stop_signal.store(0, std::memory_order_relaxed); }
int stop_requested() noexcept { return g_stop_signal.load(std::memory_order_relaxed); }

namespace {

// Trains in `folder`, which records how the run ended (run.json; a run that fails before its
// first checkpoint leaves nothing behind).
RunResult train_in(RunFolder& folder, const TrainConfig& config, std::ostream* log, const Checkpoint* from,
                   const std::vector<Callback*>& callbacks) {
  try {
    Session session(config, log, folder, from, callbacks);
    RunResult r = session.go();
    folder.finished();
    return r;
  } catch (const Interrupted& e) {
    folder.interrupted(e.what());
    throw;
  } catch (const IoError& e) {  // a full disk, an unwritable folder: the checkpoints before are intact
    folder.failed(e.what());
    if (!folder.resumable()) throw;
    throw IoError(std::string(e.what()) + "; the checkpoints written before are intact: once the disk has room (or the "
                  "fault is fixed), continue with: descent resume " + folder.path().string());
  } catch (const std::exception& e) {
    folder.failed(e.what());
    throw;
  }
}

// mpirun, ranks > 0 (train/distributed.hpp): the same run in a private scratch folder, removed
// at the end; rank 0 writes the real one. A resume starts from a copy of the run folder.
struct ScratchFolder {
  std::filesystem::path path = worker_scratch_dir();
  ~ScratchFolder() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

RunResult run_worker(const TrainConfig& config, std::ostream* log, const std::vector<Callback*>& callbacks) {
  ScratchFolder scratch;
  TrainConfig c = config;
  c.out_dir = scratch.path.string();
  c.name = "run";
  RunFolder folder = RunFolder::for_new_run(scratch.path / "run", ExistingRun::overwrite);
  return train_in(folder, c, log, nullptr, callbacks);
}

RunResult resume_worker(const std::filesystem::path& run_dir, const std::vector<Callback*>& callbacks);

}  // namespace

RunResult run(const TrainConfig& config, std::ostream* log, const std::vector<Callback*>& callbacks,
              ExistingRun existing) {
  if (!Communicator::world().root()) return run_worker(config, nullptr, callbacks);  // mpirun: ranks > 0
  RunFolder folder = RunFolder::for_new_run(std::filesystem::path(config.out_dir) / config.name, existing);
  if (log != nullptr && config.progress != "none" && !folder.requested().empty()) {
    *log << "descent: " << folder.requested().string() << " holds another run; this one goes to "
         << folder.path().string() << "\n";
  }
  set_stop_message(folder.path());  // mpirun: what rank 0 says when it is stopped
  return train_in(folder, config, log, nullptr, callbacks);
}

RunResult resume(const std::filesystem::path& run_dir, std::ostream* log, const std::vector<Callback*>& callbacks) {
  if (!Communicator::world().root()) return resume_worker(run_dir, callbacks);  // mpirun: ranks > 0
  Communicator::world().barrier();  // the other ranks have copied the run folder
  RunFolder folder = RunFolder::for_resume(run_dir);
  std::vector<std::string> warnings;
  std::filesystem::path file;
  const std::optional<Checkpoint> c = load_latest_checkpoint(folder.path() / "checkpoints", &warnings, &file);
  if (log != nullptr) {
    for (const std::string& w : warnings) *log << "descent: warning: " << w << "\n";
  }
  if (!c) {
    throw IoError(folder.path().string() + ": no valid checkpoint in " + (folder.path() / "checkpoints").string() +
                  (warnings.empty() ? " (none was written yet)" : " (all are damaged)"));
  }
  const std::string source = file.string();
  folder.adopt(*c, source);
  TrainConfig config = parse_train_config(c->config_toml, source);
  set_stop_message(folder.path());
  return train_in(folder, config, log, &*c, callbacks);
}

namespace {
RunResult resume_worker(const std::filesystem::path& run_dir, const std::vector<Callback*>& callbacks) {
  ScratchFolder scratch;
  std::filesystem::create_directories(scratch.path);
  std::error_code ec;
  std::filesystem::copy(run_dir, scratch.path / "run", std::filesystem::copy_options::recursive, ec);
  Communicator::world().barrier();  // rank 0 changes the folder only after this
  if (ec) throw IoError(run_dir.string() + ": rank " + std::to_string(Communicator::world().rank()) +
                        " cannot copy it to " + scratch.path.string() + ": " + ec.message());
  RunFolder folder = RunFolder::for_resume(scratch.path / "run");
  const std::optional<Checkpoint> c = load_latest_checkpoint(folder.path() / "checkpoints", nullptr, nullptr);
  if (!c) throw IoError(run_dir.string() + ": no valid checkpoint");
  folder.adopt(*c, run_dir.string());
  TrainConfig config = parse_train_config(c->config_toml, run_dir.string());
  return train_in(folder, config, nullptr, &*c, callbacks);
}
}  // namespace

}  // namespace descent::train
