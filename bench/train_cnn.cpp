// Training throughput of a small convolutional network on Fashion-MNIST, the CNN of the
// benchmark issue:
//   conv 32 5x5 pad 2, relu, max-pool 2, conv 64 5x5 pad 2, relu, max-pool 2,
//   fc 3136 -> 256, relu, fc 256 -> 10
// batch 128, SGD with momentum 0.9, minibatches in order, each copied from the preloaded
// data set (scaled to [0, 1]) into a batch buffer. One pass over --examples examples per
// repetition; prints one JSON line with the median examples/s. bench/torch_cnn.py is the
// PyTorch peer (same fields).
//
// examples_per_cpu_s: the same per second of the process's CPU time (for loaded machines).
//
//   train_cnn [--batch 128] [--lr 0.01] [--threads 2] [--reps 1] [--examples 10000]
//             [--data DIR] [--profile]
//
// --profile: adds where one step's time goes: each module's forward, and the backward of
//   each layer alone (timed on its own tape with the recorded input and a fixed gy), plus
//   the optimizer, in ms per step.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "descent/data/dataset.hpp"
#include "descent/init/rng.hpp"
#include "descent/loss/loss.hpp"
#include "descent/nn/conv.hpp"
#include "descent/nn/module.hpp"
#include "descent/optim/optimizer.hpp"
#include "descent/tensor/parallel.hpp"
#include "descent/train/step.hpp"

#include "bench_options.hpp"

using namespace descent;
using bench::Clock;
using bench::median;
using bench::seconds;

namespace {

struct Options : bench::Common {
  Options() { examples = 10000; }
};

bool parse(int argc, char** argv, Options& o) {
  bench::Options p("train_cnn");
  p.common(o);
  return p.parse(argc, argv) && p.check_common(o);
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

// PyTorch's default initialization of Conv2d and Linear: weights and biases uniform in
// +-1/sqrt(fan_in) (kaiming_uniform with a = sqrt(5)), so both sides start alike.
void torch_default_init(ParameterArena& arena, std::uint64_t seed) {
  Rng rng(seed);
  for (std::size_t i = 0; i < arena.count(); ++i) {
    const ParamId id{static_cast<std::int32_t>(i)};
    const double bound = 1.0 / std::sqrt(static_cast<double>(arena.entry(id).info.fan_in));
    float* p = arena.value(id).data<float>();
    for (std::int64_t k = 0; k < arena.value(id).numel(); ++k) p[k] = static_cast<float>(rng.uniform(-bound, bound));
  }
}

struct Model {
  ParameterArena arena{DType::f32};
  nn::Sequential net{arena};
  std::unique_ptr<optim::Optimizer> opt;
  autodiff::Tape tape;
  std::int64_t k = 0;
  explicit Model(const Options& o) {
    net.add(nn::Unflatten({1, 28, 28}));
    net.add(nn::Conv2d(1, 32, 5, {.stride = 1, .padding = 2}));
    net.add(nn::ReLU());
    net.add(nn::MaxPool2d(2));
    net.add(nn::Conv2d(32, 64, 5, {.stride = 1, .padding = 2}));
    net.add(nn::ReLU());
    net.add(nn::MaxPool2d(2));
    net.add(nn::Flatten());
    net.add(nn::Linear(64 * 7 * 7, 256));
    net.add(nn::ReLU());
    net.add(nn::Linear(256, 10));
    torch_default_init(arena, 1);
    opt = optim::sgd({.schedule = optim::constant(o.lr), .alpha = 0.9});
  }
  double step(Batches& data, std::int64_t b) {
    return train::train_step(net, arena, *opt, tape, data.x.rows(0, b), data.y.rows(0, b), k++);
  }
};

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// ---- --profile --------------------------------------------------------------------------

// Per module: forward ms and backward ms per step (backward of the module alone: its own
// tape, the recorded input as a variable (a constant for the first), loss = sum(gy (.) y)).
struct LayerTime {
  std::string name;
  double forward = 0, backward = 0;
};

std::vector<LayerTime> profile(Model& m, Batches& data, int steps, double& optimizer_ms) {
  std::vector<LayerTime> t(m.net.size());
  for (std::size_t i = 0; i < m.net.size(); ++i) t[i].name = m.net.at(i).describe();
  double opt_s = 0;
  for (int s = 0; s < steps; ++s) {
    const std::int64_t b = data.load(s % data.steps());
    m.tape.clear();
    m.arena.zero_grad();
    std::vector<Tensor> inputs;
    autodiff::Var h = m.tape.constant(data.x.rows(0, b));
    for (std::size_t i = 0; i < m.net.size(); ++i) {
      inputs.push_back(h.value());
      const auto t0 = Clock::now();
      h = m.net.at(i).forward(m.tape, h);
      t[i].forward += seconds(t0, Clock::now());
    }
    for (std::size_t i = 0; i < m.net.size(); ++i) {
      autodiff::Tape local;
      autodiff::Var x = i <= 1 ? local.constant(inputs[i]) : local.variable(inputs[i]);
      autodiff::Var y = m.net.at(i).forward(local, x);
      Tensor gy = Tensor::full(y.shape(), DType::f32, 1e-3);
      autodiff::Var loss = autodiff::sum(autodiff::mul(local.constant(gy), y));
      const auto t0 = Clock::now();
      local.backward(loss);
      t[i].backward += seconds(t0, Clock::now());
    }
    const auto t0 = Clock::now();
    m.opt->step(m.arena, m.k++);
    opt_s += seconds(t0, Clock::now());
  }
  for (auto& l : t) {
    l.forward *= 1e3 / steps;
    l.backward *= 1e3 / steps;
  }
  optimizer_ms = 1e3 * opt_s / steps;
  return t;
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
    std::fprintf(stderr, "train_cnn: %s\n", e.what());
    return 1;
  }
  if (train.dim() != 784) {
    std::fprintf(stderr, "train_cnn: expected 28 x 28 images, the data has %lld features\n",
                 static_cast<long long>(train.dim()));
    return 2;
  }
  data::scale(train, 1.0f / 255.0f);
  const std::int64_t n = o.examples > 0 ? std::min(o.examples, train.size()) : train.size();
  Batches data{&train, n, o.batch, Tensor::empty({o.batch, 784}, DType::f32), Tensor::empty({o.batch}, DType::i32)};
  Model model(o);

  // The warm-up: through the threading rule's tuner (--thread-rule auto), then 3 steps.
  const std::string rule_fields = bench::warm_up(o, 3, data.steps(), [&](std::int64_t s) { model.step(data, data.load(s)); });

  std::vector<double> rates, cpu_rates;
  double epoch_loss = 0;
  for (int r = 0; r < o.reps; ++r) {
    double loss_sum = 0;
    const double c0 = process_cpu_seconds();
    const auto t0 = Clock::now();
    for (std::int64_t s = 0; s < data.steps(); ++s) {
      const std::int64_t b = data.load(s);
      loss_sum += model.step(data, b) * static_cast<double>(b);
    }
    rates.push_back(static_cast<double>(n) / seconds(t0, Clock::now()));
    cpu_rates.push_back(static_cast<double>(n) / (process_cpu_seconds() - c0));
    epoch_loss = loss_sum / static_cast<double>(n);
  }
  const double rate = median(rates);

  std::string line = "{\"impl\": \"descent\", \"model\": \"cnn-32-64-256\", \"batch\": " + std::to_string(o.batch) +
                     ", \"optimizer\": \"momentum\", \"threads\": " + std::to_string(o.threads) +
                     ", \"examples\": " + std::to_string(n) + ", \"reps\": " + std::to_string(o.reps);
  char buf[256];
  std::snprintf(buf, sizeof buf, ", \"examples_per_s\": %.1f, \"ms_per_step\": %.3f, \"final_loss\": %.5f", rate,
                1e3 * static_cast<double>(n) / rate / static_cast<double>(data.steps()), epoch_loss);
  line += buf;
  line += ", \"examples_per_s_reps\": [";
  for (std::size_t i = 0; i < rates.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%s%.1f", i ? ", " : "", rates[i]);
    line += buf;
  }
  line += "]";
  // Examples per second of the process's CPU time (all threads): on a loaded machine, where
  // wall time depends on what else runs, this one says what the work costs (with 1 thread
  // exactly; with more, time a thread spends spinning at a barrier counts too).
  std::snprintf(buf, sizeof buf, ", \"examples_per_cpu_s\": %.1f", median(cpu_rates));
  line += buf;
  if (o.profile) {
    double optimizer_ms = 0;
    const auto layers = profile(model, data, 10, optimizer_ms);
    line += ", \"profile_ms_per_step\": [";
    for (std::size_t i = 0; i < layers.size(); ++i) {
      std::snprintf(buf, sizeof buf, "%s{\"layer\": \"%s\", \"forward\": %.3f, \"backward\": %.3f}", i ? ", " : "",
                    layers[i].name.c_str(), layers[i].forward, layers[i].backward);
      line += buf;
    }
    std::snprintf(buf, sizeof buf, "], \"optimizer_ms\": %.3f", optimizer_ms);
    line += buf;
  }
  std::printf("%s%s}\n", line.c_str(), rule_fields.c_str());
  return 0;
}
