// Builds a validated Config from YAML text. Pure: the caller supplies the
// text and an environment lookup (for api_key_env), so tests need no files.
// On failure every problem is reported, each as
//   "<source>:<line>: <path>: <what is wrong>"   e.g.
//   "tenantgate.yaml:31: tenants[1].keys[0].user: unknown user 'bob' (tenant 'globex' has: carol, dave)"
#pragma once

#include <cstddef>
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

// What a config may make the loader hold, each bound reported as a problem of
// its own that says what to do. yaml-cpp's node tree costs 46 (block style,
// long values) to 240 (dense flow lists) bytes of memory per byte of YAML, so
// the text is measured before it is parsed, and the lists are counted on the
// tree before anything is built from them. Aliases (*name) count as all they
// repeat.
namespace config_bounds {
// Loads in ~3 s of CPU and 300 MB as 11,000 tenants with two keys each, 400 MB
// as 165,000 one-line tenants, and stays under 1 GB (7 s) at its densest, a
// flow list of 2 million one-character items.
inline constexpr std::size_t kMaxFileBytes = 4u << 20;
// YAML nodes (scalars, keys, lists, mappings) with every alias expanded: four
// times the most 4 MiB can spell out without aliases, far below alias bombs.
inline constexpr std::size_t kMaxNodes = 8'000'000;
inline constexpr std::size_t kMaxOrgs = 100'000;
inline constexpr std::size_t kMaxTenants = 100'000;
inline constexpr std::size_t kMaxUsersPerTenant = 10'000;
inline constexpr std::size_t kMaxKeysPerTenant = 10'000;
inline constexpr std::size_t kMaxModels = 1'000;
inline constexpr std::size_t kMaxDeployments = 1'000;  // over all models: ids are fleet-wide
inline constexpr std::size_t kMaxBudgets = 100'000;
}  // namespace config_bounds

using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
EnvLookup process_env();  // reads the real environment (getenv)

// Besides each field's own checks, reports as problems: text over
// config_bounds::kMaxFileBytes (before parsing), a key repeated in any mapping
// (with its line and column: YAML would silently keep one), an alias cycle, and
// a list or alias expansion over its config_bounds (then nothing is built).
std::variant<Config, ConfigProblems> load_config(std::string_view yaml, std::string source,
                                                 const EnvLookup& env);
// The problem of a config file of `bytes` bytes over config_bounds::kMaxFileBytes
// (for callers that can tell the size before reading it), or nullopt.
std::optional<std::string> config_size_problem(const std::string& source, std::uintmax_t bytes);

// "2.5", "0.15", "10", "0.000001" (USD) -> micro-dollars, exactly; nullopt for
// anything that is not a non-negative decimal with at most 6 fractional digits.
std::optional<std::int64_t> parse_usd_micros(std::string_view usd);

// The YAML the binary embeds: what `tenantgate serve` runs without --config.
std::string_view embedded_default_config();

// "host:port", "[v6]:port" or ":port" (all interfaces is never implied: ":port"
// means 127.0.0.1). Returns nullopt with `why` set when malformed.
std::optional<HostPort> parse_host_port(std::string_view s, std::string* why);

}  // namespace tg
