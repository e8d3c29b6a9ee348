#include "descent/train/progress.hpp"

#include <unistd.h>

#include <algorithm>
#include <iomanip>
#include <ostream>
#include <sstream>

namespace descent::train {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

Progress::Progress(std::ostream* out, const std::string& mode, std::int64_t epochs, std::int64_t steps_per_epoch)
    : out_(out), epochs_(epochs), steps_per_epoch_(std::max<std::int64_t>(1, steps_per_epoch)) {
  const bool tty = isatty(STDERR_FILENO) != 0;
  bar_ = out_ != nullptr && (mode == "bar" || (mode == "auto" && tty));
  if (mode == "none") out_ = nullptr;
  start_ = last_ = Clock::now();
}

void Progress::step(std::int64_t epoch, std::int64_t position, double loss, double accuracy) {
  if (!bar_) return;
  if (seconds_since(last_) < 0.1 && position != steps_per_epoch_) return;
  last_ = Clock::now();
  const double done = (static_cast<double>(epoch - 1) + static_cast<double>(position) / steps_per_epoch_) / epochs_;
  const double elapsed = seconds_since(start_);
  const double eta = done > 0 ? elapsed * (1 - done) / done : 0.0;
  constexpr int width = 28;
  const int filled = static_cast<int>(static_cast<double>(width) * static_cast<double>(position) / steps_per_epoch_);
  std::ostringstream line;
  line << "\repoch " << epoch << "/" << epochs_ << " [" << std::string(static_cast<std::size_t>(filled), '=')
       << std::string(static_cast<std::size_t>(width - filled), ' ') << "] " << std::fixed << std::setprecision(0)
       << 100.0 * position / steps_per_epoch_ << "%  ETA " << std::setprecision(1) << eta << " s  loss "
       << std::setprecision(4) << loss << "  acc " << std::setprecision(2) << 100.0 * accuracy << "%   ";
  *out_ << line.str() << std::flush;
}

void Progress::line(const std::string& text) {
  if (out_ == nullptr) return;
  if (bar_) *out_ << "\r\033[K";
  *out_ << text << "\n" << std::flush;
}

}  // namespace descent::train
