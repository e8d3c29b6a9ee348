#include "work_progress.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string_view>

namespace descent::cli {
namespace {

bool stderr_is_terminal() {
  const char* term = std::getenv("TERM");
  return ::isatty(STDERR_FILENO) == 1 && (term == nullptr || std::string_view(term) != "dumb");
}

std::string seconds(double s) {
  std::ostringstream o;
  o << std::fixed << std::setprecision(s < 10 ? 1 : 0) << s << " s";
  return o.str();
}

}  // namespace

WorkProgress::WorkProgress(std::string label, std::int64_t total, std::string unit, Mode mode, std::ostream* out)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total > 0 ? total : 1),
      mode_(mode == Mode::automatic ? (stderr_is_terminal() ? Mode::bar : Mode::plain) : mode),
      out_(out != nullptr ? out : &std::cerr), t0_(std::chrono::steady_clock::now()), drawn_(t0_) {
  if (mode_ == Mode::plain) *out_ << line(0, false) << "\n" << std::flush;
  if (mode_ == Mode::bar) *out_ << "\r" << line(0, true) << std::flush;
}

WorkProgress::~WorkProgress() {
  try {
    finish();
  } catch (...) {  // a destructor must not throw; a lost progress line is harmless
  }
}

double WorkProgress::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

std::string WorkProgress::line(std::int64_t done, bool bar) const {
  const double t = elapsed();
  const double share = static_cast<double>(done) / static_cast<double>(total_);
  std::ostringstream o;
  const std::string left = done > 0 ? seconds(t / static_cast<double>(done) * static_cast<double>(total_ - done)) : "?";
  if (bar) {
    constexpr int width = 20;
    const int filled = static_cast<int>(share * width);
    o << label_ << " [" << std::string(static_cast<std::size_t>(filled), '#')
      << std::string(static_cast<std::size_t>(width - filled), '.') << "] " << done << "/" << total_ << " " << unit_ << "  "
      << std::setw(3) << static_cast<int>(100 * share) << "%  " << seconds(t) << ", " << left << " left";
  } else {
    o << label_ << ": " << done << "/" << total_ << " " << unit_ << " (" << static_cast<int>(100 * share) << "%), "
      << seconds(t);
    if (done > 0 && done < total_) o << ", about " << left << " left";
  }
  return o.str();
}

void WorkProgress::update(std::int64_t done) {
  if (finished_ || mode_ == Mode::none) return;
  done_ = done;
  if (mode_ == Mode::bar) {
    const auto now = std::chrono::steady_clock::now();
    if (done < total_ && now - drawn_ < std::chrono::milliseconds(100)) return;
    drawn_ = now;
    *out_ << "\r" << line(done, true) << "\x1b[K" << std::flush;
    return;
  }
  // plain: a line per tenth (the last one comes from finish()).
  if (done < total_ && done * 10 >= next_tenth_ * total_) {
    while (done * 10 >= next_tenth_ * total_) ++next_tenth_;
    *out_ << line(done, false) << "\n" << std::flush;
  }
}

void WorkProgress::finish() {
  if (finished_) return;
  finished_ = true;
  if (mode_ == Mode::none) return;
  if (mode_ == Mode::bar) {
    *out_ << "\r" << line(done_, true) << "\x1b[K\n" << std::flush;
  } else {
    *out_ << line(done_, false) << "\n" << std::flush;
  }
}

}  // namespace descent::cli
