#pragma once
// Initializes every parameter of an arena: weights by a scheme of the chapter (section
// 8.4) using each parameter's fan-in and fan-out, biases to a constant, normalization
// gains (ParamRole::scale) to 1 and offsets (ParamRole::shift) to 0. Seeded: the same
// seed gives the same bits. Parameters are visited in declaration order, so adding a
// layer at the end does not change the draws of the layers before it. Buffers (running
// statistics) go back to their initial values.
#include <cstdint>

#include "descent/init/init.hpp"
#include "descent/tensor/arena.hpp"

namespace descent::nn {

struct InitSpec {
  init::Scheme weights = init::Scheme::he_uniform;
  init::Options options = {};
  double bias = 0.0;
  // The output layer's weights (the last weight parameter in declaration order) are
  // multiplied by this after they are drawn, so the draws of every parameter are those of
  // output_gain = 1; 0 starts the output layer at zero (equal logits: the loss starts at ln K).
  double output_gain = 1.0;
  std::uint64_t seed = 0;
};

void initialize(ParameterArena& arena, const InitSpec& spec);

}  // namespace descent::nn
