// metrics.jsonl for plotting (docs/metrics.md): the header record first, with the run's sizes
// and the digest of config.toml; the epoch-0 evaluation of the initial parameters; one step
// numbering for step and epoch records; log_every_steps thinning the step records while the
// epoch means stay exact; a stream's horizon planned on the steps that run.
#include <gtest/gtest.h>

#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <algorithm>
#include <fstream>
#include <iterator>
#include <sstream>
#include <vector>

#include "descent/error.hpp"
#include "descent/init/rng.hpp"
#include "descent/io/json_lines.hpp"
#include "descent/report/report.hpp"
#include "descent/tensor/parallel.hpp"
#include "descent/train/callback.hpp"
#include "descent/train/trainer.hpp"
#include "descent/version.hpp"

#include "support/synthetic_csv.hpp"

namespace descent {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class MetricsRecords : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("descent_metrics_records_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    testing::write_blobs(dir_ / "train.csv", 300, 1, testing::Blobs::separated);
    testing::write_blobs(dir_ / "test.csv", 60, 2, testing::Blobs::separated);
  }
  void TearDown() override { fs::remove_all(dir_); }


  // 200 training examples in batches of 32: 7 updates per epoch (the last holds 8).
  train::TrainConfig config(const std::string& name, const std::string& extra = "") {
    std::ostringstream t;
    t << "name = \"" << name << "\"\nseed = 3\nepochs = 4\nthreads = 2\nout_dir = \"" << dir_.string()
      << "\"\nprogress = \"none\"\n"
      << extra << "\n[data]\nformat = \"csv\"\ntrain_features = \"" << (dir_ / "train.csv").string()
      << "\"\ntest_features = \"" << (dir_ / "test.csv").string()
      << "\"\nscale = 1.0\nvalidation_size = 100\n[model]\nhidden = [8]\nactivation = \"tanh\"\n"
      << "[optimizer]\nname = \"momentum\"\nlr = 0.05\n[schedule]\nname = \"linear\"\n[sampler]\nbatch_size = 32\n"
      << "[early_stopping]\nenabled = false\n";
    return train::parse_train_config(t.str(), "test.toml");
  }

  static std::vector<json> of_kind(const std::vector<json>& records, const std::string& kind) {
    std::vector<json> out;
    for (const json& r : records) {
      if (r.at("kind") == kind) out.push_back(r);
    }
    return out;
  }

  // `sha256sum FILE`'s digest: an implementation that is not ours.
  static std::string sha256sum(const fs::path& file) {
    const std::string command = "sha256sum '" + file.string() + "'";
    FILE* pipe = ::popen(command.c_str(), "r");
    if (pipe == nullptr) return {};
    char buffer[65] = {};
    const std::size_t n = std::fread(buffer, 1, 64, pipe);
    ::pclose(pipe);
    return std::string(buffer, n);
  }

  fs::path dir_;
};

TEST_F(MetricsRecords, TheHeaderComesFirstWithTheRunsSizes) {
  const train::RunResult r = train::run(config("h"), nullptr);
  const auto records = io::read_json_lines(r.run_dir / "metrics.jsonl");
  ASSERT_FALSE(records.empty());
  const json& h = records.front();
  ASSERT_EQ(h.at("kind"), "header");
  EXPECT_EQ(of_kind(records, "header").size(), 1u);
  EXPECT_EQ(h.at("version"), descent::version);
  const std::string digest = sha256sum(r.run_dir / "config.toml");
  ASSERT_EQ(digest.size(), 64u) << "sha256sum (coreutils) is missing";
  EXPECT_EQ(h.at("config_digest"), "sha256:" + digest);
  EXPECT_EQ(h.at("examples").at("train"), 200);
  EXPECT_EQ(h.at("examples").at("validation"), 100);
  EXPECT_EQ(h.at("examples").at("test"), 60);
  EXPECT_EQ(h.at("batch_size"), 32);
  EXPECT_EQ(h.at("steps_per_epoch"), 7);
  EXPECT_EQ(h.at("epochs"), 4);
  EXPECT_EQ(h.at("steps"), 28);
  EXPECT_EQ(h.at("threads"), 2);
  EXPECT_EQ(h.at("sampler"), "reshuffle");
  EXPECT_EQ(h.at("step"), 0);
  EXPECT_EQ(h.at("epoch"), 0);
  // threads = 0 records the number used (here what the run before left set), not 0; the
  // CLI test checks a fresh process against the machine's cores.
  train::TrainConfig c0 = config("zero");
  c0.threads = 0;
  const train::RunResult z = train::run(c0, nullptr);
  const json h0 = io::read_json_lines(z.run_dir / "metrics.jsonl").front();
  EXPECT_EQ(h0.at("threads").get<int>(), num_threads());
  EXPECT_GE(h0.at("threads").get<int>(), 1);
}

// flush_denormals, on by default, is in the header as the config has it.
TEST_F(MetricsRecords, TheHeaderRecordsFlushDenormals) {
  for (const bool on : {true, false}) {
    const train::RunResult r = train::run(config(on ? "fd_on" : "fd_off", on ? "" : "flush_denormals = false"), nullptr);
    const json h = io::read_json_lines(r.run_dir / "metrics.jsonl").front();
    ASSERT_EQ(h.at("kind"), "header");
    ASSERT_TRUE(h.contains("flush_denormals"));
    EXPECT_EQ(h.at("flush_denormals"), on);
  }
}

// The gradient norm of the step records: taken in the update's pass (a fused momentum loop,
// nothing reading the norm before the update) or before the update in a pass of its own (a
// callback of the caller's makes the trainer do that), the same bits, and the norms in double
// of the gradients that callback reads before each update. The trajectory's length, measured
// by the update's pass in both, the same bits too (tests/optim/step_measured_test.cpp checks
// the step's sum against the trajectory's own pass). 784 inputs, 64 hidden units, 3 classes:
// 50,435 parameters, 13 blocks of the sums.
TEST_F(MetricsRecords, TheNormTakenInTheUpdateIsTheSameBitsAsItsOwnPassBeforeIt) {
  fs::create_directories(dir_ / "wide");
  testing::write_three_class_csvs(dir_ / "wide", {.seed = 5, .train = 300, .test = 60, .features = 784});
  struct CopyNorms final : train::Callback {
    std::vector<double> norms;
    void before_update(const train::StepContext& c) override {
      const Tensor& g = c.run.arena().grads();
      double s = 0.0;
      for (std::int64_t i = 0; i < g.numel(); ++i) {
        const auto v = static_cast<double>(g.data<float>()[i]);
        s += v * v;
      }
      norms.push_back(std::sqrt(s));
    }
  };
  auto wide = [&](const std::string& name) {
    train::TrainConfig c = config(name);
    c.data.train_features = (dir_ / "wide" / "train.csv").string();
    c.data.test_features = (dir_ / "wide" / "test.csv").string();
    c.model.hidden = {64};
    c.model.dtype = "f32";
    c.epochs = 2;
    return c;
  };
  const train::RunResult in_update = train::run(wide("in_update"), nullptr);
  CopyNorms copy;
  const train::RunResult own_pass = train::run(wide("own_pass"), nullptr, {&copy});
  auto norms = [](const fs::path& run) {
    std::vector<double> out;
    for (const json& r : io::read_json_lines(run / "metrics.jsonl")) {
      if (r.at("kind") == "step") out.push_back(r.at("grad_norm").get<double>());
    }
    return out;
  };
  auto length = [](const fs::path& run) {
    std::ifstream in(run / "trajectory.json");
    return json::parse(in).at("length").get<double>();
  };
  const std::vector<double> a = norms(in_update.run_dir), b = norms(own_pass.run_dir);
  ASSERT_EQ(a.size(), 14u);
  ASSERT_EQ(b.size(), a.size());
  ASSERT_EQ(copy.norms.size(), a.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i], b[i]) << i;  // bit for bit
    EXPECT_NEAR(a[i], copy.norms[i], 1e-13 * copy.norms[i]) << i;
  }
  EXPECT_GT(length(in_update.run_dir), 0.0);
  EXPECT_EQ(length(in_update.run_dir), length(own_pass.run_dir));
}

// A finite loss and a gradient whose norm is not finite: float64, two hidden layers whose
// weights are initialized 1e80 times too large, so the logits (about 1e240), the loss and
// every gradient element are finite but the last weight's gradient (about 1e160) overflows
// when squared.
// The run stops at update 0 whether the norm is taken in the update's pass (the message says
// the update was applied) or before it (a caller's callback: "not updated"), with the same
// stopped record; under rollback the update's pass rolls back and, diverging again at every
// retry, stops after divergence.max_events.
TEST_F(MetricsRecords, ANonFiniteNormTakenInTheUpdateStopsOrRollsBackAsBefore) {
  auto huge = [&](const std::string& name, const std::string& extra) {
    train::TrainConfig c = config(name, extra);
    c.init.gain = 1e80;
    c.model.hidden = {8, 8};
    c.model.activation = "relu";
    c.model.dtype = "f64";
    return c;
  };
  struct Nothing final : train::Callback {};
  Nothing nothing;
  // the message of the NumericError the run ends with ("" when it ends without one)
  auto diverged = [](const train::TrainConfig& c, std::vector<train::Callback*> callbacks = {}) {
    try {
      (void)train::run(c, nullptr, callbacks);
    } catch (const NumericError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const std::string in_update = diverged(huge("huge_in_update", ""));
  const std::string before = diverged(huge("huge_before", ""), {&nothing});
  EXPECT_NE(in_update.find("training diverged at step 0"), std::string::npos) << in_update;
  EXPECT_NE(in_update.find("the update was applied"), std::string::npos) << in_update;
  EXPECT_NE(before.find("training diverged at step 0"), std::string::npos) << before;
  EXPECT_NE(before.find("the parameters were not updated"), std::string::npos) << before;
  // With clipping the optimizer has no fused loop to take the norm in (steps_by_parameter() is
  // false): the norm is taken before the update, as with a caller's callback, and the
  // non-finite gradient never reaches the parameters.
  const std::string clipped = diverged(huge("huge_clipped", "[clip]\nvalue = 1e300"));
  EXPECT_NE(clipped.find("training diverged at step 0"), std::string::npos) << clipped;
  EXPECT_NE(clipped.find("the parameters were not updated"), std::string::npos) << clipped;
  for (const char* name : {"huge_in_update", "huge_before", "huge_clipped"}) {
    const auto records = io::read_json_lines(dir_ / name / "metrics.jsonl");
    EXPECT_TRUE(of_kind(records, "step").empty()) << name;
    const std::vector<json> stopped = of_kind(records, "stopped");
    ASSERT_EQ(stopped.size(), 1u) << name;
    EXPECT_EQ(stopped[0].at("reason"), "diverged");
    EXPECT_EQ(stopped[0].at("step"), 0);
  }
  const std::string rolled = diverged(huge("huge_rollback", "[divergence]\npolicy = \"rollback\"\nmax_events = 2"));
  EXPECT_NE(rolled.find("more than divergence.max_events = 2"), std::string::npos) << rolled;
  const auto records = io::read_json_lines(dir_ / "huge_rollback" / "metrics.jsonl");
  const std::vector<json> rollbacks = of_kind(records, "divergence");
  ASSERT_EQ(rollbacks.size(), 2u);
  for (const json& r : rollbacks) {
    EXPECT_EQ(r.at("policy"), "rollback");
    EXPECT_EQ(r.at("step"), 0);
  }
}

// The epoch-0 record is the initial parameters' evaluation, recomputed here from a model built
// and initialized the same way; its step and the first step record's are both 0.
TEST_F(MetricsRecords, EpochZeroEvaluatesTheInitialParameters) {
  const train::TrainConfig c = config("e0");
  const train::RunResult r = train::run(c, nullptr);
  const auto records = io::read_json_lines(r.run_dir / "metrics.jsonl");
  ASSERT_GE(records.size(), 3u);
  const json& e0 = records[1];
  ASSERT_EQ(e0.at("kind"), "epoch");
  EXPECT_EQ(e0.at("epoch"), 0);
  EXPECT_EQ(e0.at("step"), 0);
  EXPECT_FALSE(e0.contains("grad_norm_mean"));
  train::Data data = train::load_data(c);
  train::Model m = train::build_model(c.model, data.dim, data.num_classes, c.seed);
  train::initialize_model(m, c);
  const train::Evaluation tr = train::evaluate(m, data.train), va = train::evaluate(m, data.validation);
  EXPECT_DOUBLE_EQ(e0.at("train_loss").get<double>(), tr.loss);
  EXPECT_DOUBLE_EQ(e0.at("train_error").get<double>(), tr.error);
  EXPECT_DOUBLE_EQ(e0.at("val_loss").get<double>(), va.loss);
  EXPECT_DOUBLE_EQ(e0.at("val_error").get<double>(), va.error);
  EXPECT_DOUBLE_EQ(e0.at("lr").get<double>(), 0.05);
  EXPECT_GT(tr.error, 0.3) << "untrained: the record must not be of trained weights";
  // Early stopping never picks epoch 0.
  EXPECT_GE(r.best_epoch, 1);
}

// One convention: `step` = updates applied to the parameters a record describes. The epoch-e
// record's step is the updates made in epochs 1..e, which is the step of the next epoch's
// first step record.
TEST_F(MetricsRecords, StepAndEpochRecordsCountTheSameUpdates) {
  const train::RunResult r = train::run(config("n", "eval_every_steps = 5"), nullptr);
  const auto records = io::read_json_lines(r.run_dir / "metrics.jsonl");
  std::int64_t updates = 0, epochs = 0;
  bool after_epoch = false;
  std::int64_t epoch_step = -1;
  for (const json& rec : records) {
    const std::string kind = rec.at("kind");
    if (kind == "step") {
      EXPECT_EQ(rec.at("step").get<std::int64_t>(), updates);
      if (after_epoch) {
        EXPECT_EQ(rec.at("step").get<std::int64_t>(), epoch_step);
      }
      after_epoch = false;
      ++updates;
    } else if (kind == "epoch") {
      EXPECT_EQ(rec.at("epoch").get<std::int64_t>(), epochs);
      EXPECT_EQ(rec.at("step").get<std::int64_t>(), updates) << rec.dump();
      EXPECT_EQ(rec.at("step").get<std::int64_t>(), 7 * epochs);
      epoch_step = rec.at("step").get<std::int64_t>();
      after_epoch = true;
      ++epochs;
    } else if (kind == "eval") {
      EXPECT_EQ(rec.at("step").get<std::int64_t>(), updates);
      EXPECT_EQ(updates % 5, 0);
    } else if (kind == "final") {
      EXPECT_EQ(rec.at("step").get<std::int64_t>(), updates);
      EXPECT_EQ(rec.at("ended"), "epochs");
    }
  }
  EXPECT_EQ(epochs, 5);  // 0..4
  EXPECT_EQ(updates, 28);
}

// log_every_steps = 3 keeps the step records of updates 0, 3, 6, ... with their own figures,
// and the epoch records' gradient-norm means over every update, as the run that logs all.
TEST_F(MetricsRecords, LogEveryStepsThinsTheStepRecordsAndKeepsTheMeansExact) {
  const train::RunResult all = train::run(config("all"), nullptr);
  const train::RunResult thin = train::run(config("thin", "log_every_steps = 3"), nullptr);
  const auto a = io::read_json_lines(all.run_dir / "metrics.jsonl");
  const auto t = io::read_json_lines(thin.run_dir / "metrics.jsonl");
  const auto a_steps = of_kind(a, "step"), t_steps = of_kind(t, "step");
  ASSERT_EQ(a_steps.size(), 28u);
  ASSERT_EQ(t_steps.size(), 10u);  // 0, 3, ..., 27
  for (std::size_t i = 0; i < t_steps.size(); ++i) {
    const json& full = a_steps[3 * i];
    EXPECT_EQ(t_steps[i].at("step"), 3 * static_cast<std::int64_t>(i));
    EXPECT_EQ(t_steps[i].at("loss"), full.at("loss"));
    EXPECT_EQ(t_steps[i].at("grad_norm"), full.at("grad_norm"));
    EXPECT_EQ(t_steps[i].at("lr"), full.at("lr"));
  }
  const auto a_epochs = of_kind(a, "epoch"), t_epochs = of_kind(t, "epoch");
  ASSERT_EQ(a_epochs.size(), 5u);
  ASSERT_EQ(t_epochs.size(), 5u);
  for (std::size_t e = 1; e < 5; ++e) {
    // The mean from every update's record of the full run, summed in the same order.
    double sum = 0;
    for (std::size_t k = 7 * (e - 1); k < 7 * e; ++k) sum += a_steps[k].at("grad_norm").get<double>();
    EXPECT_DOUBLE_EQ(t_epochs[e].at("grad_norm_mean").get<double>(), sum / 7.0) << e;
    EXPECT_EQ(t_epochs[e].at("val_loss"), a_epochs[e].at("val_loss"));
  }
  EXPECT_EQ(of_kind(t, "header").front().at("log_every_steps"), 3);
}

// sampler.kind = "stream" with epochs = 4: one epoch of 7 steps runs, and the linear schedule
// is planned for those 7 (eq. 8.14: eps_k = (1 - k/tau) eps_0 + (k/tau) eps_tau, tau = 7).
TEST_F(MetricsRecords, AStreamPlansItsScheduleOnTheStepsThatRunAndSaysItRanOut) {
  train::TrainConfig c = config("stream");
  c.sampler.kind = "stream";
  std::ostringstream log;
  c.progress = "plain";
  const train::RunResult r = train::run(c, &log);
  EXPECT_EQ(r.steps, 7);
  EXPECT_EQ(r.epochs_run, 1);
  EXPECT_TRUE(r.sampler_exhausted);
  const auto records = io::read_json_lines(r.run_dir / "metrics.jsonl");
  const json& h = records.front();
  EXPECT_EQ(h.at("epochs"), 1);
  EXPECT_EQ(h.at("steps"), 7);
  const auto steps = of_kind(records, "step");
  ASSERT_EQ(steps.size(), 7u);
  const double eps0 = 0.05, eps_tau = 0.01 * eps0;  // lr_end unset: 1% of lr
  for (std::size_t k = 0; k < 7; ++k) {
    const double alpha = static_cast<double>(k) / 7.0;
    EXPECT_NEAR(steps[k].at("lr").get<double>(), (1 - alpha) * eps0 + alpha * eps_tau, 1e-15) << k;
  }
  const auto epochs = of_kind(records, "epoch");
  ASSERT_EQ(epochs.size(), 2u);
  EXPECT_NEAR(epochs[1].at("lr").get<double>(), eps_tau, 1e-15);  // the schedule reached its end
  const json& f = records.back();
  ASSERT_EQ(f.at("kind"), "final");
  EXPECT_EQ(f.at("ended"), "sampler_exhausted");
  EXPECT_NE(f.at("message").get<std::string>().find("ran out after 7 steps"), std::string::npos) << f.dump();
  const std::string screen = log.str();
  EXPECT_NE(screen.find("epoch 1/1 "), std::string::npos) << screen;
  EXPECT_EQ(screen.find("epoch 1/4"), std::string::npos) << screen;
  EXPECT_NE(screen.find("the stream sampler ran out after 7 steps"), std::string::npos) << screen;
  EXPECT_NE(screen.find("epochs = 4 cannot be reached"), std::string::npos) << screen;
  // The report reads the header and the epoch-0 record and says why the run ended.
  const json page = json::parse(report::report_data({r.run_dir}));
  const json& run = page.at("runs").at(0);
  EXPECT_EQ(run.at("epochs").at(0).at("epoch"), 0);
  EXPECT_EQ(run.at("epochs").size(), 2u);
  EXPECT_EQ(run.at("final").at("ended"), "sampler_exhausted");
  EXPECT_NE(run.at("decision").get<std::string>().find("The stream sampler ran out after 7 updates (1 epoch of epochs = 4)"),
            std::string::npos)
      << run.at("decision");
  // A stream asked for one epoch ends as every run does.
  c.name = "stream1";
  c.epochs = 1;
  const train::RunResult one = train::run(c, nullptr);
  EXPECT_FALSE(one.sampler_exhausted);
  EXPECT_EQ(io::read_json_lines(one.run_dir / "metrics.jsonl").back().at("ended"), "epochs");
}

// Asks the loop to stop (as SIGTERM does) once `at` updates are done.
struct InterruptAt : train::Callback {
  std::int64_t at;
  explicit InterruptAt(std::int64_t k) : at(k) {}
  bool on_step(const train::StepContext& c) override {
    if (c.step + 1 == at) train::request_stop(SIGTERM);
    return false;
  }
};

// A stream interrupted and resumed keeps its horizon (the rates of the run never interrupted),
// ends bit-identical, and its metrics.jsonl holds one header and one epoch-0 record.
TEST_F(MetricsRecords, AResumedStreamKeepsItsHorizonAndWritesTheHeaderOnce) {
  train::TrainConfig c = config("ref");
  c.sampler.kind = "stream";
  const train::RunResult ref = train::run(c, nullptr);
  c.name = "cut";
  InterruptAt stop(3);
  EXPECT_THROW(train::run(c, nullptr, {&stop}), train::Interrupted);
  train::clear_stop_request();
  const train::RunResult r = train::resume(dir_ / "cut", nullptr);
  EXPECT_TRUE(r.sampler_exhausted);
  std::ifstream a(ref.run_dir / "model.safetensors", std::ios::binary), b(r.run_dir / "model.safetensors", std::ios::binary);
  EXPECT_TRUE(std::equal(std::istreambuf_iterator<char>(a), {}, std::istreambuf_iterator<char>(b), {}));
  const auto ra = io::read_json_lines(ref.run_dir / "metrics.jsonl");
  const auto rb = io::read_json_lines(r.run_dir / "metrics.jsonl");
  ASSERT_EQ(ra.size(), rb.size());
  EXPECT_EQ(of_kind(rb, "header").size(), 1u);
  EXPECT_EQ(rb.front().at("kind"), "header");
  std::size_t epoch0 = 0;
  for (const json& rec : rb) epoch0 += rec.at("kind") == "epoch" && rec.at("epoch") == 0 ? 1 : 0;
  EXPECT_EQ(epoch0, 1u);
  const auto sa = of_kind(ra, "step"), sb = of_kind(rb, "step");
  ASSERT_EQ(sa.size(), sb.size());
  for (std::size_t k = 0; k < sa.size(); ++k) {
    EXPECT_EQ(sa[k].at("lr"), sb[k].at("lr")) << k;
    EXPECT_EQ(sa[k].at("loss"), sb[k].at("loss")) << k;
  }
  EXPECT_EQ(rb.back().at("ended"), "sampler_exhausted");
}

}  // namespace
}  // namespace descent
