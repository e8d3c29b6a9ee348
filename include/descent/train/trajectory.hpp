#pragma once
// The trajectory of a run in weight space (section 8.2.7, Fig. 8.2: training seldom goes
// straight to where it ends; Goodfellow, Vinyals & Saxe 2015). A callback of every run:
//
//   init.safetensors            theta_0, the initial weights (and buffers), written once at
//                               step 0 in the format of model.safetensors (io/model_file.hpp);
//                               a resume does not rewrite it
//   snapshots/step-<k>.safetensors   theta_k after every snapshots.every_steps updates (k = N,
//                               2N, ...), when that is > 0; a resumed or rolled-back run
//                               writes the same steps again
//   trajectory.json             the path length L = sum_k ||theta_{k+1} - theta_k|| over every
//                               update so far, measured exactly (each difference of the
//                               parameters' float values taken and squared in double), and
//                               the straight distance ||theta_k - theta_0|| of the last
//                               iterate; rewritten at every epoch end and when the loop ends
//
// Cost: where the optimizer's update pass measures the step (StepContext::step_squares:
// optim::Optimizer::step_measured, a fused loop without an interim point), nothing per update;
// otherwise one pass over the parameters per update (the difference from the previous
// iterate, then the copy). Both sum the squares in kernels::squared_distance's order: the same
// bits for float32 parameters, the same to rounding for float64 (fused_sums.hpp). Plus one parameter-sized copy of theta_0 and one of the
// previous iterate (the start of the run, a checkpoint's).
// The length and its counters are saved in checkpoints (state_key "trajectory"), so a resumed
// run measures the same length as one never interrupted; a rollback returns to the
// checkpoint's length. A skipped batch does not move the parameters and adds nothing.
// The steps are measured from iterate to iterate (after each update), so Nesterov's interim
// point (optim/optimizer.hpp, prepare) is not part of the path. Under Polyak averaging the
// trajectory is that of the training iterate, not of the averaged weights that
// model.safetensors holds.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include "descent/tensor/arena.hpp"
#include "descent/train/callback.hpp"

namespace descent::train {

class Trajectory final : public Callback {
 public:
  // `metadata`: what the weight files carry (the trainer's model card). every_steps >= 0.
  Trajectory(ParameterArena& arena, std::filesystem::path run_dir, std::int64_t every_steps,
             std::map<std::string, std::string> metadata);

  // Called once the arena holds the run's start: for a fresh run (fresh = true) theta_0,
  // written to init.safetensors; for a resume the checkpoint's parameters (load_state has
  // run, or, for a checkpoint written before trajectories were kept, the length restarts at
  // 0 and trajectory.json says "complete": false).
  void begin(bool fresh, std::int64_t step);

  bool on_step(const StepContext& ctx) override;
  bool on_epoch_end(const EpochContext& ctx) override;
  void on_stop(const StopContext& ctx) override;
  std::string state_key() const override { return "trajectory"; }
  nlohmann::json save_state() const override;
  void load_state(const nlohmann::json& state) override;

  double length() const { return length_; }
  // ||theta - theta_0|| of the arena's current parameters (NaN when theta_0 is unknown: a
  // resumed run whose folder lacks init.safetensors).
  double distance_from_init();
  // Writes trajectory.json for `step` updates done.
  void write(std::int64_t step);

 private:
  ParameterArena& arena_;
  std::filesystem::path run_dir_;
  std::int64_t every_steps_;
  std::map<std::string, std::string> metadata_;
  Tensor theta0_, previous_;
  double length_ = 0.0;
  std::int64_t steps_ = 0;  // updates measured
  bool complete_ = true;    // measured from step 0
  bool previous_stale_ = false;  // a step measured by the update (StepContext::step_squares) came after previous_
};

// ||a - b|| of two flat tensors of the same dtype and size, differences and sum in double.
double distance(const Tensor& a, const Tensor& b);

}  // namespace descent::train
