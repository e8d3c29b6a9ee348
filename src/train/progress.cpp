#include "descent/train/progress.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ostream>
#include <vector>

namespace descent::train {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// 42s, 3m07s, 2h05m.
std::string duration(double seconds) {
  const auto s = static_cast<long long>(seconds + 0.5);
  char buffer[32];
  if (s < 60) std::snprintf(buffer, sizeof buffer, "%llds", s);
  else if (s < 3600) std::snprintf(buffer, sizeof buffer, "%lldm%02llds", s / 60, s % 60);
  else std::snprintf(buffer, sizeof buffer, "%lldh%02lldm", s / 3600, (s % 3600) / 60);
  return buffer;
}

std::string fixed(const char* format, double v) {
  char buffer[48];
  std::snprintf(buffer, sizeof buffer, format, v);
  return buffer;
}

// `text` broken into lines of at most `width` characters at its field boundaries (two
// spaces); continuation lines are indented by two spaces. A field longer than the width
// stays whole (the terminal wraps it).
std::string wrap(const std::string& text, std::size_t width) {
  std::string out;
  std::size_t begin = 0;
  while (begin <= text.size()) {  // each line of the text on its own
    const std::size_t nl = std::min(text.find('\n', begin), text.size());
    const std::string line = text.substr(begin, nl - begin);
    std::vector<std::string> fields;
    for (std::size_t p = 0;;) {
      const std::size_t q = line.find("  ", p);
      fields.push_back(line.substr(p, q == std::string::npos ? std::string::npos : q - p));
      if (q == std::string::npos) break;
      p = q + 2;
    }
    std::string current;
    for (const std::string& f : fields) {
      if (current.empty()) {
        current = f;
      } else if (current.size() + 2 + f.size() <= width) {
        current += "  " + f;
      } else {
        out += current + "\n";
        current = "  " + f;
      }
    }
    out += current;
    if (nl == text.size()) break;
    out += "\n";
    begin = nl + 1;
  }
  return out;
}

}  // namespace

Progress::Progress(std::ostream* out, const std::string& mode, std::int64_t epochs, std::int64_t steps_per_epoch)
    : out_(out), epochs_(epochs), steps_per_epoch_(std::max<std::int64_t>(1, steps_per_epoch)) {
  const bool tty = isatty(STDERR_FILENO) != 0;
  bar_ = out_ != nullptr && (mode == "bar" || (mode == "auto" && tty));
  if (mode == "none") {
    out_ = nullptr;
    bar_ = false;
  }
  last_ = Clock::now();
}

int Progress::width() const {
  if (columns_ > 0) return columns_;
  winsize ws{};
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  if (const char* env = std::getenv("COLUMNS"); env != nullptr) {
    char* end = nullptr;
    const long v = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && v > 0 && v < 100000) return static_cast<int>(v);
  }
  return 80;
}

std::string Progress::bar_text(std::int64_t epoch, std::int64_t position, double loss, double accuracy,
                               double eta_seconds, int columns) const {
  const std::size_t avail = static_cast<std::size_t>(std::max(1, columns - 1));
  const std::string head = "epoch " + std::to_string(epoch) + "/" + std::to_string(epochs_);
  const double done = static_cast<double>(position) / static_cast<double>(steps_per_epoch_);
  const std::string percent = fixed(" %3.0f%%", 100.0 * done);
  const std::string fields[] = {
      eta_seconds < 0 ? std::string("ETA ?") : "ETA " + std::string(eta_upper_ ? "<=" : "") + duration(eta_seconds),
      fixed("loss %.4f", loss), fixed("acc %.2f%%", 100.0 * accuracy)};
  constexpr std::size_t min_gauge = 10, max_gauge = 30;
  // The widest that fits: all fields with a gauge of 10 to 30, then fewer fields (the
  // rightmost go first), then no gauge.
  for (std::size_t keep = std::size(fields) + 1; keep-- > 0;) {
    std::string tail = percent;
    for (std::size_t i = 0; i < keep; ++i) tail += "  " + fields[i];
    const std::size_t fixed_part = head.size() + 3 + tail.size();  // " [" and "]"
    if (fixed_part + min_gauge > avail) continue;
    const std::size_t gauge = std::min(max_gauge, avail - fixed_part);
    const auto filled = std::min(gauge, static_cast<std::size_t>(static_cast<double>(gauge) * done));
    return head + " [" + std::string(filled, '=') + std::string(gauge - filled, ' ') + "]" + tail;
  }
  std::string text = head + percent;
  for (const std::string& f : fields) {
    if (text.size() + 2 + f.size() > avail) break;
    text += "  " + f;
  }
  return text.substr(0, avail);
}

void Progress::step(std::int64_t epoch, std::int64_t position, double loss, double accuracy) {
  if (!bar_) return;
  const std::int64_t global = (epoch - 1) * steps_per_epoch_ + position;  // steps done
  if (first_step_ < 0) {
    first_step_ = global;
    first_time_ = Clock::now();
  } else if (seconds_since(last_) < 0.1 && position != steps_per_epoch_) {
    return;
  }
  last_ = Clock::now();
  // The rate of this process's steps (evaluations included) times the steps left.
  double eta = -1.0;
  if (global > first_step_) {
    const double per_step = seconds_since(first_time_) / static_cast<double>(global - first_step_);
    eta = per_step * static_cast<double>(std::max<std::int64_t>(0, epochs_ * steps_per_epoch_ - global));
  }
  *out_ << "\r" << bar_text(epoch, position, loss, accuracy, eta, width()) << "\033[K" << std::flush;
}

void Progress::line(const std::string& text) {
  if (out_ == nullptr) return;
  if (bar_) {
    *out_ << "\r\033[K" << wrap(text, static_cast<std::size_t>(std::max(1, width() - 1))) << "\n" << std::flush;
    return;
  }
  *out_ << text << "\n" << std::flush;
}

}  // namespace descent::train
