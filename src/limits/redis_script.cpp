#include "limits/redis_script.h"

#include <openssl/sha.h>

#include <fmt/format.h>

#include "limits/refusals.h"

namespace tg::limits {

std::string_view admit_script() {
  static const char kText[] =
#include "admit.lua.inc"
      ;
  return {kText, sizeof kText - 1};
}

std::string_view settle_script() {
  static const char kText[] =
#include "settle.lua.inc"
      ;
  return {kText, sizeof kText - 1};
}

std::string script_sha1(std::string_view script) {
  unsigned char md[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(script.data()), script.size(), md);
  std::string hex;
  for (unsigned char c : md) hex += fmt::format("{:02x}", c);
  return hex;
}

namespace {
std::string num(std::int64_t v) { return std::to_string(v); }
}  // namespace

namespace {

// One scope of a request's path as it goes to Redis.
struct Sent {
  std::string kind, id, name;
  ScopeLimits limits;
  int parent = 0;  // 1-based index in the sent list of its fair-share parent; 0: none
  bool tenant_owned = false;
};

// The scopes of the path that go to Redis, leaf first: only those that carry
// a limit, or whose tree parent does (they count as its active children);
// each one costs the script reads and writes, and most scopes of a path
// usually have no limit at all.
std::vector<Sent> sent_scopes(const LimitPolicy& policy, const Ask& ask) {
  struct Entry {
    std::string kind, id;
    int tree_pos;  // position in the tree (0 = global), -1 for flat scopes
  };
  std::vector<Entry> tree;
  tree.push_back({"global", "", 0});
  if (!ask.org.empty()) tree.push_back({"org", std::string(ask.org), 0});
  tree.push_back({"tenant", std::string(ask.tenant), 0});
  if (!ask.user.empty()) tree.push_back({"user", fmt::format("{}/{}", ask.tenant, ask.user), 0});
  if (!ask.key.empty()) tree.push_back({"key", std::string(ask.key), 0});
  const int depth = static_cast<int>(tree.size());
  const int tree_edges = depth - (ask.key.empty() ? 1 : 2);  // a key has no fair share below its user
  std::vector<Entry> order;
  for (int i = depth - 1; i >= 0; --i) order.push_back({tree[i].kind, tree[i].id, i});
  if (!ask.model.empty()) order.push_back({"model", std::string(ask.model), -1});
  if (!ask.deployment.empty()) order.push_back({"deployment", std::string(ask.deployment), -1});
  auto name_of = [](const Entry& e) { return e.kind == "global" ? std::string("global") : e.kind + ":" + e.id; };
  auto limited = [](const ScopeLimits& l) { return l.requests_per_min.ceil || l.tokens_per_min.ceil || l.concurrency; };
  auto has_rate = [](const ScopeLimits& l) { return l.requests_per_min.ceil || l.tokens_per_min.ceil; };
  std::vector<int> new_index(order.size() + 1, 0);  // 1-based position in `order` → 1-based position sent
  std::vector<int> chosen;
  for (int i = 0; i < static_cast<int>(order.size()); ++i) {
    const Entry& e = order[i];
    bool parent_limits = false;
    if (e.tree_pos > 0 && e.tree_pos <= tree_edges) parent_limits = has_rate(policy.of(name_of(tree[e.tree_pos - 1])));
    if (limited(policy.of(name_of(e))) || parent_limits) {
      chosen.push_back(i);
      new_index[i + 1] = static_cast<int>(chosen.size());
    }
  }
  std::vector<Sent> out;
  for (int i : chosen) {
    const Entry& e = order[i];
    Sent s{e.kind, e.kind == "global" ? std::string("global") : e.id, name_of(e), policy.of(name_of(e)), 0,
           e.kind == "tenant" || e.kind == "user" || e.kind == "key"};
    // The tree parent, when this scope is a fair-share child of a limited parent.
    if (e.tree_pos > 0 && e.tree_pos <= tree_edges && has_rate(policy.of(name_of(tree[e.tree_pos - 1]))))
      s.parent = new_index[depth - e.tree_pos + 1];
    out.push_back(std::move(s));
  }
  return out;
}

std::string tenant_tag(const RedisOptions& o, std::string_view tenant) { return fmt::format("{}:{{{}}}", o.prefix, tenant); }

// The fixed head of an admit call's arguments.
RedisScriptCall head(const LimitPolicy& policy, const Ask& ask, const RedisOptions& o, int n, const std::string& hold) {
  RedisScriptCall call;
  call.args = {num(n), num(ask.tokens), num(ask.cost_micros), num(policy.burst_us()), num(policy.window_us()),
               policy.fair_share() ? "1" : "0", hold, num(o.hold_ttl_us), num(o.key_ttl_ms)};
  return call;
}

void add_scope(RedisScriptCall& call, RedisPath& path, const RedisOptions& o, const Ask& ask, const Sent& s, int parent) {
  const std::string base = scope_base(o, ask.tenant, s.name, s.tenant_owned);
  const ScopeLimits& l = s.limits;
  for (const std::string& v : {s.kind, s.id, num(l.requests_per_min.rate), num(l.requests_per_min.ceil),
                               num(l.tokens_per_min.rate), num(l.tokens_per_min.ceil), num(l.concurrency), num(parent)})
    call.args.push_back(v);
  call.keys.push_back(base + ":b");
  call.keys.push_back(base + ":c");
  call.keys.push_back(base + ":a");
  path.scopes.push_back({s.kind, s.kind == "global" ? "" : s.id, base + ":b", base + ":c", l.tokens_per_min.ceil,
                         l.concurrency});
}

// The run's arguments (`run_id` empty: none in this call), then the bounds.
void add_run_args(RedisScriptCall& call, const LimitPolicy& policy, const Ask& ask, const RedisOptions& o,
                  std::string_view run_id) {
  const RunLimits& rl = policy.run_limits(ask.tenant);
  const TrackingBounds& b = o.bounds;
  for (const std::string& v : {std::string(run_id), std::string(ask.tenant), std::string(ask.parent_id),
                               num(rl.tokens), num(rl.cost_micros), num(rl.concurrency), num(rl.depth),
                               num(rl.fanout), num(rl.calls_per_min), num(rl.wall_s),
                               num(std::max<std::int64_t>(o.run_ttl_ms, 2 * rl.wall_s * 1000)),
                               num(b.calls_per_run), num(b.runs_per_tenant), num(b.run_quiet_s * 1'000'000),
                               num(b.users_per_tenant)})
    call.args.push_back(v);
}

// The run's keys, all under its tenant's tag: its hash, its calls (hash),
// calls in flight (leases), calls in use order, and the tenant's live runs.
void add_run_keys(RedisScriptCall& call, RedisPath& path, const RedisOptions& o, const Ask& ask) {
  const std::string base = fmt::format("{}:run:{}", tenant_tag(o, ask.tenant), ask.run_id);
  for (const std::string& k : {base, base + ":calls", base + ":inflight", base + ":order",
                               fmt::format("{}:runs", tenant_tag(o, ask.tenant))})
    call.keys.push_back(k);
  if (!ask.run_id.empty()) {
    path.run_key = base;
    path.run_inflight_key = base + ":inflight";
    path.runs_key = call.keys.back();
  }
}

RedisPath base_path(const Ask& ask) {
  RedisPath path;
  path.hold = std::string(ask.request_id);
  path.tenant = std::string(ask.tenant);
  path.run_id = std::string(ask.run_id);
  path.parent_id = std::string(ask.parent_id);
  path.tokens = ask.tokens;
  path.cost_micros = ask.cost_micros;
  return path;
}

}  // namespace

std::string scope_base(const RedisOptions& o, std::string_view tenant, std::string_view scope_name, bool tenant_owned) {
  if (tenant_owned) return fmt::format("{}:{}", tenant_tag(o, tenant), scope_name);
  // Shared scopes: each its own tag on a single primary; all one tag on a
  // Cluster, so the tree above the tenant stays in one slot.
  return o.cluster ? fmt::format("{}:{{shared}}:{}", o.prefix, scope_name) : fmt::format("{}:{{{}}}", o.prefix, scope_name);
}

RedisScriptCall admit_call(const LimitPolicy& policy, const Ask& ask, const RedisOptions& o, RedisPath& path) {
  path = base_path(ask);
  const std::vector<Sent> sent = sent_scopes(policy, ask);
  RedisScriptCall call = head(policy, ask, o, static_cast<int>(sent.size()), path.hold);
  for (const Sent& s : sent) add_scope(call, path, o, ask, s, s.parent);
  add_run_args(call, policy, ask, o, ask.run_id);
  add_run_keys(call, path, o, ask);
  return call;
}

std::vector<AdmitPart> admit_parts(const LimitPolicy& policy, const Ask& ask, const RedisOptions& o) {
  std::vector<AdmitPart> parts;
  if (!o.cluster) {
    AdmitPart p;
    p.call = admit_call(policy, ask, o, p.path);
    parts.push_back(std::move(p));
    return parts;
  }
  const std::vector<Sent> sent = sent_scopes(policy, ask);
  std::vector<int> shared, own;  // indices into `sent`, leaf first
  for (int i = 0; i < static_cast<int>(sent.size()); ++i) (sent[i].tenant_owned ? own : shared).push_back(i);
  const bool run = !ask.run_id.empty();
  // Local 1-based positions of each sent scope inside its own call.
  std::vector<int> local(sent.size() + 1, 0);
  for (std::size_t k = 0; k < shared.size(); ++k) local[shared[k] + 1] = static_cast<int>(k + 1);
  for (std::size_t k = 0; k < own.size(); ++k) local[own[k] + 1] = static_cast<int>(k + 1);
  // The edge that crosses: an own scope whose parent is shared.
  int crossing_child = -1, crossing_parent = -1;
  for (int i : own)
    if (sent[i].parent > 0 && !sent[sent[i].parent - 1].tenant_owned) {
      crossing_child = i;
      crossing_parent = sent[i].parent - 1;
    }
  auto cluster_block = [&](RedisScriptCall& call, int child_of, const std::string& child_name, int handoff) {
    for (int k = 0; k < 7; ++k) call.args.push_back("0");  // the external parent's facts (filled later when used)
    call.args.push_back(num(child_of));
    call.args.push_back(child_name);
    call.args.push_back(num(handoff));
  };
  if (!shared.empty()) {
    AdmitPart p;
    p.path = base_path(ask);
    p.path.run_id.clear();  // a run lives in its tenant's slot: the tenant's part
    p.call = head(policy, ask, o, static_cast<int>(shared.size()), p.path.hold);
    for (int i : shared) {
      const int parent = sent[i].parent > 0 ? local[sent[i].parent] : 0;  // shared scopes' parents are shared
      add_scope(p.call, p.path, o, ask, sent[i], parent);
    }
    add_run_args(p.call, policy, ask, o, "");
    const int parent_local = crossing_parent >= 0 ? local[crossing_parent + 1] : 0;
    cluster_block(p.call, parent_local, crossing_child >= 0 ? sent[crossing_child].kind + ":" + sent[crossing_child].id : "",
                  parent_local);
    parts.push_back(std::move(p));
  }
  if (!own.empty() || run || parts.empty()) {
    AdmitPart p;
    p.path = base_path(ask);
    p.call = head(policy, ask, o, static_cast<int>(own.size()), p.path.hold);
    for (int i : own) {
      int parent = 0;
      if (sent[i].parent > 0) parent = sent[sent[i].parent - 1].tenant_owned ? local[sent[i].parent] : -1;
      add_scope(p.call, p.path, o, ask, sent[i], parent);
    }
    add_run_args(p.call, policy, ask, o, ask.run_id);
    if (run) add_run_keys(p.call, p.path, o, ask);
    if (crossing_child >= 0) {
      p.ext_at = static_cast<int>(p.call.args.size());
      const Sent& parent = sent[crossing_parent];
      p.path.ext_parent_kind = parent.kind;
      p.path.ext_parent_id = parent.kind == "global" ? "" : parent.id;
    }
    cluster_block(p.call, 0, "", 0);
    parts.push_back(std::move(p));
  }
  return parts;
}

std::vector<std::int64_t> handoff_facts(const RedisValue& reply) {
  std::vector<std::int64_t> out;
  if (reply.type != RedisValue::Type::kArray || reply.array.size() < 16 || reply.array[0].integer != 0) return out;
  for (std::size_t k = 9; k < 16; ++k) out.push_back(reply.array[k].integer);
  return out;
}

Quota merge_quota(Quota a, const Quota& b) {
  auto tighter = [](const auto& x, const auto& y) {
    if (!y.limit) return x;
    if (!x.limit) return y;
    return y.remaining * x.limit < x.remaining * y.limit ? y : x;
  };
  a.requests = tighter(a.requests, b.requests);
  a.tokens = tighter(a.tokens, b.tokens);
  return a;
}

Expected<Quota> decode_admit(const RedisValue& reply, const RedisPath& path) {
  auto unreadable = [&] {
    return ApiError{503, "server_error", "limits_unavailable",
                    "The limit store sent a reply the gateway cannot read; retry shortly. (Is another tenantgate "
                    "version sharing this Redis key prefix?)", {}, 1};
  };
  if (reply.type != RedisValue::Type::kArray || reply.array.empty()) return unreadable();
  const auto& a = reply.array;
  auto i = [&](std::size_t k) -> std::int64_t { return k < a.size() ? a[k].integer : 0; };
  const RedisPath::Scope ext{path.ext_parent_kind, path.ext_parent_id, "", "", 0, 0};
  auto scope = [&](std::int64_t idx) -> const RedisPath::Scope& {
    static const RedisPath::Scope kNone{};
    if (idx == -1) return ext;  // the parent in the other slot
    return idx >= 1 && idx <= static_cast<std::int64_t>(path.scopes.size()) ? path.scopes[idx - 1] : kNone;
  };
  if (i(0) == 0) {
    Quota q;
    if (a.size() < 9) return unreadable();
    if (i(1)) q.requests = {i(1), i(2), i(3), scope(i(4)).kind + ":" + scope(i(4)).id};
    if (i(5)) q.tokens = {i(5), i(6), i(7), scope(i(8)).kind + ":" + scope(i(8)).id};
    return q;
  }
  if (a.size() < 2 || a[1].type != RedisValue::Type::kString) return unreadable();
  const std::string& why = a[1].str;
  const int dim = static_cast<int>(i(3));
  if (why == "concurrency") return refuse_concurrency(scope(i(2)).kind, scope(i(2)).id, i(3));
  if (why == "too_big") return refuse_too_big(scope(i(2)).kind, scope(i(2)).id, dim, i(4), i(5));
  if (why == "bucket") return refuse_bucket(scope(i(2)).kind, scope(i(2)).id, dim, i(4), i(5), i(6), i(7));
  if (why == "fair_share") {
    const auto& p = scope(i(2));
    const auto& c = scope(i(3));
    return refuse_fair_share(p.kind, p.id, static_cast<int>(i(4)), i(5), i(6), c.kind, c.id, i(7), i(8), i(9));
  }
  if (why == "too_many_runs") return refuse_too_many_runs(path.tenant, i(2), i(3), i(4));
  if (why == "run_calls") return refuse_run_calls(path.run_id, i(2));
  if (why == "unknown_parent") return refuse_unknown_parent(path.run_id, path.parent_id);
  if (why == "run_wall") return refuse_run_wall(path.run_id, i(2), i(3));
  if (why == "run_depth") return refuse_run_depth(path.run_id, i(2), i(3));
  if (why == "run_fanout") return refuse_run_fanout(path.run_id, i(2), path.parent_id, i(3));
  if (why == "run_concurrency") return refuse_run_concurrency(path.run_id, i(2));
  if (why == "run_rate") return refuse_run_rate(path.run_id, i(2), i(3));
  if (why == "run_tokens") return refuse_run_tokens(path.run_id, i(2), i(3), 0, i(4));
  if (why == "run_cost") return refuse_run_cost(path.run_id, i(2), i(3), 0, i(4));
  return unreadable();
}

RedisScriptCall settle_call(const RedisPath& path, std::int64_t tokens, std::int64_t cost_micros, bool undo) {
  RedisScriptCall call;
  call.args = {num(static_cast<std::int64_t>(path.scopes.size())), num(path.tokens), num(tokens),
               num(path.cost_micros), num(cost_micros), path.hold};
  for (const auto& s : path.scopes) {
    call.keys.push_back(s.bucket_key);
    call.keys.push_back(s.concurrency_key);
    call.args.push_back(num(s.tok_ceil));
    call.args.push_back(num(s.concurrency));
  }
  call.args.push_back(undo ? "1" : "0");
  if (!path.run_key.empty()) {
    call.args.push_back(path.run_id);
    call.keys.push_back(path.run_key);
    call.keys.push_back(path.run_inflight_key);
    call.keys.push_back(path.runs_key);
  }
  return call;
}

}  // namespace tg::limits
