// The in-process LimitStore: every scope is a node with token buckets kept
// in integer units (tokens × µs-per-minute, so refill is exact integer
// arithmetic), one mutex around admit/settle, no I/O and no clock.
// What clients name is bounded per tenant (TrackingBounds): a tenant's user
// nodes and its runs each sit in a queue, a run's calls too, and at a bound
// the oldest entry that can be forgotten goes.
#include <algorithm>
#include <climits>
#include <deque>
#include <list>
#include <mutex>
#include <unordered_map>

#include <fmt/format.h>

#include "limits/limit_store.h"
#include "limits/policy.h"
#include "limits/refusals.h"

namespace tg::limits {

Admission& Admission::operator=(Admission&& o) noexcept {
  if (this != &o) {
    if (store_) store_->settle(hold_, -1, -1, store_->now_for_release());
    store_ = std::exchange(o.store_, nullptr);
    hold_ = std::exchange(o.hold_, nullptr);
    quota_ = std::move(o.quota_);
  }
  return *this;
}

Admission::~Admission() {
  if (store_) store_->settle(hold_, -1, -1, store_->now_for_release());
}

void Admission::settle(std::int64_t tokens, std::int64_t cost_micros, Micros now) {
  if (!store_) return;
  std::exchange(store_, nullptr)->settle(hold_, tokens, cost_micros, now);
}

namespace {

constexpr std::int64_t kScale = 60'000'000;  // µs per minute: a level of 1 token per minute
constexpr std::int64_t kUnset = LLONG_MIN;
constexpr Micros kIdleEvict = 600'000'000;   // a scope idle this long (and full) is forgotten
constexpr Micros kRunIdleEvict = 3'600'000'000;
constexpr int kEvictScan = 32;                 // entries looked at, oldest first, when a bound is reached
constexpr std::size_t kMaxCachedPaths = 65'536;  // the path cache starts over past this
constexpr Micros kInFlightWait = 1'000'000;    // Retry-After when only a finishing request frees room

// A token bucket: `level` in tokens × kScale, refilled at `per_min` tokens a
// minute (which is per_min units a microsecond) up to `cap`. A fresh bucket is full.
struct Bucket {
  std::int64_t level = kUnset;
  std::int64_t cap = 0;  // the capacity at the last refill
  Micros t = 0;
  void refill(std::int64_t per_min, std::int64_t new_cap, Micros now) {
    if (level == kUnset) {  // new: full
      level = cap = new_cap;
      t = now;
      return;
    }
    // A changed limit (admin API, reload, or a fair share with more or fewer
    // siblings) keeps what was used: the level moves with the capacity.
    if (new_cap != cap) {
      level = std::min(new_cap, level + (new_cap - cap));
      cap = new_cap;
    }
    if (now > t) {
      const Micros dt = std::min<Micros>(now - t, 3'600'000'000);
      level = std::min(cap, level + dt * per_min);
      t = now;
    }
  }
  // Microseconds until the level reaches `need`.
  Micros wait_for(std::int64_t need, std::int64_t per_min) const {
    if (level >= need || per_min <= 0) return 0;
    return (need - level + per_min - 1) / per_min;
  }
  // Microseconds from `now` until it is full again (0: forgetting it changes nothing).
  Micros until_full(std::int64_t per_min, Micros now) const {
    if (level == kUnset || per_min <= 0) return 0;
    const Micros dt = now > t ? std::min<Micros>(now - t, 3'600'000'000) : 0;
    const std::int64_t l = std::min(cap, level + dt * per_min);
    return l >= cap ? 0 : (cap - l + per_min - 1) / per_min;
  }
};

enum class Kind { kGlobal, kOrg, kTenant, kUser, kKey, kModel, kDeployment };
const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kGlobal: return "global";
    case Kind::kOrg: return "org";
    case Kind::kTenant: return "tenant";
    case Kind::kUser: return "user";
    case Kind::kKey: return "key";
    case Kind::kModel: return "model";
    case Kind::kDeployment: return "deployment";
  }
  return "?";
}

struct Node;
struct Run;

// A tenant's names chosen by its clients, oldest first.
struct Tenant {
  std::list<Node*> users;
  std::list<Run*> runs;
};

struct Node {
  std::string name;  // "tenant:acme"
  std::string id;    // "acme" ("acme/alice" for users)
  Kind kind = Kind::kGlobal;
  const ScopeLimits* lim = nullptr;
  std::uint64_t gen = 0;
  Bucket hard[2];   // [0] requests, [1] tokens: the ceil
  Bucket share[2];  // this scope's share of its tree parent
  std::int64_t share_cap[2] = {0, 0};
  std::int64_t inflight = 0, reserved_tokens = 0;
  std::int64_t requests_total = 0, tokens_total = 0;
  Micros last_seen = 0;
  Micros active_touch = 0;        // when last moved to the back of its parent's active list
  Node* active_parent = nullptr;  // set while in that parent's active list
  std::list<Node*>::iterator active_it;
  std::list<Node*> active_children;  // oldest activity first
  Tenant* owner = nullptr;           // users: the tenant whose `users` list holds it
  std::list<Node*>::iterator owner_it;

  const RateLimit& rate(int d) const { return d == 0 ? lim->requests_per_min : lim->tokens_per_min; }
};

struct Call {
  std::int32_t depth = 0;
  std::int32_t children = 0;
  std::int32_t inflight = 0;
};

struct Run {
  std::string key;         // "acme/r1": runs are per tenant
  std::string id, tenant;  // "r1", "acme"
  const RunLimits* lim = nullptr;
  std::uint64_t gen = 0;
  Micros started = 0, last = 0;
  std::int64_t tokens_used = 0, tokens_reserved = 0, cost_used = 0, cost_reserved = 0;
  std::int64_t inflight = 0, calls_total = 0, max_depth_seen = 0;
  Bucket calls_bucket;
  // Hash of the request id → its place in the tree (64-bit: no allocation per call).
  std::unordered_map<std::uint64_t, Call> calls;
  std::deque<std::uint64_t> call_order;  // the calls, oldest first
  Tenant* owner = nullptr;
  std::list<Run*>::iterator owner_it;
};

// The nodes of one distinct request path, cached by the store.
struct Path {
  Node* chain[5] = {};  // global, org, tenant, user, key (those present)
  int depth = 0;
  Node* flat[2] = {};   // model, deployment
  int nflat = 0;
};

// What one admitted request reserved.
struct Hold {
  Node* nodes[7] = {};
  int n = 0;
  Node* share_children[3] = {};  // tree children whose share was charged
  int n_share = 0;
  Run* run = nullptr;
  std::uint64_t call = 0;  // the run's call this request is
  std::int64_t tokens = 0, cost = 0;
};

class InProcessLimitStore final : public LimitStore {
 public:
  InProcessLimitStore(const Config& c, const TrackingBounds& b) : policy_(c), bounds_(b) {}

  Expected<Admission> admit(const Ask& ask, Micros now) override {
    std::lock_guard lock(mu_);
    last_now_ = std::max(last_now_, now);
    if (now - last_sweep_ > 10'000'000) sweep(now);
    fresh_user_ = nullptr;
    Expected<Admission> r = admit_locked(ask, now);
    // A user scope first seen by a refused request is not kept, unless it
    // counts as active for its tenant's fair share (then it is a user of the
    // tenant like any other, within the tenant's bound).
    if (!r.ok() && fresh_user_ && !counts_for_fair_share(*fresh_user_)) {
      paths_.erase(path_key_);  // the one path that holds it
      forget(*fresh_user_);
    }
    return r;
  }

  Expected<std::string> report(std::string_view scope, Micros now) override {
    std::lock_guard lock(mu_);
    if (scope.starts_with("run:")) {
      const std::string_view name = scope.substr(4);
      if (name.find('/') == std::string_view::npos)
        return not_found(fmt::format("Name a run as run:TENANT/RUN_ID (runs are per tenant), not '{}'.", scope),
                         "scope_not_found", "scope");
      auto it = runs_.find(std::string(name));
      if (it == runs_.end()) return not_found(fmt::format("No run '{}' is known (runs are kept for an hour after their last call).", name), "scope_not_found", "scope");
      const Run& r = it->second;
      const RunLimits& rl = run_limits(r.tenant);
      return fmt::format(
          R"({{"scope":"{}","tenant":"{}","run":"{}","started_ms_ago":{},"calls":{},"calls_remembered":{},"in_flight":{},"max_depth_seen":{},)"
          R"("tokens_used":{},"tokens_reserved":{},"cost_used_micros":{},"cost_reserved_micros":{},)"
          R"("limits":{{"max_tokens":{},"max_cost_micros":{},"max_concurrency":{},"max_depth":{},"max_fanout":{},"calls_per_min":{},"max_wall_s":{}}}}})",
          scope, r.tenant, r.id, (now - r.started) / 1000, r.calls_total, r.calls.size(), r.inflight, r.max_depth_seen,
          r.tokens_used, r.tokens_reserved, r.cost_used, r.cost_reserved, rl.tokens, rl.cost_micros, rl.concurrency,
          rl.depth, rl.fanout, rl.calls_per_min, rl.wall_s);
    }
    auto it = nodes_.find(std::string(scope));
    const ScopeLimits* lim = nullptr;
    if (it == nodes_.end()) {
      // A configured scope with no traffic yet.
      lim = policy_.find(scope);
      if (!lim) return not_found(fmt::format("No scope '{}' (use global, org:ID, tenant:ID, user:TENANT/USER, key:ID, model:ALIAS, deployment:ID or run:TENANT/RUN_ID).", scope), "scope_not_found", "scope");
      return fmt::format(R"({{"scope":"{}","limits":{},"in_flight":0,"reserved_tokens":0,"requests_total":0,"tokens_total":0}})",
                         scope, limits_json(*lim));
    }
    Node& s = *it->second;
    resolve(s);
    std::string remaining;
    for (int d = 0; d < 2; ++d) {
      const RateLimit& r = s.rate(d);
      if (!r.ceil) continue;
      s.hard[d].refill(r.ceil, r.ceil * kScale, now);
      remaining += fmt::format(R"(,"{}_remaining":{})", d == 0 ? "requests" : "tokens",
                               std::max<std::int64_t>(0, s.hard[d].level / kScale));
    }
    if (s.kind == Kind::kTenant) {
      auto t = tenants_.find(s.id);
      remaining += fmt::format(R"(,"users_tracked":{},"runs_live":{})", t == tenants_.end() ? 0 : t->second.users.size(),
                               t == tenants_.end() ? 0 : t->second.runs.size());
    }
    expire(s, now);
    return fmt::format(
        R"({{"scope":"{}","limits":{},"in_flight":{},"reserved_tokens":{},"requests_total":{},"tokens_total":{},"active_children":{}{}}})",
        s.name, limits_json(*s.lim), s.inflight, s.reserved_tokens, s.requests_total, s.tokens_total,
        s.active_children.size(), remaining);
  }

  Expected<std::string> set_limits(std::string_view scope, const LimitsUpdate& update, Micros now) override {
    {
      std::lock_guard lock(mu_);
      if (auto refused = refuse_limits_update(policy_, scope, update)) return *refused;
      policy_.set(scope, update.limits);
    }
    return report(scope, now);
  }

  void reload(const Config& c) override {
    std::lock_guard lock(mu_);
    policy_.load(c);
  }

  std::int64_t token_ceiling(const Ask& a) override {
    std::lock_guard lock(mu_);
    return policy_.token_ceiling(a.org, a.tenant, a.user, a.key, a.model, a.deployment);
  }

 protected:
  void settle(void* hold, std::int64_t tokens, std::int64_t cost, Micros now) override {
    std::unique_ptr<Hold> h(static_cast<Hold*>(hold));
    std::lock_guard lock(mu_);
    last_now_ = std::max(last_now_, now);
    if (tokens < 0) tokens = h->tokens;  // released unsettled: charge the estimate
    if (cost < 0) cost = h->cost;
    const std::int64_t delta = (tokens - h->tokens) * kScale;
    for (int i = 0; i < h->n; ++i) {
      Node& s = *h->nodes[i];
      --s.inflight;
      s.reserved_tokens -= h->tokens;
      ++s.requests_total;
      s.tokens_total += tokens;
      s.last_seen = std::max(s.last_seen, now);
      resolve(s);
      const RateLimit& r = s.rate(1);
      if (r.ceil && s.hard[1].level != kUnset)
        s.hard[1].level = std::clamp(s.hard[1].level - delta, -r.ceil * kScale, r.ceil * kScale);
    }
    for (int i = 0; i < h->n_share; ++i) {
      Node& c = *h->share_children[i];
      if (c.share[1].level != kUnset && c.share_cap[1])
        c.share[1].level = std::clamp(c.share[1].level - delta, -c.share_cap[1] * 60, c.share_cap[1]);
    }
    if (Run* r = h->run) {
      --r->inflight;
      r->tokens_reserved -= h->tokens;
      r->cost_reserved -= h->cost;
      r->tokens_used += tokens;
      r->cost_used += cost;
      r->last = std::max(r->last, now);
      if (auto c = r->calls.find(h->call); c != r->calls.end() && c->second.inflight > 0) --c->second.inflight;
    }
  }

  Micros now_for_release() const override {
    std::lock_guard lock(mu_);
    return last_now_;
  }

 private:
  Expected<Admission> admit_locked(const Ask& ask, Micros now) {
    // The path's nodes, resolved once per distinct path and cached.
    path_key_.assign(ask.org).append(1, '\0').append(ask.tenant).append(1, '\0').append(ask.user).append(1, '\0')
        .append(ask.key).append(1, '\0').append(ask.model).append(1, '\0').append(ask.deployment);
    auto pit = paths_.find(path_key_);
    if (pit == paths_.end()) {
      if (paths_.size() >= kMaxCachedPaths) paths_.clear();
      Expected<Path> resolved = resolve_path(ask, now);
      if (!resolved.ok()) return resolved.error();
      pit = paths_.emplace(path_key_, *resolved).first;
    }
    const Path& path = pit->second;
    Node* const* chain = path.chain;
    const int depth = path.depth;
    Node* const* flat = path.flat;
    const int nflat = path.nflat;
    for (int i = 0; i < depth; ++i) {
      resolve(*chain[i]);
      chain[i]->last_seen = now;
    }
    for (int i = 0; i < nflat; ++i) {
      resolve(*flat[i]);
      flat[i]->last_seen = now;
    }

    // Children count as active from their first request, refused or not.
    const int tree_edges = depth - (ask.key.empty() ? 1 : 2);  // key has no fair share below its user
    for (int i = 0; i < tree_edges; ++i) activate(chain[i], chain[i + 1], now);

    const std::int64_t cost[2] = {1, std::max<std::int64_t>(0, ask.tokens)};
    // 1. hard limits, most specific scope first
    Node* order[7];
    int n = 0;
    for (int i = depth - 1; i >= 0; --i) order[n++] = chain[i];
    for (int i = 0; i < nflat; ++i) order[n++] = flat[i];
    for (int i = 0; i < n; ++i) {
      Node& s = *order[i];
      if (s.lim->concurrency && s.inflight >= s.lim->concurrency)
        return refuse_concurrency(kind_name(s.kind), s.id, s.lim->concurrency);
      for (int d = 0; d < 2; ++d) {
        const RateLimit& r = s.rate(d);
        if (!r.ceil) continue;
        Bucket& b = s.hard[d];
        b.refill(r.ceil, r.ceil * kScale, now);
        if (cost[d] > r.ceil)
          return refuse_too_big(kind_name(s.kind), s.id, d, cost[d], r.ceil);
        if (b.level < cost[d] * kScale) {
          return refuse_bucket(kind_name(s.kind), s.id, d, r.ceil, b.level / kScale,
                               b.wait_for(cost[d] * kScale, r.ceil), b.wait_for(r.ceil * kScale, r.ceil));
        }
      }
    }
    // 2. fair share: above its share, a child borrows only what leaves its
    // active siblings their burst in the parent's bucket.
    bool share_charged[5][2] = {};
    for (int i = policy_.fair_share() ? tree_edges - 1 : -1; i >= 0; --i) {
      Node& p = *chain[i];
      Node& c = *chain[i + 1];
      for (int d = 0; d < 2; ++d) {
        const RateLimit& pr = p.rate(d);
        if (!pr.ceil) continue;
        const std::int64_t parent_rate = pr.rate ? pr.rate : pr.ceil;
        const std::int64_t active = static_cast<std::int64_t>(p.active_children.size());
        const std::int64_t g = c.rate(d).rate ? c.rate(d).rate : std::max<std::int64_t>(1, parent_rate / active);
        c.share_cap[d] = g * policy_.burst_us();
        c.share[d].refill(g, c.share_cap[d], now);
        share_charged[i + 1][d] = true;
        if (c.share[d].level > 0) continue;  // within its guarantee
        const std::int64_t reserve = std::max<std::int64_t>(0, parent_rate - g) * policy_.burst_us();
        if (p.hard[d].level - cost[d] * kScale >= reserve) continue;  // idle capacity to borrow
        const Micros wait = std::min(c.share[d].wait_for(1, g), p.hard[d].wait_for(reserve + cost[d] * kScale, pr.ceil));
        return refuse_fair_share(kind_name(p.kind), p.id, d, pr.ceil, active, kind_name(c.kind), c.id, g, wait,
                                 c.share[d].wait_for(c.share_cap[d], g));
      }
    }
    // 3. the run: (tenant, run id) names it, so another tenant's run of the same id is another run.
    Run* run = nullptr;
    Call* parent_call = nullptr;
    std::int32_t call_depth = 0;
    std::uint64_t call_hash = 0;
    const RunLimits* run_lim = nullptr;
    if (!ask.run_id.empty()) {
      call_hash = std::hash<std::string_view>{}(ask.request_id);
      run_key_.assign(ask.tenant).append(1, '/').append(ask.run_id);
      auto it = runs_.find(run_key_);
      const std::uint64_t parent_hash = std::hash<std::string_view>{}(ask.parent_id);
      if (!ask.parent_id.empty()) {
        if (it != runs_.end()) {
          auto c = it->second.calls.find(parent_hash);
          if (c != it->second.calls.end()) parent_call = &c->second;
        }
        if (!parent_call)
          return refuse_unknown_parent(ask.run_id, ask.parent_id);
        call_depth = parent_call->depth + 1;
      }
      run_lim = &run_limits(ask.tenant);
      const RunLimits& rl = *run_lim;
      if (it != runs_.end()) {
        Run& r = it->second;
        if (rl.wall_s && now - r.started > rl.wall_s * 1'000'000)
          return refuse_run_wall(r.id, (now - r.started) / 1'000'000, rl.wall_s);
      }
      if (rl.depth && call_depth > rl.depth)
        return refuse_run_depth(ask.run_id, rl.depth, call_depth);
      if (rl.fanout && parent_call && parent_call->children >= rl.fanout)
        return refuse_run_fanout(ask.run_id, rl.fanout, ask.parent_id, parent_call->children);
      if (it != runs_.end()) {
        Run& r = it->second;
        if (rl.concurrency && r.inflight >= rl.concurrency)
          return refuse_run_concurrency(r.id, rl.concurrency);
        if (rl.calls_per_min) {
          r.calls_bucket.refill(rl.calls_per_min, rl.calls_per_min * kScale, now);
          if (r.calls_bucket.level < kScale) {
            return refuse_run_rate(r.id, rl.calls_per_min, r.calls_bucket.wait_for(kScale, rl.calls_per_min));
          }
        }
        if (rl.tokens && r.tokens_used + r.tokens_reserved + cost[1] > rl.tokens)
          return refuse_run_tokens(r.id, rl.tokens, r.tokens_used, r.tokens_reserved, cost[1]);
        if (rl.cost_micros && r.cost_used + r.cost_reserved + ask.cost_micros > rl.cost_micros)
          return refuse_run_cost(r.id, rl.cost_micros, r.cost_used, r.cost_reserved, ask.cost_micros);
        // Room for this call among the calls the run remembers (the last check: it may forget one).
        if (static_cast<std::int64_t>(r.calls.size()) >= bounds_.calls_per_run && !r.calls.contains(call_hash) &&
            !forget_a_call(r, parent_call ? parent_hash : call_hash))
          return refuse_run_calls(r.id, bounds_.calls_per_run);
      } else if (rl.tokens && cost[1] > rl.tokens) {
        return refuse_run_tokens(ask.run_id, rl.tokens, 0, 0, cost[1]);
      } else if (rl.cost_micros && ask.cost_micros > rl.cost_micros) {
        return refuse_run_cost(ask.run_id, rl.cost_micros, 0, 0, ask.cost_micros);
      }
      if (it == runs_.end()) {
        // Room for a new run among the tenant's (the last check: it may forget one).
        Tenant& t = tenant(ask.tenant);
        if (static_cast<std::int64_t>(t.runs.size()) >= bounds_.runs_per_tenant) {
          Micros wait = 0;
          if (!forget_a_run(t, now, wait))
            return refuse_too_many_runs(ask.tenant, bounds_.runs_per_tenant, bounds_.run_quiet_s, wait);
        }
        it = runs_.emplace(run_key_, Run{}).first;
        Run& r = it->second;
        r.key = it->first;
        r.id = std::string(ask.run_id);
        r.tenant = std::string(ask.tenant);
        r.started = now;
        r.owner = &t;
        r.owner_it = t.runs.insert(t.runs.end(), &r);
      }
      run = &it->second;
    }

    // Every check passed: commit.
    auto* h = new Hold;
    h->tokens = cost[1];
    h->cost = ask.cost_micros;
    Quota q;
    const Node* tightest[2] = {nullptr, nullptr};
    for (int i = 0; i < n; ++i) {
      Node& s = *order[i];
      h->nodes[h->n++] = &s;
      ++s.inflight;
      s.reserved_tokens += cost[1];
      for (int d = 0; d < 2; ++d) {
        const RateLimit& r = s.rate(d);
        if (!r.ceil) continue;
        s.hard[d].level -= cost[d] * kScale;
        Headroom& hr = d == 0 ? q.requests : q.tokens;
        const std::int64_t rem = std::max<std::int64_t>(0, s.hard[d].level / kScale);
        if (!hr.limit || rem * hr.limit < hr.remaining * r.ceil) {
          hr.limit = r.ceil;
          hr.remaining = rem;
          hr.reset_us = s.hard[d].wait_for(r.ceil * kScale, r.ceil);
          tightest[d] = &s;
        }
      }
    }
    if (tightest[0]) q.requests.scope = tightest[0]->name;
    if (tightest[1]) q.tokens.scope = tightest[1]->name;
    for (int i = 1; i < depth; ++i) {
      if (!share_charged[i][0] && !share_charged[i][1]) continue;
      Node& c = *chain[i];
      h->share_children[h->n_share++] = &c;
      for (int d = 0; d < 2; ++d)
        if (share_charged[i][d]) c.share[d].level = std::max(c.share[d].level - cost[d] * kScale, -c.share_cap[d] * 60);
    }
    if (run) {
      if (parent_call) ++parent_call->children;
      auto [call, added] = run->calls.try_emplace(call_hash, Call{call_depth, 0, 0});
      if (added) run->call_order.push_back(call_hash);
      ++call->second.inflight;
      run->max_depth_seen = std::max<std::int64_t>(run->max_depth_seen, call_depth);
      ++run->inflight;
      ++run->calls_total;
      run->tokens_reserved += cost[1];
      run->cost_reserved += ask.cost_micros;
      run->last = now;
      if (const std::int64_t cpm = run_lim->calls_per_min) {
        run->calls_bucket.refill(cpm, cpm * kScale, now);
        run->calls_bucket.level -= kScale;
      }
      h->run = run;
      h->call = call_hash;
    }
    return Admission(this, h, std::move(q));
  }

  void resolve(Node& s) {
    if (s.gen == policy_.generation()) return;
    s.lim = &policy_.of(s.name);
    s.gen = policy_.generation();
  }

  const RunLimits& run_limits(std::string_view tenant) const { return policy_.run_limits(tenant); }

  Tenant& tenant(std::string_view id) {
    auto it = tenants_.find(std::string(id));
    if (it == tenants_.end()) it = tenants_.emplace(std::string(id), Tenant{}).first;
    return it->second;
  }

  Node* node(Kind k, std::string_view id, Micros now) {
    name_.assign(kind_name(k));
    if (k != Kind::kGlobal) name_.append(":").append(id);
    auto it = nodes_.find(name_);
    if (it == nodes_.end()) {
      auto n = std::make_unique<Node>();
      n->name = name_;
      n->id = std::string(id);
      n->kind = k;
      it = nodes_.emplace(name_, std::move(n)).first;
    }
    Node* s = it->second.get();
    resolve(*s);
    s->last_seen = now;
    return s;
  }

  // The user's node; a new one only within the tenant's bound (forgetting
  // the oldest user that can be forgotten to make room).
  Expected<Node*> user_node(std::string_view tenant_id, std::string_view user, Micros now) {
    buf_.assign(tenant_id).append("/").append(user);
    name_.assign("user:").append(buf_);
    if (auto it = nodes_.find(name_); it != nodes_.end()) return node(Kind::kUser, buf_, now);
    Tenant& t = tenant(tenant_id);
    if (static_cast<std::int64_t>(t.users.size()) >= bounds_.users_per_tenant) {
      Micros wait = 0;
      if (!forget_a_user(t, now, wait)) return refuse_too_many_users(tenant_id, bounds_.users_per_tenant, wait);
    }
    Node* n = node(Kind::kUser, buf_, now);
    n->owner = &t;
    n->owner_it = t.users.insert(t.users.end(), n);
    fresh_user_ = n;
    return n;
  }

  Expected<Path> resolve_path(const Ask& ask, Micros now) {
    Path p;
    p.chain[p.depth++] = node(Kind::kGlobal, "", now);
    if (!ask.org.empty()) p.chain[p.depth++] = node(Kind::kOrg, ask.org, now);
    p.chain[p.depth++] = node(Kind::kTenant, ask.tenant, now);
    if (!ask.user.empty()) {
      Expected<Node*> u = user_node(ask.tenant, ask.user, now);
      if (!u.ok()) return u.error();
      p.chain[p.depth++] = *u;
    }
    if (!ask.key.empty()) p.chain[p.depth++] = node(Kind::kKey, ask.key, now);
    if (!ask.model.empty()) p.flat[p.nflat++] = node(Kind::kModel, ask.model, now);
    if (!ask.deployment.empty()) p.flat[p.nflat++] = node(Kind::kDeployment, ask.deployment, now);
    return p;
  }

  bool counts_for_fair_share(const Node& user) const {
    const Node* p = user.active_parent;
    return policy_.fair_share() && p && p->lim && (p->lim->requests_per_min.ceil || p->lim->tokens_per_min.ceil);
  }

  // Microseconds until forgetting `s` changes nothing: nothing in flight,
  // every bucket full (0: now).
  Micros forgettable_in(Node& s, Micros now) {
    if (s.inflight > 0 || !s.active_children.empty()) return kInFlightWait;
    resolve(s);
    Micros wait = 0;
    for (int d = 0; d < 2; ++d) {
      if (const std::int64_t ceil = s.rate(d).ceil) wait = std::max(wait, s.hard[d].until_full(ceil, now));
      if (s.share_cap[d] && policy_.burst_us() > 0)
        wait = std::max(wait, s.share[d].until_full(std::max<std::int64_t>(1, s.share_cap[d] / policy_.burst_us()), now));
    }
    return wait;
  }

  // A run can be forgotten once nothing is in flight, it has had no call for
  // run_quiet_s and its calls-per-minute bucket is full.
  Micros forgettable_in(const Run& r, Micros now) const {
    if (r.inflight > 0) return kInFlightWait;
    Micros wait = std::max<Micros>(0, r.last + bounds_.run_quiet_s * 1'000'000 - now);
    if (const std::int64_t cpm = run_limits(r.tenant).calls_per_min) wait = std::max(wait, r.calls_bucket.until_full(cpm, now));
    return wait;
  }

  // Forgets the oldest entry of `fifo` that can be forgotten, looking at no
  // more than kEvictScan; one it looks at and keeps goes to the back (a clock
  // hand over the tenant's entries: no bookkeeping per request, and what
  // cannot go now is not looked at again first). False, with `wait` until
  // the soonest looked at can go, when none.
  template <class T, class Forget>
  bool forget_oldest(std::list<T*>& fifo, Micros now, Micros& wait, Forget forget) {
    wait = LLONG_MAX;
    const std::size_t look = std::min<std::size_t>(kEvictScan, fifo.size());
    for (std::size_t i = 0; i < look; ++i) {
      T* e = fifo.front();
      const Micros w = forgettable_in(*e, now);
      if (w == 0) {
        forget(e);
        return true;
      }
      fifo.splice(fifo.end(), fifo, fifo.begin());
      wait = std::min(wait, w);
    }
    if (wait == LLONG_MAX) wait = kInFlightWait;
    return false;
  }

  bool forget_a_user(Tenant& t, Micros now, Micros& wait) {
    return forget_oldest(t.users, now, wait, [this](Node* u) {
      paths_.clear();  // they may point at it
      forget(*u);
    });
  }

  bool forget_a_run(Tenant& t, Micros now, Micros& wait) {
    return forget_oldest(t.runs, now, wait, [this](Run* r) {
      r->owner->runs.erase(r->owner_it);
      const std::string key = r->key;  // (not a reference into what erase destroys)
      runs_.erase(key);
    });
  }

  // Forgets the run's oldest call that is not in flight and not `keep` (the
  // new call's parent), looking at no more than kEvictScan; those it keeps
  // move to the back.
  bool forget_a_call(Run& r, std::uint64_t keep) {
    for (int i = 0; i < kEvictScan && !r.call_order.empty(); ++i) {
      const std::uint64_t id = r.call_order.front();
      r.call_order.pop_front();
      auto c = r.calls.find(id);
      if (c == r.calls.end()) continue;
      if (c->second.inflight > 0 || id == keep) {
        r.call_order.push_back(id);
        continue;
      }
      r.calls.erase(c);
      return true;
    }
    return false;
  }

  // Takes `s` out of every list that points at it (its parent's active
  // children, its children's parent, its tenant's users) before it goes.
  void unlink(Node& s) {
    if (s.active_parent) s.active_parent->active_children.erase(s.active_it);
    s.active_parent = nullptr;
    for (Node* c : s.active_children) c->active_parent = nullptr;
    s.active_children.clear();
    if (s.owner) s.owner->users.erase(s.owner_it);
    s.owner = nullptr;
  }

  // Unlinks `s` and frees it. REQUIRES: no path in paths_ points at it.
  void forget(Node& s) {
    unlink(s);
    const std::string name = s.name;  // (not a reference into what erase destroys)
    nodes_.erase(name);
  }

  void expire(Node& p, Micros now) {
    while (!p.active_children.empty()) {
      Node* c = p.active_children.front();
      if (c->active_touch + policy_.window_us() + policy_.window_us() / 16 > now) break;
      p.active_children.pop_front();
      c->active_parent = nullptr;
    }
  }

  void activate(Node* p, Node* c, Micros now) {
    expire(*p, now);
    if (c->active_parent == p) {
      // Kept roughly in activity order: moved back at most every 1/16 window.
      if (now - c->active_touch < policy_.window_us() / 16) return;
      p->active_children.splice(p->active_children.end(), p->active_children, c->active_it);
      c->active_touch = now;
    } else {
      c->active_touch = now;
      if (c->active_parent) c->active_parent->active_children.erase(c->active_it);
      c->active_it = p->active_children.insert(p->active_children.end(), c);
      c->active_parent = p;
    }
  }

  // Forgets scopes and runs nobody used for a while (X-TG-User names and run
  // ids are chosen by clients). A forgotten scope comes back full, which it would be.
  void sweep(Micros now) {
    last_sweep_ = now;
    paths_.clear();  // they point at nodes that may go now
    for (auto& [name, n] : nodes_) expire(*n, now);
    for (auto it = nodes_.begin(); it != nodes_.end();) {
      Node& s = *it->second;
      if (s.inflight == 0 && s.active_children.empty() && !s.active_parent && now - s.last_seen > kIdleEvict) {
        unlink(s);
        it = nodes_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto it = runs_.begin(); it != runs_.end();) {
      Run& r = it->second;
      const Micros ttl = std::max<Micros>(kRunIdleEvict, 2 * run_limits(r.tenant).wall_s * 1'000'000);
      if (r.inflight == 0 && now - r.last > ttl) {
        r.owner->runs.erase(r.owner_it);
        it = runs_.erase(it);
      } else {
        ++it;
      }
    }
    std::erase_if(tenants_, [](const auto& t) { return t.second.users.empty() && t.second.runs.empty(); });
  }

  mutable std::mutex mu_;
  LimitPolicy policy_;
  const TrackingBounds bounds_;
  std::unordered_map<std::string, std::unique_ptr<Node>> nodes_;
  std::unordered_map<std::string, Path> paths_;
  std::string path_key_, run_key_;
  std::unordered_map<std::string, Run> runs_;  // "TENANT/RUN_ID" → the run
  std::unordered_map<std::string, Tenant> tenants_;
  Node* fresh_user_ = nullptr;  // a user node created by the admit under way
  Micros last_now_ = 0, last_sweep_ = 0;
  std::string name_, buf_;
};

}  // namespace

std::unique_ptr<LimitStore> in_process_limit_store(const Config& config, const TrackingBounds& bounds) {
  return std::make_unique<InProcessLimitStore>(config, bounds);
}

}  // namespace tg::limits
