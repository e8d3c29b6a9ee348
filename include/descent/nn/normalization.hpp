#pragma once
// Batch normalization and dropout: the two modules whose forward pass differs between
// training and evaluation (Module::set_training).
//
//   nn::Sequential net(arena);
//   net.add(nn::Linear(784, 256)); net.add(nn::BatchNorm(256)); net.add(nn::ReLU());
//   net.add(nn::Dropout(0.5, seed)); net.add(nn::Linear(256, 10));
//   ...
//   net.set_training(false);   // evaluation: running statistics, no dropout
#include <cstdint>
#include <string>

#include "descent/autodiff/batch.hpp"
#include "descent/init/rng.hpp"
#include "descent/nn/module.hpp"

namespace descent::nn {

struct BatchNormOptions {
  double eps = 1e-5;       // added to the variance; finite and >= 0
  double momentum = 0.1;   // weight of the newest batch in the running statistics, in [0, 1]
};

// Batch normalization (Ioffe & Szegedy 2015; Goodfellow et al. 2016, section 8.7.1) of an
// input [N, C] (after a linear layer) or [N, C, H, W] (after a convolution; any input of 2
// to 4 dimensions with the channel in dimension 1): per channel c,
//   training:   y = gamma_c (x - mean_c) / sqrt(var_c + eps) + beta_c
//               with the mean and (biased) variance of the minibatch, over every
//               dimension but the channel; gradients and Hv flow through the statistics.
//               Then, as in PyTorch:
//                 running_mean <- (1 - momentum) running_mean + momentum mean_c
//                 running_var  <- (1 - momentum) running_var  + momentum var_c m / (m - 1)
//               (the unbiased variance, m the count per channel).
//   evaluation: the same with running_mean and running_var: a fixed affine map per channel.
// Parameters (PyTorch's names): "<prefix>.weight" = gamma [C] (ParamRole::scale:
// nn::initialize sets it to 1) and "<prefix>.bias" = beta [C] (ParamRole::shift: set to 0).
// Buffers: "<prefix>.running_mean" [C] (starts at 0) and "<prefix>.running_var" [C]
// (starts at 1): saved with the model, never trained.
// Throws ConfigError for num_features < 1 or options out of range (constructor);
// ShapeError for an input whose dimension 1 is not num_features, or, in training, with a
// single value per channel (m = 1, as PyTorch: the variance is undefined).
// Cost: training a few passes over x (autodiff::batch_norm); evaluation one pass.
class BatchNorm : public Module {
 public:
  explicit BatchNorm(std::int64_t num_features, BatchNormOptions options = {});
  void declare(ParameterArena& arena, const std::string& prefix) override;
  Var forward(Tape& tape, Var x) override;
  std::string describe() const override;  // "BatchNorm(256, eps 1e-05, momentum 0.1)"
  std::int64_t min_batch_size() const override { return 2; }
  Shape output_shape(const Shape& input) const override;  // [C] or [C, H, W], unchanged

  std::int64_t num_features() const { return features_; }
  const BatchNormOptions& options() const { return options_; }
  ParamId weight() const { return weight_; }
  ParamId bias() const { return bias_; }
  BufferId running_mean() const { return running_mean_; }
  BufferId running_var() const { return running_var_; }

 private:
  void update_running_statistics(const autodiff::BatchStatistics& stats, std::int64_t count);
  std::int64_t features_;
  BatchNormOptions options_;
  ParameterArena* arena_ = nullptr;
  ParamId weight_, bias_;
  BufferId running_mean_, running_var_;
};

// Inverted dropout (Srivastava et al. 2014; Goodfellow et al. 2016, section 7.12): in
// training, y = x (.) mask with mask_i = 1 / (1 - p) with probability 1 - p and 0 otherwise,
// drawn independently per element from the module's own seeded Rng (one 64-bit draw per two
// elements: keep when a 32-bit half is below (1 - p) 2^32), so E[y] = x; the mask is a
// constant of the tape, so gradients and Hv go through the ordinary product. In
// evaluation, and for p = 0, y = x (no draw). Throws ConfigError unless 0 <= p < 1.
// The generator's state is part of a checkpoint: rng_state()/set_rng_state() resume the
// same masks.
class Dropout : public Module {
 public:
  explicit Dropout(double p, std::uint64_t seed = 0);
  Var forward(Tape& tape, Var x) override;
  std::string describe() const override;  // "Dropout(0.5)"
  Shape output_shape(const Shape& input) const override { return input; }

  double p() const { return p_; }
  bool has_rng() const override { return true; }
  std::string rng_state() const override { return rng_.save_state(); }
  void set_rng_state(const std::string& state) override { rng_.load_state(state); }

 private:
  double p_;
  Rng rng_;
};

}  // namespace descent::nn
