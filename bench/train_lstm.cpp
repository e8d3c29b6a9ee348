// Training throughput of a recurrent classifier on Fashion-MNIST read row by row: each
// image is a sequence of T = 28 rows of D = 28 pixels, an LSTM (or GRU / RNN) with H hidden
// units reads it, a linear head maps h_T to 10 classes. Minibatches in order, each copied
// from the preloaded data set into a batch buffer; forward, cross-entropy, backprop through
// time, SGD with momentum 0.9. One pass over N examples per repetition; prints one JSON
// line with the median examples/s. bench/torch_lstm.py is the PyTorch peer (nn.LSTM,
// batch_first) with the same fields.
//
//   train_lstm [--cell lstm] [--hidden 128] [--batch 128] [--lr 0.01] [--threads 2]
//              [--reps 1] [--examples N] [--data DIR] [--profile]
//
// --profile: adds where the time of one step goes (batch copy, forward, loss, backward,
//   optimizer) over one more pass, the tape's node count per step, and the step's matrix
//   products alone at the same shapes (the part a fused kernel could not remove).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "descent/data/dataset.hpp"
#include "descent/loss/loss.hpp"
#include "descent/nn/initialize.hpp"
#include "descent/nn/module.hpp"
#include "descent/nn/recurrent.hpp"
#include "descent/optim/optimizer.hpp"
#include "descent/tensor/kernels.hpp"
#include "descent/tensor/parallel.hpp"
#include "descent/train/step.hpp"

#include "bench_options.hpp"

using namespace descent;
using bench::Clock;
using bench::median;
using bench::seconds;

namespace {

constexpr std::int64_t rows_per_image = 28;  // T
constexpr std::int64_t pixels_per_row = 28;  // D

struct Options : bench::Common {
  std::string cell = "lstm";
  std::int64_t hidden = 128;
};

bool parse(int argc, char** argv, Options& o) {
  bench::Options p("train_lstm");
  p.common(o);
  p.value("--cell", o.cell);
  p.value("--hidden", o.hidden);
  if (!p.parse(argc, argv) || !p.check_common(o)) return false;
  if (o.cell != "lstm" && o.cell != "gru" && o.cell != "rnn") return p.fail("--cell must be lstm, gru or rnn");
  if (o.hidden < 1) return p.fail("--hidden must be >= 1");
  return true;
}

nn::CellKind cell_kind(const std::string& name) {
  if (name == "gru") return nn::CellKind::gru;
  if (name == "rnn") return nn::CellKind::rnn;
  return nn::CellKind::lstm;
}

struct Batches {
  const data::Dataset* set;
  std::int64_t n, batch;
  Tensor x, y;  // buffers [batch, 784] and [batch]
  std::int64_t steps() const { return (n + batch - 1) / batch; }
  std::int64_t load(std::int64_t s) {
    const std::int64_t begin = s * batch;
    const std::int64_t b = std::min(batch, n - begin);
    const std::int64_t d = set->dim();
    std::memcpy(x.data<float>(), set->features.values.data() + begin * d, static_cast<std::size_t>(b * d) * sizeof(float));
    std::memcpy(y.data<std::int32_t>(), set->labels.data() + begin, static_cast<std::size_t>(b) * sizeof(std::int32_t));
    return b;
  }
};

struct Model {
  ParameterArena arena{DType::f32};
  nn::Sequential net{arena};
  std::unique_ptr<optim::Optimizer> opt;
  autodiff::Tape tape;
  std::int64_t k = 0;
  explicit Model(const Options& o) {
    net.add(nn::Recurrent(cell_kind(o.cell), pixels_per_row, o.hidden));
    net.add(nn::Linear(o.hidden, 10));
    nn::initialize(arena, {.weights = init::Scheme::fan_in_uniform, .seed = 1});
    nn::reset_forget_biases(net);
    opt = optim::sgd({.schedule = optim::constant(o.lr), .alpha = 0.9});
  }
  double step(Batches& data, std::int64_t b) {
    return train::train_step(net, arena, *opt, tape, data.x.rows(0, b), data.y.rows(0, b), k++);
  }
};

struct Profile {
  double copy = 0, forward = 0, loss = 0, backward = 0, zero_grad = 0, optimizer = 0, clear = 0, total = 0;
  std::size_t nodes = 0;
};

Profile profile_pass(Model& m, Batches& data) {
  Profile p;
  const auto e0 = Clock::now();
  for (std::int64_t s = 0; s < data.steps(); ++s) {
    auto t = Clock::now();
    auto lap = [&t](double& into) {
      const auto now = Clock::now();
      into += seconds(t, now);
      t = now;
    };
    const std::int64_t b = data.load(s);
    lap(p.copy);
    m.tape.clear();
    lap(p.clear);
    m.arena.zero_grad();
    lap(p.zero_grad);
    autodiff::Var logits = m.net.forward(m.tape, m.tape.constant(data.x.rows(0, b)));
    lap(p.forward);
    autodiff::Var loss = loss::cross_entropy(logits, data.y.rows(0, b));
    lap(p.loss);
    m.tape.backward(loss);
    lap(p.backward);
    m.opt->step(m.arena, m.k++);
    lap(p.optimizer);
    p.nodes = m.tape.size();
  }
  p.total = seconds(e0, Clock::now());
  return p;
}

// The matrix products of one step alone, at the same shapes (median over repetitions):
// forward: the input projection [B*T, D] x [D, G*H] and T-1 recurrent products
// [B, H] x [H, G*H]; backward: for each, the weight gradient and (recurrent, and the head
// excluded) the input gradient.
struct GemmTime {
  double forward = 0, backward = 0, flops = 0;
};
GemmTime time_step_gemms(std::int64_t batch, std::int64_t hidden, std::int64_t gates) {
  const std::int64_t g = gates * hidden, t = rows_per_image, d = pixels_per_row;
  Tensor x = Tensor::full({batch * t, d}, DType::f32, 0.5), wih = Tensor::full({g, d}, DType::f32, 0.01);
  Tensor p = Tensor::empty({batch * t, g}, DType::f32), gwih = Tensor::empty({g, d}, DType::f32);
  Tensor h = Tensor::full({batch, hidden}, DType::f32, 0.5), whh = Tensor::full({g, hidden}, DType::f32, 0.01);
  Tensor a = Tensor::empty({batch, g}, DType::f32), gwhh = Tensor::zeros({g, hidden}, DType::f32);
  Tensor gh = Tensor::empty({batch, hidden}, DType::f32);
  std::vector<double> fwd, bwd;
  for (int r = 0; r < 21; ++r) {
    const auto t0 = Clock::now();
    kernels::gemm(x, false, wih, true, p);
    for (std::int64_t s = 1; s < t; ++s) kernels::gemm(h, false, whh, true, a);
    const auto t1 = Clock::now();
    kernels::gemm(p, true, x, false, gwih);
    for (std::int64_t s = 1; s < t; ++s) {
      kernels::gemm(a, true, h, false, gwhh, 1.0, 1.0);
      kernels::gemm(a, false, whh, false, gh);
    }
    const auto t2 = Clock::now();
    if (r > 0) {
      fwd.push_back(seconds(t0, t1));
      bwd.push_back(seconds(t1, t2));
    }
  }
  GemmTime out;
  out.forward = median(fwd);
  out.backward = median(bwd);
  out.flops = 2.0 * static_cast<double>(batch * t * d * g) * 2 + 2.0 * static_cast<double>(batch * hidden * g) * 3 * (t - 1);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, o)) return 2;
  bench::apply_threads(o);
  data::Dataset train;
  try {
    train = std::move(data::load_mnist_dir(o.data).train);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_lstm: %s\n", e.what());
    return 1;
  }
  data::scale(train, 1.0f / 255.0f);
  if (train.dim() != rows_per_image * pixels_per_row) {
    std::fprintf(stderr, "train_lstm: expected 28x28 images, the data has %lld features\n", static_cast<long long>(train.dim()));
    return 2;
  }
  const std::int64_t n = o.examples > 0 ? std::min(o.examples, train.size()) : train.size();
  Batches data{&train, n, o.batch, Tensor::empty({o.batch, train.dim()}, DType::f32), Tensor::empty({o.batch}, DType::i32)};
  Model model(o);

  // The warm-up: through the threading rule's tuner (--thread-rule auto), then 5 steps.
  const std::string rule_fields = bench::warm_up(o, 5, data.steps(), [&](std::int64_t s) { model.step(data, data.load(s)); });
  std::vector<double> rates;
  double pass_loss = 0;
  for (int r = 0; r < o.reps; ++r) {
    double loss_sum = 0;
    const auto t0 = Clock::now();
    for (std::int64_t s = 0; s < data.steps(); ++s) {
      const std::int64_t b = data.load(s);
      loss_sum += model.step(data, b) * static_cast<double>(b);
    }
    rates.push_back(static_cast<double>(n) / seconds(t0, Clock::now()));
    pass_loss = loss_sum / static_cast<double>(n);
  }
  const double rate = median(rates);
  const double steps = static_cast<double>(data.steps());

  std::string extra;
  char buf[768];
  if (o.profile) {
    const Profile p = profile_pass(model, data);
    const int gates = dynamic_cast<nn::Recurrent&>(model.net.at(0)).gates();
    const GemmTime g = time_step_gemms(o.batch, o.hidden, gates);
    auto ms = [&](double total) { return 1e3 * total / steps; };
    std::snprintf(buf, sizeof buf,
                  ", \"profile_ms_per_step\": {\"copy\": %.4f, \"tape_clear\": %.4f, \"zero_grad\": %.4f, \"forward\": %.4f, "
                  "\"loss\": %.4f, \"backward\": %.4f, \"optimizer\": %.4f, \"total\": %.4f}, \"tape_nodes_per_step\": %zu, "
                  "\"gemm_alone_ms_per_step\": {\"forward\": %.4f, \"backward\": %.4f}, \"gemm_flops_per_step\": %.0f, "
                  "\"gemm_alone_gflops\": %.2f",
                  ms(p.copy), ms(p.clear), ms(p.zero_grad), ms(p.forward), ms(p.loss), ms(p.backward), ms(p.optimizer),
                  ms(p.total), p.nodes, 1e3 * g.forward, 1e3 * g.backward, g.flops, g.flops / (g.forward + g.backward) / 1e9);
    extra += buf;
  }
  std::snprintf(buf, sizeof buf,
                "{\"impl\": \"descent\", \"cell\": \"%s\", \"steps\": %lld, \"input\": %lld, \"hidden\": %lld, \"batch\": %lld, "
                "\"optimizer\": \"momentum\", \"threads\": %d, \"examples\": %lld, \"reps\": %d, \"steps_per_pass\": %lld, "
                "\"examples_per_s\": %.1f, \"ms_per_step\": %.4f, \"final_loss\": %.5f, \"examples_per_s_reps\": [",
                o.cell.c_str(), static_cast<long long>(rows_per_image), static_cast<long long>(pixels_per_row),
                static_cast<long long>(o.hidden), static_cast<long long>(o.batch), o.threads, static_cast<long long>(n),
                o.reps, static_cast<long long>(data.steps()), rate, 1e3 * static_cast<double>(n) / rate / steps, pass_loss);
  std::string line = buf;
  for (std::size_t i = 0; i < rates.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%s%.1f", i ? ", " : "", rates[i]);
    line += buf;
  }
  std::printf("%s]%s%s}\n", line.c_str(), rule_fields.c_str(), extra.c_str());
  return 0;
}
