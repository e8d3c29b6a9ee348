#pragma once
// Progress of long work in the CLI outside training (descent diagnose's curves, planes,
// probes): a bar with the rate and the time left on a terminal, plain lines otherwise (a log
// file, a pipe, CI), so a user sees that a minute-long diagnostic is alive and when it ends.
//
//   WorkProgress p("plane", 625, "points");
//   for (...) { ...; p.update(done); }
//   p.finish();
//
// Bar (stderr is a terminal and TERM is not "dumb"), redrawn at most 10 times a second:
//   plane [##########..........] 312/625 points  50%  4.1 s, 4.1 s left
// Plain: one line at 0, then each time another tenth of the work is done, and at the end:
//   plane: 313/625 points (50%), 4.1 s, about 4.1 s left
// The time left is the mean time per unit so far times the units left.
#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <string>

namespace descent::cli {

class WorkProgress {
 public:
  enum class Mode { automatic, bar, plain, none };
  // `out` nullptr: std::cerr. Mode::automatic picks bar or plain by whether stderr is a terminal.
  WorkProgress(std::string label, std::int64_t total, std::string unit, Mode mode = Mode::automatic,
               std::ostream* out = nullptr);
  ~WorkProgress();
  WorkProgress(const WorkProgress&) = delete;
  WorkProgress& operator=(const WorkProgress&) = delete;

  void update(std::int64_t done);
  // The last line (once; the destructor calls it if nobody did).
  void finish();
  Mode mode() const { return mode_; }

 private:
  std::string line(std::int64_t done, bool bar) const;
  double elapsed() const;
  std::string label_, unit_;
  std::int64_t total_, done_ = 0;
  Mode mode_;
  std::ostream* out_;
  std::chrono::steady_clock::time_point t0_, drawn_;
  std::int64_t next_tenth_ = 1;
  bool finished_ = false;
};

}  // namespace descent::cli
