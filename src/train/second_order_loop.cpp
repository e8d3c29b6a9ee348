#include "descent/train/second_order_loop.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "descent/error.hpp"
#include "descent/optim/network_objective.hpp"
#include "descent/train/distributed.hpp"

namespace descent::train {

bool is_second_order(const TrainConfig& config) { return optim::find_second_order(config.optimizer.name) != nullptr; }

optim::SecondOrderOptions second_order_options(const TrainConfig& config) {
  const SecondOrderConfig& c = config.second_order;
  optim::SecondOrderOptions o;
  o.method = config.optimizer.name;
  if (c.line_search != "default") o.line_search = optim::parse_line_search(c.line_search);
  o.c1 = c.c1;
  o.c2 = c.c2;
  o.max_evaluations = c.max_evaluations;
  o.step = c.step;
  o.history = c.history;
  o.damping = c.damping;
  o.adapt_damping = c.adapt_damping;
  o.cg_iterations = c.cg_iterations;
  o.krylov = c.krylov;
  o.beta = c.beta;
  o.restart = c.restart;
  return o;
}

void check_second_order(const TrainConfig& config) {
  if (!is_second_order(config)) return;
  const SecondOrderConfig& c = config.second_order;
  const double c1 = c.c1.value_or(1e-4), c2 = c.c2.value_or(config.optimizer.name == "cg" ? 0.1 : 0.9);
  if (!(c1 < c2)) {
    throw ConfigError(config.source + ": " + (c.c1 ? "second_order.c1" : "second_order.c2") +
                      ": the line search needs c1 < c2; got c1 = " + std::to_string(c1) + ", c2 = " + std::to_string(c2));
  }
  const optim::SecondOrderMethodEntry* entry = optim::find_second_order(config.optimizer.name);
  if (c.curvature != "hessian" && !entry->needs_hessian) {
    throw ConfigError(config.source + ": second_order.curvature = \"" + c.curvature + "\": " + config.optimizer.name +
                      " uses no curvature products (only damped_newton, newton_cg, newton and saddle_free do)");
  }
  try {
    (void)optim::make_second_order(second_order_options(config));
  } catch (const ConfigError& e) {
    throw ConfigError(config.source + ": [second_order] with optimizer.name = \"" + config.optimizer.name +
                      "\": " + e.what());
  }
}

namespace {

bool has_dropout(const TrainConfig& config) {
  return std::any_of(config.model.layers.begin(), config.model.layers.end(),
                     [](const nn::LayerConfig& l) { return l.type == "dropout"; });
}

// The minimizer as the trainer's optimizer. set_batch (from the callback's before_update)
// gives it the objective of the coming step; step() runs one iteration and writes the new
// iterate, rounded to the model's dtype, into the arena.
class SecondOrderOptimizer final : public optim::Optimizer {
 public:
  SecondOrderOptimizer(const TrainConfig& config, double lr_scale)
      : options_(second_order_options(config)),
        full_(config.sampler.batch_size == 0),
        fixed_(config.second_order.batch == "fixed"),
        batch_size_(config.sampler.batch_size),
        curvature_(optim::parse_curvature(config.second_order.curvature)),
        // The trainer's pass is the objective's when both are the same computation: the batch in
        // one chunk of the objective (reusable()), one process, the plain (not deterministic)
        // gradient, and a model whose training mode is its evaluation mode (no dropout; batch
        // normalization is refused by make_second_order_callback).
        reuse_(config.second_order.reuse_gradient && !needs_batch_gradient(config) && !has_dropout(config)) {
    options_.step *= lr_scale;
    minimizer_ = optim::make_second_order(options_);
  }

  void set_batch(Run& run, const StepContext& c) {
    const Tensor& x = c.x;
    const Tensor& y = c.y;
    ParameterArena& arena = run.arena();
    const bool same_objective = full_ || fixed_;
    if (!same_objective || !objective_) {
      if (same_objective) {
        // Every step sees the same examples: the first batch_size of the training split (all of
        // them for a full batch), in their order, whatever order the sampler draws them in.
        const data::Split& train = run.data().train;
        const std::int64_t n = full_ ? train.size() : std::min(batch_size_, train.size());
        std::vector<std::int64_t> idx(static_cast<std::size_t>(n));
        std::iota(idx.begin(), idx.end(), std::int64_t{0});
        train.gather(idx, x_, y_);
      } else {
        x_ = x.clone();  // the trainer reuses its batch tensors
        y_ = y.clone();
      }
      objective_.reset();  // the old tapes go before the new ones are recorded
      if (!same_objective && reusable(c)) {
        // The trainer's pass was over these examples at these parameters: the objective takes
        // its loss, gradient and recorded forward pass instead of recording its own.
        const Tensor& grads = arena.grads();
        gradient_.resize(static_cast<std::size_t>(grads.numel()));
        dispatch_float(grads.dtype(), [&](auto zero) {
          using T = decltype(zero);
          const T* g = grads.data<T>();
          for (std::size_t i = 0; i < gradient_.size(); ++i) gradient_[i] = static_cast<double>(g[i]);
        });
        objective_ = std::make_unique<optim::NetworkObjective>(
            run.net(), arena, x_, y_,
            optim::NetworkObjective::RecordedPass{c.gradient.logits, c.gradient.loss, c.gradient.loss_value, gradient_});
      } else {
        objective_ = std::make_unique<optim::NetworkObjective>(run.net(), arena, x_, y_);
      }
      objective_->set_curvature(curvature_);
      objective_passes_ = objective_->passes();
      rebase_evaluations_ = 0;
      if (minimizer_->x().empty()) {
        minimizer_->start(*objective_, objective_->parameters());
        rebase_evaluations_ = 1;
      } else if (!same_objective) {
        minimizer_->rebase(*objective_, options_.method != "cg");
        rebase_evaluations_ = 1;
      }
    } else {
      rebase_evaluations_ = 0;
    }
  }

  void step(ParameterArena& arena, std::int64_t) override {
    if (!objective_) throw ConfigError(options_.method + ": no batch was given before the update");
    const std::int64_t products_before = objective_->products();
    const std::int64_t passes_before = objective_->passes();
    record_ = minimizer_->step(*objective_);
    record_.hessian_products = static_cast<int>(objective_->products() - products_before);
    step_passes_ = objective_->passes() - passes_before + objective_passes_;
    objective_passes_ = 0;
    total_evaluations_ += record_.evaluations + rebase_evaluations_;
    total_products_ += record_.hessian_products;
    total_inner_ += record_.inner_iterations;
    const std::span<const double> x = minimizer_->x();
    const Tensor& values = arena.values();
    dispatch_float(values.dtype(), [&](auto zero) {
      using T = decltype(zero);
      T* p = values.data<T>();
      for (std::size_t i = 0; i < x.size(); ++i) p[i] = static_cast<T>(x[i]);
    });
  }

  double learning_rate(std::int64_t) const override { return options_.step; }
  std::string describe() const override {
    std::ostringstream s;
    s << minimizer_->describe() << " on "
      << (full_ ? std::string("the full batch")
                : (fixed_ ? "a fixed batch of " : "a resampled batch of ") + std::to_string(batch_size_));
    return s.str();
  }
  std::vector<Tensor> state() const override { return {}; }

  // The minimizer's state, exactly: its vectors and numbers as the checkpoint's bit-exact
  // "schedules" (the last one the numbers), their names as counter names; plus the totals.
  optim::OptimizerState save_state() const override {
    const optim::SecondOrderState st = minimizer_->save_state();
    optim::OptimizerState o;
    o.counter_names.push_back("second_order:" + options_.method);
    o.counters.push_back(static_cast<std::int64_t>(st.vectors.size()));
    for (const std::string& name : st.names) {
      o.counter_names.push_back("second_order." + name);
      o.counters.push_back(0);
    }
    o.counter_names.insert(o.counter_names.end(), {"second_order.evaluations", "second_order.products",
                                                   "second_order.inner_iterations"});
    o.counters.insert(o.counters.end(), {total_evaluations_, total_products_, total_inner_});
    o.schedules = st.vectors;
    o.schedules.push_back(st.scalars);
    return o;
  }
  void load_state(const ParameterArena&, const optim::OptimizerState& o) override {
    const std::string head = "second_order:" + options_.method;
    if (o.counter_names.empty() || o.counter_names[0] != head || o.counters.size() != o.counter_names.size()) {
      throw DataError("the checkpoint's optimizer state is not " + options_.method + "'s (expected \"" + head + "\")");
    }
    const auto vectors = static_cast<std::size_t>(o.counters[0]);
    if (o.schedules.size() != vectors + 1 || o.counter_names.size() != vectors + 4) {
      throw DataError(options_.method + ": the checkpoint's optimizer state has the wrong number of vectors");
    }
    optim::SecondOrderState st;
    for (std::size_t i = 0; i < vectors; ++i) st.names.push_back(o.counter_names[1 + i].substr(13));
    st.vectors.assign(o.schedules.begin(), o.schedules.begin() + static_cast<std::ptrdiff_t>(vectors));
    st.scalars = o.schedules.back();
    minimizer_->load_state(st);
    total_evaluations_ = o.counters[vectors + 1];
    total_products_ = o.counters[vectors + 2];
    total_inner_ = o.counters[vectors + 3];
    objective_.reset();
  }

  const optim::IterationRecord& record() const { return record_; }
  int rebase_evaluations() const { return rebase_evaluations_; }
  std::int64_t total_evaluations() const { return total_evaluations_; }
  std::int64_t total_products() const { return total_products_; }
  std::int64_t total_inner() const { return total_inner_; }
  bool fixed_objective() const { return full_ || fixed_; }
  const std::string& method() const { return options_.method; }
  // Forward-and-backward passes over the objective's examples in the last step, the
  // objective's construction included (the trainer's own pass not).
  std::int64_t step_passes() const { return step_passes_; }

 private:
  // Whether the step's pass (StepContext) can be the objective's: see reuse_.
  bool reusable(const StepContext& c) const {
    const Gradient& g = c.gradient;
    return reuse_ && g.errors < 0 && g.loss.valid() && g.logits.valid() && g.loss.tape == &c.tape &&
           c.tape.has_gradient(g.loss) && g.logits.value().ndim() == 2 && g.logits.value().dim(0) == c.x.dim(0) &&
           c.x.dim(0) <= optim::NetworkObjective::default_options().chunk;
  }

  optim::SecondOrderOptions options_;
  bool full_, fixed_;
  std::int64_t batch_size_;
  std::unique_ptr<optim::SecondOrderMinimizer> minimizer_;
  Tensor x_, y_;
  std::unique_ptr<optim::NetworkObjective> objective_;
  optim::IterationRecord record_;
  int rebase_evaluations_ = 0;
  std::int64_t total_evaluations_ = 0, total_products_ = 0, total_inner_ = 0;
  optim::Curvature curvature_;
  bool reuse_;
  std::vector<double> gradient_;  // the trainer's gradient in double, while the objective reads it
  std::int64_t objective_passes_ = 0, step_passes_ = 0;
};

SecondOrderOptimizer& second_order_of(Run& run) {
  auto* o = dynamic_cast<SecondOrderOptimizer*>(&run.optimizer());
  if (o == nullptr) throw ConfigError("the second-order callback runs with a first-order optimizer");
  return *o;
}

class SecondOrderCallback final : public Callback {
 public:
  void before_update(const StepContext& c) override { second_order_of(c.run).set_batch(c.run, c); }

  bool on_step(const StepContext& c) override {
    SecondOrderOptimizer& o = second_order_of(c.run);
    const optim::IterationRecord& r = o.record();
    c.run.metrics().write({{"kind", "second_order"},
                           {"step", c.step},
                           {"epoch", c.epoch},
                           {"method", o.method()},
                           {"f", r.f},
                           {"grad_norm", r.grad_norm},
                           {"alpha", r.alpha},
                           {"evaluations", r.evaluations + o.rebase_evaluations()},
                           {"line_search_evaluations", r.evaluations},
                           {"hessian_products", r.hessian_products},
                           {"gradient_passes", o.step_passes()},
                           {"cg_iterations", r.inner_iterations},
                           {"damping", r.damping},
                           {"accepted", r.accepted},
                           {"restarted", r.restarted},
                           {"stalled", r.stalled},
                           {"search_ok", r.search_ok},
                           {"evaluations_total", o.total_evaluations()},
                           {"hessian_products_total", o.total_products()},
                           {"wall_s", c.run.wall_seconds()}});
    if (r.stalled && o.fixed_objective()) {
      c.stop_message = o.method() + ": the line search found no decrease of the loss at step " +
                       std::to_string(c.step) + " (|g| = " + std::to_string(r.grad_norm) +
                       "); the fixed objective can make no more progress";
      return true;
    }
    return false;
  }
};

}  // namespace

std::unique_ptr<optim::Optimizer> make_second_order_optimizer(const TrainConfig& config, double lr_scale) {
  check_second_order(config);
  return std::make_unique<SecondOrderOptimizer>(config, lr_scale);
}

std::unique_ptr<Callback> make_second_order_callback(const TrainConfig& config, ParameterArena& arena) {
  if (arena.buffer_size() > 0) {
    throw ConfigError(config.source + ": optimizer.name = \"" + config.optimizer.name +
                      "\": second-order methods need a model without batch normalization (its running statistics "
                      "would change the objective between the evaluations of one step)");
  }
  return std::make_unique<SecondOrderCallback>();
}

}  // namespace descent::train
