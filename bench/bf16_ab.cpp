// Mixed precision against float32 in ONE process, alternating, for a loaded machine: the
// MLP of train_mlp (784-256-256-10, ReLU, SGD with momentum 0.9, lr 0.01) trained one epoch
// per side and round, the sides in a rotating order, each side its own model from the same
// initialization. Sides: f32; bf16 with the input batch copied as float32 and converted by
// the first product ("bf16-convert", as before session 10); bf16 as the library (the trainer)
// runs it ("bf16": the batch's bf16 bits decoded in the copy, data::Split::copy_features' x16,
// train/step_bf16.hpp). Prints one JSON line per round (examples per second of wall time and of
// the process's CPU time, per side) and a summary line with the medians and the ratios bf16 /
// f32 and bf16 / bf16-convert of each round's figures (the median of the per-round ratios).
// The two bf16 sides train bit for bit the same (their final losses are printed).
//
//   bf16_ab [--batch 512] [--threads 2] [--rounds 5] [--examples 30720] [--data DIR]
//
// Under the load of other processes, the CPU-time rate at --threads 1 is the steadier
// figure; ratios within one round survive load better than absolute rates.
#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../src/tensor/matmul_bf16.hpp"
#include "bench_options.hpp"
#include "descent/data/dataset.hpp"
#include "descent/data/split.hpp"
#include "descent/nn/initialize.hpp"
#include "descent/nn/module.hpp"
#include "descent/optim/optimizer.hpp"
#include "descent/tensor/parallel.hpp"
#include "descent/tensor/precision.hpp"
#include "descent/train/step.hpp"
#include "../src/train/step_bf16.hpp"

using namespace descent;
using bench::Clock;
using bench::median;
using bench::seconds;

namespace {

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

struct Side {
  std::string name;
  bool bf16 = false, batch16 = false;
  double loss = 0.0;
  ParameterArena arena{DType::f32};
  nn::Sequential net;
  std::unique_ptr<optim::Optimizer> opt;
  autodiff::Tape tape;
  std::int64_t k = 0;
  std::vector<double> wall, cpu;
  Side(std::string n, bool b, bool b16)
      : name(std::move(n)), bf16(b), batch16(b16), net(nn::mlp(arena, {784, 256, 256, 10}, nn::Activation::relu)) {
    nn::initialize(arena, {.weights = init::Scheme::fan_in_uniform, .seed = 1});
    opt = optim::make_optimizer(optim::OptimizerSpec{.name = "momentum", .lr = 0.01, .momentum = 0.9}, nullptr);
  }
};

}  // namespace

int main(int argc, char** argv) {
  bench::Common o;
  o.batch = 512;
  o.examples = 30720;
  int rounds = 5;
  bench::Options p("bf16_ab");
  p.common(o);
  p.value("--rounds", rounds);
  if (!p.parse(argc, argv)) return 2;
  if (o.batch < 1 || o.threads < 1 || rounds < 1 || o.examples < 0) {
    std::fprintf(stderr, "bf16_ab: expected --batch, --threads, --rounds >= 1 and --examples >= 0\n");
    return 2;
  }
  if (!precision::cpu_has_bf16()) {
    std::fprintf(stderr, "bf16_ab: this CPU has no bf16 instructions (oneDNN runs %s)\n", precision::cpu_isa_name().c_str());
    return 2;
  }
  bench::apply_threads(o);
  data::ByteDataset train;
  try {
    train = std::move(data::load_mnist_dir_bytes(o.data).train);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bf16_ab: %s\n", e.what());
    return 1;
  }
  const std::int64_t d = train.dim();
  const std::int64_t n = o.examples > 0 ? std::min(o.examples, train.size()) : train.size();
  const std::int64_t steps = n / o.batch;  // whole batches only
  if (d != 784 || steps < 1) {
    std::fprintf(stderr, "bf16_ab: expected 784 features and at least one batch of %lld examples\n",
                 static_cast<long long>(o.batch));
    return 2;
  }
  // the trainer's batch copy (data::Split::copy_features)
  data::Split split;
  split.features = d;
  split.values = std::make_shared<const std::vector<float>>(data::byte_values(1.0f / 255.0f, nullptr, d));
  split.bytes = std::make_shared<const std::vector<std::uint8_t>>(std::move(train.features.values));
  Tensor x = Tensor::empty({o.batch, d}, DType::f32), y = Tensor::empty({o.batch}, DType::i32);
  std::vector<std::int64_t> idx(static_cast<std::size_t>(o.batch));

  std::vector<std::unique_ptr<Side>> sides;
  sides.push_back(std::make_unique<Side>("f32", false, true));
  sides.push_back(std::make_unique<Side>("bf16-convert", true, false));
  sides.push_back(std::make_unique<Side>("bf16", true, true));
  kernels::bf16::Buffer x16;
  x16.resize(o.batch * d);

  auto epoch = [&](Side& s, std::int64_t limit) {
    const precision::Scope scope(s.bf16 ? precision::Products::bf16 : precision::Products::fp32, false);
    for (std::int64_t st = 0; st < limit; ++st) {
      for (std::int64_t i = 0; i < o.batch; ++i) idx[static_cast<std::size_t>(i)] = st * o.batch + i;
      split.copy_features(idx, x, s.batch16 ? x16.data() : nullptr);
      std::memcpy(y.data<std::int32_t>(), train.labels.data() + st * o.batch, static_cast<std::size_t>(o.batch) * 4);
      s.loss = train::train_step(s.net, s.arena, *s.opt, s.tape, x, s.batch16 ? &x16 : nullptr, y, s.k++);
    }
  };
  for (auto& s : sides) epoch(*s, std::min<std::int64_t>(steps, 5));  // warm up: primitives, buffers

  // The input batch alone (best of 200 per round, in microseconds): the float32 copy then the
  // bf16 conversion of the batch (what the first product did before session 10) against the
  // copy writing both (Split::copy_features' x16).
  {
    std::vector<double> t_convert, t_both;
    for (int rep = 0; rep < 200; ++rep) {
      const std::int64_t st = rep % steps;
      for (std::int64_t i = 0; i < o.batch; ++i) idx[static_cast<std::size_t>(i)] = st * o.batch + i;
      auto t0 = Clock::now();
      split.copy_features(idx, x);
      kernels::bf16::convert(x.data<float>(), x.numel(), x16.data());
      t_convert.push_back(seconds(t0, Clock::now()));
      t0 = Clock::now();
      split.copy_features(idx, x, x16.data());
      t_both.push_back(seconds(t0, Clock::now()));
    }
    std::printf("{\"batch_copy_us\": {\"copy_then_convert\": %.1f, \"copy_with_bits\": %.1f}}\n",
                1e6 * *std::min_element(t_convert.begin(), t_convert.end()),
                1e6 * *std::min_element(t_both.begin(), t_both.end()));
    std::fflush(stdout);
  }

  std::vector<double> r_bf16_f32_wall, r_bf16_f32_cpu, r_batch_wall, r_batch_cpu;
  for (int r = 0; r < rounds; ++r) {
    for (std::size_t j = 0; j < sides.size(); ++j) {
      Side& s = *sides[(j + static_cast<std::size_t>(r)) % sides.size()];
      const double c0 = cpu_seconds();
      const auto t0 = Clock::now();
      epoch(s, steps);
      s.wall.push_back(static_cast<double>(steps * o.batch) / seconds(t0, Clock::now()));
      s.cpu.push_back(static_cast<double>(steps * o.batch) / (cpu_seconds() - c0));
    }
    const Side &f = *sides[0], &bp = *sides[1], &b = *sides[2];
    r_bf16_f32_wall.push_back(b.wall.back() / f.wall.back());
    r_bf16_f32_cpu.push_back(b.cpu.back() / f.cpu.back());
    r_batch_wall.push_back(b.wall.back() / bp.wall.back());
    r_batch_cpu.push_back(b.cpu.back() / bp.cpu.back());
    std::printf("{\"round\": %d, \"f32\": [%.0f, %.0f], \"bf16-convert\": [%.0f, %.0f], \"bf16\": [%.0f, %.0f]}\n", r + 1,
                f.wall.back(), f.cpu.back(), bp.wall.back(), bp.cpu.back(), b.wall.back(), b.cpu.back());
    std::fflush(stdout);
  }
  std::printf(
      "{\"batch\": %lld, \"threads\": %d, \"rounds\": %d, \"examples\": %lld, "
      "\"final_loss\": {\"f32\": %.9g, \"bf16-convert\": %.9g, \"bf16\": %.9g}, "
      "\"median_examples_per_s\": {\"f32\": %.0f, \"bf16-convert\": %.0f, \"bf16\": %.0f}, "
      "\"median_examples_per_cpu_s\": {\"f32\": %.0f, \"bf16-convert\": %.0f, \"bf16\": %.0f}, "
      "\"bf16_over_f32\": {\"wall\": %.3f, \"cpu\": %.3f}, \"bf16_over_bf16_convert\": {\"wall\": %.3f, \"cpu\": %.3f}}\n",
      static_cast<long long>(o.batch), o.threads, rounds, static_cast<long long>(steps * o.batch),
      sides[0]->loss, sides[1]->loss, sides[2]->loss, median(sides[0]->wall), median(sides[1]->wall), median(sides[2]->wall),
      median(sides[0]->cpu), median(sides[1]->cpu), median(sides[2]->cpu), median(r_bf16_f32_wall),
      median(r_bf16_f32_cpu), median(r_batch_wall), median(r_batch_cpu));
  return 0;
}
