// The broach command-line tool: subcommand registration and shared helpers.
// Exit codes (docs/cli.md): 0 success; 1 usage error; 2 configuration error;
// 3 the call failed (the error kind is printed); 4 runtime/system error.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "broach/config.hpp"
#include "broach/node.hpp"
#include "broach/security.hpp"

namespace broach::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 1;
inline constexpr int kExitConfig = 2;
inline constexpr int kExitCallFailed = 3;
inline constexpr int kExitRuntime = 4;

/// Flags shared by commands that start a node.
struct NodeFlags {
  std::string config_file;
  ConfigOverrides overrides;
  std::vector<std::string> seeds;
  std::string ip;
  int port = -1;
  std::string name;
  std::string log_level;
  std::string http;
  bool low_latency = false;
};
void add_node_flags(CLI::App& cmd, NodeFlags& f);
/// Loads the file (or the embedded default) and applies the flags. Throws Error{kBadConfig}.
Config build_config(NodeFlags& f);

/// --keyring FILE, shared by every command: the keyring of a sealed cluster
/// (params.broach.security.keyring for the client node a command starts).
std::string& keyring_flag();
void add_keyring_flag(CLI::App& cmd);
/// What to say after a call to `addr` got no answer.
std::string unreachable_hint(const std::string& addr);
/// Calls `service` (an internal one answering msgpack-packed JSON) at `to`;
/// prints what went wrong, if anything, and returns an exit code.
int call_json(Node& node, const Endpoint& to, const std::string& service, Bytes args, nlohmann::json& out);

void register_node(CLI::App& app, int& exit_code);
void register_keygen(CLI::App& app, int& exit_code);
void register_keys(CLI::App& app, int& exit_code);
void register_call(CLI::App& app, int& exit_code);
void register_cluster_views(CLI::App& app, int& exit_code);
void register_bench(CLI::App& app, int& exit_code);
void register_trace(CLI::App& app, int& exit_code);
void register_top(CLI::App& app, int& exit_code);
/// A config for a short-lived client node that talks to `to` (it binds an
/// ephemeral port and does not join the cluster).
Config client_config(const Endpoint& to, double timeout_s);
/// echo, add, sleep, whoami.
void provide_demo_services(Node& node);

}  // namespace broach::cli
