#include "store/redis_limit_store.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdio>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "limits/refusals.h"

namespace tg::store {
namespace net = boost::asio;
using limits::Admission;
using limits::RedisValue;

namespace {

std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

ApiError unavailable(const std::string& why) {
  return ApiError{503, "server_error", "limits_unavailable",
                  fmt::format("The shared limit store is unreachable ({}) and this limit fails closed; retry in a "
                              "moment.", why),
                  {}, 1};
}

void share(ScopeLimits& l, std::int64_t n) {
  auto div = [n](std::int64_t& v) {
    if (v) v = std::max<std::int64_t>(1, v / n);
  };
  div(l.requests_per_min.rate);
  div(l.requests_per_min.ceil);
  div(l.tokens_per_min.rate);
  div(l.tokens_per_min.ceil);
  div(l.concurrency);
}

void share(RunLimits& r, std::int64_t n) {
  for (std::int64_t* v : {&r.tokens, &r.cost_micros, &r.concurrency, &r.fanout, &r.calls_per_min})
    if (*v) *v = std::max<std::int64_t>(1, *v / n);
}

}  // namespace

Config local_share_config(const Config& c, std::int64_t n, bool runs) {
  Config s = c;
  share(s.limits.global, n);
  for (auto& o : s.orgs) share(o.limits, n);
  for (auto& t : s.tenants) {
    share(t.limits, n);
    share(t.user_limits, n);
    for (auto& u : t.users) share(u.limits, n);
    for (auto& k : t.keys) share(k.limits, n);
    if (runs) share(t.run_limits, n);
  }
  for (auto& m : s.models) {
    share(m.limits, n);
    for (auto& d : m.deployments) share(d.limits, n);
  }
  if (runs) share(s.limits.runs, n);
  return s;
}

RedisLimitStore::RedisLimitStore(net::any_io_executor ex, const LimitsConfig& cfg, io::DeadlineSweeper& deadlines,
                                 SharedPolicy& policy, limits::LimitStore& local, RedisLimitStats& stats)
    : ex_(ex),
      cfg_(cfg),
      client_(cfg.redis.cluster ? std::unique_ptr<RedisCaller>(std::make_unique<RedisClusterClient>(
                                      ex, cfg.redis.host, cfg.redis.port, deadlines, cfg.redis.timeout))
                                : std::make_unique<RedisClient>(ex, cfg.redis.host, cfg.redis.port, deadlines,
                                                                cfg.redis.timeout)),
      policy_(policy),
      local_(local),
      stats_(stats),
      admit_sha_(limits::script_sha1(limits::admit_script())),
      settle_sha_(limits::script_sha1(limits::settle_script())) {
  opts_.prefix = cfg.redis.key_prefix;
  opts_.cluster = cfg.redis.cluster;
  opts_.bounds = limits::TrackingBounds::of(cfg.tracking);  // (as the in-process store's)
}

namespace {
// What an admission holds in Redis: one path per slot it was admitted in.
struct RedisHold {
  std::vector<limits::RedisPath> parts;
};
}  // namespace

void RedisLimitStore::send_settle(limits::RedisScriptCall call) {
  // Off the request's path. If Redis is gone, the leases expire by themselves
  // and the buckets keep the estimate (the conservative side).
  auto c = std::make_shared<limits::RedisScriptCall>(std::move(call));
  net::co_spawn(
      ex_,
      [this, c]() -> net::awaitable<void> {
        auto r = co_await client_->eval(limits::settle_script(), settle_sha_, *c);
        if (!r) spdlog::debug("limits: settle not recorded in redis: {}", client_->last_error());
      },
      net::detached);
}

void RedisLimitStore::undo(std::vector<limits::RedisPath> parts) {
  for (auto& path : parts) send_settle(limits::settle_call(path, 0, 0, /*undo=*/true));
}

net::awaitable<Expected<Admission>> RedisLimitStore::admit_async(const limits::Ask& ask) {
  std::vector<limits::AdmitPart> parts;
  {
    std::lock_guard lock(policy_.mu);
    parts = limits::admit_parts(policy_.policy, ask, opts_);
  }
  // One part on a single primary; on a Cluster the shared slot's, then the
  // tenant slot's with the facts the first handed off (docs/limits-cluster.md).
  auto hold = std::make_unique<RedisHold>();
  std::optional<limits::Quota> quota;
  std::vector<std::int64_t> facts;
  std::optional<RedisValue> reply;
  for (auto& part : parts) {
    if (part.ext_at >= 0 && facts.size() == 7)
      for (std::size_t k = 0; k < 7; ++k) part.call.args[static_cast<std::size_t>(part.ext_at) + k] = std::to_string(facts[k]);
    reply.reset();
    if (!client_->down()) reply = co_await client_->eval(limits::admit_script(), admit_sha_, part.call);
    if (!reply || reply->type == RedisValue::Type::kError) break;
    auto decoded = limits::decode_admit(*reply, part.path);
    if (!decoded) {
      undo(std::move(hold->parts));
      co_return decoded.error();
    }
    quota = quota ? limits::merge_quota(*quota, *decoded) : *decoded;
    facts = limits::handoff_facts(*reply);
    hold->parts.push_back(std::move(part.path));
  }
  if (reply && reply->type != RedisValue::Type::kError && quota) {
    if (!stats_.up.exchange(true)) spdlog::warn("limits: redis at {}:{} answers again; fleet limits restored", cfg_.redis.host, cfg_.redis.port);
    co_return Admission(this, hold.release(), std::move(*quota));
  }
  undo(std::move(hold->parts));  // a part admitted before the store failed
  // Redis is unreachable (or refused the script): the configured outage behaviour.
  const std::string why = reply ? reply->str : client_->last_error();
  if (stats_.up.exchange(false))
    spdlog::error("limits: redis unreachable ({}); {} until it answers", why,
                  cfg_.redis.local_share ? fmt::format("enforcing 1/{} of every limit locally", cfg_.redis.fleet_size)
                                         : std::string("refusing requests (fail_closed)"));
  stats_.fallbacks.fetch_add(1);
  if (!cfg_.redis.local_share || (!ask.run_id.empty() && !cfg_.redis.runs_local_share)) co_return unavailable(why);
  const limits::Micros now =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
  co_return local_.admit(ask, now);
}

void RedisLimitStore::settle(void* hold, std::int64_t tokens, std::int64_t cost_micros, limits::Micros) {
  std::unique_ptr<RedisHold> h(static_cast<RedisHold*>(hold));
  for (const auto& path : h->parts) {
    const std::int64_t t = tokens < 0 ? path.tokens : tokens, c = cost_micros < 0 ? path.cost_micros : cost_micros;
    send_settle(limits::settle_call(path, t, c));
  }
}

Expected<Admission> RedisLimitStore::admit(const limits::Ask&, limits::Micros) {
  return server_error("internal: the Redis limit store is asynchronous; use admit_async");
}

net::awaitable<Expected<std::string>> RedisLimitStore::report_async(std::string_view scope) {
  std::string scope_limits, key_tenant;
  {
    std::lock_guard lock(policy_.mu);
    if (!scope.starts_with("run:") && !limits::LimitPolicy::valid_scope(scope))
      co_return not_found(fmt::format("No scope '{}' (use global, org:ID, tenant:ID, user:TENANT/USER, key:ID, "
                                      "model:ALIAS, deployment:ID or run:TENANT/ID).", scope),
                          "scope_not_found", "scope");
    const ScopeLimits& l = policy_.policy.of(scope);
    scope_limits = limits::limits_json(l);
    if (scope.starts_with("key:")) {
      auto it = policy_.key_tenant.find(std::string(scope.substr(4)));
      if (it != policy_.key_tenant.end()) key_tenant = it->second;
    }
  }
  auto tag = [&](std::string_view tenant) { return fmt::format("{}:{{{}}}", opts_.prefix, tenant); };
  if (scope.starts_with("run:")) {  // run:TENANT/ID (runs are per tenant, under its key tag)
    const std::string_view rest = scope.substr(4);
    const auto slash = rest.find('/');
    if (slash == std::string_view::npos)
      co_return not_found(fmt::format("Name a run as run:TENANT/RUN_ID (runs are per tenant), not '{}'.", scope),
                          "scope_not_found", "scope");
    const std::string base = fmt::format("{}:run:{}", tag(rest.substr(0, slash)), rest.substr(slash + 1));
    // (named argument vectors: GCC 12 mishandles temporaries inside co_await)
    const std::vector<std::string> hmget{"HMGET", base, "tokens", "cost", "calls", "start"};
    const std::vector<std::string> zcount{"ZCOUNT", base + ":inflight", "(" + std::to_string(now_us()), "+inf"};
    const std::vector<std::string> zcard{"ZCARD", base + ":order"};
    auto h = co_await client_->command(hmget);
    auto in = co_await client_->command(zcount);
    auto remembered = co_await client_->command(zcard);
    if (!h || !in || !remembered) co_return unavailable(client_->last_error());
    if (h->array.size() < 4 || h->array[3].type == RedisValue::Type::kNil)
      co_return not_found(fmt::format("No run '{}' is known.", rest), "scope_not_found", "scope");
    auto field = [&](std::size_t i) { return h->array[i].type == RedisValue::Type::kString ? h->array[i].str : "0"; };
    co_return fmt::format(R"({{"scope":"{}","store":"redis","calls":{},"calls_remembered":{},"in_flight":{},"tokens_used_and_reserved":{},"cost_used_and_reserved_micros":{}}})",
                          scope, field(2), remembered->integer, in->integer, field(0), field(1));
  }
  const bool tenant_owned = scope.starts_with("tenant:") || scope.starts_with("user:") || scope.starts_with("key:");
  std::string base;
  if (tenant_owned) {
    std::string_view id = scope.substr(scope.find(':') + 1);
    std::string tenant(id.substr(0, id.find('/')));
    if (scope.starts_with("key:")) tenant = key_tenant;  // keys live under their tenant's tag
    base = fmt::format("{}:{}", tag(tenant), scope);
  } else {
    base = limits::scope_base(opts_, "", scope, false);
  }
  const std::vector<std::string> hmget{"HMGET", base + ":b", "l1", "l2"};
  const std::vector<std::string> zcount{"ZCOUNT", base + ":c", "(" + std::to_string(now_us()), "+inf"};  // unexpired leases
  const std::vector<std::string> zcard{"ZCARD", base + ":a"};
  auto h = co_await client_->command(hmget);
  auto c = co_await client_->command(zcount);
  auto a = co_await client_->command(zcard);
  if (!h || !c || !a) co_return unavailable(client_->last_error());
  auto level = [&](std::size_t i) -> std::string {
    return h->array.size() > i && h->array[i].type == RedisValue::Type::kString ? h->array[i].str : "null";
  };
  std::string runs;
  if (scope.starts_with("tenant:")) {  // the tenant's live runs (its index of them)
    const std::vector<std::string> live{"ZCARD", fmt::format("{}:runs", tag(scope.substr(7)))};
    auto n = co_await client_->command(live);
    if (!n) co_return unavailable(client_->last_error());
    runs = fmt::format(R"(,"runs_live":{})", n->integer);
  }
  co_return fmt::format(R"({{"scope":"{}","store":"redis","limits":{},"in_flight":{},"active_children":{},"requests_level":{},"tokens_level":{}{}}})",
                        scope, scope_limits, c->integer, a->integer, level(0), level(1), runs);
}

Expected<std::string> RedisLimitStore::report(std::string_view, limits::Micros) {
  return server_error("internal: the Redis limit store is asynchronous; use report_async");
}

namespace {

// An override as stored in Redis: "rpm_rate rpm_ceil tpm_rate tpm_ceil concurrency".
std::string encode_limits(const ScopeLimits& l) {
  return fmt::format("{} {} {} {} {}", l.requests_per_min.rate, l.requests_per_min.ceil, l.tokens_per_min.rate,
                     l.tokens_per_min.ceil, l.concurrency);
}

std::optional<ScopeLimits> decode_limits(const std::string& s) {
  ScopeLimits l;
  long long v[5];
  if (std::sscanf(s.c_str(), "%lld %lld %lld %lld %lld", &v[0], &v[1], &v[2], &v[3], &v[4]) != 5) return std::nullopt;
  l.requests_per_min.rate = v[0];
  l.requests_per_min.ceil = v[1];
  l.tokens_per_min.rate = v[2];
  l.tokens_per_min.ceil = v[3];
  l.concurrency = v[4];
  return l;
}

}  // namespace

net::awaitable<Expected<std::string>> RedisLimitStore::set_limits_async(std::string_view scope,
                                                                        const limits::LimitsUpdate& update) {
  const ScopeLimits l = update.limits;
  {
    std::lock_guard lock(policy_.mu);
    if (auto refused = limits::refuse_limits_update(policy_.policy, scope, update)) co_return *refused;
  }
  const std::vector<std::string> hset{"HSET", opts_.prefix + ":policy", std::string(scope), encode_limits(l)};
  const std::vector<std::string> incr{"INCR", opts_.prefix + ":policy:v"};
  auto h = co_await client_->command(hset);
  std::optional<RedisValue> v;
  if (h && h->type != RedisValue::Type::kError) v = co_await client_->command(incr);
  if (!v || v->type == RedisValue::Type::kError)
    co_return ApiError{503, "server_error", "limits_unavailable",
                       fmt::format("Not applied: the shared limit store is unreachable ({}), so the fleet cannot take "
                                   "the change; retry in a moment.", h && h->type == RedisValue::Type::kError ? h->str : client_->last_error()),
                       {}, 1};
  {
    std::lock_guard lock(policy_.mu);
    policy_.policy.set(scope, l);
  }
  co_return fmt::format(R"j({{"scope":"{}","store":"redis","applied":"fleet","version":{}}})j", scope, v->integer);
}

net::awaitable<void> RedisLimitStore::follow_policy(const std::atomic<bool>& stop) {
  auto ex = co_await net::this_coro::executor;
  net::steady_timer timer(ex);
  while (!stop.load()) {
    const std::vector<std::string> get{"GET", opts_.prefix + ":policy:v"};
    std::optional<RedisValue> v;
    if (!client_->down()) v = co_await client_->command(get);
    if (v && v->type == RedisValue::Type::kString) {
      const std::int64_t version = std::stoll(v->str);
      if (version != policy_.applied_version.load()) {
        const std::vector<std::string> all{"HGETALL", opts_.prefix + ":policy"};
        auto h = co_await client_->command(all);
        if (h && h->type == RedisValue::Type::kArray) {
          std::lock_guard lock(policy_.mu);
          for (std::size_t i = 0; i + 1 < h->array.size(); i += 2)
            if (auto l = decode_limits(h->array[i + 1].str)) policy_.policy.set(h->array[i].str, *l);
          policy_.applied_version = version;
          spdlog::info("limits: {} admin override(s) applied from redis (version {})", h->array.size() / 2, version);
        }
      }
    }
    timer.expires_after(std::chrono::seconds(1));
    auto [ec] = co_await timer.async_wait(net::as_tuple(net::use_awaitable));
    if (ec) co_return;
  }
}

Expected<std::string> RedisLimitStore::set_limits(std::string_view scope, const limits::LimitsUpdate& update,
                                                  limits::Micros) {
  std::lock_guard lock(policy_.mu);
  if (auto refused = limits::refuse_limits_update(policy_.policy, scope, update)) return *refused;
  policy_.policy.set(scope, update.limits);
  return fmt::format(R"j({{"scope":"{}","store":"redis","applied":"this gateway; set it on every gateway of the fleet, or reload their config"}})j", scope);
}

std::int64_t RedisLimitStore::token_ceiling(const limits::Ask& a) {
  std::lock_guard lock(policy_.mu);
  return policy_.policy.token_ceiling(a.org, a.tenant, a.user, a.key, a.model, a.deployment);
}

void RedisLimitStore::reload(const Config& config) {
  std::lock_guard lock(policy_.mu);
  policy_.load(config);
  policy_.applied_version = -1;  // the fleet's overrides go back on top at the next poll
}

}  // namespace tg::store
