// Unit tests of the config loader: the seed's files, defaults, the
// params.broach extensions, every error case and the command-line overrides.
#include "broach/config.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "broach/error.hpp"

namespace broach {
namespace {

std::string fixture(std::string_view name) {
  return std::string(BROACH_FIXTURES_DIR) + "/" + std::string(name);
}

/// The message of the kBadConfig error that parsing `json` throws ("" if none).
std::string parse_error(std::string_view json, std::string_view source = "config.json") {
  try {
    parse_config(json, source);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kBadConfig) << e.what();
    return e.message();
  }
  ADD_FAILURE() << "no error for: " << json;
  return "";
}

/// `json` with `body` placed inside "params".
std::string with_params(std::string_view body) {
  return "{\"params\": {" + std::string(body) + "}}";
}

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)

// --- seed files --------------------------------------------------------------

void expect_seed_example(const Config& c) {
  EXPECT_EQ(c.name, "BroachRpc");
  EXPECT_EQ(c.version, "1.0.0");
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.rpc_port, 18080);
  EXPECT_EQ(c.rpc_ip, "127.0.0.1");
  EXPECT_EQ(c.cluster_address, std::vector<std::string>{"127.0.0.1:18080"});
  EXPECT_EQ(c.rpc_timeout, 6);
  EXPECT_EQ(c.udp_timeout, 3);
  EXPECT_EQ(c.thread_pool.core, 3);
  EXPECT_EQ(c.thread_pool.thread_max, 15);
  EXPECT_EQ(c.thread_pool.keep_alive_time, 9);
  EXPECT_EQ(c.thread_pool.queue_max, 1000);
  EXPECT_FALSE(c.thread_pool.is_exc_info);
  EXPECT_EQ(c.thread_pool.create_thread_threshold, 2);
  EXPECT_TRUE(c.warnings.empty());
}

TEST(ConfigSeed, ReadmeExampleLoadsUnchanged) {
  Config c = load_config_file(fixture("seed_application1.json"));
  expect_seed_example(c);
  EXPECT_EQ(c.source, fixture("seed_application1.json"));
}

TEST(ConfigSeed, ChineseDescriptionExampleLoadsUnchanged) {
  expect_seed_example(load_config_file(fixture("seed_application1_zh.json")));
}

TEST(ConfigSeed, CallerStyleFileLoads) {
  Config c = load_config_file(fixture("seed_application2.json"));
  EXPECT_EQ(c.name, "BroachRpcCaller");
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.rpc_port, 18081);
  EXPECT_TRUE(c.thread_pool.is_exc_info);
}

// --- defaults ----------------------------------------------------------------

void expect_header_defaults(const Config& c) {
  const Config d;
  EXPECT_EQ(c.name, d.name);
  EXPECT_EQ(c.version, d.version);
  EXPECT_EQ(c.log_level, d.log_level);
  EXPECT_EQ(c.rpc_ip, d.rpc_ip);
  EXPECT_EQ(c.rpc_port, d.rpc_port);
  EXPECT_EQ(c.cluster_address, d.cluster_address);
  EXPECT_EQ(c.rpc_timeout, d.rpc_timeout);
  EXPECT_EQ(c.udp_timeout, d.udp_timeout);
  EXPECT_EQ(c.thread_pool.core, d.thread_pool.core);
  EXPECT_EQ(c.thread_pool.thread_max, d.thread_pool.thread_max);
  EXPECT_EQ(c.thread_pool.keep_alive_time, d.thread_pool.keep_alive_time);
  EXPECT_EQ(c.thread_pool.queue_max, d.thread_pool.queue_max);
  EXPECT_EQ(c.thread_pool.is_exc_info, d.thread_pool.is_exc_info);
  EXPECT_EQ(c.thread_pool.create_thread_threshold, d.thread_pool.create_thread_threshold);
  const TransportConfig& t = c.transport;
  const TransportConfig& u = d.transport;
  EXPECT_EQ(t.max_datagram_bytes, u.max_datagram_bytes);
  EXPECT_EQ(t.max_message_bytes, u.max_message_bytes);
  EXPECT_EQ(t.send_window, u.send_window);
  EXPECT_EQ(t.rto_initial_ms, u.rto_initial_ms);
  EXPECT_EQ(t.rto_min_ms, u.rto_min_ms);
  EXPECT_EQ(t.rto_max_ms, u.rto_max_ms);
  EXPECT_EQ(t.dedup_max_entries, u.dedup_max_entries);
  EXPECT_EQ(t.dedup_max_bytes, u.dedup_max_bytes);
  EXPECT_EQ(t.reassembly_max_bytes_per_peer, u.reassembly_max_bytes_per_peer);
  EXPECT_EQ(t.reassembly_max_bytes_total, u.reassembly_max_bytes_total);
  EXPECT_EQ(t.socket_buffer_bytes, u.socket_buffer_bytes);
  const MembershipConfig& m = c.membership;
  const MembershipConfig& n = d.membership;
  EXPECT_EQ(m.probe_interval_ms, n.probe_interval_ms);
  EXPECT_EQ(m.probe_timeout_ms, n.probe_timeout_ms);
  EXPECT_EQ(m.indirect_checks, n.indirect_checks);
  EXPECT_EQ(m.suspicion_mult, n.suspicion_mult);
  EXPECT_EQ(m.suspicion_max_mult, n.suspicion_max_mult);
  EXPECT_EQ(m.gossip_interval_ms, n.gossip_interval_ms);
  EXPECT_EQ(m.gossip_nodes, n.gossip_nodes);
  EXPECT_EQ(m.retransmit_mult, n.retransmit_mult);
  EXPECT_EQ(m.push_pull_interval_ms, n.push_pull_interval_ms);
  EXPECT_EQ(m.reconnect_interval_ms, n.reconnect_interval_ms);
  EXPECT_EQ(m.dead_reclaim_ms, n.dead_reclaim_ms);
  EXPECT_EQ(m.weight, n.weight);
  EXPECT_EQ(c.load_balance.policy, d.load_balance.policy);
  EXPECT_EQ(c.load_balance.services, d.load_balance.services);
  EXPECT_EQ(c.load_balance.local_in_process, d.load_balance.local_in_process);
  EXPECT_EQ(c.breaker.consecutive_failures, d.breaker.consecutive_failures);
  EXPECT_EQ(c.breaker.error_rate, d.breaker.error_rate);
  EXPECT_EQ(c.breaker.min_calls, d.breaker.min_calls);
  EXPECT_EQ(c.breaker.window_ms, d.breaker.window_ms);
  EXPECT_EQ(c.breaker.open_ms, d.breaker.open_ms);
  EXPECT_EQ(c.breaker.open_max_ms, d.breaker.open_max_ms);
  EXPECT_EQ(c.retry.max_retries, d.retry.max_retries);
  EXPECT_EQ(c.retry.budget_ratio, d.retry.budget_ratio);
  EXPECT_EQ(c.retry.idempotent, d.retry.idempotent);
  EXPECT_EQ(c.retry.hedge_delay_ms, d.retry.hedge_delay_ms);
  EXPECT_TRUE(c.warnings.empty());
}

TEST(ConfigErrors, NumberBeyondDoubleRangeIsABadConfig) {
  for (const char* text : {"3e686", R"({"params": {"rpcTimeOut": 1e400}})"}) {
    try {
      parse_config(text, "big.json");
      FAIL() << text;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::kBadConfig);
      EXPECT_NE(std::string(e.what()).find("big.json: invalid JSON"), std::string::npos) << e.what();
    }
  }
}

TEST(ConfigBroach, BalancingBreakerAndRetryKeys) {
  Config c = parse_config(R"({"params": {"broach": {
      "loadBalance": {"policy": "p2c_ewma", "services": {"work00": "random", "cart": "consistent_hash"},
                      "localInProcess": "False"},
      "breaker": {"consecutiveFailures": 3, "errorRate": 0.25, "openMs": 500},
      "retry": {"maxRetries": 1, "idempotent": ["work00"], "hedgeDelayMs": 20}}}})",
                          "lb.json");
  EXPECT_EQ(c.load_balance.policy, "p2c_ewma");
  EXPECT_EQ(c.load_balance.services.at("cart"), "consistent_hash");
  EXPECT_FALSE(c.load_balance.local_in_process);
  EXPECT_EQ(c.breaker.consecutive_failures, 3);
  EXPECT_EQ(c.breaker.error_rate, 0.25);
  EXPECT_EQ(c.retry.idempotent, std::vector<std::string>{"work00"});
  EXPECT_EQ(c.retry.hedge_delay_ms, 20);
  try {
    parse_config(R"({"params": {"broach": {"loadBalance": {"services": {"a": 3}}}}})", "lb.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("lb.json: params.broach.loadBalance.services.a"),
              std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_config(R"({"params": {"broach": {"breaker": {"errorRate": 1.5}}}})", "lb.json"),
               Error);
  EXPECT_THROW(parse_config(R"({"params": {"broach": {"retry": {"maxRetries": 99}}}})", "lb.json"),
               Error);
}

TEST(ConfigBroach, MaxConcurrencyIsAutoOrANumberPerService) {
  Config c = parse_config(R"({"params": {"broach": {"maxConcurrency": {"search": "auto", "*": 64}}}})", "mc.json");
  ASSERT_EQ(c.max_concurrency.size(), 2u);
  EXPECT_TRUE(c.max_concurrency.at("search").adaptive);
  EXPECT_FALSE(c.max_concurrency.at("*").adaptive);
  EXPECT_EQ(c.max_concurrency.at("*").limit, 64);
  EXPECT_TRUE(default_config().max_concurrency.empty());  // off by default: the pool's semantics
  for (const char* bad : {R"("fast")", "0", "1.5", "-3", "100001", "true", "[1]"}) {
    const std::string json = std::string(R"({"params": {"broach": {"maxConcurrency": {"search": )") + bad + "}}}}";
    EXPECT_CONTAINS(parse_error(json, "mc.json"), "mc.json: params.broach.maxConcurrency.search: must be \"auto\"");
  }
  EXPECT_CONTAINS(parse_error(R"({"params": {"broach": {"maxConcurrency": ["auto"]}}})", "mc.json"),
                  "mc.json: params.broach.maxConcurrency: must be an object");
  EXPECT_CONTAINS(parse_error(R"({"params": {"broach": {"maxConcurrency": {"": 5}}}})", "mc.json"),
                  "must not be empty");
  Config v = default_config();
  v.source = "v.json";
  v.max_concurrency["x"] = ConcurrencyLimitConfig{false, 0};
  try {
    validate_config(v);
    ADD_FAILURE() << "a fixed limit of 0 passed validation";
  } catch (const Error& e) {
    EXPECT_CONTAINS(e.message(), "params.broach.maxConcurrency.x");
  }
}

TEST(ConfigBroach, MembershipKeysMapAndAreChecked) {
  Config c = parse_config(
      R"({"params": {"broach": {"membership": {"probeIntervalMs": 1000, "gossipNodes": 5,
          "weight": 7}}}})",
      "m.json");
  EXPECT_EQ(c.membership.probe_interval_ms, 1000);
  EXPECT_EQ(c.membership.gossip_nodes, 5);
  EXPECT_EQ(c.membership.weight, 7);
  try {
    parse_config(R"({"params": {"broach": {"membership": {"probeTimeoutMs": 900,
        "probeIntervalMs": 500}}}})", "m.json");
    FAIL() << "timeout >= interval must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("m.json: params.broach.membership.probeTimeoutMs"),
              std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_config(R"({"params": {"broach": {"membership": {"gossipNodes": 0}}}})", "m.json"),
               Error);
}

TEST(ConfigBroach, TraceKeysMapAndAreChecked) {
  Config c = parse_config(R"({"params": {"broach": {"trace": {"sampleRate": 0.01, "keep": 50}}}})", "t.json");
  EXPECT_DOUBLE_EQ(c.trace.sample_rate, 0.01);
  EXPECT_EQ(c.trace.keep, 50);
  EXPECT_EQ(default_config().trace.sample_rate, 0) << "off by default";
  const Config typo = parse_config(R"({"params": {"broach": {"trace": {"sampleRatio": 0.1}}}})", "t.json");
  ASSERT_EQ(typo.warnings.size(), 1u);
  EXPECT_NE(typo.warnings[0].find("t.json: unknown key params.broach.trace.sampleRatio"), std::string::npos)
      << typo.warnings[0];
  for (const char* bad : {R"({"params": {"broach": {"trace": {"sampleRate": 1.5}}}})",
                          R"({"params": {"broach": {"trace": {"keep": 0}}}})"}) {
    try {
      parse_config(bad, "t.json");
      FAIL() << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("t.json: params.broach.trace."), std::string::npos) << e.what();
    }
  }
}

TEST(ConfigDefaults, EmbeddedDefaultMatchesHeaderDefaults) {
  Config c = default_config();
  expect_header_defaults(c);
  EXPECT_EQ(c.source, "<default>");
  EXPECT_TRUE(c.cluster_address.empty());  // start alone
  EXPECT_NO_THROW(validate_config(Config{}));
}

TEST(ConfigDefaults, AbsentKeysKeepDefaults) {
  expect_header_defaults(parse_config("{}", "empty.json"));
  expect_header_defaults(parse_config(R"({"params": {"threadPool": {}, "broach": {}}})", "x"));
  expect_header_defaults(parse_config(R"({"params": {"broach": {"transport": {}}}})", "x"));
}

TEST(ConfigDefaults, PartialObjectsMergeWithDefaults) {
  Config c = parse_config(with_params(R"("rpcPort": 19000, "threadPool": {"core": 5})"), "x");
  EXPECT_EQ(c.rpc_port, 19000);
  EXPECT_EQ(c.thread_pool.core, 5);
  EXPECT_EQ(c.thread_pool.thread_max, 15);
  EXPECT_EQ(c.rpc_ip, "127.0.0.1");
}

// --- params.broach -------------------------------------------------------------

TEST(ConfigBroach, TransportKeysMapToTransportConfig) {
  Config c = load_config_file(fixture("broach_transport.json"));
  EXPECT_TRUE(c.warnings.empty());
  EXPECT_EQ(c.log_level, "warn");  // "WARNING", any case
  EXPECT_EQ(c.rpc_port, 0);        // any free port
  EXPECT_EQ(c.rpc_ip, "10.0.0.7");
  EXPECT_EQ(c.cluster_address.size(), 2u);
  EXPECT_DOUBLE_EQ(c.rpc_timeout, 2.5);
  EXPECT_DOUBLE_EQ(c.udp_timeout, 0.75);
  EXPECT_EQ(c.thread_pool.keep_alive_time, 0);
  EXPECT_TRUE(c.thread_pool.is_exc_info);
  const TransportConfig& t = c.transport;
  EXPECT_EQ(t.max_datagram_bytes, 9000);
  EXPECT_EQ(t.max_message_bytes, 1048576u);
  EXPECT_EQ(t.send_window, 32);
  EXPECT_EQ(t.rto_initial_ms, 50);
  EXPECT_EQ(t.rto_min_ms, 0.5);
  EXPECT_EQ(t.rto_max_ms, 2000);
  EXPECT_EQ(t.dedup_max_entries, 5000);
  EXPECT_EQ(t.dedup_max_bytes, 8388608u);
  EXPECT_EQ(t.reassembly_max_bytes_per_peer, 2097152u);
  EXPECT_EQ(t.reassembly_max_bytes_total, 16777216u);
  EXPECT_EQ(t.socket_buffer_bytes, 1048576);
}

TEST(ConfigBroach, LargeByteCountsBeyondIntLoad) {
  Config c = parse_config(with_params(R"("broach": {"transport": {
      "maxMessageBytes": 4294967296, "reassemblyMaxBytesPerPeer": 4294967296,
      "reassemblyMaxBytesTotal": 8589934592}})"),
                          "x");
  EXPECT_EQ(c.transport.max_message_bytes, 4294967296u);
  EXPECT_EQ(c.transport.reassembly_max_bytes_total, 8589934592u);
}

// --- isExcInfo ----------------------------------------------------------------

TEST(ConfigFlags, IsExcInfoAcceptsBoolAndSeedStrings) {
  struct Case {
    const char* json;
    bool expected;
  };
  for (Case k : {Case{"true", true}, Case{"false", false}, Case{"\"True\"", true},
                 Case{"\"False\"", false}, Case{"\"true\"", true}, Case{"\"false\"", false}}) {
    Config c = parse_config(
        with_params(std::string(R"("threadPool": {"isExcInfo": )") + k.json + "}"), "x");
    EXPECT_EQ(c.thread_pool.is_exc_info, k.expected) << k.json;
  }
}

TEST(ConfigFlags, IsExcInfoRejectsOtherValues) {
  for (const char* bad : {"\"yes\"", "\"TRUE\"", "1", "0", "null", "\"\""}) {
    std::string msg =
        parse_error(with_params(std::string(R"("threadPool": {"isExcInfo": )") + bad + "}"));
    EXPECT_CONTAINS(msg, "config.json: params.threadPool.isExcInfo: must be true, false");
  }
}

// --- errors: file and JSON -----------------------------------------------------

TEST(ConfigErrors, MissingFileNamesPathAndReason) {
  try {
    load_config_file("/nonexistent/broach.json");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kBadConfig);
    EXPECT_EQ(e.message(), "/nonexistent/broach.json: cannot open: No such file or directory");
  }
}

TEST(ConfigErrors, DirectoryIsUnreadable) {
  try {
    load_config_file(BROACH_FIXTURES_DIR);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kBadConfig);
    EXPECT_CONTAINS(e.message(), BROACH_FIXTURES_DIR);
    EXPECT_CONTAINS(e.message(), "Is a directory");
  }
}

TEST(ConfigErrors, InvalidJsonGivesLineAndColumn) {
  std::string path = fixture("invalid_syntax.json");
  try {
    load_config_file(path);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kBadConfig);
    EXPECT_CONTAINS(e.message(), path + ": invalid JSON at line 6, column ");
    EXPECT_CONTAINS(e.message(), "syntax error");
    EXPECT_EQ(e.message().find("[json.exception"), std::string::npos) << e.message();
  }
}

TEST(ConfigErrors, InvalidJsonColumnCountsFromLineStart) {
  EXPECT_CONTAINS(parse_error("{\n  \"name\": x\n}"),
                  "config.json: invalid JSON at line 2, column 11");
  EXPECT_CONTAINS(parse_error("{\"name\": tru}"), "line 1, column 13");
  EXPECT_CONTAINS(parse_error(""), "config.json: invalid JSON at line 1, column 1");
  EXPECT_CONTAINS(parse_error("{\n"), "invalid JSON at line 2, column 1");
}

TEST(ConfigErrors, NonObjectsAreRejected) {
  EXPECT_EQ(parse_error("[1, 2]"), "config.json: top level: must be an object, got an array");
  EXPECT_EQ(parse_error("42"), "config.json: top level: must be an object, got 42");
  EXPECT_EQ(parse_error(R"({"params": 5})"), "config.json: params: must be an object, got 5");
  EXPECT_EQ(parse_error(with_params(R"("threadPool": [])")),
            "config.json: params.threadPool: must be an object, got an array");
  EXPECT_EQ(parse_error(with_params(R"("broach": "x")")),
            "config.json: params.broach: must be an object, got \"x\"");
  EXPECT_EQ(parse_error(with_params(R"("broach": {"transport": null})")),
            "config.json: params.broach.transport: must be an object, got null");
}

// --- errors: values --------------------------------------------------------------

TEST(ConfigErrors, WrongTypesNameTheKey) {
  EXPECT_EQ(parse_error(R"({"name": 5})"), "config.json: name: must be a string, got 5");
  EXPECT_EQ(parse_error(R"({"logLevel": true})"),
            "config.json: logLevel: must be a string, got true");
  EXPECT_EQ(parse_error(with_params(R"("rpcPort": "18080")")),
            "config.json: params.rpcPort: must be an integer in 0..65535, got \"18080\"");
  EXPECT_EQ(parse_error(with_params(R"("rpcIp": 127)")),
            "config.json: params.rpcIp: must be a string, got 127");
  EXPECT_EQ(parse_error(with_params(R"("rpcTimeOut": "6")")),
            "config.json: params.rpcTimeOut: must be a number > 0 and <= 86400, got \"6\"");
  EXPECT_EQ(parse_error(with_params(R"("threadPool": {"core": true})")),
            "config.json: params.threadPool.core: must be an integer in 1..10000, got true");
}

TEST(ConfigErrors, IntegersRejectFractions) {
  EXPECT_EQ(parse_error(with_params(R"("rpcPort": 1.5)")),
            "config.json: params.rpcPort: must be an integer in 0..65535, got 1.5");
  EXPECT_CONTAINS(parse_error(with_params(R"("threadPool": {"queueMax": 10.0})")),
                  "params.threadPool.queueMax: must be an integer");
}

TEST(ConfigErrors, PortOutOfRange) {
  EXPECT_EQ(parse_error(with_params(R"("rpcPort": 70000)")),
            "config.json: params.rpcPort: must be an integer in 0..65535, got 70000");
  EXPECT_CONTAINS(parse_error(with_params(R"("rpcPort": -1)")), "params.rpcPort");
  EXPECT_CONTAINS(parse_error(with_params(R"("rpcPort": 99999999999999999999)")),
                  "params.rpcPort: must be an integer in 0..65535");
  EXPECT_EQ(parse_config(with_params(R"("rpcPort": 65535)"), "x").rpc_port, 65535);
}

TEST(ConfigErrors, TimeoutsMustBePositive) {
  EXPECT_EQ(parse_error(with_params(R"("rpcTimeOut": 0)")),
            "config.json: params.rpcTimeOut: must be a number > 0 and <= 86400, got 0");
  EXPECT_CONTAINS(parse_error(with_params(R"("udpTimeOut": -3)")),
                  "config.json: params.udpTimeOut: must be a number > 0");
  EXPECT_CONTAINS(parse_error(with_params(R"("udpTimeOut": 1e9)")), "params.udpTimeOut");
  EXPECT_EQ(parse_error(with_params(R"("threadPool": {"keepAliveTime": -1})")),
            "config.json: params.threadPool.keepAliveTime: must be a number in 0..86400, got -1");
}

TEST(ConfigErrors, LogLevelIsCaseInsensitiveButMustBeKnown) {
  for (const char* level : {"debug", "DEBUG", "Info", "warn", "Warning", "error", "OFF"}) {
    EXPECT_NO_THROW(parse_config(std::string(R"({"logLevel": ")") + level + "\"}", "x")) << level;
  }
  EXPECT_EQ(parse_config(R"({"logLevel": "DEBUG"})", "x").log_level, "debug");
  EXPECT_EQ(parse_error(R"({"logLevel": "verbose"})"),
            "config.json: logLevel: must be one of debug|info|warn|warning|error|off, got "
            "\"verbose\"");
}

TEST(ConfigErrors, ClusterAddressMustBeArrayOfIpPort) {
  EXPECT_EQ(parse_error(with_params(R"("clusterAddress": "127.0.0.1:18080")")),
            "config.json: params.clusterAddress: must be an array of strings, got "
            "\"127.0.0.1:18080\"");
  EXPECT_EQ(parse_error(with_params(R"("clusterAddress": ["127.0.0.1:1", 18080])")),
            "config.json: params.clusterAddress[1]: must be a string, got 18080");
  EXPECT_EQ(parse_error(with_params(R"("clusterAddress": ["127.0.0.1:1", "localhost:18080"])")),
            "config.json: params.clusterAddress[1]: must be \"IPv4:port\" or \"[IPv6]:port\" with port "
            "1..65535, got \"localhost:18080\" (not an IPv4 address: localhost)");
  EXPECT_CONTAINS(parse_error(with_params(R"("clusterAddress": ["127.0.0.1:0"])")),
                  "params.clusterAddress[0]");
  EXPECT_CONTAINS(parse_error(with_params(R"("clusterAddress": ["127.0.0.1"])")),
                  "params.clusterAddress[0]");
}

TEST(ConfigErrors, RpcIpMustBeAnIpv4OrIpv6Address) {
  for (const char* ip : {"localhost", "127.0.0", "256.0.0.1", "1.2.3.4 ", "", "[::1]", "::1%lo", "::g",
                         "01.2.3.4", "1:2:3:4:5:6:7:8:9"}) {
    std::string msg = parse_error(with_params(std::string(R"("rpcIp": ")") + ip + "\""));
    EXPECT_CONTAINS(msg, "config.json: params.rpcIp: must be an IPv4 address (a.b.c.d) or an IPv6 address (no "
                         "brackets, no zone), got \"");
  }
  EXPECT_EQ(parse_config(with_params(R"("rpcIp": "0.0.0.0")"), "x").rpc_ip, "0.0.0.0");
  EXPECT_EQ(parse_config(with_params(R"("rpcIp": "::1")"), "x").rpc_ip, "::1");
  EXPECT_EQ(parse_config(with_params(R"("rpcIp": "fd00::5")"), "x").rpc_ip, "fd00::5");
}

TEST(ConfigErrors, ThreadPoolShape) {
  EXPECT_EQ(parse_error(with_params(R"("threadPool": {"core": 20})")),
            "config.json: params.threadPool.core: must be <= threadMax (15), got 20");
  EXPECT_EQ(parse_error(with_params(R"("threadPool": {"core": 0})")),
            "config.json: params.threadPool.core: must be an integer in 1..10000, got 0");
  EXPECT_EQ(
      parse_error(with_params(R"("threadPool": {"queueMax": 0, "createThreadThreshold": 0})")),
      "config.json: params.threadPool.queueMax: must be an integer in 1..10000000, got 0");
  EXPECT_EQ(
      parse_error(with_params(R"("threadPool": {"queueMax": 5, "createThreadThreshold": 6})")),
      "config.json: params.threadPool.createThreadThreshold: must be <= queueMax (5), got 6");
  EXPECT_CONTAINS(parse_error(with_params(R"("threadPool": {"createThreadThreshold": -1})")),
                  "params.threadPool.createThreadThreshold: must be an integer in 0..");
}

TEST(ConfigErrors, TransportBounds) {
  auto transport = [](std::string_view body) {
    return parse_error(with_params("\"broach\": {\"transport\": {" + std::string(body) + "}}"));
  };
  EXPECT_EQ(transport(R"("maxDatagramBytes": 511)"),
            "config.json: params.broach.transport.maxDatagramBytes: must be an integer in "
            "512..65000, got 511");
  EXPECT_CONTAINS(transport(R"("maxDatagramBytes": 65001)"), "transport.maxDatagramBytes");
  EXPECT_CONTAINS(transport(R"("sendWindow": 0)"),
                  "params.broach.transport.sendWindow: must be an integer in 1..4096, got 0");
  EXPECT_CONTAINS(transport(R"("sendWindow": 4097)"), "transport.sendWindow");
  EXPECT_CONTAINS(transport(R"("maxMessageBytes": -1)"), "transport.maxMessageBytes");
  EXPECT_CONTAINS(transport(R"("maxMessageBytes": 100)"), "transport.maxMessageBytes");
  EXPECT_CONTAINS(transport(R"("rtoMinMs": 0)"), "transport.rtoMinMs: must be a number > 0");
  EXPECT_EQ(transport(R"("rtoMinMs": 30)"),
            "config.json: params.broach.transport.rtoInitialMs: must satisfy rtoMinMs <= "
            "rtoInitialMs <= rtoMaxMs, got 30 <= 20 <= 1000");
  EXPECT_CONTAINS(transport(R"("rtoInitialMs": 2000)"), "rtoMinMs <= rtoInitialMs <= rtoMaxMs");
  EXPECT_CONTAINS(transport(R"("dedupMaxEntries": 0)"), "transport.dedupMaxEntries");
  EXPECT_CONTAINS(transport(R"("dedupMaxBytes": 10)"), "transport.dedupMaxBytes");
  EXPECT_CONTAINS(transport(R"("reassemblyMaxBytesPerPeer": 1048576)"),
                  "transport.reassemblyMaxBytesPerPeer: must be >= maxMessageBytes (67108864)");
  EXPECT_CONTAINS(transport(R"("reassemblyMaxBytesTotal": 67108864)"),
                  "transport.reassemblyMaxBytesTotal: must be >= reassemblyMaxBytesPerPeer");
  EXPECT_CONTAINS(transport(R"("socketBufferBytes": 100)"), "transport.socketBufferBytes");
  EXPECT_CONTAINS(transport(R"("rtoMaxMs": "1s")"), "transport.rtoMaxMs: must be a number");
  EXPECT_CONTAINS(transport(R"("busyPollMicros": -1)"), "transport.busyPollMicros");
  EXPECT_CONTAINS(transport(R"("busyPollMicros": 2000000)"), "transport.busyPollMicros");
}

TEST(ConfigErrors, NameMustBeNonEmpty) {
  EXPECT_EQ(parse_error(R"({"name": ""})"),
            "config.json: name: must be a string of 1..255 bytes, got \"\"");
  EXPECT_NO_THROW(parse_config(R"({"version": ""})", "x"));
}

TEST(ConfigErrors, ValidateConfigNamesSourceAndKey) {
  Config c;
  c.source = "built.json";
  c.thread_pool.thread_max = 2;
  try {
    validate_config(c);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.message(), "built.json: params.threadPool.core: must be <= threadMax (2), got 3");
  }
  c = Config{};
  c.transport.max_message_bytes = 1ull << 63;  // beyond any double-exact range, still reported
  EXPECT_THROW(validate_config(c), Error);
}

// --- unknown keys ------------------------------------------------------------------

TEST(ConfigUnknownKeys, AreWarningsNamingFileAndPath) {
  std::string path = fixture("unknown_keys.json");
  Config c = load_config_file(path);
  EXPECT_EQ(c.name, "typos");
  EXPECT_EQ(c.thread_pool.core, 2);  // known keys beside unknown ones still load
  std::vector<std::string> expected = {
      path + ": unknown key colour (ignored)",
      path + ": unknown key params.rpcPrt (ignored)",
      path + ": unknown key params.threadPool.maxThreads (ignored)",
      path + ": unknown key params.broach.transport.sendWindw (ignored)",
      path + ": unknown key params.broach.security.key (ignored)",
  };
  EXPECT_EQ(c.warnings, expected);
}

TEST(ConfigUnknownKeys, ExampleFromTheBrief) {
  Config c = parse_config(with_params(R"("rpcPrt": 1)"), "config.json");
  ASSERT_EQ(c.warnings.size(), 1u);
  EXPECT_EQ(c.warnings[0], "config.json: unknown key params.rpcPrt (ignored)");
}

// --- overrides ---------------------------------------------------------------------

TEST(ConfigOverrides, ReplaceFileValues) {
  Config c = load_config_file(fixture("seed_application1.json"));
  ConfigOverrides o;
  o.ip = "10.1.2.3";
  o.port = 0;
  o.seeds = std::vector<std::string>{"10.1.2.4:18080", "10.1.2.5:18080"};
  o.name = "node-b";
  o.version = "2.0";
  o.log_level = "Error";
  apply_overrides(c, o);
  EXPECT_EQ(c.rpc_ip, "10.1.2.3");
  EXPECT_EQ(c.rpc_port, 0);
  EXPECT_EQ(c.cluster_address, (std::vector<std::string>{"10.1.2.4:18080", "10.1.2.5:18080"}));
  EXPECT_EQ(c.name, "node-b");
  EXPECT_EQ(c.version, "2.0");
  EXPECT_EQ(c.log_level, "error");
  EXPECT_EQ(c.thread_pool.core, 3);  // untouched
}

TEST(ConfigOverrides, EmptyOverridesChangeNothing) {
  Config c = default_config();
  apply_overrides(c, ConfigOverrides{});
  expect_header_defaults(c);
}

TEST(ConfigOverrides, BadValuesNameTheFlagAndKey) {
  auto error_of = [](const ConfigOverrides& o) {
    Config c = default_config();
    try {
      apply_overrides(c, o);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::kBadConfig);
      EXPECT_EQ(c.rpc_port, 18080);  // a rejected override leaves the config alone
      return e.message();
    }
    ADD_FAILURE() << "no error";
    return std::string();
  };
  ConfigOverrides port;
  port.port = 70000;
  EXPECT_EQ(error_of(port), "--port (params.rpcPort): must be an integer in 0..65535, got 70000");
  ConfigOverrides ip;
  ip.ip = "1.2.3";
  EXPECT_EQ(error_of(ip), "--ip (params.rpcIp): must be an IPv4 address (a.b.c.d) or an IPv6 address (no brackets, "
                         "no zone), got \"1.2.3\"");
  ConfigOverrides seed;
  seed.seeds = std::vector<std::string>{"1.2.3.4:80", "1.2.3.4"};
  EXPECT_EQ(error_of(seed),
            "--seed (params.clusterAddress)[1]: must be \"IPv4:port\" or \"[IPv6]:port\" with port "
            "1..65535, got \"1.2.3.4\" (missing ':port')");
  ConfigOverrides level;
  level.log_level = "loud";
  EXPECT_CONTAINS(error_of(level), "--log-level (logLevel): must be one of");
  ConfigOverrides name;
  name.name = "";
  EXPECT_CONTAINS(error_of(name), "--name (name): must be a string of 1..255 bytes");
}

// --- addresses: the config uses Endpoint::parse / parse_ip (endpoint_parse_test) ----

TEST(ConfigAddresses, ClusterAddressFollowsEndpointRules) {
  struct Case {
    const char* text;
    bool ok;
  };
  const Case cases[] = {
      {"1.2.3.4:80", true},
      {"127.0.0.1:18080", true},
      {"0.0.0.0:1", true},
      {"255.255.255.255:65535", true},
      {"1.2.3.4", false},          // missing port
      {"1.2.3.4:", false},         // empty port
      {"1.2.3.4:0", false},        // port 0: a seed needs a real port
      {"1.2.3.4:65536", false},    // port too large
      {"1.2.3.4:123456", false},   // too many digits
      {"1.2.3.4:80x", false},      // extra chars
      {"1.2.3.4:80 ", false},      // trailing space
      {" 1.2.3.4:80", false},      // leading space
      {"1.2.3.4:+80", false},      // sign
      {"1.2.3.4:080", false},      // leading zero
      {"1.2.3.256:80", false},     // octet > 255
      {"1.2.3:80", false},         // three octets
      {"1.2.3.4.5:80", false},     // five octets
      {"1..3.4:80", false},        // empty octet
      {"01.2.3.4:80", false},      // leading zero octet
      {"localhost:80", false},     // names are not resolved
      {"[::1]:80", true},          // IPv6
      {"[fd00::1]:18080", true},
      {"::1:80", false},           // IPv6 without brackets
      {"[::1]:0", false},          // port 0
      {"[fe80::1%eth0]:80", false},  // zone
      {"1.2.3.4:80:81", false},    // two ports
      {"", false},
      {":80", false},
  };
  for (const Case& k : cases) {
    const std::string json =
        with_params(std::string(R"("clusterAddress": [")") + k.text + "\"]");
    if (k.ok) {
      EXPECT_EQ(parse_config(json, "x").cluster_address, std::vector<std::string>{k.text});
    } else {
      EXPECT_CONTAINS(parse_error(json), std::string("config.json: params.clusterAddress[0]: must be "
                                                     "\"IPv4:port\" or \"[IPv6]:port\" with port 1..65535, got \"") +
                                             k.text + "\" (");
    }
  }
}

TEST(ConfigAddresses, HttpIsABindAddressAllowingPortZero) {
  auto with_http = [](std::string_view http) {
    return with_params(R"("broach": {"http": ")" + std::string(http) + "\"}");
  };
  EXPECT_EQ(parse_config(with_http("127.0.0.1:0"), "x").http, "127.0.0.1:0");
  EXPECT_EQ(parse_config(with_http("0.0.0.0:8080"), "x").http, "0.0.0.0:8080");
  EXPECT_EQ(parse_config(with_http("[::1]:8080"), "x").http, "[::1]:8080");
  EXPECT_EQ(parse_config(with_params(R"("broach": {"http": ""})"), "x").http, "");  // off
  // stoi used to accept these: a sign, a leading space, "-0", a leading zero.
  for (const char* bad : {"127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:+80",
                          "127.0.0.1: 80", "127.0.0.1:-0", "127.0.0.1:080", "localhost:80",
                          "::1:80", "01.0.0.1:80", "1.2.3.4:80x"}) {
    EXPECT_CONTAINS(parse_error(with_http(bad)),
                    std::string("config.json: params.broach.http: must be \"IPv4:port\" or \"[IPv6]:port\" (port 0 "
                                "= any free port), got \"") +
                        bad + "\" (");
  }
  ConfigOverrides o;
  o.http = "1.2.3.4";
  Config c = default_config();
  try {
    apply_overrides(c, o);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_CONTAINS(e.message(), "params.broach.http: must be \"IPv4:port\" or \"[IPv6]:port\"");
  }
}

TEST(ConfigAddresses, RpcIpFollowsEndpointParseHost) {
  for (const char* ip : {"0.0.0.0", "127.0.0.1", "255.255.255.255", "10.0.0.1", "fe80::1", "::", "::1"}) {
    EXPECT_EQ(parse_config(with_params(std::string(R"("rpcIp": ")") + ip + "\""), "x").rpc_ip, ip);
  }
  for (const char* ip : {"1.2.3.4:80", "+1.2.3.4", "1.2.3.-4", "1.2.3.4.", ".1.2.3.4", "1.2.3.0400",
                         "1.2.3.256", "[fe80::1]", "fe80::1%eth0", "fe80:::1"}) {
    EXPECT_EQ(parse_error(with_params(std::string(R"("rpcIp": ")") + ip + "\"")),
              std::string("config.json: params.rpcIp: must be an IPv4 address (a.b.c.d) or an IPv6 address (no "
                          "brackets, no zone), got \"") +
                  ip + "\"")
        << ip;
  }
}

TEST(CanonicalLogLevel, MapsSpellings) {
  EXPECT_EQ(canonical_log_level("DEBUG"), "debug");
  EXPECT_EQ(canonical_log_level("Warning"), "warn");
  EXPECT_EQ(canonical_log_level("off"), "off");
  EXPECT_EQ(canonical_log_level("trace"), "");
  EXPECT_EQ(canonical_log_level(""), "");
}

}  // namespace
}  // namespace broach
