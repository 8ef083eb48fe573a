// LimitPolicy: which limits apply to which scope, built from the config and
// changed by the admin API or a reload. Scope names are "global", "org:ID",
// "tenant:ID", "user:TENANT/USER", "key:ID", "model:ALIAS", "deployment:ID".
// Not thread-safe: a store owns one and guards it with its own lock.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "core/config.h"

namespace tg::limits {

// A scope's limits as the JSON object the admin API shows.
std::string limits_json(const ScopeLimits& l);

class LimitPolicy {
 public:
  explicit LimitPolicy(const Config& c) { load(c); }
  void load(const Config& c);  // replaces everything (reload)

  // The limits of `scope`, or null when nothing is configured for it (a
  // user with no entry of its own gets its tenant's user_limits).
  const ScopeLimits* find(std::string_view scope) const;
  // find(), or limits that set nothing.
  const ScopeLimits& of(std::string_view scope) const;
  const RunLimits& run_limits(std::string_view tenant) const;
  // The smallest tokens-per-minute ceiling on a request's path (global, org,
  // tenant, user when named, key, model, deployment); 0 when none is set. A
  // request reserving more is refused (400 tokens_exceed_limit) whatever the
  // buckets hold, so counting its prompt past this is work for nothing.
  std::int64_t token_ceiling(std::string_view org, std::string_view tenant, std::string_view user,
                             std::string_view key, std::string_view model, std::string_view deployment) const;
  // Replaces one scope's limits. False when the scope is not configured().
  bool set(std::string_view scope, const ScopeLimits& limits);
  static bool valid_scope(std::string_view scope);
  // The scope names the configuration: "global", an org, tenant, key, model
  // or deployment it lists, or "user:TENANT/USER" (any user) under a tenant it lists.
  bool configured(std::string_view scope) const;

  std::uint64_t generation() const { return gen_; }  // changes whenever any limit does
  bool fair_share() const { return fair_share_; }
  std::int64_t burst_us() const { return burst_us_; }
  std::int64_t window_us() const { return window_us_; }

 private:
  std::unordered_map<std::string, ScopeLimits> scopes_;
  std::unordered_map<std::string, ScopeLimits> user_defaults_;  // tenant → its users' limits
  std::unordered_map<std::string, RunLimits> runs_;             // tenant → its runs' limits
  std::unordered_set<std::string> configured_;                  // "org:demo", "tenant:acme", ... (not users)
  RunLimits run_default_;
  std::uint64_t gen_ = 0;
  bool fair_share_ = true;
  std::int64_t burst_us_ = 10'000'000, window_us_ = 60'000'000;
};

}  // namespace tg::limits
