#include <cstdio>

#include "cli.hpp"

int main(int argc, char** argv) {
  CLI::App app{"broach: run, inspect and call a BroachRpc cluster"};
  app.require_subcommand(1);
  int exit_code = broach::cli::kExitOk;
  broach::cli::register_node(app, exit_code);
  broach::cli::register_keygen(app, exit_code);
  broach::cli::register_keys(app, exit_code);
  broach::cli::register_call(app, exit_code);
  broach::cli::register_cluster_views(app, exit_code);
  broach::cli::register_bench(app, exit_code);
  broach::cli::register_trace(app, exit_code);
  broach::cli::register_top(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : broach::cli::kExitUsage;
  }
  return exit_code;
}
