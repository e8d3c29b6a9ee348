// The TensorBoard writer of a run (train/tensorboard.hpp): the tags of metrics.jsonl's records,
// and the histograms of the gradients against figures this test computes from the arena
// itself, read back by the independent reader (tests/reference/tensorboard_reader.py).
#include "descent/train/tensorboard.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "descent/init/rng.hpp"
#include "descent/train/trainer.hpp"

namespace descent::train {
namespace {

namespace fs = std::filesystem;

std::map<std::string, float> scalars(const nlohmann::json& record) {
  std::map<std::string, float> out;
  for (const io::ScalarValue& v : tensorboard_scalars(record)) {
    EXPECT_TRUE(out.emplace(v.tag, v.value).second) << "tag twice: " << v.tag;
  }
  return out;
}

TEST(TensorBoardTags, ReadableTagsForTheKnownKinds) {
  EXPECT_EQ(scalars({{"kind", "step"}, {"step", 4}, {"epoch", 1}, {"loss", 2.5}, {"grad_norm", 0.5}, {"lr", 0.1},
                     {"wall_s", 3.0}}),
            (std::map<std::string, float>{{"train/batch_loss", 2.5F}, {"grad_norm", 0.5F}, {"lr", 0.1F}}));
  EXPECT_EQ(tensorboard_step({{"kind", "step"}, {"step", 4}}), 4);
  const auto epoch = scalars({{"kind", "epoch"}, {"epoch", 2}, {"step", 14}, {"train_loss", 1.0}, {"train_error", 0.25},
                              {"val_loss", 1.5}, {"val_error", 0.5}, {"lr", 0.1}, {"clip_count", 3}});
  EXPECT_EQ(epoch, (std::map<std::string, float>{{"train/loss", 1.0F}, {"train/error", 0.25F}, {"val/loss", 1.5F},
                                                 {"val/error", 0.5F}, {"epoch/lr", 0.1F}, {"epoch/clip_count", 3.0F}}));
  const auto eval = scalars({{"kind", "eval"}, {"step", 5}, {"train_loss", 1.0}, {"val_error", 0.5}});
  EXPECT_EQ(eval, (std::map<std::string, float>{{"train/loss", 1.0F}, {"val/error", 0.5F}}));
  const nlohmann::json final = {{"kind", "final"}, {"steps", 28}, {"test_error", 0.1}, {"test_accuracy", 0.9},
                                {"stopped_early", true}, {"best_epoch", 3}};
  EXPECT_EQ(scalars(final), (std::map<std::string, float>{{"test/error", 0.1F}, {"test/accuracy", 0.9F},
                                                          {"final/stopped_early", 1.0F}, {"final/best_epoch", 3.0F},
                                                          {"final/steps", 28.0F}}));
  EXPECT_EQ(tensorboard_step(final), 28);
}

TEST(TensorBoardTags, OtherKindsFallBackToKindSlashField) {
  // The monitors' records (HELPERS.md's contract): nested objects, arrays of numbers and of
  // named objects, nulls and strings.
  EXPECT_EQ(scalars({{"kind", "curvature"}, {"step", 3}, {"gTg", 2.0}, {"observed_change", nullptr}, {"seconds", 0.5}}),
            (std::map<std::string, float>{{"curvature/gTg", 2.0F}, {"curvature/seconds", 0.5F}}));
  EXPECT_EQ(scalars({{"kind", "layers"}, {"step", 3}, {"grad_norms", {{"fc.weight", 1.5}}}, {"weight_norms", {{"fc.bias", 2.0}}}}),
            (std::map<std::string, float>{{"layers/grad_norms/fc.weight", 1.5F}, {"layers/weight_norms/fc.bias", 2.0F}}));
  EXPECT_EQ(scalars({{"kind", "recurrent"},
                     {"matrices", {{{"name", "lstm.w"}, {"gate", "forget"}, {"spectral_radius", 0.9}},
                                   {{"name", "rnn.w"}, {"gate", ""}, {"singular_max", 1.1}}}},
                     {"time_grad_norms", {1.0, 0.5}}}),
            (std::map<std::string, float>{{"recurrent/matrices/lstm.w/forget/spectral_radius", 0.9F},
                                          {"recurrent/matrices/rnn.w/singular_max", 1.1F},
                                          {"recurrent/time_grad_norms/0", 1.0F},
                                          {"recurrent/time_grad_norms/1", 0.5F}}));
  EXPECT_EQ(scalars({{"kind", "stopped"}, {"reason", "diverged"}, {"message", "x"}, {"loss", nullptr}}).size(), 0U);
  EXPECT_EQ(scalars({{"kind", "divergence"}, {"loss", std::numeric_limits<double>::quiet_NaN()},
                     {"lr_scale", std::numeric_limits<double>::infinity()}}).size(), 0U);
  EXPECT_EQ(tensorboard_step({{"kind", "header"}}), 0);
}

// Records the gradient's figures per parameter at the steps the histograms are taken.
class GradientFigures final : public Callback {
 public:
  explicit GradientFigures(std::int64_t every) : every_(every) {}
  void before_update(const StepContext& ctx) override {
    if (ctx.step % every_ != 0) return;
    ParameterArena& arena = ctx.run.arena();
    for (std::size_t i = 0; i < arena.count(); ++i) {
      const ParamId id{static_cast<std::int32_t>(i)};
      const Tensor g = arena.grad(id);
      double lo = std::numeric_limits<double>::infinity(), hi = -lo, sum = 0;
      for (std::int64_t k = 0; k < g.numel(); ++k) {
        const double v = g.at(k);
        lo = std::min(lo, v);
        hi = std::max(hi, v);
        sum += v;
      }
      figures[std::to_string(ctx.step)][arena.entry(id).name] = {
          {"num", g.numel()}, {"min", lo}, {"max", hi}, {"sum", sum}};
    }
  }
  nlohmann::json figures = nlohmann::json::object();

 private:
  std::int64_t every_;
};

// A folder with `n` training and 200 test examples of three blobs in 4-D.
fs::path blobs(const std::string& name, int n = 200) {
  const fs::path dir = fs::temp_directory_path() / ("descent_tb_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  Rng rng(5);
  for (const char* file : {"train.csv", "test.csv"}) {
    std::ofstream f(dir / file);
    for (int i = 0; i < (std::string(file) == "train.csv" ? n : 200); ++i) {
      const int c = static_cast<int>(rng.below(3));
      f << c;
      for (int k = 0; k < 4; ++k) f << "," << (k == c ? 1.5 : 0.0) + 0.5 * rng.normal();
      f << "\n";
    }
  }
  return dir;
}

// The reader's `check` of a run folder (with --grads when given): its exit code and output.
int check_run(const fs::path& run, const fs::path& grads, std::string& out) {
  const std::string reader = std::string(DESCENT_SOURCE_DIR) + "/tests/reference/tensorboard_reader.py";
  const fs::path log = run.parent_path() / "reader.out";
  const std::string command = "/usr/bin/python3 " + reader + " check " + run.string() +
                              (grads.empty() ? "" : " --grads " + grads.string()) + " > " + log.string() + " 2>&1";
  const int status = std::system(command.c_str());
  std::ifstream in(log);
  out.assign((std::istreambuf_iterator<char>(in)), {});
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(TensorBoardRun, GradientHistogramsMatchTheArenaAndTheReaderAgrees) {
  if (!fs::exists("/usr/bin/python3")) GTEST_SKIP() << "SKIP: /usr/bin/python3 is not installed (scripts/install-deps)";
  const fs::path dir = blobs("grads");
  std::ostringstream t;
  t << "name = \"run\"\nseed = 3\nepochs = 3\nthreads = 1\nout_dir = \"" << dir.string() << "\"\nprogress = \"none\"\n"
    << "eval_every_steps = 4\n[data]\nformat = \"csv\"\ntrain_features = \"" << (dir / "train.csv").string()
    << "\"\ntest_features = \"" << (dir / "test.csv").string()
    << "\"\nscale = 1.0\nvalidation_size = 40\n[model]\nhidden = [8]\nactivation = \"tanh\"\n"
    << "[optimizer]\nname = \"momentum\"\nlr = 0.05\n[sampler]\nbatch_size = 32\n[early_stopping]\nenabled = false\n"
    << "[checkpoint]\nevery_steps = 3\nkeep = 100\n[tensorboard]\nhistogram_every_steps = 3\n";
  const TrainConfig config = parse_train_config(t.str(), "tb.toml");
  GradientFigures figures(3);
  const RunResult r = run(config, nullptr, {&figures});
  EXPECT_EQ(r.steps, 15);  // 160 examples, batches of 32: 5 updates per epoch
  EXPECT_EQ(figures.figures.size(), 5U);  // steps 0, 3, 6, 9, 12
  std::ofstream(dir / "grads.json") << figures.figures.dump();

  std::string out;
  ASSERT_EQ(check_run(dir / "run", dir / "grads.json", out), 0) << out;
  // 4 tensors (2 weights, 2 biases) x {params, grads} x 5 steps; every one compared.
  EXPECT_NE(out.find("40 histograms (20 compared with checkpoints, 20 with the test's gradients)"), std::string::npos)
      << out;
  fs::remove_all(dir);
}

// A divergence rolled back to a checkpoint: the event file is cut back with metrics.jsonl, so
// it still holds exactly metrics.jsonl's scalars (the steps redone once, the divergence
// records too). Batch normalization's running statistics are buffers, not histograms.
TEST(TensorBoardRun, ARollbackCutsTheEventFileBackWithMetrics) {
  if (!fs::exists("/usr/bin/python3")) GTEST_SKIP() << "SKIP: /usr/bin/python3 is not installed (scripts/install-deps)";
  const fs::path dir = blobs("rollback", 500);
  std::ostringstream t;
  t << "name = \"run\"\nseed = 5\nepochs = 4\nthreads = 1\nout_dir = \"" << dir.string() << "\"\nprogress = \"none\"\n"
    << "[data]\nformat = \"csv\"\ntrain_features = \"" << (dir / "train.csv").string() << "\"\ntest_features = \""
    << (dir / "test.csv").string() << "\"\nscale = 1.0\nvalidation_size = 100\n"
    << "[model]\ntype = \"sequential\"\nlayers = [{type = \"linear\", units = 16, bias = false}, {type = \"batchnorm\"},"
       " {type = \"relu\"}, {type = \"dropout\", p = 0.3}, {type = \"linear\"}]\n"
    << "[optimizer]\nname = \"momentum\"\nlr = 1e5\nmomentum = 0.9\n[schedule]\nname = \"linear\"\n"
    << "[averaging]\nkind = \"exponential\"\nrho = 0.9\n[sampler]\nbatch_size = 32\n"
    << "[early_stopping]\nenabled = false\n[checkpoint]\nevery_epochs = 0\nkeep = 1000\n"
    << "[divergence]\npolicy = \"rollback\"\nlr_scale = 0.01\nmax_events = 6\n[tensorboard]\nhistogram_every_steps = 2\n";
  const RunResult r = run(parse_train_config(t.str(), "rollback.toml"), nullptr);
  ASSERT_GE(r.divergences, 1);
  std::string out;
  ASSERT_EQ(check_run(dir / "run", {}, out), 0) << out;
  EXPECT_NE(out.find("(" + std::to_string(r.steps) + " steps)"), std::string::npos) << out;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace descent::train
