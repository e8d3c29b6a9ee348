#pragma once
// The run folder: one folder per training run, and only one run per folder.
//
// A run folder <out_dir>/<name>/ holds
//   run.json           {"format": "descent-run/1", "run_id": "<16 hex digits>", "status": ..., "message": ...}
//                      written when the run starts; status "running" (or killed), "interrupted",
//                      "failed" (message: the error) or "finished"
//   config.toml, metrics.jsonl, model.safetensors, checkpoints/, tb/   (train/trainer.hpp)
// The run id is drawn at random when the run starts and is stored in run.json and in the state
// of every checkpoint, so that `descent resume` refuses a checkpoint of another run. It is not
// part of the config (config.toml stays the config the user wrote, resolved).
//
// A new run refuses a folder that already holds a run (any of the files above) unless asked:
// ExistingRun::overwrite removes the old run's files once the data and the model have loaded,
// ExistingRun::fresh_name trains into the first free <name>-2, <name>-3, ... instead.
// A run that fails before its first checkpoint leaves no folder behind (the files it made are
// removed, and the folder if it made it); one that fails later is marked "failed" in run.json,
// its checkpoints and metrics kept for diagnosis and resume. docs/reliability.md.
#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace descent::io {
class JsonLinesWriter;
}

namespace descent::train {

struct Checkpoint;

// What a new run does when its folder already holds a run.
enum class ExistingRun {
  refuse,      // IoError naming the folder and the ways out
  overwrite,   // remove the old run's files first (other files in the folder stay)
  fresh_name,  // train into <name>-2, <name>-3, ...: the first that does not exist
};

// Whether `dir` holds a run: run.json, config.toml, metrics.jsonl, model.safetensors, checkpoints/ or tb/.
bool holds_run(const std::filesystem::path& dir);

class RunFolder {
 public:
  // The folder of a new run at `dir`, per `existing`. Throws IoError for refuse when `dir` holds
  // a run, or when `dir` is a file. fresh_name makes the chosen folder at once (so that two runs
  // started together do not pick the same name); nothing else is written yet.
  static RunFolder for_new_run(const std::filesystem::path& dir, ExistingRun existing);

  // The folder of a run to resume. Throws IoError: "no such run folder"; "is a file, not a run
  // folder" (naming the run folder when the file lies in one); "not a run folder", listing the
  // run folders it holds (as the --out folder `runs/` does). Reads run.json when present
  // (DataError naming it when malformed).
  static RunFolder for_resume(const std::filesystem::path& dir);

  const std::filesystem::path& path() const { return path_; }
  const std::string& id() const { return id_; }
  // The folder asked for when fresh_name picked another one; empty otherwise.
  const std::filesystem::path& requested() const { return requested_; }

  // A resume: takes the run id of the checkpoint to continue from. Throws DataError naming
  // `source` when the checkpoint belongs to another run than run.json's (or has no run id while
  // run.json has one). Without run.json the checkpoint's id is taken (a new one for a checkpoint
  // written before run ids existed).
  void adopt(const Checkpoint& checkpoint, const std::string& source);

  // Makes the folder ready, once the data and the model are known to be good: removes the old
  // run's files (overwrite), creates the folder, writes run.json with status "running".
  // Throws IoError naming the path that could not be removed, made or written.
  void open();

  // Status updates in run.json; best effort (a full disk must not hide the error being reported).
  void finished() noexcept;
  void interrupted(const std::string& message) noexcept;
  // A run ended by an error: removes what it made when it has no checkpoint yet (a new run only),
  // else marks run.json "failed" with the message.
  void failed(const std::string& message) noexcept;
  // Whether the folder holds a checkpoint to resume from (after failed(): whether it was kept).
  bool resumable() const;

 private:
  void write_status(const std::string& status, const std::string& message) const;

  std::filesystem::path path_, requested_;
  std::string id_;
  ExistingRun existing_ = ExistingRun::refuse;
  bool resuming_ = false, made_folder_ = false, opened_ = false;
};

// A fresh random run id: 16 lowercase hex digits.
std::string new_run_id();

// Cuts `metrics` back to `bytes`, its length when the checkpoint `source` was written. Throws
// DataError naming the file when it is shorter than that (cut short or replaced: a resume would
// lose or mix records), IoError when it cannot be read or cut.
void cut_metrics(const std::filesystem::path& metrics, std::uintmax_t bytes, const std::string& source);

// The record that ends metrics.jsonl of a run stopped before its end (docs/metrics.md):
// {"kind": "stopped", "reason", "step", "epoch", "message", "wall_s"}.
struct StoppedRecord {
  std::string reason;   // "diverged" or "interrupted"
  std::int64_t step = 0, epoch = 0;
  std::string message;  // the error or interruption message
  double wall_s = 0.0;
  nlohmann::json details = nlohmann::json::object();  // more fields of the reason (policy, loss, ...)
};
// Appends `record` to `metrics` and fsyncs it; best effort (a full disk must not hide the
// error that stopped the run).
void write_stopped_record(io::JsonLinesWriter& metrics, const StoppedRecord& record) noexcept;

}  // namespace descent::train
