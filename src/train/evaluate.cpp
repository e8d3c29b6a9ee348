#include "descent/train/evaluate.hpp"

#include <algorithm>

#include "descent/autodiff/tape.hpp"
#include "descent/loss/loss.hpp"

namespace descent::train {

void evaluate_chunks(nn::Module& net, const data::Split& split, std::int64_t batch, std::int64_t c0, std::int64_t c1,
                     double* sums, std::vector<std::int64_t>* confusion) {
  const std::int64_t n = split.size();
  std::vector<std::pair<std::int64_t, std::int64_t>> ranges;
  for (std::int64_t c = c0; c < c1; ++c) ranges.emplace_back(c * batch, std::min(n, c * batch + batch));
  evaluate_ranges(net, split, ranges, sums, confusion);
}

void evaluate_ranges(nn::Module& net, const data::Split& split,
                     std::span<const std::pair<std::int64_t, std::int64_t>> ranges, double* sums,
                     std::vector<std::int64_t>* confusion) {
  autodiff::Tape tape;
  Tensor buffer;
  const bool was_training = net.training();
  net.set_training(false);
  struct Restore {
    nn::Module& net;
    bool mode;
    ~Restore() { net.set_training(mode); }
  } restore{net, was_training};
  for (std::size_t c = 0; c < ranges.size(); ++c) {
    const auto [begin, end] = ranges[c];
    tape.clear();
    Tensor x = split.rows(begin, end, buffer);
    Tensor y = split.y.rows(begin, end);
    autodiff::Var logits = net.forward(tape, tape.constant(x));
    double* out = sums + 2 * c;
    out[0] = loss::cross_entropy(logits, y).value().item() * static_cast<double>(end - begin);
    out[1] = static_cast<double>(loss::count_errors(logits.value(), y));
    if (confusion != nullptr) loss::accumulate_confusion(logits.value(), y, *confusion);
  }
}

Evaluation evaluation_from_chunks(const std::vector<double>& sums, std::int64_t n) {
  Evaluation e;
  if (n == 0) return e;
  double loss_sum = 0.0;
  std::int64_t errors = 0;
  for (std::size_t c = 0; c + 1 < sums.size(); c += 2) {
    loss_sum += sums[c];
    errors += static_cast<std::int64_t>(sums[c + 1]);
  }
  e.examples = n;
  e.loss = loss_sum / static_cast<double>(n);
  e.error = static_cast<double>(errors) / static_cast<double>(n);
  return e;
}

Evaluation evaluate(nn::Module& net, const data::Split& split, std::int64_t batch, std::vector<std::int64_t>* confusion) {
  const std::int64_t n = split.size();
  if (n == 0) return Evaluation{};
  const std::int64_t chunks = (n + batch - 1) / batch;
  std::vector<double> sums(static_cast<std::size_t>(2 * chunks), 0.0);
  evaluate_chunks(net, split, batch, 0, chunks, sums.data(), confusion);
  return evaluation_from_chunks(sums, n);
}

std::int64_t evaluation_chunk(const nn::Module& net) {
  const std::int64_t chunk = net.eval_chunk();
  return chunk > 0 ? chunk : 1000;
}

}  // namespace descent::train
