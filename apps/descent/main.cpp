// descent: the command-line tool.
#include <CLI/CLI.hpp>

#include <iostream>

#include "descent/error.hpp"
#include "descent/version.hpp"

int main(int argc, char** argv) {
  CLI::App app{"descent: train deep networks with every algorithm of 'Optimization for Training Deep Models'"};
  app.set_version_flag("--version", std::string("descent ") + descent::version);
  app.require_subcommand(0, 1);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (app.get_subcommands().empty()) {
      std::cout << app.help();
      return 0;
    }
  } catch (const descent::Error& e) {
    std::cerr << "descent: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
