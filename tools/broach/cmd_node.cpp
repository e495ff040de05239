// `broach node`: runs a node serving the demo services until SIGINT/SIGTERM.
#include <csignal>
#include <cstdio>
#include <iostream>

#include "cli.hpp"

namespace broach::cli {

void add_node_flags(CLI::App& cmd, NodeFlags& f) {
  cmd.add_option("--config", f.config_file, "JSON config file (the seed's format); default: built-in");
  cmd.add_option("--ip", f.ip, "address to bind, IPv4 or IPv6 (params.rpcIp)");
  cmd.add_option("--port", f.port, "UDP port (params.rpcPort; 0 = any free port)");
  cmd.add_option("--seed", f.seeds, "IP:PORT of a live member to join through (repeatable)");
  cmd.add_option("--name", f.name, "instance name");
  cmd.add_option("--log-level", f.log_level, "debug|info|warn|error|off");
  cmd.add_option("--http", f.http, "IP:PORT for /metrics, /members, /routes and the status page (0 = any port)");
  add_keyring_flag(cmd);
  cmd.add_flag("--low-latency", f.low_latency,
               "busy-poll the socket before sleeping (params.broach.transport.busyPollMicros = 200): "
               "lower latency, one CPU kept busy while traffic flows");
}

Config build_config(NodeFlags& f) {
  Config c = f.config_file.empty() ? default_config() : load_config_file(f.config_file);
  if (!f.ip.empty()) f.overrides.ip = f.ip;
  if (f.port >= 0) f.overrides.port = f.port;
  if (!f.seeds.empty()) f.overrides.seeds = f.seeds;
  if (!f.name.empty()) f.overrides.name = f.name;
  if (!f.log_level.empty()) f.overrides.log_level = f.log_level;
  if (!f.http.empty()) f.overrides.http = f.http;
  if (!keyring_flag().empty()) f.overrides.keyring = keyring_flag();
  if (f.low_latency) f.overrides.busy_poll_micros = kLowLatencyBusyPollMicros;
  apply_overrides(c, f.overrides);
  return c;
}

namespace {

int run_node(NodeFlags& f) {
  Config config;
  try {
    config = build_config(f);
  } catch (const Error& e) {
    std::cerr << "broach node: " << e.message() << "\n";
    return kExitConfig;
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // before any thread starts
  try {
    Node node(config);
    provide_demo_services(node);
    if (!node.http_address().empty()) std::cout << "http on " << node.http_address() << std::endl;
    std::cout << "listening on " << node.address().to_string() << std::endl;
    int sig = 0;
    sigwait(&set, &sig);
    node.stop();
  } catch (const Error& e) {
    std::cerr << "broach node: " << e.what() << "\n";
    return e.code() == Errc::kBadConfig ? kExitConfig : kExitRuntime;
  }
  return kExitOk;
}

}  // namespace

void register_node(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("node", "run a node that serves echo, add, sleep and whoami");
  auto flags = std::make_shared<NodeFlags>();
  add_node_flags(*cmd, *flags);
  cmd->callback([flags, &exit_code] { exit_code = run_node(*flags); });
}

void register_keygen(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("keygen", "print a new keyring (one fresh key) for params.broach.security / --keyring");
  cmd->callback([&exit_code] {
    std::cout << generate_keyring();
    exit_code = kExitOk;
  });
}

}  // namespace broach::cli
