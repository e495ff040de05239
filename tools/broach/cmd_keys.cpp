// broach keys list|install|use|remove: changes the keyring of every member
// of a sealed cluster (through each member's __broach.keys service) and
// reports which members applied it.
#include <nlohmann/json.hpp>

#include <fstream>
#include <iostream>
#include <memory>

#include "cli.hpp"

namespace broach::cli {
namespace {

struct KeysFlags {
  std::string op;
  std::string key;
  std::string seed;
  double timeout_s = 3;
};

int run_keys(const KeysFlags& f) {
  if (f.op != "list" && f.op != "install" && f.op != "use" && f.op != "remove") {
    std::cerr << "broach keys: the operation is list, install, use or remove\n";
    return kExitUsage;
  }
  if (f.op != "list" && f.key.empty()) {
    std::cerr << "broach keys " << f.op << ": needs KEY (base64, or for use/remove a key id 0x....)\n";
    return kExitUsage;
  }
  Endpoint seed;
  std::string why;
  if (!Endpoint::parse(f.seed, seed, &why, /*allow_port_zero=*/false)) {
    std::cerr << "broach keys: --seed: expected IP:PORT, got '" << f.seed << "' (" << why << ")\n";
    return kExitUsage;
  }
  try {
    Config c = client_config(seed, f.timeout_s);
    if ((f.op == "install" || f.op == "use") && !(f.key.size() == 6 && f.key.rfind("0x", 0) == 0) && !c.security.keyring.empty()) {
      // The members answer "use" sealed with the new key: this command
      // holds it too (its own keys from --keyring, then the new one).
      std::ifstream in(c.security.keyring);
      std::string line;
      while (std::getline(in, line)) {
        if (!line.empty() && line.front() != '#' && line != f.key) c.security.keys.push_back(line);
      }
      c.security.keys.push_back(f.key);
      c.security.keyring.clear();
    }
    Node node(c);
    auto r = node.call_raw(seed, "__broach.members", detail::pack_args());
    if (!r.ok()) {
      std::cerr << "error: " << errc_name(r.error().code()) << ": " << r.error().message()
                << unreachable_hint(f.seed) << "\n";
      return kExitCallFailed;
    }
    const auto* p = reinterpret_cast<const std::uint8_t*>(r.value().data());
    const auto members = nlohmann::json::from_msgpack(p, p + r.value().size());
    std::vector<std::string> args{f.op};
    if (!f.key.empty()) args.push_back(f.key);
    int failed = 0;
    for (const auto& m : members) {
      const std::string state = m["state"].get<std::string>();
      if (state != "alive" && state != "suspect") continue;
      const std::string addr = m["address"].get<std::string>();
      Endpoint to;
      if (!Endpoint::parse(addr, to, nullptr, false)) continue;
      auto res = node.call_raw(to, "__broach.keys", detail::pack_value(args));
      if (res.ok()) {
        std::string ids;
        for (const auto& id : detail::unpack_value<std::vector<std::string>>(res.value())) {
          ids += (ids.empty() ? "" : " ") + id;
        }
        std::cout << addr << "  " << (f.op == "list" ? "keys" : "applied, keys") << ": " << ids
                  << "  (first seals)\n";
      } else {
        ++failed;
        std::cout << addr << "  FAILED: " << errc_name(res.error().code()) << ": " << res.error().message() << "\n";
      }
    }
    if (failed > 0) std::cerr << failed << " member(s) did not apply it\n";
    return failed == 0 ? kExitOk : kExitCallFailed;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return kExitRuntime;
  }
}

}  // namespace

void register_keys(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand(
      "keys", "list or change the keyring of every member of a sealed cluster (install, use, remove)");
  auto f = std::make_shared<KeysFlags>();
  cmd->add_option("op", f->op, "list | install | use | remove")->required();
  cmd->add_option("key", f->key, "install: a base64 key (a line of broach keygen); use/remove: a key or its id");
  cmd->add_option("--seed", f->seed, "IP:PORT of any live member")->required();
  cmd->add_option("--timeout", f->timeout_s, "seconds to wait for each member (default 3)");
  add_keyring_flag(*cmd);
  cmd->callback([f, &exit_code] { exit_code = run_keys(*f); });
}

}  // namespace broach::cli
