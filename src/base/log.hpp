// Internal header. Logging through spdlog, one logger named "broach".
// info: one line per significant event; debug: per-packet detail.
// Thread contract: thread-safe (spdlog's mt sinks).
#pragma once

#include <spdlog/spdlog.h>

#include <string_view>

namespace broach::log {

/// The library's logger (created on first use, stderr, colour when a tty).
spdlog::logger& get();
/// Sets the level from a seed logLevel string (debug|info|warn|error|off);
/// returns false when the name is unknown.
bool set_level(std::string_view level);

}  // namespace broach::log

#define BROACH_LOG_DEBUG(...) ::broach::log::get().debug(__VA_ARGS__)
#define BROACH_LOG_INFO(...) ::broach::log::get().info(__VA_ARGS__)
#define BROACH_LOG_WARN(...) ::broach::log::get().warn(__VA_ARGS__)
#define BROACH_LOG_ERROR(...) ::broach::log::get().error(__VA_ARGS__)
