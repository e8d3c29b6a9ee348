// Checkpoints and exact resume (issue 5): the file format refuses damage, the newest K are
// kept, a damaged newest one is skipped, a run resumed from any of its checkpoints ends bit
// for bit where the uninterrupted run ends, and divergence follows its policy.
#include "descent/train/checkpoint.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "descent/init/rng.hpp"
#include "descent/io/json_lines.hpp"
#include "descent/train/trainer.hpp"

#include "support/synthetic_csv.hpp"

namespace descent::train {
namespace {

namespace fs = std::filesystem;

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << bytes;
}

Checkpoint sample_checkpoint(std::int64_t step) {
  Checkpoint c;
  c.step = step;
  c.state = {{"loop", {{"k", step}}}, {"sampler", "text"}};
  c.config_toml = "name = \"x\"\n";
  c.tensors.emplace_back("params", Tensor::from<float>({3}, {1.0f, -2.5f, 3.25f}));
  c.tensors.emplace_back("optimizer.0", Tensor::from<double>({2}, {0.125, 1e-300}));
  c.tensors.emplace_back("labels", Tensor::from<std::int32_t>({2}, {7, -1}));
  return c;
}

class CheckpointFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("descent_ckpt_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST(CheckpointFormat, RoundTripsEveryField) {
  const Checkpoint c = sample_checkpoint(42);
  const Checkpoint d = decode_checkpoint(encode_checkpoint(c), "c.ckpt");
  EXPECT_EQ(d.step, 42);
  EXPECT_EQ(d.state, c.state);
  EXPECT_EQ(d.config_toml, c.config_toml);
  ASSERT_EQ(d.tensors.size(), 3u);
  EXPECT_EQ(d.tensors[0].first, "params");
  EXPECT_EQ(d.tensors[0].second.dtype(), DType::f32);
  EXPECT_EQ(d.tensors[0].second.data<float>()[2], 3.25f);
  EXPECT_EQ(d.tensors[1].second.data<double>()[1], 1e-300);
  EXPECT_EQ(d.tensors[2].second.data<std::int32_t>()[1], -1);
}

// Every single-byte change of the file is refused with a DataError naming the file: the
// header's JSON then fails to parse or validate, or the checksum no longer matches.
TEST(CheckpointFormat, EveryFlippedByteIsRefused) {
  const std::string good = encode_checkpoint(sample_checkpoint(7));
  int refused = 0, harmless = 0;
  for (std::size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x04);
    try {
      const Checkpoint d = decode_checkpoint(bad, "c.ckpt");
      // Only the header's padding or JSON whitespace may change without changing content.
      const char original = good[i];
      EXPECT_TRUE(original == ' ' || original == '\n') << "byte " << i << " changed undetected";
      ++harmless;
    } catch (const DataError& e) {
      EXPECT_EQ(std::string(e.what()).rfind("c.ckpt", 0), 0u) << e.what();
      ++refused;
    }
  }
  EXPECT_GT(refused, static_cast<int>(good.size()) - 16);
  (void)harmless;
}

TEST(CheckpointFormat, TruncatedAndForeignFilesAreRefused) {
  const std::string good = encode_checkpoint(sample_checkpoint(7));
  for (const std::size_t n : {std::size_t{0}, std::size_t{5}, std::size_t{64}, good.size() - 1}) {
    EXPECT_THROW(decode_checkpoint(good.substr(0, n), "c.ckpt"), DataError) << n;
  }
  // A valid safetensors file that is not a checkpoint.
  Checkpoint c = sample_checkpoint(1);
  std::string text = encode_checkpoint(c);
  const std::size_t at = text.find("descent-checkpoint/1");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, 20, "descent-checkpoint/9");
  try {
    decode_checkpoint(text, "c.ckpt");
    FAIL() << "a foreign format tag was accepted";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("expected \"descent-checkpoint/1\""), std::string::npos) << e.what();
  }
}

TEST(CheckpointFormat, ChecksumNamesTheDamage) {
  std::string text = encode_checkpoint(sample_checkpoint(7));
  text[text.size() - 3] = static_cast<char>(text[text.size() - 3] ^ 0x01);  // a data byte
  try {
    decode_checkpoint(text, "c.ckpt");
    FAIL();
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("checksum mismatch"), std::string::npos) << e.what();
  }
}

// The seed corpus's checkpoints are written by fuzz/corpus/make_seeds.py, an independent
// implementation of the format in Python: the valid one reads, the damaged ones are refused.
TEST(CheckpointFormat, ReadsTheFilesAnIndependentWriterMade) {
  const fs::path dir = fs::path(DESCENT_SOURCE_DIR) / "fuzz" / "corpus" / "checkpoint";
  const Checkpoint c = decode_checkpoint(read_bytes(dir / "small.ckpt"), "small.ckpt");
  EXPECT_EQ(c.step, 3);
  ASSERT_NE(c.find("optimizer.0"), nullptr);
  EXPECT_EQ(c.find("optimizer.0")->data<double>()[1], -1e-300);
  EXPECT_EQ(c.find("labels")->data<std::int32_t>()[0], 7);
  for (const char* bad : {"bad-checksum.ckpt", "state-not-object.ckpt", "f16-tensor.ckpt", "foreign.ckpt", "truncated.ckpt"}) {
    EXPECT_THROW(decode_checkpoint(read_bytes(dir / bad), bad), DataError) << bad;
  }
}

TEST_F(CheckpointFiles, KeepsTheNewestK) {
  for (std::int64_t step : {0, 10, 20, 30, 40}) write_checkpoint(dir_, sample_checkpoint(step), 3);
  const auto all = list_checkpoints(dir_);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].filename(), checkpoint_file_name(20));
  EXPECT_EQ(all[2].filename(), checkpoint_file_name(40));
  EXPECT_EQ(checkpoint_file_name(40), "step-000000000040.ckpt");
}

TEST_F(CheckpointFiles, DamagedNewestIsSkippedWithAWarning) {
  write_checkpoint(dir_, sample_checkpoint(10), 5);
  const fs::path newest = write_checkpoint(dir_, sample_checkpoint(20), 5);
  std::string bytes = read_bytes(newest);
  bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x10);
  write_bytes(newest, bytes);
  std::vector<std::string> warnings;
  const std::optional<Checkpoint> c = load_latest_checkpoint(dir_, &warnings);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->step, 10);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find(newest.string()), std::string::npos) << warnings[0];
  EXPECT_FALSE(load_latest_checkpoint(dir_ / "missing").has_value());
}

// A write that cannot complete (here: the target name is taken by a directory, so the final
// rename fails) throws IoError naming the file and leaves the earlier checkpoints readable.
TEST_F(CheckpointFiles, FailedWriteLeavesEarlierCheckpointsIntact) {
  write_checkpoint(dir_, sample_checkpoint(10), 5);
  fs::create_directories(dir_ / checkpoint_file_name(20) / "x");
  EXPECT_THROW(write_checkpoint(dir_, sample_checkpoint(20), 5), IoError);
  const std::optional<Checkpoint> c = load_latest_checkpoint(dir_);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->step, 10);
  // No temporary file is left behind.
  for (const auto& e : fs::directory_iterator(dir_)) EXPECT_NE(e.path().filename().string()[0], '.') << e.path();
  // A checkpoint folder that cannot be made is one clear error too.
  write_bytes(dir_ / "file", "x");
  EXPECT_THROW(write_checkpoint(dir_ / "file" / "checkpoints", sample_checkpoint(1), 1), IoError);
}

// ---- resume and divergence on a small problem ------------------------------------------

class ResumeTest : public CheckpointFiles {
 protected:
  void SetUp() override {
    CheckpointFiles::SetUp();
    testing::write_blobs(dir_ / "train.csv", 500, 1, testing::Blobs::overlapping);
    testing::write_blobs(dir_ / "test.csv", 100, 2, testing::Blobs::overlapping);
  }


  // Dropout, batch normalization, momentum with a decaying rate, Polyak averaging and a
  // reshuffling sampler: every kind of state a checkpoint must carry.
  TrainConfig config(const std::string& name, const std::string& extra = "") const {
    std::ostringstream t;
    t << "name = \"" << name << "\"\nseed = 5\nepochs = 4\nthreads = 1\nout_dir = \"" << dir_.string()
      << "\"\nprogress = \"none\"\n"
      << "[data]\nformat = \"csv\"\ntrain_features = \"" << (dir_ / "train.csv").string() << "\"\ntest_features = \""
      << (dir_ / "test.csv").string() << "\"\nscale = 1.0\nvalidation_size = 100\n"
      << "[model]\ntype = \"sequential\"\nlayers = [{type = \"linear\", units = 16, bias = false}, {type = \"batchnorm\"},"
         " {type = \"relu\"}, {type = \"dropout\", p = 0.3}, {type = \"linear\"}]\n"
      << "[optimizer]\nname = \"momentum\"\nlr = 0.05\nmomentum = 0.9\n[schedule]\nname = \"linear\"\n"
      << "[averaging]\nkind = \"exponential\"\nrho = 0.9\n"
      << "[sampler]\nbatch_size = 32\n[early_stopping]\npatience = 100\n"
      << "[checkpoint]\nevery_steps = 5\nkeep = 1000\n"
      << extra;
    return parse_train_config(t.str(), "resume.toml");
  }

  fs::path dir_run(const std::string& name) const { return dir_ / name; }
};

TEST_F(ResumeTest, FromEveryCheckpointEndsBitIdentical) {
  const TrainConfig c = config("full");
  const RunResult full = run(c, nullptr);
  const std::string model = read_bytes(full.run_dir / "model.safetensors");
  const auto checkpoints = list_checkpoints(full.run_dir / "checkpoints");
  // 400 examples / 32 = 13 batches per epoch, 4 epochs: every 5 steps, at epoch ends, step 0, the end.
  ASSERT_GE(checkpoints.size(), 12u);
  const auto lines = io::read_json_lines(full.run_dir / "metrics.jsonl");
  int tried = 0;
  for (std::size_t i = 0; i < checkpoints.size(); i += 2) {
    const fs::path copy = dir_ / ("copy" + std::to_string(i));
    fs::copy(full.run_dir, copy, fs::copy_options::recursive);
    fs::remove(copy / "model.safetensors");
    for (std::size_t j = i + 1; j < checkpoints.size(); ++j) fs::remove(copy / "checkpoints" / checkpoints[j].filename());
    const RunResult again = resume(copy, nullptr);
    SCOPED_TRACE(checkpoints[i].filename().string());
    EXPECT_TRUE(read_bytes(copy / "model.safetensors") == model) << "model.safetensors differs";
    EXPECT_EQ(again.steps, full.steps);
    EXPECT_EQ(again.best_epoch, full.best_epoch);
    EXPECT_EQ(again.test.error, full.test.error);
    // The metrics file reads as one run: the same records, once each.
    const auto relines = io::read_json_lines(copy / "metrics.jsonl");
    ASSERT_EQ(relines.size(), lines.size());
    for (std::size_t l = 0; l < lines.size(); ++l) {
      EXPECT_EQ(relines[l].value("kind", ""), lines[l].value("kind", ""));
      if (lines[l].contains("loss")) {
        EXPECT_EQ(relines[l]["loss"], lines[l]["loss"]) << "line " << l;
      }
    }
    fs::remove_all(copy);
    ++tried;
  }
  EXPECT_GE(tried, 6);
}

TEST_F(ResumeTest, MissingFolderOrCheckpointIsOneClearError) {
  EXPECT_THROW(resume(dir_ / "nope", nullptr), IoError);
  fs::create_directories(dir_ / "empty");
  try {
    resume(dir_ / "empty", nullptr);
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("not a run folder"), std::string::npos) << e.what();
  }
  fs::create_directories(dir_ / "started" / "checkpoints");
  try {
    resume(dir_ / "started", nullptr);
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("no valid checkpoint"), std::string::npos) << e.what();
  }
}

// Divergence: a learning rate of 1e6 makes the loss non-finite within a few updates.
TEST_F(ResumeTest, DivergenceStopNamesTheStepAndTheTensor) {
  const TrainConfig c = config("stop", "[divergence]\npolicy = \"stop\"\n");
  TrainConfig big = c;
  big.optimizer.lr = 1e6;
  try {
    run(big, nullptr);
    FAIL() << "a learning rate of 1e6 did not diverge";
  } catch (const NumericError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("training diverged at step "), std::string::npos) << m;
    EXPECT_NE(m.find("first non-finite gradient in '"), std::string::npos) << m;
    EXPECT_EQ(m.find("'(none)'"), std::string::npos) << m;
  }
}

TEST_F(ResumeTest, DivergenceSkipGivesUpAfterMaxEvents) {
  TrainConfig c = config("skip", "[divergence]\npolicy = \"skip\"\nmax_events = 3\n");
  c.optimizer.lr = 1e6;
  try {
    run(c, nullptr);
    FAIL();
  } catch (const NumericError& e) {
    EXPECT_NE(std::string(e.what()).find("more than divergence.max_events = 3"), std::string::npos) << e.what();
  }
  int skipped = 0;
  for (const auto& line : io::read_json_lines(dir_ / "skip" / "metrics.jsonl")) {
    if (line.value("kind", "") == "divergence") {
      EXPECT_EQ(line.value("policy", ""), "skip");
      ++skipped;
    }
  }
  EXPECT_EQ(skipped, 3);
}

// Rollback: each divergence returns to the newest checkpoint with the rate scaled by 0.01,
// until the rate is small enough to train; the run then ends with finite, useful weights.
TEST_F(ResumeTest, DivergenceRollbackLowersTheRateUntilTrainingWorks) {
  TrainConfig c = config("rollback", "[divergence]\npolicy = \"rollback\"\nlr_scale = 0.01\nmax_events = 6\n");
  c.optimizer.lr = 1e5;
  const RunResult r = run(c, nullptr);
  EXPECT_GE(r.divergences, 1);
  EXPECT_LT(r.test.error, 0.5);
  std::vector<double> scales;
  for (const auto& line : io::read_json_lines(r.run_dir / "metrics.jsonl")) {
    if (line.value("kind", "") == "divergence") scales.push_back(line.value("lr_scale", 0.0));
  }
  ASSERT_EQ(static_cast<std::int64_t>(scales.size()), r.divergences);
  for (std::size_t i = 0; i < scales.size(); ++i) EXPECT_DOUBLE_EQ(scales[i], std::pow(0.01, static_cast<double>(i + 1)));
}

// Rollback onto a checkpoint whose weights are huge but finite: a callback multiplies every
// parameter by 1e30 once, after update 20; the checkpoint after it (every_steps = 1) holds
// them, and from there the forward pass overflows at any learning rate. The first rollback
// lands on that checkpoint and diverges again at once; the second must go back to the
// checkpoint before it (step 20, written before the blow-up) instead of retrying the same one
// until max_events (which threw NumericError before), and training then ends normally.
TEST_F(ResumeTest, DivergenceRollbackGoesBackPastACheckpointThatDivergesAgain) {
  class BlowUpOnce final : public Callback {
   public:
    bool on_step(const StepContext& ctx) override {
      if (ctx.step == 20 && !done_) {
        done_ = true;
        const Tensor& w = ctx.run.arena().values();  // a handle: the values stay writable
        float* v = w.data<float>();
        for (std::int64_t i = 0; i < w.numel(); ++i) v[i] *= 1e30f;
      }
      return false;
    }

   private:
    bool done_ = false;
  };
  TrainConfig c = config("blowup", "[divergence]\npolicy = \"rollback\"\nlr_scale = 0.5\nmax_events = 4\n");
  c.checkpoint.every_steps = 1;
  BlowUpOnce blow_up;
  const RunResult r = run(c, nullptr, {&blow_up});
  EXPECT_EQ(r.divergences, 2);
  EXPECT_LT(r.test.error, 0.5);
  std::vector<std::int64_t> steps;
  for (const auto& line : io::read_json_lines(r.run_dir / "metrics.jsonl")) {
    if (line.value("kind", "") == "divergence") steps.push_back(line.value("step", std::int64_t{-1}));
  }
  // The first rollback returned to the checkpoint after update 20 (step 21), the second to
  // step 20; metrics.jsonl was cut back to that checkpoint, so only the second record is left.
  EXPECT_EQ(steps, (std::vector<std::int64_t>{20}));
}

}  // namespace
}  // namespace descent::train
