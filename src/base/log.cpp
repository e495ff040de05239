#include "base/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace broach::log {

spdlog::logger& get() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    auto l = spdlog::stderr_color_mt("broach");
    l->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ [%n] %v");
    l->set_level(spdlog::level::info);
    return l;
  }();
  return *logger;
}

bool set_level(std::string_view level) {
  spdlog::level::level_enum l;
  if (level == "debug" || level == "trace") l = spdlog::level::debug;
  else if (level == "info") l = spdlog::level::info;
  else if (level == "warn" || level == "warning") l = spdlog::level::warn;
  else if (level == "error") l = spdlog::level::err;
  else if (level == "off") l = spdlog::level::off;
  else return false;
  get().set_level(l);
  return true;
}

}  // namespace broach::log
