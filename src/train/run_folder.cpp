#include "descent/train/run_folder.hpp"

#include <algorithm>
#include <chrono>
#include <random>
#include <system_error>
#include <vector>

#include "descent/error.hpp"
#include "descent/io/atomic_file.hpp"
#include "descent/io/json_lines.hpp"
#include "descent/train/checkpoint.hpp"

namespace descent::train {
namespace {

namespace fs = std::filesystem;

constexpr const char* kFormat = "descent-run/1";
constexpr const char* kRunFile = "run.json";
// The entries a run writes into its folder ("checkpoints", "snapshots" and "tb" are folders).
constexpr const char* kRunEntries[] = {"run.json",         "config.toml", "metrics.jsonl",  "model.safetensors", "checkpoints",
                                       "init.safetensors", "snapshots",   "trajectory.json", "tb"};

bool present(const fs::path& p) {
  std::error_code ec;
  return fs::exists(fs::symlink_status(p, ec));
}

// "config.toml, metrics.jsonl, checkpoints/": the run entries present in `dir`.
std::string present_entries(const fs::path& dir) {
  std::string out;
  for (const char* name : kRunEntries) {
    if (!present(dir / name)) continue;
    const std::string entry = name;
    out += (out.empty() ? "" : ", ") + entry + (entry == "checkpoints" || entry == "snapshots" || entry == "tb" ? "/" : "");
  }
  return out;
}

// `dir` without a trailing separator, so that filename() is the run's name.
fs::path normal(const fs::path& dir) {
  fs::path p = dir.lexically_normal();
  if (p.filename().empty() && p.has_parent_path()) p = p.parent_path();
  return p;
}

fs::path numbered(const fs::path& dir, int k) {
  return dir.parent_path() / (dir.filename().string() + "-" + std::to_string(k));
}

constexpr int kMaxNumber = 100000;

// The first of <dir>-2, <dir>-3, ... that does not exist.
fs::path first_free(const fs::path& dir) {
  for (int k = 2; k < kMaxNumber; ++k) {
    if (!present(numbered(dir, k))) return numbered(dir, k);
  }
  throw IoError(dir.string() + ": every numbered name up to -" + std::to_string(kMaxNumber) + " is taken");
}

// Removes the files a run wrote into `dir` (and leftover temporary files of atomic writes);
// other files stay. Throws IoError naming what could not be removed.
void remove_run_files(const fs::path& dir) {
  std::error_code ec;
  for (const char* name : kRunEntries) {
    fs::remove_all(dir / name, ec);
    if (ec) throw IoError((dir / name).string() + ": cannot remove the old run's file: " + ec.message());
  }
  std::vector<fs::path> temporaries;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    for (const char* entry : kRunEntries) {
      if (name.starts_with("." + std::string(entry) + ".tmp-")) temporaries.push_back(it->path());
    }
  }
  for (const fs::path& p : temporaries) fs::remove(p, ec);  // best effort: a leftover is harmless
}

std::string hex16(std::uint64_t v) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) out[static_cast<std::size_t>(i)] = digits[v & 15];
  return out;
}

}  // namespace

bool holds_run(const fs::path& dir) {
  for (const char* name : kRunEntries) {
    if (present(dir / name)) return true;
  }
  return false;
}

std::string new_run_id() {
  std::random_device device;
  std::uint64_t v = (static_cast<std::uint64_t>(device()) << 32) ^ device();
  // Mixed with the clock, in case the random device is a fixed sequence.
  v ^= static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) * 0x9E3779B97F4A7C15ull;
  v = (v ^ (v >> 31)) * 0xBF58476D1CE4E5B9ull;
  return hex16(v ^ (v >> 29));
}

RunFolder RunFolder::for_new_run(const fs::path& dir, ExistingRun existing) {
  RunFolder f;
  f.path_ = normal(dir);
  f.existing_ = existing;
  f.id_ = new_run_id();
  std::error_code ec;
  const fs::file_status status = fs::status(f.path_, ec);
  if (fs::exists(status) && !fs::is_directory(status)) {
    throw IoError(f.path_.string() + ": is a file, not a folder; choose another --name or --out for the run folder");
  }
  if (!holds_run(f.path_)) return f;
  if (existing == ExistingRun::refuse) {
    throw IoError(f.path_.string() + ": holds another run (" + present_entries(f.path_) +
                  "), and a run folder belongs to one run: replace it with --overwrite, train into " +
                  first_free(f.path_).string() + " with --fresh-name, or choose another --name (to continue that run: "
                  "descent resume " + f.path_.string() + ")");
  }
  if (existing == ExistingRun::fresh_name) {
    // Made at once, so that two runs started together cannot both pick it.
    fs::create_directories(f.path_.parent_path(), ec);
    for (int k = 2; k < kMaxNumber; ++k) {
      const fs::path candidate = numbered(f.path_, k);
      if (fs::create_directory(candidate, ec)) {
        f.requested_ = f.path_;
        f.path_ = candidate;
        f.made_folder_ = true;
        return f;
      }
      if (ec) throw IoError(candidate.string() + ": cannot create the run folder: " + ec.message());
    }
    throw IoError(f.path_.string() + ": every numbered name up to -" + std::to_string(kMaxNumber) + " is taken");
  }
  return f;  // overwrite: the old run's files go in open(), once the data and the model are good
}

RunFolder RunFolder::for_resume(const fs::path& dir) {
  RunFolder f;
  f.path_ = normal(dir);
  f.resuming_ = true;
  std::error_code ec;
  const fs::file_status status = fs::status(f.path_, ec);
  if (!fs::exists(status)) throw IoError(f.path_.string() + ": no such run folder");
  if (!fs::is_directory(status)) {
    // A checkpoint, config.toml, ...: name the run folder it belongs to.
    const fs::path parent = f.path_.parent_path();
    fs::path run;
    if (parent.filename() == "checkpoints" && holds_run(parent.parent_path())) {
      run = parent.parent_path();
    } else if (!parent.empty() && holds_run(parent)) {
      run = parent;
    }
    throw IoError(f.path_.string() + ": is a file, not a run folder; resume takes the run folder" +
                  (run.empty() ? std::string(" (the folder that holds checkpoints/, e.g. runs/<name>)")
                               : ": descent resume " + run.string()));
  }
  if (!holds_run(f.path_)) {
    std::vector<std::string> runs;
    for (fs::directory_iterator it(f.path_, ec), end; !ec && it != end; it.increment(ec)) {
      std::error_code dir_ec;
      if (it->is_directory(dir_ec) && holds_run(it->path())) runs.push_back(it->path().string());
    }
    std::sort(runs.begin(), runs.end());
    std::string message = f.path_.string() + ": not a run folder (it holds no run.json, config.toml or checkpoints/)";
    if (runs.empty()) {
      message += ", nor any run folder";
    } else {
      constexpr std::size_t kShown = 8;
      message += "; the run folders in it: ";
      for (std::size_t i = 0; i < std::min(runs.size(), kShown); ++i) message += (i > 0 ? ", " : "") + runs[i];
      if (runs.size() > kShown) message += " and " + std::to_string(runs.size() - kShown) + " more";
    }
    throw IoError(message);
  }
  const fs::path file = f.path_ / kRunFile;
  if (present(file)) {
    const nlohmann::json j = nlohmann::json::parse(io::read_file(file, std::size_t{1} << 16), nullptr, false);
    const auto id = j.is_object() ? j.find("run_id") : j.end();
    if (!j.is_object() || id == j.end() || !id->is_string() || id->get<std::string>().empty() ||
        j.value("format", "") != kFormat) {
      throw DataError(file.string() + ": not a descent run file (expected a JSON object with \"format\": \"" + kFormat +
                      "\" and a \"run_id\" string)");
    }
    f.id_ = id->get<std::string>();
  }
  return f;
}

void RunFolder::adopt(const Checkpoint& checkpoint, const std::string& source) {
  const auto it = checkpoint.state.find("run_id");
  const std::string id = it != checkpoint.state.end() && it->is_string() ? it->get<std::string>() : "";
  if (id_.empty()) {  // no run.json: a folder of a version without run ids, or run.json lost
    id_ = id.empty() ? new_run_id() : id;
    return;
  }
  if (id != id_) {
    throw DataError(source + ": belongs to " +
                    (id.empty() ? std::string("a run without a run id") : "run " + printable_excerpt(id, 64)) +
                    ", not to the run of " + (path_ / kRunFile).string() + " (run " + printable_excerpt(id_, 64) +
                    "): the folder mixes two runs; move that checkpoint out of checkpoints/ to resume from an older one "
                    "of this run, or start anew with descent train --overwrite");
  }
}

void RunFolder::open() {
  std::error_code ec;
  if (!resuming_) {
    if (existing_ == ExistingRun::overwrite && holds_run(path_)) remove_run_files(path_);
    if (fs::create_directories(path_, ec)) made_folder_ = true;
    if (ec) throw IoError(path_.string() + ": cannot create the run folder: " + ec.message());
  }
  opened_ = true;
  write_status("running", "");
}

void RunFolder::write_status(const std::string& status, const std::string& message) const {
  nlohmann::json j = {{"format", kFormat}, {"run_id", id_}, {"status", status}};
  if (!message.empty()) j["message"] = message;
  io::write_file_atomic(path_ / kRunFile, j.dump(2) + "\n");
}

void RunFolder::finished() noexcept {
  try {
    write_status("finished", "");
  } catch (...) {  // best effort
  }
}

void RunFolder::interrupted(const std::string& message) noexcept {
  try {
    if (opened_) write_status("interrupted", message);
  } catch (...) {  // best effort
  }
}

void RunFolder::failed(const std::string& message) noexcept {
  try {
    std::error_code ec;
    if (!opened_) {
      if (made_folder_) fs::remove(path_, ec);  // the empty folder fresh_name made; only if still empty
      return;
    }
    if (!resuming_ && list_checkpoints(path_ / "checkpoints").empty()) {
      // Nothing to resume or look at: leave no half-made run folder behind.
      remove_run_files(path_);
      if (made_folder_) fs::remove(path_, ec);
      return;
    }
    write_status("failed", message);
  } catch (...) {  // best effort: the error being reported matters more
  }
}

bool RunFolder::resumable() const {
  try {
    return opened_ && !list_checkpoints(path_ / "checkpoints").empty();
  } catch (const Error&) {
    return false;
  }
}

void cut_metrics(const fs::path& metrics, std::uintmax_t bytes, const std::string& source) {
  std::error_code ec;
  const std::uintmax_t size = fs::file_size(metrics, ec);
  if (ec) {
    throw IoError(metrics.string() + ": cannot read its size (" + ec.message() + "); " + source + " expects " +
                  std::to_string(bytes) + " bytes of records in it");
  }
  if (size < bytes) {
    throw DataError(metrics.string() + ": holds " + std::to_string(size) + " bytes, fewer than the " +
                    std::to_string(bytes) + " it held when " + source +
                    " was written: the file was cut short or replaced, and resuming would lose or mix records; "
                    "put the run's own metrics.jsonl back, or train anew");
  }
  if (size == bytes) return;
  fs::resize_file(metrics, bytes, ec);
  if (ec) {
    throw IoError(metrics.string() + ": cannot cut it back to the " + std::to_string(bytes) + " bytes of " + source +
                  ": " + ec.message());
  }
}

void write_stopped_record(io::JsonLinesWriter& metrics, const StoppedRecord& r) noexcept {
  try {
    nlohmann::json record = {{"kind", "stopped"}, {"reason", r.reason},   {"step", r.step},
                             {"epoch", r.epoch},  {"message", r.message}, {"wall_s", r.wall_s}};
    record.update(r.details);
    metrics.write(record);
    metrics.flush();
  } catch (...) {  // best effort
  }
}

}  // namespace descent::train
