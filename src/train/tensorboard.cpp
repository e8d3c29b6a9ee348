#include "descent/train/tensorboard.hpp"

#include <array>
#include <cmath>
#include <span>
#include <string_view>
#include <utility>

#include "descent/error.hpp"

namespace descent::train {
namespace {

struct ReadableTag {
  std::string_view kind, field, tag;
};
constexpr std::array<ReadableTag, 14> kReadable{{
    {"step", "loss", "train/batch_loss"},
    {"step", "grad_norm", "grad_norm"},
    {"step", "lr", "lr"},
    {"eval", "train_loss", "train/loss"},
    {"eval", "train_error", "train/error"},
    {"eval", "val_loss", "val/loss"},
    {"eval", "val_error", "val/error"},
    {"epoch", "train_loss", "train/loss"},
    {"epoch", "train_error", "train/error"},
    {"epoch", "val_loss", "val/loss"},
    {"epoch", "val_error", "val/error"},
    {"final", "test_loss", "test/loss"},
    {"final", "test_error", "test/error"},
    {"final", "test_accuracy", "test/accuracy"},
}};

bool is_context_field(std::string_view key) {
  return key == "kind" || key == "step" || key == "epoch" || key == "wall_s";
}

void add_scalars(const std::string& tag, const nlohmann::json& v, std::vector<io::ScalarValue>& out) {
  if (v.is_boolean()) {
    out.push_back({tag, v.get<bool>() ? 1.0F : 0.0F});
  } else if (v.is_number()) {
    // NaN and infinities are null in metrics.jsonl (JsonLinesWriter): no scalar there, none here.
    if (const double x = v.get<double>(); std::isfinite(x)) out.push_back({tag, static_cast<float>(x)});
  } else if (v.is_object()) {
    for (const auto& [key, item] : v.items()) add_scalars(tag + "/" + key, item, out);
  } else if (v.is_array()) {
    for (std::size_t i = 0; i < v.size(); ++i) {
      const nlohmann::json& item = v[i];
      std::string name = std::to_string(i);
      if (item.is_object() && item.contains("name") && item["name"].is_string()) {
        name = item["name"].get<std::string>();
        if (item.contains("gate") && item["gate"].is_string() && !item["gate"].get<std::string>().empty())
          name += "/" + item["gate"].get<std::string>();
      }
      add_scalars(tag + "/" + name, item, out);
    }
  }
  // null, strings: no scalar
}

}  // namespace

std::vector<io::ScalarValue> tensorboard_scalars(const nlohmann::json& record) {
  std::vector<io::ScalarValue> out;
  if (!record.is_object()) return out;
  const std::string kind =
      record.contains("kind") && record["kind"].is_string() ? record["kind"].get<std::string>() : "record";
  for (const auto& [key, value] : record.items()) {
    if (is_context_field(key)) continue;
    std::string tag = kind + "/" + key;
    for (const ReadableTag& r : kReadable) {
      if (r.kind == kind && r.field == key) tag = std::string(r.tag);
    }
    add_scalars(tag, value, out);
  }
  return out;
}

std::int64_t tensorboard_step(const nlohmann::json& record) {
  for (const char* key : {"step", "steps"}) {
    if (record.contains(key) && record[key].is_number_integer()) return record[key].get<std::int64_t>();
  }
  return 0;
}

TensorBoardWriter::TensorBoardWriter(const TensorBoardConfig& config, std::filesystem::path run_dir)
    : config_(config), dir_(std::move(run_dir) / "tb") {}

void TensorBoardWriter::start() {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) throw IoError(dir_.string() + ": cannot make the TensorBoard folder: " + ec.message());
  const double now = io::unix_seconds();
  writer_.reset();
  writer_.emplace(io::EventFileWriter::create(dir_ / io::event_file_name(now), now));
}

void TensorBoardWriter::record(const nlohmann::json& record) {
  if (!writer_) return;
  const std::vector<io::ScalarValue> scalars = tensorboard_scalars(record);
  if (scalars.empty()) return;
  writer_->write(io::encode_scalars_event(io::unix_seconds(), tensorboard_step(record), scalars));
}

void TensorBoardWriter::before_update(const StepContext& ctx) {
  const std::int64_t every = config_.histogram_every_steps;
  if (!writer_ || every <= 0 || ctx.step % every != 0) return;
  ParameterArena& arena = ctx.run.arena();
  std::vector<io::HistogramValue> values;
  for (std::size_t i = 0; i < arena.count(); ++i) {
    const ParamId id{static_cast<std::int32_t>(i)};
    const std::string& name = arena.entry(id).name;
    for (const bool grad : {false, true}) {
      const Tensor t = grad ? arena.grad(id) : arena.value(id);
      io::Histogram h = arena.dtype() == DType::f64 ? io::make_histogram(std::span<const double>(t.span<double>()))
                                                    : io::make_histogram(std::span<const float>(t.span<float>()));
      values.push_back({(grad ? "grads/" : "params/") + name, std::move(h)});
    }
  }
  writer_->write(io::encode_histograms_event(io::unix_seconds(), ctx.step, values));
}

nlohmann::json TensorBoardWriter::save_state() const {
  if (!writer_) return nullptr;
  writer_->flush();
  return {{"file", writer_->path().filename().string()}, {"bytes", writer_->size()}};
}

void TensorBoardWriter::load_state(const nlohmann::json& state) {
  if (!state.is_object()) return;
  const auto name = state.at("file").get<std::string>();
  const auto bytes = state.at("bytes").get<std::uint64_t>();
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
    throw DataError("checkpoint state: tensorboard.file: not a file name: '" + name + "'");
  }
  const std::filesystem::path path = dir_ / name;
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  writer_.reset();
  if (ec || size < bytes) {
    start();
    return;
  }
  writer_.emplace(io::EventFileWriter::reopen(path, bytes));
}

}  // namespace descent::train
