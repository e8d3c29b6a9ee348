#include "descent/train/trajectory.hpp"

#include <bit>
#include <cmath>
#include <limits>

#include "descent/error.hpp"
#include "descent/io/atomic_file.hpp"
#include "descent/io/model_file.hpp"
#include "descent/tensor/kernels.hpp"

namespace descent::train {
namespace {

// ||a - b||; with `copy`, b <- a in the same pass.
double distance_and_copy(const Tensor& a, const Tensor& b, bool copy) {
  if (a.dtype() != b.dtype() || a.numel() != b.numel()) throw ShapeError("trajectory: tensors of different dtype or size");
  const auto n = static_cast<std::size_t>(a.numel());
  // One vectorized pass in a fixed order (kernels::squared_distance): the length is
  // bit-identical for any thread count.
  const auto count = static_cast<std::int64_t>(n);
  if (a.dtype() == DType::f64) {
    return std::sqrt(kernels::squared_distance(a.data<double>(), b.data<double>(), count, copy ? b.data<double>() : nullptr));
  }
  if (a.dtype() == DType::f32) {
    return std::sqrt(kernels::squared_distance(a.data<float>(), b.data<float>(), count, copy ? b.data<float>() : nullptr));
  }
  throw ShapeError("trajectory: parameters must be f32 or f64");
}

}  // namespace

double distance(const Tensor& a, const Tensor& b) { return distance_and_copy(a, b, false); }

Trajectory::Trajectory(ParameterArena& arena, std::filesystem::path run_dir, std::int64_t every_steps,
                       std::map<std::string, std::string> metadata)
    : arena_(arena), run_dir_(std::move(run_dir)), every_steps_(every_steps), metadata_(std::move(metadata)) {
  if (every_steps_ < 0) throw ConfigError("snapshots.every_steps must be >= 0");
}

void Trajectory::begin(bool fresh, std::int64_t step) {
  const std::filesystem::path init = run_dir_ / "init.safetensors";
  if (fresh) {
    theta0_ = arena_.values().clone();
    previous_ = arena_.values().clone();
    previous_stale_ = false;
    length_ = 0.0;
    steps_ = step;
    complete_ = true;
    std::map<std::string, std::string> m = metadata_;
    m["step"] = std::to_string(step);
    io::save_parameters(init, arena_, m);
    return;
  }
  if (!previous_.defined()) {  // a checkpoint without a trajectory state: measure from here
    previous_ = arena_.values().clone();
    length_ = 0.0;
    steps_ = step;
    complete_ = step == 0;
    previous_stale_ = false;
  }
  if (!theta0_.defined() && std::filesystem::exists(init)) {
    // Read through the arena (names and shapes checked), then put the run's state back.
    const Tensor values = arena_.values().clone();
    const Tensor buffers = arena_.buffer_size() > 0 ? arena_.buffers().clone() : Tensor();
    io::load_parameters(init, arena_, {.model = "the model of this run"});
    theta0_ = arena_.values().clone();
    arena_.values().copy_from(values);
    if (buffers.defined()) arena_.buffers().copy_from(buffers);
  }
}

bool Trajectory::on_step(const StepContext& ctx) {
  if (!previous_.defined()) throw Error("trajectory: begin() was not called");
  if (!(ctx.step_squares < 0)) {  // measured (-1: not), NaN included: a NaN step is a NaN length, as before
    // Measured by the update's pass (the same order as squared_distance: the same bits);
    // previous_ is not kept up to date from here on.
    length_ += std::sqrt(ctx.step_squares);
    previous_stale_ = true;
  } else {
    if (previous_stale_) throw Error("trajectory: a step without its length after steps measured by the update");
    // ||theta_{k+1} - theta_k||, and previous <- theta_{k+1}, in one pass.
    length_ += distance_and_copy(arena_.values(), previous_, true);
  }
  steps_ = ctx.step + 1;
  if (every_steps_ > 0 && steps_ % every_steps_ == 0) {
    std::map<std::string, std::string> m = metadata_;
    m["step"] = std::to_string(steps_);
    std::filesystem::create_directories(run_dir_ / "snapshots");
    io::save_parameters(run_dir_ / "snapshots" / ("step-" + std::to_string(steps_) + ".safetensors"), arena_, m);
  }
  return false;
}

bool Trajectory::on_epoch_end(const EpochContext& ctx) {
  write(ctx.step);
  return false;
}

void Trajectory::on_stop(const StopContext& ctx) { write(ctx.step); }

double Trajectory::distance_from_init() {
  if (!theta0_.defined()) return std::numeric_limits<double>::quiet_NaN();
  return distance(arena_.values(), theta0_);
}

void Trajectory::write(std::int64_t step) {
  const double straight = distance_from_init();
  nlohmann::json j = {{"format", "descent-trajectory/1"},
                      {"steps", step},
                      {"length", length_},
                      {"complete", complete_},
                      {"snapshot_every_steps", every_steps_}};
  if (std::isfinite(straight)) {
    j["distance_from_init"] = straight;
    j["length_ratio"] = straight > 0 ? nlohmann::json(length_ / straight) : nlohmann::json(nullptr);
  } else {
    j["distance_from_init"] = nullptr;
    j["length_ratio"] = nullptr;
  }
  io::write_file_atomic(run_dir_ / "trajectory.json", j.dump(1) + "\n");
}

nlohmann::json Trajectory::save_state() const {
  return {{"length", std::bit_cast<std::uint64_t>(length_)}, {"steps", steps_}, {"complete", complete_}};
}

void Trajectory::load_state(const nlohmann::json& state) {
  length_ = std::bit_cast<double>(state.at("length").get<std::uint64_t>());
  steps_ = state.at("steps").get<std::int64_t>();
  complete_ = state.at("complete").get<bool>();
  // The checkpoint's parameters are in the arena: the next update starts from them.
  previous_ = arena_.values().clone();
  previous_stale_ = false;
}

}  // namespace descent::train
