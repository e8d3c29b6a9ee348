#pragma once
// Weight-space symmetry (section 8.2.2): many parameter vectors give the same function.
// Permuting the units of a hidden layer, applied to both sides (the rows of the incoming
// weight matrix and the bias, and the columns of the outgoing weight matrix), leaves every
// output unchanged; so does scaling a ReLU unit's incoming weights and bias by a > 0 and its
// outgoing weights by 1/a (ReLU is positively homogeneous: relu(a z) = a relu(z)). These are
// why a network's loss has many equivalent minima (model identifiability): m hidden layers
// of n units give n!^m equivalent permutations alone, plus a continuum of rescalings.
//
// What is covered, in an nn::Sequential:
//   Linear -> [activation | Dropout]* -> Linear        dense hidden units
//   Conv2d -> [activation | Dropout | MaxPool2d | AvgPool2d]* -> Conv2d
//                                                      channels (weight [C_out, C_in, k, k])
//   Conv2d -> [... as above] -> Flatten -> Linear      channels, each a block of H x W
//                                                      columns of the Linear
//   RNN/LSTM/GRU -> [activation | Dropout | Flatten]* -> Linear (reading h_T, or the
//                  flat sequence h_1..h_T) or -> RNN/LSTM/GRU (reading the sequence)
//                                                      hidden units: the rows of each gate's
//                                                      block of W_ih, W_hh and the bias (GRU:
//                                                      and b_hn), the columns of W_hh, and the
//                                                      next layer's input columns (permutation
//                                                      only: the cells are not homogeneous)
// where an activation is elementwise (relu, tanh, sigmoid, identity; not softmax).
// Rescaling also needs every module between to be positively homogeneous: relu, identity,
// dropout and the two poolings. Not covered (the chain is cut there, and the module is
// named in `skipped`): batch normalization (its per-unit parameters and statistics would
// have to move along, and it undoes a rescaling), a layer followed by one that does not
// take its units one to one (e.g. a Linear into a recurrent layer, which reads its
// outputs as time steps), and the input and output units (not hidden).
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "descent/nn/module.hpp"
#include "descent/tensor/arena.hpp"

namespace descent::diag {

// One side of a layer's units inside one parameter: the tensor read as [outer, units x
// group, inner], unit u owning the slice [.., u*group .. (u+1)*group, ..].
struct UnitSlice {
  ParamId param;
  std::int64_t outer = 1;  // product of the dimensions before the units' axis
  std::int64_t group = 1;  // consecutive entries per unit along that axis
  std::int64_t inner = 1;  // product of the dimensions after it
};

struct SymmetryLayer {
  std::string name;        // the incoming parameter's module, e.g. "layers.0"
  std::string kind;        // "dense", "conv", or "rnn", "lstm", "gru"
  std::int64_t units = 0;  // n
  bool rescaling = false;  // whether positive rescaling applies (ReLU or identity between)
  std::string between;     // the modules between, e.g. "relu" or "relu, MaxPool2d(2, stride 2)"
  std::vector<UnitSlice> incoming;  // scaled by a: weight rows (and bias); a recurrent layer's
                                    // own slices all (W_hh's columns too)
  std::vector<UnitSlice> outgoing;  // scaled by 1/a: the next layer's weight columns
};

// The hidden layers of `net` whose units can be permuted (and rescaled), with `skipped`
// (if given) naming the modules the search stopped at, with why.
std::vector<SymmetryLayer> find_symmetries(nn::Sequential& net, ParameterArena& arena,
                                           std::vector<std::string>* skipped = nullptr);

// New unit u = old unit perm[u], on every slice of `layer` (incoming and outgoing).
void permute_units(ParameterArena& arena, const SymmetryLayer& layer, std::span<const std::int64_t> perm);
// Unit u's incoming slices times scale[u], its outgoing slices divided by scale[u].
void rescale_units(ParameterArena& arena, const SymmetryLayer& layer, std::span<const double> scale);

struct SymmetryOptions {
  int trials = 10;             // random permutations (of all layers at once), and rescalings
  double log_scale = 1.0;      // rescaling factors a = exp(u), u uniform on [-log_scale, log_scale]
  std::uint64_t seed = 1;
  std::int64_t chunk = 256;    // examples per tape for the loss
};

struct SymmetryResult {
  std::vector<SymmetryLayer> layers;
  std::vector<std::string> skipped;
  double loss = 0.0;                    // J at the given parameters
  double permutation_max_change = 0.0;  // max over trials |J' - J| / |J|
  double rescaling_max_change = 0.0;    // the same for the rescalings (0 when no layer allows one)
  // max over trials |theta' - theta| / |theta|: how far the transformed parameters moved
  // (large: the same loss at a distant point).
  double permutation_distance = 0.0;
  double rescaling_distance = 0.0;
  double log10_equivalent_models = 0.0;  // sum over layers log10(n!)
  std::int64_t rescaling_dimensions = 0; // units that can be rescaled: the continuum's dimension
  int trials = 0;
};

// x [N, ...] of the arena's dtype, labels i32 [N]. The parameters are restored afterwards.
SymmetryResult weight_space_symmetry(nn::Sequential& net, ParameterArena& arena, const Tensor& x, const Tensor& labels,
                                     const SymmetryOptions& options = {});

}  // namespace descent::diag
