// The Redis limit store's pure half: builds the EVAL calls of the admit and
// settle scripts (src/limits/lua/) for one request, and turns their replies
// into an admission's Quota or the refusal a client sees. No I/O: the
// connection lives in src/store/.
//
// Keys are "<prefix>:{<tenant>}:..." for the tenant's own scopes (tenant,
// user, key) and its runs ("<prefix>:{<tenant>}:run:<id>...", with the index
// of its live runs "<prefix>:{<tenant>}:runs"), so one tenant's state sits in
// one Redis Cluster slot and a run id names a run of that tenant only, and
// "<prefix>:{<scope>}:..." for scopes shared across tenants (global, org,
// model, deployment).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "limits/limit_store.h"
#include "limits/policy.h"

namespace tg::limits {

// A reply, as much of RESP as the scripts return.
struct RedisValue {
  enum class Type { kNil, kInt, kString, kArray, kError } type = Type::kNil;
  std::int64_t integer = 0;
  std::string str;  // string or error text
  std::vector<RedisValue> array;
};

struct RedisScriptCall {
  std::vector<std::string> keys, args;
};

struct RedisOptions {
  std::string prefix = "tg";
  std::int64_t hold_ttl_us = 30LL * 60 * 1'000'000;  // a lease outlives any request, then frees itself
  std::int64_t key_ttl_ms = 15LL * 60 * 1000;        // idle scope state is forgotten (it would be full again)
  std::int64_t run_ttl_ms = 60LL * 60 * 1000;        // runs are kept an hour after their last call
  bool cluster = false;  // Redis Cluster: shared scopes under one tag, paths split over two slots
  // Runs per tenant, calls per run, active children per parent (users_per_tenant).
  TrackingBounds bounds;
};

std::string_view admit_script();
std::string_view settle_script();
// The lowercase hex SHA-1 of a script, for EVALSHA.
std::string script_sha1(std::string_view script);

// What one admitted request needs to be settled, and to name its scopes.
struct RedisPath {
  struct Scope {
    std::string kind, id, bucket_key, concurrency_key;
    std::int64_t tok_ceil = 0, concurrency = 0;
  };
  std::vector<Scope> scopes;  // leaf first, as sent to the admit script
  std::string run_key, run_inflight_key, runs_key;  // empty when not part of a run
  std::string ext_parent_kind, ext_parent_id;  // a split path's tenant part: the parent in the shared slot
  std::string hold;  // the request id
  std::string tenant, run_id, parent_id;
  std::int64_t tokens = 0, cost_micros = 0;
};

RedisScriptCall admit_call(const LimitPolicy& policy, const Ask& ask, const RedisOptions& o, RedisPath& path);

// The admit calls a request takes: one (a single primary, or a path inside
// one slot), or with `cluster` the shared slot's call (shared scopes, the
// tenant registered as its org's active child, the org's facts handed off)
// then the tenant slot's (its scopes and the run, the tenant's fair share
// judged on the handed-off facts placed at `ext_at`).
// See docs/limits-cluster.md.
struct AdmitPart {
  RedisScriptCall call;
  RedisPath path;
  int ext_at = -1;  // where the previous part's 7 handoff facts go in call.args; -1: none
};
std::vector<AdmitPart> admit_parts(const LimitPolicy& policy, const Ask& ask, const RedisOptions& o);
// The 7 handoff facts a successful part's reply carries (empty when none).
std::vector<std::int64_t> handoff_facts(const RedisValue& reply);
// The tighter of two parts' quotas, per dimension.
Quota merge_quota(Quota a, const Quota& b);
// The key base of a scope ("<prefix>:{tenant}:user:acme/alice", ...).
std::string scope_base(const RedisOptions& o, std::string_view tenant, std::string_view scope_name, bool tenant_owned);
// Quota when admitted; the refusal otherwise; a 503 for a reply it cannot read.
Expected<Quota> decode_admit(const RedisValue& reply, const RedisPath& path);
// `undo`: the admission is being taken back (the other part refused): the
// request count is given back too.
RedisScriptCall settle_call(const RedisPath& path, std::int64_t tokens, std::int64_t cost_micros, bool undo = false);

}  // namespace tg::limits
