#pragma once
// TensorBoard event files of a run (docs/tensorboard.md): <run folder>/tb/events.out.tfevents.*
// holding every scalar of metrics.jsonl and, every tensorboard.histogram_every_steps updates,
// histograms of each parameter tensor and of its gradient (io/tensorboard.hpp writes them).
//
// The scalars mirror metrics.jsonl: the trainer hands every record written there to record()
// (a JsonLinesWriter listener), so record kinds added later appear without a change here.
// The checkpoints hold the event file's name and length (state_key "tensorboard"); a resume
// cuts the file back to that length, as it cuts metrics.jsonl, so a run killed and resumed
// has each step once.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "descent/io/tensorboard.hpp"
#include "descent/train/callback.hpp"
#include "descent/train/config.hpp"

namespace descent::train {

// The scalars of one metrics.jsonl record with their TensorBoard tags. Known fields have
// readable tags: step records' loss -> "train/batch_loss", grad_norm -> "grad_norm",
// lr -> "lr"; eval and epoch records' train_loss, train_error, val_loss, val_error ->
// "train/loss", "train/error", "val/loss", "val/error"; the final record's test_loss,
// test_error, test_accuracy -> "test/loss", "test/error", "test/accuracy". Every other number
// or boolean (1 or 0) is "<kind>/<field>", nested objects and arrays adding "/<key>" (an
// array element that is an object with a string "name" is named by it, and by a non-empty
// "gate" after it; others by their index from 0). The fields kind, step, epoch and wall_s
// are not scalars (they are the event's step and wall time); nulls, strings, NaN and
// infinities (null in metrics.jsonl) are left out.
std::vector<io::ScalarValue> tensorboard_scalars(const nlohmann::json& record);

// The event's step of a record: its "step", else its "steps" (the final record), else 0.
std::int64_t tensorboard_step(const nlohmann::json& record);

class TensorBoardWriter final : public Callback {
 public:
  TensorBoardWriter(const TensorBoardConfig& config, std::filesystem::path run_dir);

  // A new event file in run_dir/tb (created if missing). Throws IoError.
  void start();
  bool started() const { return writer_.has_value(); }
  // One record of metrics.jsonl, as the trainer writes it.
  void record(const nlohmann::json& record);
  // Histograms at steps 0, N, 2N, ...: the parameters before the update and the gradient.
  void before_update(const StepContext& ctx) override;

  // {"file": the event file's name, "bytes": its length}, after an fsync.
  std::string state_key() const override { return "tensorboard"; }
  nlohmann::json save_state() const override;
  // Reopens the file of `state`, cut back to its length. A file that is missing or shorter
  // than recorded (removed by hand) is replaced by a new one: the scalars of the steps before
  // are lost from TensorBoard, never training.
  void load_state(const nlohmann::json& state) override;

 private:
  TensorBoardConfig config_;
  std::filesystem::path dir_;
  mutable std::optional<io::EventFileWriter> writer_;
};

}  // namespace descent::train
