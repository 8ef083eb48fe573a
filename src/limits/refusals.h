// Every refusal of the limits, as the ApiError a client sees. Both stores
// (in-process and Redis) build their refusals here, so a limit reads the same
// whichever store enforced it. `kind` is a scope kind ("tenant", "user", ...),
// `id` its id ("acme", "acme/alice"), `dim` 0 for requests, 1 for tokens.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "core/error.h"
#include "limits/limit_store.h"
#include "limits/policy.h"

namespace tg::limits {

ApiError refuse_concurrency(std::string_view kind, std::string_view id, std::int64_t limit);
// A per-minute bucket without room: carries that scope's rate-limit headers.
ApiError refuse_bucket(std::string_view kind, std::string_view id, int dim, std::int64_t limit,
                       std::int64_t remaining, Micros wait_us, Micros reset_us);
// A request that could never fit the scope's per-minute limit: a 400.
ApiError refuse_too_big(std::string_view kind, std::string_view id, int dim, std::int64_t cost, std::int64_t limit);
ApiError refuse_fair_share(std::string_view parent_kind, std::string_view parent_id, int dim, std::int64_t parent_limit,
                           std::int64_t active, std::string_view kind, std::string_view id, std::int64_t share,
                           Micros wait_us, Micros reset_us);
// A bound of TrackingBounds reached with nothing that can be forgotten.
ApiError refuse_too_many_users(std::string_view tenant, std::int64_t limit, Micros wait_us);
ApiError refuse_too_many_runs(std::string_view tenant, std::int64_t limit, std::int64_t quiet_s, Micros wait_us);
ApiError refuse_run_calls(std::string_view run, std::int64_t limit);
ApiError refuse_unknown_parent(std::string_view run, std::string_view parent);
ApiError refuse_run_wall(std::string_view run, std::int64_t age_s, std::int64_t wall_s);
ApiError refuse_run_depth(std::string_view run, std::int64_t limit, std::int64_t depth);
ApiError refuse_run_fanout(std::string_view run, std::int64_t limit, std::string_view parent, std::int64_t children);
ApiError refuse_run_concurrency(std::string_view run, std::int64_t limit);
ApiError refuse_run_rate(std::string_view run, std::int64_t limit, Micros wait_us);
ApiError refuse_run_tokens(std::string_view run, std::int64_t limit, std::int64_t used, std::int64_t reserved,
                           std::int64_t need);
ApiError refuse_run_cost(std::string_view run, std::int64_t limit, std::int64_t used, std::int64_t reserved,
                         std::int64_t need);

// Why PUT /admin/limits/{scope} cannot apply `update` under `policy` (404
// scope_not_found, 400 empty_limits), or nothing. Both stores ask this.
std::optional<ApiError> refuse_limits_update(const LimitPolicy& policy, std::string_view scope,
                                             const LimitsUpdate& update);

}  // namespace tg::limits
