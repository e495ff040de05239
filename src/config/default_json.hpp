// Internal header (config layer). The embedded default configuration, as
// JSON: what default_config() parses (config_loader.cpp).
// Thread contract: a constant.
#pragma once

#include <string_view>

namespace broach::config_detail {

// The embedded default: the seed's example with logLevel "info" and an empty
// clusterAddress (start alone), plus every params.broach.transport key. A test
// checks it equals the defaults written in config.hpp.
inline constexpr std::string_view kDefaultJson = R"({
  "name": "BroachRpc",
  "version": "1.0.0",
  "logLevel": "info",
  "params": {
    "rpcPort": 18080,
    "rpcIp": "127.0.0.1",
    "clusterAddress": [],
    "rpcTimeOut": 6,
    "udpTimeOut": 3,
    "threadPool": {
      "core": 3,
      "threadMax": 15,
      "keepAliveTime": 9,
      "queueMax": 1000,
      "isExcInfo": "False",
      "createThreadThreshold": 2
    },
    "broach": {
      "transport": {
        "maxDatagramBytes": 1472,
        "maxMessageBytes": 67108864,
        "sendWindow": 128,
        "rtoInitialMs": 20,
        "rtoMinMs": 10,
        "rtoMaxMs": 1000,
        "dedupMaxEntries": 100000,
        "dedupMaxBytes": 67108864,
        "reassemblyMaxBytesPerPeer": 134217728,
        "reassemblyMaxBytesTotal": 536870912,
        "socketBufferBytes": 4194304,
        "coalesce": true,
        "busyPollMicros": 0,
        "loopbackLargeDatagrams": true,
        "gso": true,
        "tuneAllocator": true
      },
      "membership": {
        "probeIntervalMs": 500,
        "probeTimeoutMs": 200,
        "indirectChecks": 3,
        "suspicionMult": 4,
        "suspicionMaxMult": 3,
        "gossipIntervalMs": 200,
        "gossipNodes": 3,
        "retransmitMult": 4,
        "pushPullIntervalMs": 15000,
        "reconnectIntervalMs": 3000,
        "deadReclaimMs": 30000,
        "weight": 100
      },
      "loadBalance": {
        "policy": "round_robin",
        "services": {},
        "localInProcess": true,
        "slowStartMs": 10000,
        "slowStartMinPercent": 10
      },
      "breaker": {
        "consecutiveFailures": 5,
        "errorRate": 0.5,
        "minCalls": 20,
        "windowMs": 10000,
        "openMs": 1000,
        "openMaxMs": 30000
      },
      "retry": {
        "maxRetries": 2,
        "budgetRatio": 0.1,
        "idempotent": [],
        "hedgeDelayMs": 0
      },
      "http": "",
      "drainMs": 5000,
      "security": {
        "keyring": "",
        "keys": [],
        "verifyIncoming": true,
        "sealOutgoing": true,
        "adminNetworks": ["127.0.0.0/8"]
      },
      "interceptors": {
        "requestId": false,
        "propagateDeadline": false,
        "accessLog": false
      },
      "maxConcurrency": {}
    }
  }
})";

}  // namespace broach::config_detail
