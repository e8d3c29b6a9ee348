#pragma once
// Running child processes from the tests (the CLI, python3, mpirun) and the folders they
// work in.
//   const fs::path dir = testing::fresh_test_dir("descent_cli");         // in SetUp
//   const testing::ProcessResult r = testing::shell(testing::cli() + " --version", dir);
//   const pid_t pid = testing::spawn(testing::cli(), {"train", config}, dir / "a.out", dir / "a.err");
//   kill(pid, SIGKILL); EXPECT_EQ(testing::wait_for(pid), -SIGKILL);
#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

namespace descent::testing {

// The descent executable of this build (the test binaries get its path as DESCENT_CLI).
#ifdef DESCENT_CLI
inline std::string cli() { return DESCENT_CLI; }
#endif

// A file's bytes ("" when it cannot be read).
std::string slurp(const std::filesystem::path& p);

// An empty folder temp_directory_path()/<prefix>_<pid>, with _<test name> added while a test
// runs (SetUp), not while a suite is set up (SetUpTestSuite); what was there is removed.
std::filesystem::path fresh_test_dir(const std::string& prefix);

struct ProcessResult {
  int code = -1;   // the exit status; see each function for a process a signal ended
  std::string out;  // standard output (with standard error for capture())
  std::string err;  // standard error
};

// `command` by /bin/sh with standard input from /dev/null, standard output and error to
// stdout.txt and stderr.txt in `dir`; code -1 when a signal ended it.
ProcessResult shell(const std::string& command, const std::filesystem::path& dir);

// `command` by /bin/sh with standard output and error read together through a pipe (in the
// order they were written); code 128 + the signal when one ended it.
ProcessResult capture(const std::string& command);

struct SpawnOptions {
  std::vector<std::string> env;        // NAME=value added to the child's environment
  unsigned long file_size_limit = 0;   // > 0: RLIMIT_FSIZE in bytes, SIGXFSZ ignored (writes fail with EFBIG)
};

// Starts `program args...` (no shell) with standard output and error to the files `out` and
// `err`; returns its pid at once.
pid_t spawn(const std::string& program, const std::vector<std::string>& args, const std::filesystem::path& out,
            const std::filesystem::path& err, const SpawnOptions& options = {});

// The headless browser of the page tests: $DESCENT_CHROMIUM when set (and executable), else
// /usr/bin/chromium or /usr/bin/chromium-browser; "" when there is none.
std::string chromium();

// Waits for `pid`: its exit status, or -signal when a signal ended it.
int wait_for(pid_t pid);

// spawn, then wait_for, then the two files read back.
ProcessResult run_process(const std::string& program, const std::vector<std::string>& args,
                          const std::filesystem::path& out, const std::filesystem::path& err,
                          const SpawnOptions& options = {});

}  // namespace descent::testing
