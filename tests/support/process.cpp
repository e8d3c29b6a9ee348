#include "support/process.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>

namespace descent::testing {

namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

fs::path fresh_test_dir(const std::string& prefix) {
  std::string name = prefix + "_" + std::to_string(::getpid());
  if (const ::testing::TestInfo* test = ::testing::UnitTest::GetInstance()->current_test_info(); test != nullptr) {
    name += std::string("_") + test->name();
  }
  const fs::path dir = fs::temp_directory_path() / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

ProcessResult shell(const std::string& command, const fs::path& dir) {
  const fs::path out = dir / "stdout.txt", err = dir / "stderr.txt";
  const int status = std::system((command + " >" + out.string() + " 2>" + err.string() + " </dev/null").c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(out), slurp(err)};
}

ProcessResult capture(const std::string& command) {
  ProcessResult r;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return r;
  char buffer[4096];
  std::size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) r.out.append(buffer, n);
  const int status = ::pclose(pipe);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

pid_t spawn(const std::string& program, const std::vector<std::string>& args, const fs::path& out, const fs::path& err,
            const SpawnOptions& options) {
  // Everything the child needs is made before fork: after it, only async-signal-safe calls
  // (and freopen/putenv, as the tests always did: the parent runs no other thread meanwhile).
  std::string prog = program;
  std::vector<std::string> copy = args;
  std::vector<char*> argv{prog.data()};
  for (std::string& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env = options.env;
  const pid_t pid = fork();
  if (pid == 0) {
    if (std::freopen(out.c_str(), "w", stdout) == nullptr || std::freopen(err.c_str(), "w", stderr) == nullptr) _exit(126);
    for (std::string& e : env) ::putenv(e.data());
    if (options.file_size_limit > 0) {
      std::signal(SIGXFSZ, SIG_IGN);  // an ignored signal stays ignored across execv
      const struct rlimit limit {options.file_size_limit, options.file_size_limit};
      if (setrlimit(RLIMIT_FSIZE, &limit) != 0) _exit(126);
    }
    execv(prog.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

std::string chromium() {
  if (const char* env = std::getenv("DESCENT_CHROMIUM"); env != nullptr) return ::access(env, X_OK) == 0 ? env : "";
  for (const char* p : {"/usr/bin/chromium", "/usr/bin/chromium-browser"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  return {};
}

int wait_for(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1000;
}

ProcessResult run_process(const std::string& program, const std::vector<std::string>& args, const fs::path& out,
                          const fs::path& err, const SpawnOptions& options) {
  const int code = wait_for(spawn(program, args, out, err, options));
  return {code, slurp(out), slurp(err)};
}

}  // namespace descent::testing
