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

ApiError refuse_run_forbidden(std::string_view run) {
  return ApiError{403, "permission_error", "run_forbidden",
                  fmt::format("Run '{}' belongs to another tenant; run ids are not shared across tenants. Start a "
                              "new run with a fresh X-TG-Run id.", run),
                  "X-TG-Run"};
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

}  // namespace tg::limits
