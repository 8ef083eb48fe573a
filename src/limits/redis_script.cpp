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

RedisScriptCall admit_call(const LimitPolicy& policy, const Ask& ask, const RedisOptions& o, RedisPath& path) {
  path = RedisPath{};
  path.hold = std::string(ask.request_id);
  path.run_id = std::string(ask.run_id);
  path.parent_id = std::string(ask.parent_id);
  path.tokens = ask.tokens;
  path.cost_micros = ask.cost_micros;
  const std::string tenant_tag = fmt::format("{}:{{{}}}", o.prefix, ask.tenant);
  // The tree, root first, then reversed to leaf first; flat scopes after.
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

  // Only scopes that carry a limit, or whose tree parent does (they count as
  // its active children), go to Redis: each one costs the script reads and
  // writes, and most scopes of a path usually have no limit at all.
  auto name_of = [](const Entry& e) { return e.kind == "global" ? std::string("global") : e.kind + ":" + e.id; };
  auto limited = [](const ScopeLimits& l) { return l.requests_per_min.ceil || l.tokens_per_min.ceil || l.concurrency; };
  auto has_rate = [](const ScopeLimits& l) { return l.requests_per_min.ceil || l.tokens_per_min.ceil; };
  std::vector<int> new_index(order.size() + 1, 0);  // 1-based position in `order` → 1-based position sent
  std::vector<int> sent;
  for (int i = 0; i < static_cast<int>(order.size()); ++i) {
    const Entry& e = order[i];
    bool parent_limits = false;
    if (e.tree_pos > 0 && e.tree_pos <= tree_edges) parent_limits = has_rate(policy.of(name_of(tree[e.tree_pos - 1])));
    if (limited(policy.of(name_of(e))) || parent_limits) {
      sent.push_back(i);
      new_index[i + 1] = static_cast<int>(sent.size());
    }
  }
  RedisScriptCall call;
  const int n = static_cast<int>(sent.size());
  call.args = {num(n), num(ask.tokens), num(ask.cost_micros), num(policy.burst_us()), num(policy.window_us()),
               policy.fair_share() ? "1" : "0", path.hold, num(o.hold_ttl_us), num(o.key_ttl_ms)};
  for (int i : sent) {
    const Entry& e = order[i];
    const std::string name = name_of(e);
    const ScopeLimits& l = policy.of(name);
    // Index (1-based, as sent) of the tree parent when this scope is a fair-share child of a limited parent.
    int parent = 0;
    if (e.tree_pos > 0 && e.tree_pos <= tree_edges && has_rate(policy.of(name_of(tree[e.tree_pos - 1]))))
      parent = new_index[depth - e.tree_pos + 1];
    const bool tenant_owned = e.kind == "tenant" || e.kind == "user" || e.kind == "key";
    const std::string base = tenant_owned ? fmt::format("{}:{}", tenant_tag, name) : fmt::format("{}:{{{}}}", o.prefix, name);
    for (const std::string& v : {e.kind, e.kind == "global" ? std::string("global") : e.id,
                                 num(l.requests_per_min.rate), num(l.requests_per_min.ceil),
                                 num(l.tokens_per_min.rate), num(l.tokens_per_min.ceil), num(l.concurrency),
                                 num(parent)})
      call.args.push_back(v);
    call.keys.push_back(base + ":b");
    call.keys.push_back(base + ":c");
    call.keys.push_back(base + ":a");
    path.scopes.push_back({e.kind, e.kind == "global" ? "" : e.id, base + ":b", base + ":c", l.tokens_per_min.ceil,
                           l.concurrency});
  }
  const RunLimits& rl = policy.run_limits(ask.tenant);
  for (const std::string& v : {std::string(ask.run_id), std::string(ask.tenant), std::string(ask.parent_id),
                               num(rl.tokens), num(rl.cost_micros), num(rl.concurrency), num(rl.depth),
                               num(rl.fanout), num(rl.calls_per_min), num(rl.wall_s),
                               num(std::max<std::int64_t>(o.run_ttl_ms, 2 * rl.wall_s * 1000))})
    call.args.push_back(v);
  const std::string run_base = fmt::format("{}:run:{}", tenant_tag, ask.run_id);
  call.keys.push_back(run_base);
  call.keys.push_back(run_base + ":calls");
  call.keys.push_back(run_base + ":inflight");
  // Run ids are fleet-wide names: the owner record is not under the tenant's
  // tag, so another tenant's use of the id is seen (and refused).
  call.keys.push_back(fmt::format("{}:run-owner:{}", o.prefix, ask.run_id));
  if (!ask.run_id.empty()) {
    path.run_key = run_base;
    path.run_inflight_key = run_base + ":inflight";
  }
  return call;
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
  auto scope = [&](std::int64_t idx) -> const RedisPath::Scope& {
    static const RedisPath::Scope kNone{};
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
  if (why == "run_forbidden") return refuse_run_forbidden(path.run_id);
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

RedisScriptCall settle_call(const RedisPath& path, std::int64_t tokens, std::int64_t cost_micros) {
  RedisScriptCall call;
  call.args = {num(static_cast<std::int64_t>(path.scopes.size())), num(path.tokens), num(tokens),
               num(path.cost_micros), num(cost_micros), path.hold};
  for (const auto& s : path.scopes) {
    call.keys.push_back(s.bucket_key);
    call.keys.push_back(s.concurrency_key);
    call.args.push_back(num(s.tok_ceil));
    call.args.push_back(num(s.concurrency));
  }
  if (!path.run_key.empty()) {
    call.keys.push_back(path.run_key);
    call.keys.push_back(path.run_inflight_key);
  }
  return call;
}

}  // namespace tg::limits
