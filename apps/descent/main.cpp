// descent: the command-line tool. Every subcommand lives in its own file; main parses the
// command line, runs it, and turns a descent::Error or a usage error into one line on stderr
// and exit 1 (README, "Exit status").
#include <CLI/CLI.hpp>

#include <iostream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "descent/error.hpp"
#include "descent/version.hpp"

int main(int argc, char** argv) {
  CLI::App app{"descent: train deep networks with the algorithms of 'Optimization for Training Deep Models'"};
  app.set_version_flag("--version", std::string("descent ") + descent::version);
  app.require_subcommand(0, 1);
  descent::cli::TrainArgs train_args;
  descent::cli::add_train(app, train_args);
  descent::cli::ResumeArgs resume_args;
  descent::cli::add_resume(app, resume_args);
  descent::cli::EvalArgs eval_args;
  descent::cli::add_eval(app, eval_args);
  descent::cli::OptimizeArgs optimize_args;
  descent::cli::add_optimize(app, optimize_args);
  descent::cli::ReportArgs report_args;
  descent::cli::add_report(app, report_args);
  descent::cli::DiagnoseArgs diagnose_args;
  descent::cli::add_diagnose(app, diagnose_args);
  descent::cli::CompareArgs compare_args;
  descent::cli::add_compare(app, compare_args);
  descent::cli::ShardArgs shard_args;
  descent::cli::add_shard(app, shard_args);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    // Anything else CLI11 refuses is a usage error: one line, exit 1, with a suggestion.
    std::cerr << "descent: error: " << descent::cli::usage_error(app, std::vector<std::string>(argv + 1, argv + argc), e)
              << "\n";
    return 1;
  }
  try {
    if (app.got_subcommand("train")) return descent::cli::run_train(train_args);
    if (app.got_subcommand("resume")) return descent::cli::run_resume(resume_args);
    if (app.got_subcommand("eval")) return descent::cli::run_eval(eval_args);
    if (app.got_subcommand("optimize")) return descent::cli::run_optimize(optimize_args);
    if (app.got_subcommand("report")) return descent::cli::run_report(report_args);
    if (app.got_subcommand("diagnose")) return descent::cli::run_diagnose(diagnose_args);
    if (app.got_subcommand("compare")) return descent::cli::run_compare(compare_args);
    if (app.got_subcommand("shard")) return descent::cli::run_shard(shard_args);
    std::cout << app.help();  // no command: the help, and a usage error
    std::cerr << "descent: error: no command given; the commands are train, resume, eval, optimize, report, diagnose, compare and shard\n";
    return 1;
  } catch (const descent::Error& e) {
    std::cerr << "descent: error: " << e.what() << "\n";
    return 1;
  } catch (const std::bad_alloc&) {
    std::cerr << "descent: error: out of memory\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "descent: internal error: " << e.what() << "\n";
    return 2;
  }
}
