#pragma once
// What a registry entry (registry.cpp) builds for the factory (optimizer.cpp): its
// algorithm's links and, where one exists, the fused loop that computes the same chain in
// one pass over memory. Internal to src/optim.
#include <cstdint>
#include <memory>
#include <vector>

#include "descent/optim/optimizer.hpp"
#include "descent/optim/schedule.hpp"
#include "descent/optim/transform.hpp"

namespace descent::optim {

// The fused loops of optimizer.cpp (ChainOptimizer::fused_kernel), each the composition of
// one chain's rules (rules.hpp); none: the chain runs link by link.
enum class Kernel : std::uint8_t { none, sgd, momentum, momentum_pytorch, nesterov, nesterov_pytorch, adagrad, rms, adam };

// Which chain a fused loop stands for, with the hyperparameters its links were given.
struct Fused {
  Kernel kernel = Kernel::none;
  double l2 = 0.0;         // add_decayed_weights before the scaling (L2)
  double decoupled = 0.0;  // add_decayed_weights after scale_by_adam (AdamW)
  double alpha = 0.0, rho = 0.0, rho1 = 0.0, rho2 = 0.0, delta = 0.0;
  Delta at = Delta::outside_root;
};

// What the factory hands an entry's builder: the spec, its form, and the hyperparameters
// resolved (the spec's values, else the entry's defaults) and range-checked.
struct ChainArgs {
  const OptimizerSpec& spec;
  bool pytorch = false;
  double alpha = 0.0, rho = 0.0, rho1 = 0.9, rho2 = 0.999, delta = 0.0;
  double weight_decay = 0.0;  // lambda (the entry's default when the spec leaves it 0)
  std::shared_ptr<Schedule> schedule;  // never null
};

// What the builder fills in. links arrive holding the clipping links and, unless the entry
// decouples its weight decay, L2 decay (add_decayed_weights); the builder appends its own,
// scale_by_learning_rate included. fused arrives with l2 and the ChainArgs' hyperparameters
// set; the builder sets kernel (and at, decoupled) when a fused loop computes its chain
// (the factory turns it off again for clipping or spec.fused = false).
struct ChainRecipe {
  std::vector<Transform> links;
  Fused fused;
};

}  // namespace descent::optim
