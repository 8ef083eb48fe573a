// Builds a validated Config from YAML text. Pure: the caller supplies the
// text and an environment lookup (for api_key_env), so tests need no files.
// On failure every problem is reported, each as
//   "<source>:<line>: <path>: <what is wrong>"   e.g.
//   "tenantgate.yaml:31: tenants[1].keys[0].user: unknown user 'bob' (tenant 'globex' has: carol, dave)"
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/config.h"

namespace tg {

struct ConfigProblems {
  std::vector<std::string> problems;
  std::string joined() const;  // one problem per line
};

using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
EnvLookup process_env();  // reads the real environment (getenv)

std::variant<Config, ConfigProblems> load_config(std::string_view yaml, std::string source,
                                                 const EnvLookup& env);

// "2.5", "0.15", "10", "0.000001" (USD) -> micro-dollars, exactly; nullopt for
// anything that is not a non-negative decimal with at most 6 fractional digits.
std::optional<std::int64_t> parse_usd_micros(std::string_view usd);

// The YAML the binary embeds: what `tenantgate serve` runs without --config.
std::string_view embedded_default_config();

// "host:port", "[v6]:port" or ":port" (all interfaces is never implied: ":port"
// means 127.0.0.1). Returns nullopt with `why` set when malformed.
std::optional<HostPort> parse_host_port(std::string_view s, std::string* why);

}  // namespace tg
