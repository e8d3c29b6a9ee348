#pragma once
// The true loss of section 8.1: surrogate (mean cross-entropy) and 0-1 error of a model on a
// data split, in evaluation mode, without touching the gradients.
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "descent/data/split.hpp"
#include "descent/nn/module.hpp"

namespace descent::train {

struct Evaluation {
  double loss = 0.0;   // mean surrogate (cross-entropy)
  double error = 0.0;  // 0-1 error
  std::int64_t examples = 0;
};

// Surrogate and 0-1 loss of `net` on a split, in chunks of `batch` examples, in evaluation
// mode (batch normalization uses its running statistics, dropout is off; the mode is put
// back afterwards). With `confusion`, also the [C, C] confusion counts (row: true class,
// column: predicted). An empty split gives zeros.
Evaluation evaluate(nn::Module& net, const data::Split& split, std::int64_t batch = 1000,
                    std::vector<std::int64_t>* confusion = nullptr);

// The pieces of evaluate(), for sharing the chunks out over MPI ranks (train/distributed.hpp):
// chunk c holds examples [c batch, min(n, (c+1) batch)); for c in [c0, c1), sums[2 (c - c0)]
// gets its cross-entropy summed over its examples and sums[2 (c - c0) + 1] its error count.
// evaluation_from_chunks adds all chunks' pairs in chunk order (what evaluate() returns).
void evaluate_chunks(nn::Module& net, const data::Split& split, std::int64_t batch, std::int64_t c0, std::int64_t c1,
                     double* sums, std::vector<std::int64_t>* confusion = nullptr);
Evaluation evaluation_from_chunks(const std::vector<double>& sums, std::int64_t n);
// The same for chunks of any rows: chunk i holds examples [ranges[i].first, ranges[i].second),
// its figures go to sums[2 i] and sums[2 i + 1] (evaluate_chunks is this over its chunks).
void evaluate_ranges(nn::Module& net, const data::Split& split,
                     std::span<const std::pair<std::int64_t, std::int64_t>> ranges, double* sums,
                     std::vector<std::int64_t>* confusion = nullptr);

// The chunk the trainer evaluates `net` in: its preference (Module::eval_chunk), else 1,000.
std::int64_t evaluation_chunk(const nn::Module& net);

}  // namespace descent::train
