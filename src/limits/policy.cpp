#include "limits/policy.h"

#include <algorithm>
#include <fmt/format.h>

namespace tg::limits {

std::string limits_json(const ScopeLimits& l) {
  return fmt::format(
      R"({{"requests_per_min":{{"rate":{},"ceil":{}}},"tokens_per_min":{{"rate":{},"ceil":{}}},"concurrency":{}}})",
      l.requests_per_min.rate, l.requests_per_min.ceil, l.tokens_per_min.rate, l.tokens_per_min.ceil, l.concurrency);
}

void LimitPolicy::load(const Config& c) {
  scopes_.clear();
  user_defaults_.clear();
  runs_.clear();
  configured_.clear();
  scopes_["global"] = c.limits.global;
  for (const auto& o : c.orgs) scopes_["org:" + o.id] = o.limits;
  for (const auto& t : c.tenants) {
    scopes_["tenant:" + t.id] = t.limits;
    user_defaults_[t.id] = t.user_limits;
    for (const auto& u : t.users)
      if (u.limits.any()) scopes_["user:" + t.id + "/" + u.id] = u.limits;
    for (const auto& k : t.keys) scopes_["key:" + k.id] = k.limits;
    if (t.has_run_limits) runs_[t.id] = t.run_limits;
  }
  for (const auto& m : c.models) {
    scopes_["model:" + m.alias] = m.limits;
    for (const auto& d : m.deployments) scopes_["deployment:" + d.id] = d.limits;
  }
  for (const auto& [name, l] : scopes_)
    if (!name.starts_with("user:")) configured_.insert(name);
  run_default_ = c.limits.runs;
  fair_share_ = c.limits.fair_share;
  burst_us_ = c.limits.fair_burst_s * 1'000'000;
  window_us_ = c.limits.active_window_s * 1'000'000;
  ++gen_;
}

const ScopeLimits* LimitPolicy::find(std::string_view scope) const {
  auto it = scopes_.find(std::string(scope));
  if (it != scopes_.end()) return &it->second;
  if (scope.starts_with("user:")) {
    auto rest = scope.substr(5);
    auto u = user_defaults_.find(std::string(rest.substr(0, rest.find('/'))));
    if (u != user_defaults_.end()) return &u->second;
  }
  return nullptr;
}

const ScopeLimits& LimitPolicy::of(std::string_view scope) const {
  static const ScopeLimits kNone{};
  const ScopeLimits* l = find(scope);
  return l ? *l : kNone;
}

std::int64_t LimitPolicy::token_ceiling(std::string_view org, std::string_view tenant, std::string_view user,
                                        std::string_view key, std::string_view model,
                                        std::string_view deployment) const {
  std::int64_t ceiling = 0;
  auto take = [&](const std::string& scope) {
    if (const ScopeLimits* l = find(scope); l && l->tokens_per_min.ceil)
      ceiling = ceiling ? std::min(ceiling, l->tokens_per_min.ceil) : l->tokens_per_min.ceil;
  };
  take("global");
  take(std::string("org:").append(org));
  take(std::string("tenant:").append(tenant));
  if (!user.empty()) take(std::string("user:").append(tenant).append("/").append(user));
  take(std::string("key:").append(key));
  take(std::string("model:").append(model));
  take(std::string("deployment:").append(deployment));
  return ceiling;
}

const RunLimits& LimitPolicy::run_limits(std::string_view tenant) const {
  auto it = runs_.find(std::string(tenant));
  return it == runs_.end() ? run_default_ : it->second;
}

bool LimitPolicy::valid_scope(std::string_view s) {
  return s == "global" || s.starts_with("org:") || s.starts_with("tenant:") || s.starts_with("user:") ||
         s.starts_with("key:") || s.starts_with("model:") || s.starts_with("deployment:");
}

bool LimitPolicy::configured(std::string_view s) const {
  if (s.starts_with("user:")) {
    const auto rest = s.substr(5);
    const auto slash = rest.find('/');
    return slash != std::string_view::npos && slash + 1 < rest.size() &&
           configured_.contains("tenant:" + std::string(rest.substr(0, slash)));
  }
  return configured_.contains(std::string(s));
}

bool LimitPolicy::set(std::string_view scope, const ScopeLimits& limits) {
  if (!configured(scope)) return false;
  scopes_[std::string(scope)] = limits;
  ++gen_;
  return true;
}

}  // namespace tg::limits
