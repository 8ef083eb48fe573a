#include "limits/refusals.h"

#include <algorithm>

#include <fmt/format.h>

namespace tg::limits {
namespace {

constexpr const char* kDimName[2] = {"requests-per-minute", "tokens-per-minute"};
constexpr const char* kDimShort[2] = {"rpm", "tpm"};

ApiError too_many(std::string code, std::string message, Micros retry_us) {
  ApiError e{429, "rate_limit_error", std::move(code), std::move(message), {}};
  e.retry_after_s = static_cast<int>(std::max<Micros>(1, (retry_us + 999'999) / 1'000'000));
  return e;
}

std::string secs(Micros us) { return fmt::format("{}s", std::max<Micros>(1, (us + 999'999) / 1'000'000)); }

std::string usd(std::int64_t micros) { return fmt::format("{}.{:06}", micros / 1'000'000, micros % 1'000'000); }

ApiError with_headers(ApiError e, int dim, std::int64_t limit, std::int64_t remaining, Micros reset_us) {
  Quota q;
  (dim == 0 ? q.requests : q.tokens) = Headroom{limit, std::max<std::int64_t>(0, remaining), reset_us, {}};
  e.headers = rate_limit_headers(q);
  return e;
}

constexpr Micros kMinute = 60'000'000;

}  // namespace

ApiError refuse_concurrency(std::string_view kind, std::string_view id, std::int64_t limit) {
  return too_many(fmt::format("{}_concurrency_exhausted", kind),
                  fmt::format("{} '{}' concurrency limit ({} requests in flight) reached; retry when one of them "
                              "finishes.", kind, id, limit),
                  1'000'000);
}

ApiError refuse_bucket(std::string_view kind, std::string_view id, int dim, std::int64_t limit,
                       std::int64_t remaining, Micros wait_us, Micros reset_us) {
  return with_headers(too_many(fmt::format("{}_{}_exhausted", kind, kDimShort[dim]),
                               fmt::format("{} '{}' {} limit ({}) exhausted; retry after {}.", kind, id,
                                           kDimName[dim], limit, secs(wait_us)),
                               wait_us),
                      dim, limit, remaining, reset_us);
}

ApiError refuse_too_big(std::string_view kind, std::string_view id, int dim, std::int64_t cost, std::int64_t limit) {
  return ApiError{400, "invalid_request_error", "tokens_exceed_limit",
                  fmt::format("This request may use up to {} tokens (prompt + max_tokens), more than {} '{}' {} "
                              "limit ({}) allows in a minute; lower max_tokens or shorten the prompt.",
                              cost, kind, id, kDimName[dim], limit),
                  "max_tokens"};
}

ApiError refuse_fair_share(std::string_view parent_kind, std::string_view parent_id, int dim, std::int64_t parent_limit,
                           std::int64_t active, std::string_view kind, std::string_view id, std::int64_t share,
                           Micros wait_us, Micros reset_us) {
  return with_headers(
      too_many(fmt::format("{}_fair_share_exceeded", kind),
               fmt::format("{} '{}' {} limit ({}) is shared by {} active {}s; {} '{}' is over its fair share ({} per "
                           "minute); retry after {}.", parent_kind, parent_id, kDimName[dim], parent_limit, active,
                           kind, kind, id, share, secs(wait_us)),
               wait_us),
      dim, share, 0, reset_us);
}

ApiError refuse_too_many_users(std::string_view tenant, std::int64_t limit, Micros wait_us) {
  return too_many("too_many_users",
                  fmt::format("tenant '{}' has {} users with requests in flight or recent usage (the most the "
                              "gateway tracks for a tenant), so a new user name cannot be taken on; retry after {}, "
                              "or send fewer distinct user names (X-TG-User, the body's 'user').",
                              tenant, limit, secs(wait_us)),
                  wait_us);
}

ApiError refuse_too_many_runs(std::string_view tenant, std::int64_t limit, std::int64_t quiet_s, Micros wait_us) {
  return too_many("too_many_runs",
                  fmt::format("tenant '{}' has {} live agent runs (the limit); a run is let go once it has had no "
                              "call for {}s. Finish or pause runs, or reuse a run's X-TG-Run id; retry after {}.",
                              tenant, limit, quiet_s, secs(wait_us)),
                  wait_us);
}

ApiError refuse_run_calls(std::string_view run, std::int64_t limit) {
  return too_many("run_calls_exhausted",
                  fmt::format("run '{}' remembers {} calls (the limit) and the oldest of them are still in flight; "
                              "retry when one finishes.", run, limit),
                  1'000'000);
}

ApiError refuse_unknown_parent(std::string_view run, std::string_view parent) {
  return ApiError{400, "invalid_request_error", "unknown_parent",
                  fmt::format("X-TG-Parent '{}' is not a request of run '{}': a parent must be an earlier request "
                              "sent with the same X-TG-Run (its x-request-id).", parent, run),
                  "X-TG-Parent"};
}

ApiError refuse_run_wall(std::string_view run, std::int64_t age_s, std::int64_t wall_s) {
  return too_many("run_wall_time_exceeded",
                  fmt::format("run '{}' has been running for {}s, over its wall-time limit ({}s); start a new run.",
                              run, age_s, wall_s),
                  kMinute);
}

ApiError refuse_run_depth(std::string_view run, std::int64_t limit, std::int64_t depth) {
  return too_many("run_depth_exceeded",
                  fmt::format("run '{}' depth limit ({}) reached: this call would be at depth {}.", run, limit, depth),
                  kMinute);
}

ApiError refuse_run_fanout(std::string_view run, std::int64_t limit, std::string_view parent, std::int64_t children) {
  return too_many("run_fanout_exceeded",
                  fmt::format("run '{}' fan-out limit ({}) reached: request '{}' already spawned {} calls.", run,
                              limit, parent, children),
                  kMinute);
}

ApiError refuse_run_concurrency(std::string_view run, std::int64_t limit) {
  return too_many("run_concurrency_exceeded",
                  fmt::format("run '{}' concurrency limit ({} calls in flight) reached; retry when one finishes.",
                              run, limit),
                  1'000'000);
}

ApiError refuse_run_rate(std::string_view run, std::int64_t limit, Micros wait_us) {
  return too_many("run_rate_exceeded",
                  fmt::format("run '{}' calls-per-minute limit ({}) exhausted; retry after {}.", run, limit,
                              secs(wait_us)),
                  wait_us);
}

ApiError refuse_run_tokens(std::string_view run, std::int64_t limit, std::int64_t used, std::int64_t reserved,
                           std::int64_t need) {
  return too_many("run_budget_exhausted",
                  fmt::format("run '{}' token budget ({}) is exhausted: {} used, {} in flight, this call needs up to "
                              "{}.", run, limit, used, reserved, need),
                  kMinute);
}

ApiError refuse_run_cost(std::string_view run, std::int64_t limit, std::int64_t used, std::int64_t reserved,
                         std::int64_t need) {
  return too_many("run_budget_exhausted",
                  fmt::format("run '{}' cost budget (${}) is exhausted: ${} used, ${} in flight, this call may cost "
                              "up to ${}.", run, usd(limit), usd(used), usd(reserved), usd(need)),
                  kMinute);
}

std::optional<ApiError> refuse_limits_update(const LimitPolicy& policy, std::string_view scope,
                                             const LimitsUpdate& update) {
  constexpr const char* kScopes = "global, org:ID, tenant:ID, user:TENANT/USER, key:ID, model:ALIAS or deployment:ID";
  if (scope.starts_with("run:"))
    return not_found(fmt::format("Scope '{}' cannot carry limits: runs take theirs from the configuration "
                                 "(limits.runs, a tenant's run_limits). Set {}.", scope, kScopes),
                     "scope_not_found", "scope");
  if (!LimitPolicy::valid_scope(scope))
    return not_found(fmt::format("Scope '{}' cannot carry limits (use {}).", scope, kScopes), "scope_not_found",
                     "scope");
  if (!policy.configured(scope)) {
    const bool user = scope.starts_with("user:");
    const auto rest = scope.substr(scope.find(':') + 1);
    return not_found(
        user ? fmt::format("Scope '{}' names no configured tenant: user scopes are user:TENANT/USER with TENANT "
                           "one of the configuration's tenants and a user name after the '/'.", scope)
             : fmt::format("No {} '{}' in the configuration; limits can be set only on configured scopes "
                           "(add it to the config and reload first).", scope.substr(0, scope.find(':')), rest),
        "scope_not_found", "scope");
  }
  if (!update.limits.any() && !update.remove_all)
    return invalid_request(fmt::format("The body sets no limit, which would remove every limit of '{}'{}. To do that, say "
                                "so: {{\"requests_per_min\": null, \"tokens_per_min\": null, \"concurrency\": "
                                "null}}; to change limits, give at least one.", scope,
                                scope.starts_with("user:") ? " (its tenant's user_limits included)" : ""),
                           {}, "empty_limits");
  return std::nullopt;
}

}  // namespace tg::limits
