// libFuzzer target: the configuration loader on arbitrary text.
//
// parse_config reads a file a user (or a deployment tool) wrote, so it must
// turn every input into a Config or an Error{kBadConfig}; nothing else may
// escape (not nlohmann's exceptions, not std::out_of_range, no crash). Checks:
//  - the only exception is broach::Error with code kBadConfig, and its
//    message names the source ("fuzz.json: ...");
//  - a Config that parsed passes validate_config again and keeps its source;
//    every warning names the source too.
// Anything else prints what escaped and aborts, so libFuzzer reports it.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>

#include "base/log.hpp"
#include "broach/config.hpp"
#include "broach/error.hpp"

namespace {

constexpr std::string_view kSource = "fuzz.json";

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "fuzz_config: check failed: %s\n", what.c_str());
  std::abort();
}

bool names_source(std::string_view message) {
  return message.size() > kSource.size() && message.substr(0, kSource.size()) == kSource &&
         message[kSource.size()] == ':';
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  broach::log::set_level("off");  // unknown keys log a warning each
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  broach::Config config;
  try {
    config = broach::parse_config(text, kSource);
  } catch (const broach::Error& e) {
    if (e.code() != broach::Errc::kBadConfig) {
      fail(std::string("escaped broach::Error ") + e.what());
    }
    if (!names_source(e.message())) fail("error does not name the source: " + e.message());
    return 0;
  } catch (const std::exception& e) {
    fail(std::string("escaped std::exception: ") + e.what());
  } catch (...) {
    fail("escaped an exception of unknown type");
  }
  if (config.source != kSource) fail("source not kept: " + config.source);
  for (const auto& w : config.warnings) {
    if (!names_source(w)) fail("warning does not name the source: " + w);
  }
  try {
    broach::validate_config(config);
  } catch (const std::exception& e) {
    fail(std::string("a parsed config fails validate_config: ") + e.what());
  }
  return 0;
}
