// Training throughput of an MLP on Fashion-MNIST: one epoch per repetition, minibatches
// in order, each copied from the preloaded data set into a batch buffer (as a trainer
// does), forward, cross-entropy, backward, optimizer step. Prints one JSON line with the
// median examples/s; bench/torch_mlp.py is the PyTorch peer that prints the same fields
// and bench/run runs both in one run and prints the ratios.
//
//   train_mlp [--sizes 784,256,256,10] [--batch 128] [--optimizer momentum] [--lr R]
//             [--threads 2] [--reps 3] [--examples N] [--data DIR] [--profile] [--peak]
//             [--gemm automatic|openblas|onednn|onednn-matmul|descent] [--dtype f32|bf16]
//
// --optimizer: sgd (plain), momentum (SGD with momentum 0.9), adam (0.9, 0.999, 1e-8);
//   --lr defaults to 0.01, 0.001 for adam. An optimizer descent does not have prints
//   {"status": "unsupported"} and exits 0, so bench/run shows n/a.
// --profile: adds where the time of one step goes (copy, matrix products, elementwise,
//   loss, backward, optimizer, tape overhead), timed over one more epoch. The step is
//   train::train_step's: no zero_grad pass (the row stays, at 0); with --fused-update 1 and
//   an optimizer that steps parameter by parameter the updates run inside the backward sweep,
//   their time counted in "optimizer" and taken out of "backward".
// --fused-update 0|1: train::set_fused_update (default 0: the update after the sweep).
// --gemm: the library of the float32 matrix products (kernels::set_gemm_backend; default
//   automatic, the per-shape rule of kernels::gemm_choice, with the hidden layers' linear +
//   ReLU as one oneDNN matmul primitive where kernels::fused_linear; onednn: dnnl_sgemm
//   and no fused forward; onednn-matmul: oneDNN's matmul primitive for every product;
//   descent: descent's own AVX-512 kernel for every product, the dense layers' bias and ReLU
//   in its stores (OpenBLAS on a CPU without AVX-512F)).
// --dtype bf16: mixed precision (descent/tensor/precision.hpp): the dense layers' products
//   with bf16 inputs on oneDNN's bf16 matmul, float32 accumulation and everything else
//   float32, as `model.dtype = "bf16"` trains; the batch copy also writes the batch's bf16
//   bits (data::Split::copy_features' x16), which the first product reads, as the trainer
//   does. Refused (exit 2) on a CPU without bf16 instructions. The profile's matrix-product
//   lines stay float32 products.
// --peak: adds the machine's large-sgemm GFLOP/s (through kernels::gemm, the library's
//   BLAS) and a STREAM-like triad bandwidth, the ceilings the profile is read against.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "descent/data/dataset.hpp"
#include "descent/data/split.hpp"
#include "descent/loss/loss.hpp"
#include "descent/nn/initialize.hpp"
#include "descent/nn/module.hpp"
#include "descent/optim/optimizer.hpp"
#include "descent/tensor/kernels.hpp"
#include "descent/tensor/parallel.hpp"
#include "descent/tensor/precision.hpp"
#include "descent/train/step.hpp"

#include "../src/autodiff/linear_bf16.hpp"
#include "../src/tensor/matmul_bf16.hpp"
#include "../src/train/step_bf16.hpp"
#include "bench_options.hpp"

using namespace descent;
using bench::Clock;
using bench::median;
using bench::seconds;

namespace {

const Clock::time_point main_entry = Clock::now();

struct Options : bench::Common {
  std::vector<std::int64_t> sizes = {784, 256, 256, 10};
  std::string optimizer = "momentum";
  bool peak = false;
  std::string gemm = "automatic";
  std::string dtype = "f32";
  int fused_update = 0;
  Options() {
    lr = 0;  // 0: default_lr(optimizer)
    reps = 3;
  }
};

std::vector<std::int64_t> parse_sizes(const std::string& text) {
  std::vector<std::int64_t> sizes;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) sizes.push_back(std::atoll(item.c_str()));
  return sizes;
}

// --gemm's names.
const std::map<std::string, kernels::GemmBackend> gemm_backends = {
    {"automatic", kernels::GemmBackend::automatic}, {"openblas", kernels::GemmBackend::openblas},
    {"onednn", kernels::GemmBackend::onednn},       {"onednn-matmul", kernels::GemmBackend::onednn_matmul},
    {"descent", kernels::GemmBackend::descent}};

bool parse(int argc, char** argv, Options& o) {
  bench::Options p("train_mlp");
  p.common(o);
  std::string sizes;
  p.value("--sizes", sizes);
  p.value("--optimizer", o.optimizer);
  p.flag("--peak", o.peak);
  p.value("--gemm", o.gemm);
  p.value("--dtype", o.dtype);
  p.value("--fused-update", o.fused_update);
  if (!p.parse(argc, argv)) return false;
  if (!sizes.empty()) o.sizes = parse_sizes(sizes);
  if (o.lr < 0) return p.fail("--lr must be > 0");
  if (!gemm_backends.contains(o.gemm)) {
    return p.fail("--gemm must be automatic, openblas, onednn, onednn-matmul or descent, got " + o.gemm);
  }
  if (o.dtype != "f32" && o.dtype != "bf16") return p.fail("--dtype must be f32 or bf16, got " + o.dtype);
  if (o.dtype == "bf16" && !precision::cpu_has_bf16()) {
    return p.fail("--dtype bf16: this CPU has no bf16 instructions (oneDNN runs " + precision::cpu_isa_name() + ")");
  }
  const bool sizes_ok = o.sizes.size() >= 2 && std::all_of(o.sizes.begin(), o.sizes.end(), [](auto s) { return s >= 1; });
  if (!sizes_ok || o.batch < 1 || o.threads < 1 || o.reps < 1 || o.examples < 0) {
    return p.fail("expected --sizes a,b,... (>= 2 positive), --batch/--threads/--reps >= 1, --examples >= 0");
  }
  return p.check_thread_rule(o);
}

// The optimizers the benchmark knows, by name, with the same hyperparameters as
// bench/torch_mlp.py's make_optimizer: sgd, momentum (0.9), adam (0.9, 0.999, 1e-8).
bool known_optimizer(const std::string& name) { return name == "sgd" || name == "momentum" || name == "adam"; }

// The learning rate when --lr is not given: 0.01 for SGD, PyTorch's default 0.001 for Adam.
double default_lr(const std::string& name) { return name == "adam" ? 0.001 : 0.01; }

// nullptr when descent does not implement the optimizer (the case is reported as
// unsupported, not as an error).
std::unique_ptr<optim::Optimizer> make_optimizer(const std::string& name, double lr) {
  const std::vector<std::string>& names = optim::optimizer_names();
  if (std::find(names.begin(), names.end(), name) == names.end()) return nullptr;
  optim::OptimizerSpec spec{.name = name, .lr = lr};
  if (name == "momentum") spec.momentum = 0.9;
  return optim::make_optimizer(spec, nullptr);
}

// Elements the fused update reads and writes per parameter (for the profile):
// sgd g, theta -> theta; momentum g, theta, v -> theta, v; adam g, theta, s, r -> theta, s, r.
int optimizer_traffic(const std::string& name) {
  if (name == "adam") return 7;
  return name == "momentum" ? 5 : 3;
}

// User + system CPU time of the whole process (every thread), seconds.
double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

// Age of this process in seconds, from the kernel's start time (/proc/self/stat field 22,
// in clock ticks since boot) and /proc/uptime: it includes exec and dynamic loading,
// which main() cannot see. Resolution one clock tick (10 ms). -1 when unavailable.
double process_age_s() {
  std::ifstream stat("/proc/self/stat");
  std::ifstream up("/proc/uptime");
  std::string line;
  double uptime = 0;
  if (!std::getline(stat, line) || !(up >> uptime)) return -1;
  const std::size_t paren = line.rfind(')');  // the command name may hold spaces
  if (paren == std::string::npos) return -1;
  std::stringstream fields(line.substr(paren + 2));
  std::string field;
  for (int i = 3; i <= 22 && fields >> field; ++i) {
    if (i == 22) return uptime - std::atof(field.c_str()) / static_cast<double>(sysconf(_SC_CLK_TCK));
  }
  return -1;
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// ---- the training loop ----------------------------------------------------------------

// The images stay bytes, as descent's trainer keeps them (a quarter of the memory); a batch
// is decoded through the table of the 256 values (byte / 255) as it is copied, by the
// trainer's own copy (data::Split::copy_features: rows in parallel, a vector table lookup).
struct Batches {
  const data::ByteDataset* set;
  data::Split split;  // the bytes and the table of their values, as the trainer holds them
  std::int64_t n, batch;
  Tensor x, y;  // buffers [batch, d] and [batch]
  std::vector<std::int64_t> idx;
  Tensor tail;  // the features of a short last batch
  // bf16 run: the bf16 bits of x, decoded with it (Split::copy_features' x16), as the trainer does
  kernels::bf16::Buffer x16;
  bool with16 = false;
  // Takes the bytes out of `s` (its shape and labels stay).
  Batches(data::ByteDataset* s, float factor, std::int64_t n_, std::int64_t batch_, bool bf16)
      : set(s), n(n_), batch(batch_), x(Tensor::empty({batch_, s->dim()}, DType::f32)),
        y(Tensor::empty({batch_}, DType::i32)), with16(bf16) {
    if (with16) x16.resize(batch_ * s->dim());
    split.bytes = std::make_shared<const std::vector<std::uint8_t>>(std::move(s->features.values));
    split.values = std::make_shared<const std::vector<float>>(data::byte_values(factor, nullptr, s->dim()));
    split.features = s->dim();
  }
  std::int64_t steps() const { return (n + batch - 1) / batch; }
  // Copies minibatch s into the buffers; returns its size (the last one may be short).
  std::int64_t load(std::int64_t s) {
    const std::int64_t begin = s * batch;
    const std::int64_t b = std::min(batch, n - begin);
    idx.resize(static_cast<std::size_t>(b));
    for (std::int64_t i = 0; i < b; ++i) idx[static_cast<std::size_t>(i)] = begin + i;
    std::uint16_t* bits = with16 ? x16.data() : nullptr;  // the first b rows of x16 either way
    if (b == batch) {
      split.copy_features(idx, x, bits);
    } else {
      split.copy_features(idx, tail, bits);
      std::memcpy(x.data<float>(), tail.data<float>(), static_cast<std::size_t>(b * set->dim()) * sizeof(float));
    }
    std::memcpy(y.data<std::int32_t>(), set->labels.data() + begin, static_cast<std::size_t>(b) * sizeof(std::int32_t));
    return b;
  }
};

struct Model {
  ParameterArena arena{DType::f32};
  nn::Sequential net;
  std::unique_ptr<optim::Optimizer> opt;
  autodiff::Tape tape;
  std::int64_t k = 0;
  explicit Model(const Options& o) : net(nn::mlp(arena, o.sizes, nn::Activation::relu)) {
    nn::initialize(arena, {.weights = init::Scheme::fan_in_uniform, .seed = 1});
    opt = make_optimizer(o.optimizer, o.lr);
  }
  // One training step (train::train_step) on the first b rows of the buffers; returns the loss.
  double step(Batches& data, std::int64_t b) {
    return train::train_step(net, arena, *opt, tape, data.x.rows(0, b), data.with16 ? &data.x16 : nullptr,
                             data.y.rows(0, b), k++);
  }
};

// ---- --profile --------------------------------------------------------------------------

struct Profile {
  double copy = 0, linear = 0, activation = 0, loss = 0, backward = 0, zero_grad = 0, optimizer = 0, clear = 0,
         total = 0;
};

// One epoch with every phase timed separately; forward module by module.
Profile profile_epoch(Model& m, Batches& data) {
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
    // No zero_grad pass: the backward overwrites the gradient (Tape::backward_overwrite).
    m.opt->prepare(m.arena, m.k);
    lap(p.optimizer);
    autodiff::Var h = data.with16 ? autodiff::constant_bf16(m.tape, data.x.rows(0, b), data.x16)
                                  : m.tape.constant(data.x.rows(0, b));
    for (std::size_t i = 0; i < m.net.size(); ++i) {
      nn::Module& mod = m.net.at(i);
      h = mod.forward(m.tape, h);
      lap(dynamic_cast<nn::Linear*>(&mod) ? p.linear : p.activation);
    }
    autodiff::Var loss = loss::cross_entropy(h, data.y.rows(0, b));
    lap(p.loss);
    if (train::fused_update() && m.opt->steps_by_parameter()) {
      // train::backward_and_step written out, the updates inside the sweep timed apart.
      double inside = 0;
      std::vector<char> stepped(m.arena.count(), 0);
      m.opt->begin_step(m.arena, m.k);
      m.tape.set_param_ready([&](ParamId id) {
        const auto u0 = Clock::now();
        stepped[static_cast<std::size_t>(id.index)] = 1;
        m.opt->step_parameter(m.arena, id);
        inside += seconds(u0, Clock::now());
      });
      m.tape.backward_overwrite(loss, m.arena.grads());
      m.tape.set_param_ready({});
      for (std::size_t i = 0; i < stepped.size(); ++i) {
        if (stepped[i] == 0) m.opt->step_parameter(m.arena, ParamId{static_cast<std::int32_t>(i)});
      }
      m.opt->end_step();
      ++m.k;
      lap(p.backward);
      p.backward -= inside;
      p.optimizer += inside;
    } else {
      m.tape.backward_overwrite(loss, m.arena.grads());
      lap(p.backward);
      m.opt->step(m.arena, m.k++);
      lap(p.optimizer);
    }
  }
  p.total = seconds(e0, Clock::now());
  return p;
}

// The matrix products of one step (forward y = x W^T, backward gW = gy^T x and, past the
// first layer, gx = gy W) alone, at the same shapes, median seconds per step.
struct GemmTime {
  double forward = 0, backward = 0, flops = 0;
};
GemmTime time_step_gemms(const std::vector<std::int64_t>& sizes, std::int64_t batch) {
  GemmTime g;
  for (int pass = 0; pass < 2; ++pass) {
    std::vector<double> fwd, bwd;
    for (int r = 0; r < 50; ++r) {
      double f = 0, b = 0;
      for (std::size_t l = 0; l + 1 < sizes.size(); ++l) {
        const std::int64_t in = sizes[l], out = sizes[l + 1];
        Tensor x = Tensor::full({batch, in}, DType::f32, 0.5), w = Tensor::full({out, in}, DType::f32, 0.01);
        Tensor y = Tensor::empty({batch, out}, DType::f32), gw = Tensor::empty({out, in}, DType::f32);
        Tensor gx = Tensor::empty({batch, in}, DType::f32);
        auto t0 = Clock::now();
        kernels::gemm(x, false, w, true, y, 1.0, 1.0);
        auto t1 = Clock::now();
        kernels::gemm(y, true, x, false, gw, 1.0, 0.0);
        if (l > 0) kernels::gemm(y, false, w, false, gx, 1.0, 0.0);
        auto t2 = Clock::now();
        f += seconds(t0, t1);
        b += seconds(t1, t2);
        if (pass == 1 && r == 0) g.flops += 2.0 * static_cast<double>(batch * in * out) * (l > 0 ? 3 : 2);
      }
      fwd.push_back(f);
      bwd.push_back(b);
    }
    g.forward = median(fwd);  // the first pass only warms up
    g.backward = median(bwd);
  }
  return g;
}

// ---- --peak -----------------------------------------------------------------------------

double sgemm_gflops(std::int64_t n) {
  Tensor a = Tensor::full({n, n}, DType::f32, 0.5), b = Tensor::full({n, n}, DType::f32, 0.25);
  Tensor c = Tensor::zeros({n, n}, DType::f32);
  std::vector<double> t;
  for (int r = 0; r < 4; ++r) {
    const auto t0 = Clock::now();
    kernels::gemm(a, false, b, false, c);
    if (r > 0) t.push_back(seconds(t0, Clock::now()));
  }
  return 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n) / median(t) / 1e9;
}

// a = b + s c over arrays far larger than the caches; GB/s counting 3 x 4 bytes per element
// (STREAM's convention: no write-allocate traffic).
double triad_gbs(std::int64_t n) {
  std::vector<float> a(static_cast<std::size_t>(n)), b(static_cast<std::size_t>(n), 1.0f), c(static_cast<std::size_t>(n), 2.0f);
  std::vector<double> t;
  for (int r = 0; r < 6; ++r) {
    const auto t0 = Clock::now();
    parallel_for(n, 1 << 16, [&](std::int64_t i0, std::int64_t i1) {
      for (std::int64_t i = i0; i < i1; ++i) a[static_cast<std::size_t>(i)] = b[static_cast<std::size_t>(i)] + 3.0f * c[static_cast<std::size_t>(i)];
    });
    if (r > 0) t.push_back(seconds(t0, Clock::now()));
  }
  if (a[static_cast<std::size_t>(n / 2)] != 7.0f) std::fprintf(stderr, "train_mlp: triad check failed\n");
  return 12.0 * static_cast<double>(n) / median(t) / 1e9;
}

std::string sizes_json(const std::vector<std::int64_t>& sizes) {
  std::string s = "[";
  for (std::size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s + "]";
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, o)) return 2;
  if (!known_optimizer(o.optimizer)) {
    std::fprintf(stderr, "train_mlp: unknown --optimizer %s (sgd, momentum, adam)\n", o.optimizer.c_str());
    return 2;
  }
  if (o.lr == 0) o.lr = default_lr(o.optimizer);
  const std::string head = "{\"impl\": \"descent\", \"sizes\": " + sizes_json(o.sizes) + ", \"batch\": " +
                           std::to_string(o.batch) + ", \"optimizer\": \"" + o.optimizer + "\", \"lr\": " +
                           std::to_string(o.lr) + ", \"threads\": " + std::to_string(o.threads) +
                           ", \"gemm\": \"" + o.gemm + "\", \"dtype\": \"" + o.dtype + "\", \"flush_denormals\": " + std::to_string(o.flush_denormals);
  if (!make_optimizer(o.optimizer, o.lr)) {
    std::printf("%s, \"status\": \"unsupported\"}\n", head.c_str());
    return 0;
  }
  bench::apply_threads(o);
  kernels::set_gemm_backend(gemm_backends.at(o.gemm));
  const precision::Scope products(o.dtype == "bf16" ? precision::Products::bf16 : precision::Products::fp32, false);
  train::set_fused_update(o.fused_update != 0);

  data::ByteDataset train;
  try {
    train = std::move(data::load_mnist_dir_bytes(o.data).train);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_mlp: %s\n", e.what());
    return 1;
  }
  if (train.dim() != o.sizes.front()) {
    std::fprintf(stderr, "train_mlp: the data has %lld features, --sizes starts with %lld\n",
                 static_cast<long long>(train.dim()), static_cast<long long>(o.sizes.front()));
    return 2;
  }
  const std::int64_t n = o.examples > 0 ? std::min(o.examples, train.size()) : train.size();
  Batches data(&train, 1.0f / 255.0f, n, o.batch, o.dtype == "bf16");
  Model model(o);

  // Ready to train: the first step starts now.
  const double startup_s = seconds(main_entry, Clock::now());
  const double age_s = process_age_s();
  const double first_step_unix = unix_now();
  const auto f0 = Clock::now();
  model.step(data, data.load(0));
  const double first_step_s = seconds(f0, Clock::now());
  // The warm-up: through the threading rule's tuner (--thread-rule auto), then 9 more steps.
  const std::string rule_fields = bench::warm_up(o, 9, data.steps(), [&](std::int64_t s) { model.step(data, data.load(s)); }, 1);

  std::vector<double> rates, cpu_rates;
  double epoch_loss = 0;
  for (int r = 0; r < o.reps; ++r) {
    double loss_sum = 0;
    const double c0 = cpu_seconds();
    const auto t0 = Clock::now();
    for (std::int64_t s = 0; s < data.steps(); ++s) {
      const std::int64_t b = data.load(s);
      loss_sum += model.step(data, b) * static_cast<double>(b);
    }
    rates.push_back(static_cast<double>(n) / seconds(t0, Clock::now()));
    cpu_rates.push_back(static_cast<double>(n) / (cpu_seconds() - c0));
    epoch_loss = loss_sum / static_cast<double>(n);
  }
  const double rate = median(rates);

  std::string extra;
  char buf[512];
  if (o.profile) {
    const Profile p = profile_epoch(model, data);
    const GemmTime g = time_step_gemms(o.sizes, o.batch);
    const double steps = static_cast<double>(data.steps());
    const double params = static_cast<double>(model.arena.size());
    auto ms = [&](double total) { return 1e3 * total / steps; };
    std::snprintf(buf, sizeof buf,
                  ", \"profile_ms_per_step\": {\"copy\": %.4f, \"tape_clear\": %.4f, \"zero_grad\": %.4f, "
                  "\"forward_linear\": %.4f, \"forward_activation\": %.4f, \"loss\": %.4f, \"backward\": %.4f, "
                  "\"optimizer\": %.4f, \"total\": %.4f}",
                  ms(p.copy), ms(p.clear), ms(p.zero_grad), ms(p.linear), ms(p.activation), ms(p.loss), ms(p.backward),
                  ms(p.optimizer), ms(p.total));
    extra += buf;
    std::snprintf(buf, sizeof buf,
                  ", \"gemm_alone_ms_per_step\": {\"forward\": %.4f, \"backward\": %.4f}, \"gemm_flops_per_step\": %.0f, "
                  "\"gemm_alone_gflops\": %.2f, \"parameters\": %.0f, \"optimizer_gbs\": %.2f, \"zero_grad_gbs\": %.2f",
                  1e3 * g.forward, 1e3 * g.backward, g.flops, g.flops / (g.forward + g.backward) / 1e9, params,
                  optimizer_traffic(o.optimizer) * 4.0 * params / (p.optimizer / steps) / 1e9,
                  p.zero_grad > 0 ? 4.0 * params / (p.zero_grad / steps) / 1e9 : 0.0);
    extra += buf;
  }
  if (o.peak) {
    std::snprintf(buf, sizeof buf, ", \"peak_sgemm_gflops\": %.2f, \"peak_triad_gbs\": %.2f", sgemm_gflops(2048),
                  triad_gbs(std::int64_t{1} << 24));
    extra += buf;
  }

  const double steps = static_cast<double>(data.steps());
  std::snprintf(buf, sizeof buf,
                ", \"examples\": %lld, \"reps\": %d, \"steps_per_epoch\": %lld, \"examples_per_s\": %.1f, "
                "\"examples_per_cpu_s\": %.1f, \"ms_per_step\": %.4f, \"peak_rss_mb\": %.1f, \"startup_ms\": %.1f, \"process_age_at_first_step_ms\": %.0f, "
                "\"first_step_unix\": %.6f, \"first_step_ms\": %.3f, \"final_loss\": %.5f",
                static_cast<long long>(n), o.reps, static_cast<long long>(data.steps()), rate,
                median(cpu_rates), 1e3 * static_cast<double>(n) / rate / steps, peak_rss_mb(), 1e3 * startup_s,
                age_s < 0 ? -1.0 : 1e3 * age_s, first_step_unix, 1e3 * first_step_s, epoch_loss);
  std::string line = head + buf + ", \"examples_per_s_reps\": [";
  for (std::size_t i = 0; i < rates.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%s%.1f", i ? ", " : "", rates[i]);
    line += buf;
  }
  std::printf("%s]%s%s}\n", line.c_str(), rule_fields.c_str(), extra.c_str());
  return 0;
}
