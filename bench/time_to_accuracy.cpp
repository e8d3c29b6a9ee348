// Time to reach a test accuracy on the default example (examples/fashion_mlp.toml): the model,
// initialization, data preprocessing, optimizer and schedule of that config, trained epoch by
// epoch with descent's own loaders, sampler and optimizer; after each epoch the test accuracy
// is measured off the clock. Prints one JSON line: ready_unix (the wall-clock time when the
// data is loaded and the model built), train_s_to_target (training seconds up to the end of
// the first epoch that reaches --target), the epoch, the accuracy per epoch.
// bench/torch_time_to_accuracy.py is the PyTorch peer; bench/time_to_accuracy.sh runs both.
//
//   time_to_accuracy [--config examples/fashion_mlp.toml] [--target 0.885] [--threads 2] [--seed N]
//                    [--set key=value ...]
// (--seed overrides the config's seed: initialization and sampler order; --set overrides a
// config key as `descent train --set` does, e.g. optimizer.form=pytorch for the fairness check
// in docs/performance.md; the schedule's horizon stays the config's epochs)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "descent/data/sampler.hpp"
#include "descent/loss/loss.hpp"
#include "descent/tensor/parallel.hpp"
#include "descent/train/step.hpp"
#include "descent/train/trainer.hpp"

using namespace descent;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  std::string config_path = "examples/fashion_mlp.toml";
  double target = 0.885;
  int threads = 2;
  std::string seed;
  std::vector<std::string> sets;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--config") {
      config_path = argv[i + 1];
    } else if (a == "--target") {
      target = std::atof(argv[i + 1]);
    } else if (a == "--threads") {
      threads = std::atoi(argv[i + 1]);
    } else if (a == "--seed") {
      seed = argv[i + 1];
    } else if (a == "--set") {
      sets.push_back(argv[i + 1]);
    } else {
      std::fprintf(stderr, "time_to_accuracy: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  try {
    std::vector<std::string> overrides = {"threads=" + std::to_string(threads), "progress=none"};
    if (!seed.empty()) overrides.push_back("seed=" + seed);
    overrides.insert(overrides.end(), sets.begin(), sets.end());
    const train::TrainConfig config = train::load_train_config(config_path, overrides);
    set_num_threads(threads);
    const FlushDenormalsScope flush(config.flush_denormals);  // as descent train (PyTorch's side flushes too)
    const train::Data data = train::load_data(config);
    train::Model model = train::build_model(config.model, data.dim, data.num_classes, config.seed);
    train::initialize_model(model, config);
    data::SamplerOptions so;
    so.kind = data::parse_sampler_kind(config.sampler.kind);
    so.batch_size = config.sampler.batch_size;
    so.drop_last = config.sampler.drop_last;
    so.seed = config.seed + 1;
    data::Sampler sampler(data.train.size(), so);
    auto optimizer = train::make_optimizer(config, sampler.batches_per_epoch() * config.epochs);
    const double ready_unix =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();

    ParameterArena& arena = *model.arena;
    std::vector<std::int64_t> idx;
    Tensor bx, by;
    autodiff::Tape tape;
    std::int64_t k = 0;
    double train_s = 0.0;
    std::string accuracies, epoch_seconds, train_losses;
    for (std::int64_t epoch = 1; epoch <= config.epochs; ++epoch) {
      const auto e0 = Clock::now();
      double loss_sum = 0.0;  // the epoch's mean minibatch loss, weighted by batch size (descent train's epoch loss)
      while (sampler.next(idx)) {
        data.train.gather(idx, bx, by);
        // the library's step, as a user's loop
        loss_sum += train::train_step(*model.net, arena, *optimizer, tape, bx, by, k) * static_cast<double>(idx.size());
        ++k;
      }
      const double epoch_s = std::chrono::duration<double>(Clock::now() - e0).count();
      train_s += epoch_s;
      epoch_seconds += (epoch > 1 ? ", " : "") + std::to_string(epoch_s);
      char loss_text[32];
      std::snprintf(loss_text, sizeof loss_text, "%.9g", loss_sum / static_cast<double>(data.train.size()));
      train_losses += (epoch > 1 ? ", " : "") + std::string(loss_text);
      const double accuracy = 1.0 - train::evaluate(model, data.test).error;  // off the clock
      accuracies += (epoch > 1 ? ", " : "") + std::to_string(accuracy);
      if (accuracy >= target) {
        std::printf("{\"impl\": \"descent\", \"seed\": %lld, \"threads\": %d, \"target\": %.4f, \"ready_unix\": %.6f, "
                    "\"train_s_to_target\": %.4f, \"epoch\": %lld, \"accuracy\": %.4f, \"accuracies\": [%s], \"epoch_s\": [%s], \"train_losses\": [%s]}\n",
                    static_cast<long long>(config.seed), threads, target, ready_unix, train_s, static_cast<long long>(epoch), accuracy,
                    accuracies.c_str(), epoch_seconds.c_str(), train_losses.c_str());
        return 0;
      }
    }
    std::printf("{\"impl\": \"descent\", \"seed\": %lld, \"threads\": %d, \"target\": %.4f, \"status\": \"not reached\", "
                "\"ready_unix\": %.6f, \"accuracies\": [%s], \"epoch_s\": [%s], \"train_losses\": [%s]}\n",
                static_cast<long long>(config.seed), threads, target, ready_unix, accuracies.c_str(), epoch_seconds.c_str(),
                train_losses.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "time_to_accuracy: %s\n", e.what());
    return 1;
  }
}
