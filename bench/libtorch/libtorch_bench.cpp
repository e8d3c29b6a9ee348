// The LibTorch peer of bench/train_mlp.cpp, train_cnn.cpp and train_lstm.cpp: the same
// models built with LibTorch's C++ API (Debian's libtorch-dev, the library a C++ user would
// otherwise pick), the same Fashion-MNIST examples scaled to [0, 1] and preloaded as one
// tensor, minibatches in order copied into a batch buffer, cross-entropy, backward, the
// optimizer step (gradients set to none before each step, as PyTorch's zero_grad(set_to_none)
// does). Prints one JSON line with the fields of the descent benchmarks; bench/run runs it
// alternating with descent and PyTorch.
//
//   libtorch_bench --model mlp|cnn|lstm [--sizes 784,256,256,10] [--hidden 128] [--batch 128]
//                  [--optimizer momentum|sgd|adam] [--lr R] [--threads 2] [--reps 3]
//                  [--examples N] [--data DIR]
//
// mlp:  Linear/ReLU stack of --sizes.
// cnn:  conv 32 5x5 pad 2, relu, max-pool 2, conv 64 5x5 pad 2, relu, max-pool 2, fc 256, relu, fc 10.
// lstm: torch::nn::LSTM(28, hidden, batch_first) over the 28 image rows, Linear(hidden, 10) on the last output.
// Warm-up: 10 steps (mlp) or 3 (cnn, lstm) before the timed repetitions.
#include <sys/resource.h>
#include <torch/torch.h>
#include <torch/version.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

struct Options {
  std::string model = "mlp", optimizer = "momentum", data = "/usr/share/datasets/fashion-mnist";
  std::vector<std::int64_t> sizes = {784, 256, 256, 10};
  std::int64_t hidden = 128, batch = 128, examples = 0;
  double lr = 0;
  int threads = 2, reps = 3;
};

// An IDX file (plain or .gz) as its bytes after the header; dims filled from the header.
std::vector<std::uint8_t> read_idx(const std::string& path, std::uint32_t magic, std::vector<std::int64_t>& dims) {
  gzFile f = gzopen(path.c_str(), "rb");  // zlib reads plain files too
  std::string name = path;
  if (!f) {
    name = path + ".gz";
    f = gzopen(name.c_str(), "rb");
  }
  if (!f) throw std::runtime_error("cannot open " + path + "[.gz]");
  std::vector<std::uint8_t> raw;
  std::uint8_t buf[1 << 16];
  int got = 0;
  while ((got = gzread(f, buf, sizeof buf)) > 0) raw.insert(raw.end(), buf, buf + got);
  gzclose(f);
  auto be32 = [&](std::size_t at) {
    return (std::uint32_t{raw.at(at)} << 24) | (std::uint32_t{raw.at(at + 1)} << 16) |
           (std::uint32_t{raw.at(at + 2)} << 8) | std::uint32_t{raw.at(at + 3)};
  };
  if (raw.size() < 4 || be32(0) != magic) throw std::runtime_error(name + ": not an IDX file of the expected kind");
  const std::size_t ndim = magic & 0xFF;
  dims.clear();
  for (std::size_t i = 0; i < ndim; ++i) dims.push_back(be32(4 + 4 * i));
  return {raw.begin() + static_cast<std::ptrdiff_t>(4 + 4 * ndim), raw.end()};
}

struct MlpImpl : torch::nn::Module {
  torch::nn::Sequential net;
  explicit MlpImpl(const std::vector<std::int64_t>& sizes) {
    for (std::size_t i = 0; i + 1 < sizes.size(); ++i) {
      net->push_back(torch::nn::Linear(sizes[i], sizes[i + 1]));
      if (i + 2 < sizes.size()) net->push_back(torch::nn::ReLU());
    }
    register_module("net", net);
  }
  torch::Tensor forward(const torch::Tensor& x) { return net->forward(x); }
};

struct CnnImpl : torch::nn::Module {
  torch::nn::Conv2d c1{torch::nn::Conv2dOptions(1, 32, 5).padding(2)}, c2{torch::nn::Conv2dOptions(32, 64, 5).padding(2)};
  torch::nn::Linear f1{64 * 7 * 7, 256}, f2{256, 10};
  CnnImpl() {
    register_module("c1", c1);
    register_module("c2", c2);
    register_module("f1", f1);
    register_module("f2", f2);
  }
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor h = x.view({x.size(0), 1, 28, 28});
    h = torch::max_pool2d(torch::relu(c1->forward(h)), 2);
    h = torch::max_pool2d(torch::relu(c2->forward(h)), 2);
    return f2->forward(torch::relu(f1->forward(h.flatten(1))));
  }
};

struct LstmImpl : torch::nn::Module {
  torch::nn::LSTM rnn;
  torch::nn::Linear head;
  explicit LstmImpl(std::int64_t hidden)
      : rnn(torch::nn::LSTMOptions(28, hidden).batch_first(true)), head(hidden, 10) {
    register_module("rnn", rnn);
    register_module("head", head);
  }
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor out = std::get<0>(rnn->forward(x.view({x.size(0), 28, 28})));
    return head->forward(out.select(1, 27));
  }
};

bool parse(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "libtorch_bench: %s needs a value\n", k.c_str());
      return false;
    }
    const std::string v = argv[++i];
    if (k == "--model") o.model = v;
    else if (k == "--optimizer") o.optimizer = v;
    else if (k == "--data") o.data = v;
    else if (k == "--hidden") o.hidden = std::atoll(v.c_str());
    else if (k == "--batch") o.batch = std::atoll(v.c_str());
    else if (k == "--examples") o.examples = std::atoll(v.c_str());
    else if (k == "--lr") o.lr = std::atof(v.c_str());
    else if (k == "--threads") o.threads = std::atoi(v.c_str());
    else if (k == "--reps") o.reps = std::atoi(v.c_str());
    else if (k == "--sizes") {
      o.sizes.clear();
      std::stringstream in(v);
      std::string item;
      while (std::getline(in, item, ',')) o.sizes.push_back(std::atoll(item.c_str()));
    } else {
      std::fprintf(stderr, "libtorch_bench: unknown option %s\n", k.c_str());
      return false;
    }
  }
  if (o.model != "mlp" && o.model != "cnn" && o.model != "lstm") {
    std::fprintf(stderr, "libtorch_bench: --model must be mlp, cnn or lstm, got %s\n", o.model.c_str());
    return false;
  }
  if (o.optimizer != "sgd" && o.optimizer != "momentum" && o.optimizer != "adam") {
    std::fprintf(stderr, "libtorch_bench: --optimizer must be sgd, momentum or adam, got %s\n", o.optimizer.c_str());
    return false;
  }
  if (o.batch < 1 || o.threads < 1 || o.reps < 1 || o.hidden < 1 || o.sizes.size() < 2) {
    std::fprintf(stderr, "libtorch_bench: --batch, --threads, --reps, --hidden >= 1 and --sizes of >= 2 layers\n");
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, o)) return 2;
  if (o.lr == 0) o.lr = o.optimizer == "adam" ? 0.001 : 0.01;
  at::set_num_threads(o.threads);
  at::set_num_interop_threads(1);
  at::globalContext().setFlushDenormal(true);
  torch::manual_seed(1);

  std::vector<std::int64_t> idims, ldims;
  std::vector<std::uint8_t> images, labels;
  try {
    images = read_idx(o.data + "/train-images-idx3-ubyte", 0x803, idims);
    labels = read_idx(o.data + "/train-labels-idx1-ubyte", 0x801, ldims);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "libtorch_bench: %s\n", e.what());
    return 1;
  }
  const std::int64_t total = idims.at(0), d = idims.at(1) * idims.at(2);
  const std::int64_t n = o.examples > 0 ? std::min(o.examples, total) : total;
  if (o.model == "mlp" && o.sizes.front() != d) {
    std::fprintf(stderr, "libtorch_bench: the data has %lld features, --sizes starts with %lld\n",
                 static_cast<long long>(d), static_cast<long long>(o.sizes.front()));
    return 2;
  }
  torch::Tensor x_all = torch::from_blob(images.data(), {total, d}, torch::kUInt8).slice(0, 0, n).to(torch::kFloat32) / 255.0;
  torch::Tensor y_all = torch::from_blob(labels.data(), {total}, torch::kUInt8).slice(0, 0, n).to(torch::kInt64);

  std::shared_ptr<torch::nn::Module> net;
  std::function<torch::Tensor(const torch::Tensor&)> forward;
  if (o.model == "mlp") {
    auto m = std::make_shared<MlpImpl>(o.sizes);
    forward = [m](const torch::Tensor& x) { return m->forward(x); };
    net = m;
  } else if (o.model == "cnn") {
    auto m = std::make_shared<CnnImpl>();
    forward = [m](const torch::Tensor& x) { return m->forward(x); };
    net = m;
  } else {
    auto m = std::make_shared<LstmImpl>(o.hidden);
    forward = [m](const torch::Tensor& x) { return m->forward(x); };
    net = m;
  }
  std::vector<torch::Tensor> params = net->parameters();
  std::unique_ptr<torch::optim::Optimizer> opt;
  if (o.optimizer == "adam") {
    opt = std::make_unique<torch::optim::Adam>(params, torch::optim::AdamOptions(o.lr).betas({0.9, 0.999}).eps(1e-8));
  } else {
    opt = std::make_unique<torch::optim::SGD>(params,
                                              torch::optim::SGDOptions(o.lr).momentum(o.optimizer == "momentum" ? 0.9 : 0.0));
  }

  torch::Tensor xb = torch::empty({o.batch, d}), yb = torch::empty({o.batch}, torch::kInt64);
  const std::int64_t steps = (n + o.batch - 1) / o.batch;
  auto load = [&](std::int64_t s) {
    const std::int64_t begin = s * o.batch, b = std::min(o.batch, n - begin);
    xb.slice(0, 0, b).copy_(x_all.slice(0, begin, begin + b));
    yb.slice(0, 0, b).copy_(y_all.slice(0, begin, begin + b));
    return b;
  };
  auto step = [&](std::int64_t b) {
    for (torch::Tensor& p : params) p.mutable_grad().reset();  // zero_grad(set_to_none=True)
    torch::Tensor loss = torch::nn::functional::cross_entropy(forward(xb.slice(0, 0, b)), yb.slice(0, 0, b));
    loss.backward();
    opt->step();
    return loss.item<double>();
  };

  for (std::int64_t s = 0; s < std::min<std::int64_t>(o.model == "mlp" ? 10 : 3, steps); ++s) step(load(s));
  std::vector<double> rates, cpu_rates;
  double epoch_loss = 0;
  for (int r = 0; r < o.reps; ++r) {
    double loss_sum = 0;
    const double c0 = cpu_seconds();
    const auto t0 = Clock::now();
    for (std::int64_t s = 0; s < steps; ++s) {
      const std::int64_t b = load(s);
      loss_sum += step(b) * static_cast<double>(b);
    }
    rates.push_back(static_cast<double>(n) / seconds(t0, Clock::now()));
    cpu_rates.push_back(static_cast<double>(n) / (cpu_seconds() - c0));
    epoch_loss = loss_sum / static_cast<double>(n);
  }
  const double rate = median(rates);
  std::string reps_json;
  for (std::size_t i = 0; i < rates.size(); ++i) reps_json += (i ? ", " : "") + std::to_string(rates[i]);
  std::printf(
      "{\"impl\": \"libtorch\", \"version\": \"%d.%d.%d\", \"model\": \"%s\", \"batch\": %lld, \"optimizer\": \"%s\", "
      "\"lr\": %g, \"threads\": %d, \"examples\": %lld, \"reps\": %d, \"steps_per_epoch\": %lld, \"examples_per_s\": %.1f, "
      "\"examples_per_cpu_s\": %.1f, \"ms_per_step\": %.4f, \"final_loss\": %.5f, \"examples_per_s_reps\": [%s]}\n",
      TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR, TORCH_VERSION_PATCH, o.model.c_str(), static_cast<long long>(o.batch),
      o.optimizer.c_str(), o.lr, o.threads, static_cast<long long>(n), o.reps, static_cast<long long>(steps), rate,
      median(cpu_rates), 1e3 * static_cast<double>(n) / rate / static_cast<double>(steps), epoch_loss, reps_json.c_str());
  return 0;
}
