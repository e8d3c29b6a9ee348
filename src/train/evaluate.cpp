#include "descent/train/evaluate.hpp"

#include <algorithm>

#include "descent/autodiff/tape.hpp"
#include "descent/loss/loss.hpp"

namespace descent::train {

Evaluation evaluate(nn::Module& net, const data::Split& split, std::int64_t batch, std::vector<std::int64_t>* confusion) {
  Evaluation e;
  const std::int64_t n = split.size();
  if (n == 0) return e;
  double loss_sum = 0.0;
  std::int64_t errors = 0;
  autodiff::Tape tape;
  Tensor buffer;
  const bool was_training = net.training();
  net.set_training(false);
  struct Restore {
    nn::Module& net;
    bool mode;
    ~Restore() { net.set_training(mode); }
  } restore{net, was_training};
  for (std::int64_t begin = 0; begin < n; begin += batch) {
    const std::int64_t end = std::min(n, begin + batch);
    tape.clear();
    Tensor x = split.rows(begin, end, buffer);
    Tensor y = split.y.rows(begin, end);
    autodiff::Var logits = net.forward(tape, tape.constant(x));
    loss_sum += loss::cross_entropy(logits, y).value().item() * static_cast<double>(end - begin);
    errors += loss::count_errors(logits.value(), y);
    if (confusion != nullptr) loss::accumulate_confusion(logits.value(), y, *confusion);
  }
  e.examples = n;
  e.loss = loss_sum / static_cast<double>(n);
  e.error = static_cast<double>(errors) / static_cast<double>(n);
  return e;
}

std::int64_t evaluation_chunk(const nn::Module& net) {
  const std::int64_t chunk = net.eval_chunk();
  return chunk > 0 ? chunk : 1000;
}

}  // namespace descent::train
