// Hierarchical limits with an injected clock: buckets, borrowing and fair
// share, two-phase accounting, agent runs, headers.
#include <gtest/gtest.h>

#include <variant>

#include "core/config_load.h"
#include "limits/limit_store.h"
#include "limits/redis_script.h"
#include "store/redis_client.h"

namespace tg::limits {
namespace {

constexpr Micros kSec = 1'000'000;

Config config(const std::string& limits_yaml, const std::string& tenant_extra = "",
              const std::string& user_extra = "") {
  std::string yaml = R"(
orgs: [{ id: demo }]
models:
  - alias: chat
    deployments: [{ id: chat-sim, provider: sim }]
)" + limits_yaml + R"(
tenants:
  - id: acme
    org: demo
    users: [alice, bob)" + user_extra + R"(]
    keys: []
)" + tenant_extra + R"(
  - id: globex
    org: demo
)";
  auto r = load_config(yaml, "test.yaml", [](const std::string&) { return std::optional<std::string>(); });
  if (auto* p = std::get_if<ConfigProblems>(&r)) {
    for (auto& l : p->problems) ADD_FAILURE() << l;
    return Config{};
  }
  return std::get<Config>(r);
}

Ask ask(std::string_view user, std::int64_t tokens = 10, std::string_view tenant = "acme") {
  Ask a;
  a.org = "demo";
  a.tenant = tenant;
  a.user = user;
  a.model = "chat";
  a.deployment = "chat-sim";
  a.tokens = tokens;
  return a;
}

TEST(Limits, RequestsPerMinuteIsAnExactBucket) {
  auto store = in_process_limit_store(config("", "    user_limits: { requests_per_min: 3 }"));
  Micros t = 100 * kSec;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(store->admit(ask("alice"), t).ok()) << i;
  auto r = store->admit(ask("alice"), t);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().status, 429);
  EXPECT_EQ(r.error().code, "user_rpm_exhausted");
  EXPECT_EQ(r.error().message, "user 'acme/alice' requests-per-minute limit (3) exhausted; retry after 20s.");
  EXPECT_EQ(r.error().retry_after_s, 20);
  EXPECT_NE(r.error().headers.find("x-ratelimit-remaining-requests: 0\r\n"), std::string::npos) << r.error().headers;
  // Bob has his own bucket.
  EXPECT_TRUE(store->admit(ask("bob"), t).ok());
  // One request refills every 20 s, not a microsecond earlier.
  EXPECT_FALSE(store->admit(ask("alice"), t + 20 * kSec - 1).ok());
  EXPECT_TRUE(store->admit(ask("alice"), t + 20 * kSec).ok());
  EXPECT_FALSE(store->admit(ask("alice"), t + 20 * kSec).ok());
  // A full minute refills to the limit and no further.
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(store->admit(ask("alice"), t + 600 * kSec).ok());
  EXPECT_FALSE(store->admit(ask("alice"), t + 600 * kSec).ok());
}

TEST(Limits, EveryScopeOnThePathMustPass) {
  auto store = in_process_limit_store(config(R"(
limits:
  global: { requests_per_min: 1000 }
)", "    limits: { requests_per_min: 2 }"));
  Micros t = kSec;
  EXPECT_TRUE(store->admit(ask("alice"), t).ok());
  EXPECT_TRUE(store->admit(ask("bob"), t).ok());
  auto r = store->admit(ask("alice"), t);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "tenant_rpm_exhausted");
  EXPECT_NE(r.error().message.find("tenant 'acme' requests-per-minute limit (2) exhausted"), std::string::npos);
  EXPECT_TRUE(store->admit(ask("carol", 10, "globex"), t).ok());  // another tenant is not affected
}

TEST(Limits, TokensAreReservedThenSettledWithARefundOrAnExtraCharge) {
  auto store = in_process_limit_store(config("", "    user_limits: { tokens_per_min: 1000 }"));
  Micros t = kSec;
  auto a = store->admit(ask("alice", 600), t);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->quota().tokens.remaining, 400);
  auto b = store->admit(ask("alice", 600), t);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().code, "user_tpm_exhausted");
  a->settle(100, 0, t);  // used 100 of the 600 reserved: 500 come back
  auto c = store->admit(ask("alice", 600), t);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->quota().tokens.remaining, 300);
  c->settle(900, 0, t);  // used more than estimated: charged the difference
  auto d = store->admit(ask("alice", 1), t);
  EXPECT_FALSE(d.ok()) << "1000 - 100 - 900 leaves nothing";
  // A request that can never fit is a 400 naming max_tokens, not a 429 to retry.
  auto e = store->admit(ask("alice", 1001), t + 600 * kSec);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().status, 400);
  EXPECT_EQ(e.error().code, "tokens_exceed_limit");
  EXPECT_EQ(e.error().param, "max_tokens");
}

TEST(Limits, ConcurrencyIsReleasedOnSettleAndOnDestruction) {
  auto store = in_process_limit_store(config("", "    limits: { concurrency: 2 }"));
  Micros t = kSec;
  auto a = store->admit(ask("alice"), t);
  {
    auto b = store->admit(ask("bob"), t);
    ASSERT_TRUE(b.ok());
    auto c = store->admit(ask("bob"), t);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.error().code, "tenant_concurrency_exhausted");
  }  // b destroyed unsettled (an exception path): its slot is freed
  EXPECT_TRUE(store->admit(ask("bob"), t).ok());
  a->settle(10, 0, t);
  auto rep = store->report("tenant:acme", t);
  ASSERT_TRUE(rep.ok());
  EXPECT_NE(rep->find(R"("in_flight":0,"reserved_tokens":0)"), std::string::npos) << *rep;
}

TEST(Limits, ThousandsOfAbortedRequestsLeaveEveryCounterAtZero) {
  auto store = in_process_limit_store(config(R"(
limits:
  runs: { max_concurrency: 100000 }
)", "    limits: { concurrency: 5000, tokens_per_min: 100000000 }"));
  {
    std::vector<Admission> held;
    for (int i = 0; i < 3000; ++i) {
      Ask a = ask(i % 2 ? "alice" : "bob", 50);
      a.run_id = "run-1";
      std::string id = "req-" + std::to_string(i);
      a.request_id = id;
      auto r = store->admit(a, kSec);
      ASSERT_TRUE(r.ok()) << r.error().message;
      held.push_back(std::move(*r));
    }
    for (int i = 0; i < 3000; i += 3) held[i].settle(7, 0, 2 * kSec);  // some finish, the rest are dropped
  }
  for (const char* scope : {"global", "org:demo", "tenant:acme", "user:acme/alice", "user:acme/bob", "model:chat",
                            "deployment:chat-sim"}) {
    auto rep = store->report(scope, 3 * kSec);
    ASSERT_TRUE(rep.ok()) << scope;
    EXPECT_NE(rep->find(R"("in_flight":0,"reserved_tokens":0)"), std::string::npos) << scope << " " << *rep;
  }
  auto run = store->report("run:acme/run-1", 3 * kSec);
  ASSERT_TRUE(run.ok());
  EXPECT_NE(run->find(R"("in_flight":0)"), std::string::npos) << *run;
  EXPECT_NE(run->find(R"("tokens_reserved":0,"cost_used_micros":0,"cost_reserved_micros":0)"), std::string::npos) << *run;
}

// The story: alice's agent fans out while nine colleagues chat at their usual
// pace. Hierarchical fair share keeps the colleagues at zero refusals.
TEST(Limits, OneUsersFanOutIsThrottledBeforeItStarvesTheOthers) {
  auto store = in_process_limit_store(config(R"(
limits:
  fair_share: { burst_s: 10, active_window_s: 60 }
)", "    limits: { requests_per_min: 600 }\n    user_limits: { requests_per_min: 600 }",
                                             ", u1, u2, u3, u4, u5, u6, u7, u8, u9"));
  const char* others[] = {"u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9"};
  int others_refused = 0, others_ok = 0, alice_ok = 0;
  // 0-20 s: everyone chats (alice too, once a second); 20-80 s: alice storms.
  for (Micros ms = 0; ms < 80'000; ms += 10) {
    const Micros t = 1000 * kSec + ms * 1000;
    for (int u = 0; u < 9; ++u)
      if (ms % 1000 == u * 100) {
        auto r = store->admit(ask(others[u]), t);
        r.ok() ? ++others_ok : ++others_refused;
        if (r.ok()) r->settle(10, 0, t);
      }
    const int tries = ms < 20'000 ? (ms % 1000 == 950) : 10;  // then 1000 attempts a second
    for (int i = 0; i < tries; ++i) {
      auto r = store->admit(ask("alice"), t);
      if (r.ok()) {
        ++alice_ok;
        r->settle(10, 0, t);
      }
    }
  }
  EXPECT_EQ(others_refused, 0);
  EXPECT_EQ(others_ok, 9 * 80);
  // The tenant's 600/min over 80 s (+ the initial full bucket) bounds everyone together...
  EXPECT_LE(alice_ok + others_ok, 600 + 80 * 10);
  // ...and alice still got the capacity the others left idle, far above her 60/min share.
  EXPECT_GT(alice_ok, 500);
}

TEST(Limits, AnIdleParentLendsEverythingUpToTheChildsCeil) {
  auto store = in_process_limit_store(config("", "    limits: { tokens_per_min: { rate: 1000, ceil: 1000 } }\n"
                                                 "    user_limits: { tokens_per_min: { rate: 100, ceil: 800 } }"));
  int ok = 0;
  while (store->admit(ask("alice", 100), kSec).ok()) ++ok;
  EXPECT_EQ(ok, 8) << "guarantee 100, then borrowing up to the 800 ceil";
  auto r = store->admit(ask("bob", 100), kSec);
  EXPECT_TRUE(r.ok()) << "the tenant still had 200";
}

TEST(Limits, AgentRunsTrackDepthFanOutAndBudget) {
  auto store = in_process_limit_store(config(R"(
limits:
  runs: { max_depth: 2, max_fanout: 2, max_concurrency: 3, max_tokens: 1000 }
)"));
  auto call = [&](std::string id, std::string parent, std::string_view tenant = "acme", std::int64_t tokens = 10) {
    static std::vector<std::string> keep;  // Ask holds views
    keep.push_back(id);
    keep.push_back(parent);
    Ask a = ask(tenant == "acme" ? "alice" : "carol", tokens, tenant);
    a.run_id = "r1";
    a.request_id = keep[keep.size() - 2];
    a.parent_id = keep.back();
    return store->admit(a, kSec);
  };
  auto root = call("root", "");
  ASSERT_TRUE(root.ok());
  auto c1 = call("c1", "root");
  ASSERT_TRUE(c1.ok());
  auto c2 = call("c2", "root");
  ASSERT_TRUE(c2.ok());
  auto g0 = call("g0", "c1");
  ASSERT_FALSE(g0.ok());
  EXPECT_EQ(g0.error().code, "run_concurrency_exceeded");
  root->settle(10, 0, kSec);
  auto c3 = call("c3", "root");
  ASSERT_FALSE(c3.ok());
  EXPECT_EQ(c3.error().code, "run_fanout_exceeded");
  EXPECT_NE(c3.error().message.find("request 'root' already spawned 2 calls"), std::string::npos);
  auto g1 = call("g1", "c1");
  ASSERT_TRUE(g1.ok());
  g1->settle(10, 0, kSec);
  auto gg = call("gg", "g1");
  ASSERT_FALSE(gg.ok());
  EXPECT_EQ(gg.error().code, "run_depth_exceeded");
  auto unknown = call("x", "nope");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().status, 400);
  EXPECT_EQ(unknown.error().code, "unknown_parent");
  EXPECT_EQ(unknown.error().param, "X-TG-Parent");
  // Budget: 1000 tokens; 20 used, 20 in flight.
  auto big = call("big", "c2", "acme", 961);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.error().code, "run_budget_exhausted");
  c1->settle(10, 0, kSec);
  c2->settle(10, 0, kSec);
  EXPECT_TRUE(call("fits", "c2", "acme", 960).ok()) << "exactly the 1000";
}

TEST(Limits, RunsHaveWallTimeAndCallRateLimits) {
  auto store = in_process_limit_store(config(R"(
limits:
  runs: { max_wall_s: 60, calls_per_min: 2 }
)"));
  std::vector<std::string> ids;
  auto call = [&](Micros t) {
    ids.push_back("req" + std::to_string(ids.size()));
    Ask a = ask("alice");
    a.run_id = "r";
    a.request_id = ids.back();
    auto r = store->admit(a, t);
    if (r.ok()) r->settle(1, 0, t);
    return r.ok() ? std::string("ok") : r.error().code;
  };
  EXPECT_EQ(call(kSec), "ok");
  EXPECT_EQ(call(kSec), "ok");
  EXPECT_EQ(call(kSec), "run_rate_exceeded");
  EXPECT_EQ(call(31 * kSec), "ok");
  EXPECT_EQ(call(62 * kSec), "run_wall_time_exceeded");
}

TEST(Limits, AdminChangesAndReloadTakeEffectWithoutLosingUsage) {
  Config c = config("", "    user_limits: { requests_per_min: 100 }");
  auto store = in_process_limit_store(c);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(store->admit(ask("alice"), kSec).ok());
  ScopeLimits two;
  two.requests_per_min.ceil = 2;
  auto set = store->set_limits("user:acme/alice", two, kSec);
  ASSERT_TRUE(set.ok());
  EXPECT_NE(set->find(R"("requests_per_min":{"rate":0,"ceil":2})"), std::string::npos) << *set;
  EXPECT_FALSE(store->admit(ask("alice"), kSec).ok());
  EXPECT_TRUE(store->admit(ask("bob"), kSec).ok());
  EXPECT_EQ(store->set_limits("planet:mars", two, kSec).error().status, 404);
  store->reload(c);  // back to 100/min; the 5 already used still count
  int ok = 0;
  while (store->admit(ask("alice"), kSec).ok()) ++ok;
  EXPECT_EQ(ok, 95);
  EXPECT_EQ(store->report("nowhere:x", kSec).error().status, 404);
}

// A number field of a report, or -1 when the report has no such field.
std::int64_t field(const Expected<std::string>& report, const std::string& name) {
  if (!report.ok()) return -1;
  const std::string key = "\"" + name + "\":";
  const auto at = report->find(key);
  return at == std::string::npos ? -1 : std::stoll(report->substr(at + key.size()));
}

// An Ask that keeps the strings its views point at.
struct RunCall {
  std::string user, run, id, parent;
  Ask ask(std::string_view tenant = "acme", std::int64_t tokens = 10) const {
    Ask a = limits::ask(user, tokens, tenant);
    a.run_id = run;
    a.request_id = id;
    a.parent_id = parent;
    return a;
  }
};

TEST(Limits, TwoTenantsUsingOneRunIdHaveTwoIndependentRuns) {
  auto store = in_process_limit_store(config(R"(
limits:
  runs: { max_tokens: 100 }
)"));
  const RunCall acme_root{"alice", "r1", "acme-root", ""};
  auto a = store->admit(acme_root.ask("acme", 60), kSec);
  ASSERT_TRUE(a.ok());
  a->settle(60, 0, kSec);
  // globex's "r1" is its own run: admitted, with its whole budget (acme used 60 of 100).
  const RunCall globex_root{"carol", "r1", "globex-root", ""};
  auto g = store->admit(globex_root.ask("globex", 90), kSec);
  ASSERT_TRUE(g.ok()) << g.error().message;
  g->settle(90, 0, kSec);
  // It cannot hang calls under acme's: acme's request is no parent in globex's run,
  // refused exactly like a parent that never existed.
  const RunCall into_acme{"carol", "r1", "g2", "acme-root"}, nowhere{"carol", "r1", "g3", "never-sent"};
  auto e1 = store->admit(into_acme.ask("globex", 1), kSec);
  auto e2 = store->admit(nowhere.ask("globex", 1), kSec);
  ASSERT_FALSE(e1.ok());
  ASSERT_FALSE(e2.ok());
  EXPECT_EQ(e1.error().status, 400);
  EXPECT_EQ(e1.error().code, "unknown_parent");
  EXPECT_EQ(e2.error().code, e1.error().code);
  // Nor is acme's budget touched by globex's 90.
  const RunCall acme_kid{"alice", "r1", "acme-kid", "acme-root"};
  EXPECT_TRUE(store->admit(acme_kid.ask("acme", 40), kSec).ok()) << "60 + 40 = acme's 100";
  // The admin API names a run by tenant and id.
  auto ra = store->report("run:acme/r1", kSec);
  auto rg = store->report("run:globex/r1", kSec);
  ASSERT_TRUE(ra.ok());
  ASSERT_TRUE(rg.ok());
  EXPECT_NE(ra->find(R"("tenant":"acme")"), std::string::npos) << *ra;
  EXPECT_EQ(field(ra, "tokens_used"), 100);
  EXPECT_EQ(field(rg, "tokens_used"), 90);
  auto bare = store->report("run:r1", kSec);
  ASSERT_FALSE(bare.ok());
  EXPECT_EQ(bare.error().status, 404);
  EXPECT_NE(bare.error().message.find("run:TENANT/RUN_ID"), std::string::npos) << bare.error().message;
}

TEST(Limits, TenThousandUserNamesStayWithinTheTenantsBound) {
  // One request a minute per user: an admitted user's bucket is not full again for a minute.
  auto store = in_process_limit_store(config("", "    user_limits: { requests_per_min: 1 }"));
  const Micros t = 100 * kSec;
  std::vector<std::string> names;
  for (int i = 0; i < 10'050; ++i) names.push_back("u" + std::to_string(i));
  int admitted = 0;
  for (int i = 0; i < 10'000; ++i) {
    auto r = store->admit(ask(names[i]), t);
    if (r.ok()) ++admitted, r->settle(10, 0, t);
  }
  EXPECT_EQ(admitted, 10'000);
  EXPECT_EQ(field(store->report("tenant:acme", t), "users_tracked"), kMaxTrackedUsersPerTenant);
  // Every tracked user still owes its minute: forgetting one would hand it a
  // fresh bucket, so a new name is refused, naming the bound.
  auto full = store->admit(ask(names[10'000]), t + 10 * kSec);
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().status, 429);
  EXPECT_EQ(full.error().code, "too_many_users");
  EXPECT_NE(full.error().message.find("tenant 'acme' has 10000 users"), std::string::npos) << full.error().message;
  EXPECT_EQ(full.error().retry_after_s, 50) << "the oldest user's bucket is full 60 s after its request";
  EXPECT_TRUE(store->admit(ask("u0"), t + 60 * kSec).ok()) << "a tracked user is served as before";
  EXPECT_TRUE(store->admit(ask("dora", 10, "globex"), t + 10 * kSec).ok()) << "another tenant is not affected";
  // A minute on, the oldest can go: new names come in, the count stays at the bound.
  for (int i = 10'000; i < 10'050; ++i) EXPECT_TRUE(store->admit(ask(names[i]), t + 61 * kSec).ok()) << i;
  EXPECT_EQ(field(store->report("tenant:acme", t + 61 * kSec), "users_tracked"), kMaxTrackedUsersPerTenant);
  EXPECT_EQ(field(store->report("user:acme/u0", t + 61 * kSec), "requests_total"), 2) << "used last: kept";
}

TEST(Limits, UsersWithNothingToRememberNeverHitTheBound) {
  auto store = in_process_limit_store(config(""));  // no user limits: a user node holds only counters
  for (int i = 0; i < 20'000; ++i) {
    auto r = store->admit(ask("n" + std::to_string(i)), kSec + i);
    ASSERT_TRUE(r.ok()) << i << " " << r.error().message;
  }  // (each released at once)
  EXPECT_EQ(field(store->report("tenant:acme", 2 * kSec), "users_tracked"), kMaxTrackedUsersPerTenant);
}

TEST(Limits, ARefusedRequestLeavesNoNewUserBehind) {
  auto store = in_process_limit_store(config("", "    limits: { concurrency: 1 }"));
  auto held = store->admit(ask("alice"), kSec);
  ASSERT_TRUE(held.ok());
  for (int i = 0; i < 10'000; ++i) {
    auto r = store->admit(ask("x" + std::to_string(i)), kSec);
    ASSERT_FALSE(r.ok());
    ASSERT_EQ(r.error().code, "tenant_concurrency_exhausted");
  }
  auto tenant = store->report("tenant:acme", kSec);
  EXPECT_EQ(field(tenant, "users_tracked"), 1) << *tenant;
  EXPECT_EQ(field(tenant, "active_children"), 1) << *tenant;
}

TEST(Limits, RefusedUsersCountForFairShareOnlyWithinTheBound) {
  // A rate-limited tenant: a user refused on its first request still counts
  // as active (its share is reserved against the others), up to the bound.
  auto store = in_process_limit_store(config("", "    limits: { requests_per_min: 2 }"));
  for (const char* u : {"alice", "bob"}) {
    auto r = store->admit(ask(u), kSec);
    ASSERT_TRUE(r.ok());
    r->settle(10, 0, kSec);
  }
  for (int i = 0; i < 10'050; ++i) ASSERT_FALSE(store->admit(ask("x" + std::to_string(i)), kSec).ok());
  auto tenant = store->report("tenant:acme", kSec);
  EXPECT_EQ(field(tenant, "users_tracked"), kMaxTrackedUsersPerTenant) << *tenant;
  EXPECT_EQ(field(tenant, "active_children"), kMaxTrackedUsersPerTenant) << *tenant;
  // Those who used their share are not what goes first.
  EXPECT_EQ(field(store->report("user:acme/alice", kSec), "requests_total"), 1);
  EXPECT_EQ(field(store->report("user:acme/bob", kSec), "requests_total"), 1);
}

TEST(Limits, TenThousandRunIdsStayWithinTheTenantsBound) {
  auto store = in_process_limit_store(config(""));
  const Micros t = 10 * kSec;
  // A run with a call in flight all along.
  const RunCall long_call{"alice", "long", "long-1", ""};
  auto held = store->admit(long_call.ask(), t);
  ASSERT_TRUE(held.ok());
  std::vector<RunCall> runs;
  for (int i = 0; i < 10'000; ++i) runs.push_back({"alice", "run-" + std::to_string(i), "req-" + std::to_string(i), ""});
  // Ten rounds of 999 new runs, each round once the last one is quiet.
  int refused = 0;
  for (int round = 0; round < 10; ++round) {
    const Micros now = t + round * (kRunEvictQuietS + 1) * kSec;
    for (int i = round * 999; i < (round + 1) * 999; ++i) {
      auto r = store->admit(runs[i].ask(), now);
      if (!r.ok()) { ++refused; continue; }
      r->settle(10, 0, now);
    }
    EXPECT_EQ(field(store->report("tenant:acme", now), "runs_live"), kMaxLiveRunsPerTenant) << round;
  }
  EXPECT_EQ(refused, 0);
  EXPECT_TRUE(store->report("run:acme/long", t + 3000 * kSec).ok()) << "a run in flight is never forgotten";
  EXPECT_FALSE(store->report("run:acme/run-0", t + 3000 * kSec).ok()) << "the oldest quiet runs were";
}

TEST(Limits, ANewRunPastTheBoundIsRefusedUntilAnOldOneIsQuiet) {
  auto store = in_process_limit_store(config(""));
  const Micros t = 10 * kSec;
  std::vector<RunCall> runs;
  for (int i = 0; i <= 1000; ++i) runs.push_back({"alice", "run-" + std::to_string(i), "req-" + std::to_string(i), ""});
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(store->admit(runs[i].ask(), t).ok()) << i;
  auto r = store->admit(runs[1000].ask(), t + 100 * kSec);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().status, 429);
  EXPECT_EQ(r.error().code, "too_many_runs");
  EXPECT_EQ(r.error().message,
            "tenant 'acme' has 1000 live agent runs (the limit); a run is let go once it has had no call for 300s. "
            "Finish or pause runs, or reuse a run's X-TG-Run id; retry after 200s.");
  EXPECT_EQ(r.error().retry_after_s, 200);
  // A call of a live run, and another tenant's new run, are not affected.
  const RunCall again{"alice", "run-7", "req-7b", "req-7"};
  EXPECT_TRUE(store->admit(again.ask(), t + 100 * kSec).ok());
  EXPECT_TRUE(store->admit(runs[1000].ask("globex"), t + 100 * kSec).ok());
  // 300 s on, the runs not called since t are quiet: one of them makes room.
  EXPECT_TRUE(store->admit(runs[1000].ask(), t + 300 * kSec).ok());
  EXPECT_EQ(field(store->report("tenant:acme", t + 300 * kSec), "runs_live"), kMaxLiveRunsPerTenant);
  int kept = 0;
  for (int i = 0; i < 1000; ++i) kept += store->report("run:acme/run-" + std::to_string(i), t + 300 * kSec).ok();
  EXPECT_EQ(kept, 999);
  EXPECT_TRUE(store->report("run:acme/run-7", t + 300 * kSec).ok()) << "called at t + 100 s: not quiet";
}

TEST(Limits, ARunRemembersAtMostItsBoundOfCalls) {
  auto store = in_process_limit_store(config(""));
  const RunCall root{"alice", "agent", "root", ""};
  auto held = store->admit(root.ask(), kSec);  // in flight throughout: the parent of every call
  ASSERT_TRUE(held.ok());
  std::string last;
  for (int i = 0; i < 12'000; ++i) {
    const RunCall c{"alice", "agent", "c" + std::to_string(i), "root"};
    auto r = store->admit(c.ask(), kSec + i);
    ASSERT_TRUE(r.ok()) << i << " " << r.error().message;
    r->settle(10, 0, kSec + i);
  }
  auto rep = store->report("run:acme/agent", 2 * kSec);
  EXPECT_EQ(field(rep, "calls_remembered"), kMaxCallsPerRun) << *rep;
  EXPECT_EQ(field(rep, "calls"), 12'001);
  // The newest calls can still be parents; the oldest were forgotten.
  const RunCall child_of_new{"alice", "agent", "d1", "c11999"}, child_of_old{"alice", "agent", "d2", "c0"};
  EXPECT_TRUE(store->admit(child_of_new.ask(), 2 * kSec).ok());
  EXPECT_EQ(store->admit(child_of_old.ask(), 2 * kSec).error().code, "unknown_parent");
}

TEST(Limits, ARunWhoseRememberedCallsAreAllInFlightRefusesTheNext) {
  TrackingBounds b;
  b.calls_per_run = 3;
  auto store = in_process_limit_store(config(""), b);
  std::vector<Admission> held;
  for (int i = 0; i < 3; ++i) {
    const RunCall c{"alice", "agent", "c" + std::to_string(i), ""};
    auto r = store->admit(c.ask(), kSec);
    ASSERT_TRUE(r.ok());
    held.push_back(std::move(*r));
  }
  const RunCall next{"alice", "agent", "c3", ""};
  auto r = store->admit(next.ask(), kSec);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "run_calls_exhausted");
  EXPECT_EQ(r.error().message,
            "run 'agent' remembers 3 calls (the limit) and the oldest of them are still in flight; retry when one "
            "finishes.");
  held[1].settle(10, 0, kSec);
  EXPECT_TRUE(store->admit(next.ask(), kSec).ok()) << "c1 finished: forgotten to make room";
  EXPECT_EQ(field(store->report("run:acme/agent", kSec), "calls_remembered"), 3);
}

TEST(Limits, AdminPutSetsOnlyConfiguredScopesAndNeverEmptiesOneSilently) {
  auto store = in_process_limit_store(config("", "    user_limits: { requests_per_min: 3 }"));
  ScopeLimits two;
  two.requests_per_min.ceil = 2;
  for (const char* scope : {"tenant:nobody", "user:nobody/alice", "user:acme/", "org:nowhere", "key:nokey",
                            "model:nomodel", "deployment:nodep", "run:acme/r1", "planet:mars"}) {
    auto r = store->set_limits(scope, two, kSec);
    ASSERT_FALSE(r.ok()) << scope;
    EXPECT_EQ(r.error().status, 404) << scope;
    EXPECT_EQ(r.error().code, "scope_not_found") << scope;
    if (!std::string_view(scope).starts_with("user:acme")) EXPECT_FALSE(store->report(scope, kSec).ok()) << scope;
  }
  EXPECT_EQ(store->set_limits("tenant:nobody", two, kSec).error().message,
            "No tenant 'nobody' in the configuration; limits can be set only on configured scopes (add it to the "
            "config and reload first).");
  ScopeLimits plenty;
  plenty.requests_per_min.ceil = 1000;
  for (const char* scope : {"global", "org:demo", "tenant:globex", "user:acme/anyone", "model:chat", "deployment:chat-sim"})
    EXPECT_TRUE(store->set_limits(scope, plenty, kSec).ok()) << scope;
  // {} would remove every limit, the tenant's user_limits included: refused, saying how.
  auto empty = store->set_limits("user:acme/alice", ScopeLimits{}, kSec);
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().status, 400);
  EXPECT_EQ(empty.error().code, "empty_limits");
  EXPECT_NE(empty.error().message.find(R"({"requests_per_min": null, "tokens_per_min": null, "concurrency": null})"),
            std::string::npos) << empty.error().message;
  int ok = 0;
  while (ok < 10 && store->admit(ask("alice"), kSec).ok()) ++ok;
  EXPECT_EQ(ok, 3) << "alice keeps her tenant's 3 a minute";
  // Said explicitly, it is done.
  ASSERT_TRUE(store->set_limits("user:acme/alice", LimitsUpdate{ScopeLimits{}, true}, kSec).ok());
  EXPECT_TRUE(store->admit(ask("alice"), kSec).ok()) << "no limit left on alice";
}

TEST(RateHeaders, OpenAIAndIetfFormats) {
  Quota q;
  q.requests = {120, 119, 500'000, "user:acme/alice"};
  q.tokens = {60000, 59000, 61'500'000, "tenant:acme"};
  EXPECT_EQ(rate_limit_headers(q),
            "x-ratelimit-limit-requests: 120\r\nx-ratelimit-remaining-requests: 119\r\nx-ratelimit-reset-requests: 500ms\r\n"
            "x-ratelimit-limit-tokens: 60000\r\nx-ratelimit-remaining-tokens: 59000\r\nx-ratelimit-reset-tokens: 1m1.5s\r\n"
            "RateLimit-Policy: \"requests\";q=120;w=60, \"tokens\";q=60000;w=60\r\n"
            "RateLimit: \"requests\";r=119;t=1, \"tokens\";r=59000;t=62\r\n");
  EXPECT_EQ(openai_duration(7'000'000), "7s");
  EXPECT_EQ(openai_duration(360'000'000), "6m0s");
  EXPECT_EQ(rate_limit_headers(Quota{}), "");
}

}  // namespace
}  // namespace tg::limits

namespace tg::limits {
namespace {

int slot(std::string_view key) { return store::RedisClusterClient::slot_of(key); }

TEST(RedisCluster, KeySlotsAreRedisOwn) {
  EXPECT_EQ(slot("foo"), 12182);  // CLUSTER KEYSLOT foo
  EXPECT_EQ(slot("{user1000}.following"), slot("{user1000}.followers"));
  EXPECT_EQ(slot("tg:{acme}:user:acme/alice:b"), slot("acme"));
  EXPECT_EQ(slot("foo{}{bar}"), slot("foo{}{bar}")) << "an empty tag hashes the whole key";
  EXPECT_NE(slot("foo{}{bar}"), slot("bar"));
}

TEST(RedisScript, OnAClusterAPathSplitsIntoTheSharedSlotThenTheTenantSlot) {
  Config c = config("", "    limits: { requests_per_min: 300 }");
  c.orgs[0].limits.requests_per_min = {100, 100};
  LimitPolicy policy(c);
  Ask a = ask("alice", 50);
  a.run_id = "r1";
  a.request_id = "req-1";
  RedisOptions o;
  o.cluster = true;
  const auto parts = admit_parts(policy, a, o);
  ASSERT_EQ(parts.size(), 2u);
  for (const auto& p : parts) {
    SCOPED_TRACE(p.call.keys.front());
    for (const auto& k : p.call.keys) EXPECT_EQ(slot(k), slot(p.call.keys.front())) << k << ": one slot per call";
  }
  EXPECT_NE(slot(parts[0].call.keys.front()), slot(parts[1].call.keys.front()));
  // Part 1: the org; the tenant registered as the org's child; the org's facts handed off. Nothing of the run.
  EXPECT_EQ(parts[0].call.keys[0], "tg:{shared}:org:demo:b");
  for (const auto& k : parts[0].call.keys) EXPECT_EQ(k.find("run"), std::string::npos) << k;
  const auto& a1 = parts[0].call.args;
  EXPECT_EQ(a1[a1.size() - 3], "1");  // child of: the org (its first scope)
  EXPECT_EQ(a1[a1.size() - 2], "tenant:acme");
  EXPECT_EQ(a1.back(), "1");  // handoff: the org
  // Part 2: the tenant and the user (the user its child), the tenant's parent external, the run's state.
  const auto& p2 = parts[1];
  EXPECT_EQ(p2.call.keys[0], "tg:{acme}:user:acme/alice:b");
  EXPECT_EQ(p2.call.keys[3], "tg:{acme}:tenant:acme:b");
  EXPECT_EQ(p2.call.args[9 + 7], "2");
  EXPECT_EQ(p2.call.args[9 + 8 + 7], "-1") << "the tenant's parent lives in the other slot";
  EXPECT_GE(p2.ext_at, 0);
  EXPECT_EQ(p2.call.args.back(), "0");  // no handoff
  EXPECT_EQ(p2.path.run_key, "tg:{acme}:run:r1");
  EXPECT_EQ(p2.call.keys.back(), "tg:{acme}:runs") << "the tenant's live runs, in its slot";
  EXPECT_EQ(p2.path.ext_parent_kind, "org");
  // A refusal naming the external parent names the org.
  RedisValue reply{RedisValue::Type::kArray};
  auto str = [](const char* s) { RedisValue v{RedisValue::Type::kString}; v.str = s; return v; };
  auto num = [](std::int64_t i) { RedisValue v{RedisValue::Type::kInt}; v.integer = i; return v; };
  reply.array = {num(1), str("fair_share"), num(-1), num(2), num(0), num(100), num(2), num(50), num(4'000'000), num(60'000'000)};
  auto e = decode_admit(reply, p2.path);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("org 'demo'"), std::string::npos) << e.error().message;
  // Without a cluster: one call, as before.
  EXPECT_EQ(admit_parts(policy, a, RedisOptions{}).size(), 1u);
  // On a cluster, a path with only the tenant's own scopes and no run: one call.
  Config c3 = config("", "    limits: { requests_per_min: 300 }");
  LimitPolicy p3(c3);
  Ask b = ask("alice", 50);
  EXPECT_EQ(admit_parts(p3, b, o).size(), 1u);
  // ...and with a run too: a run is its tenant's, all of it in the tenant's slot.
  b.run_id = "r1";
  b.request_id = "req-2";
  const auto with_run = admit_parts(p3, b, o);
  ASSERT_EQ(with_run.size(), 1u);
  for (const auto& k : with_run[0].call.keys) EXPECT_EQ(slot(k), slot("acme")) << k;
}

TEST(RedisScript, KeysAreHashTaggedPerTenantAndRefusalsDecodeToTheSameErrors) {
  Config c = config("", "    user_limits: { requests_per_min: 3 }");
  LimitPolicy policy(c);
  Ask a = ask("alice", 50);
  a.key = "acme-alice";
  a.run_id = "r1";
  a.request_id = "req-1";
  RedisPath path;
  RedisScriptCall call = admit_call(policy, a, RedisOptions{}, path);
  // Only the limited scopes (user) and the children of limited parents go:
  // here the user alone, plus the 5 run keys, all in the tenant's slot.
  ASSERT_EQ(call.keys.size(), 1u * 3 + 5);
  EXPECT_EQ(call.keys[0], "tg:{acme}:user:acme/alice:b");
  EXPECT_EQ(call.keys[3], "tg:{acme}:run:r1");
  EXPECT_EQ(call.keys[6], "tg:{acme}:run:r1:order");
  EXPECT_EQ(call.keys[7], "tg:{acme}:runs");
  // Settling a run's call names the run so the tenant's index knows it was used.
  const RedisScriptCall settle = settle_call(path, 10, 0);
  EXPECT_EQ(settle.keys.back(), "tg:{acme}:runs");
  EXPECT_EQ(settle.args.back(), "r1");
  EXPECT_EQ(path.scopes[0].kind, "user");
  // With limits on the org and the tenant, the tenant and user go too (the
  // user as the tenant's fair-share child), each linked to its parent.
  Config c2 = config("", "    limits: { requests_per_min: 300 }");
  c2.orgs[0].limits.tokens_per_min.ceil = 1000;
  LimitPolicy p2(c2);
  RedisScriptCall call2 = admit_call(p2, a, RedisOptions{}, path);
  ASSERT_EQ(path.scopes.size(), 3u);
  EXPECT_EQ(call2.keys[0], "tg:{acme}:user:acme/alice:b");
  EXPECT_EQ(call2.keys[3], "tg:{acme}:tenant:acme:b");
  EXPECT_EQ(call2.keys[6], "tg:{org:demo}:b");
  EXPECT_EQ(call2.args[9 + 7], "2") << "the user's parent is the tenant, sent second";
  EXPECT_EQ(call2.args[9 + 8 + 7], "3") << "the tenant's parent is the org, sent third";
  EXPECT_EQ(call2.args[9 + 16 + 7], "0");
  call = admit_call(policy, a, RedisOptions{}, path);
  // A refusal reads exactly like the in-process store's.
  RedisValue reply{RedisValue::Type::kArray};
  auto str = [](const char* s) { RedisValue v{RedisValue::Type::kString}; v.str = s; return v; };
  auto num = [](std::int64_t i) { RedisValue v{RedisValue::Type::kInt}; v.integer = i; return v; };
  reply.array = {num(1), str("bucket"), num(1), num(0), num(3), num(0), num(20'000'000), num(60'000'000)};
  auto e = decode_admit(reply, path);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().code, "user_rpm_exhausted");
  EXPECT_EQ(e.error().message, "user 'acme/alice' requests-per-minute limit (3) exhausted; retry after 20s.");
  EXPECT_EQ(e.error().retry_after_s, 20);
  reply.array = {num(0), num(3), num(2), num(20'000'000), num(1), num(0), num(0), num(0), num(0)};
  auto q = decode_admit(reply, path);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->requests.scope, "user:acme/alice");
  EXPECT_EQ(q->requests.remaining, 2);
  RedisValue junk{RedisValue::Type::kString};
  EXPECT_EQ(decode_admit(junk, path).error().status, 503);
  // The bounds' refusals read like the in-process store's.
  reply.array = {num(1), str("too_many_runs"), num(1000), num(300), num(42'000'000)};
  auto runs = decode_admit(reply, path);
  ASSERT_FALSE(runs.ok());
  EXPECT_EQ(runs.error().code, "too_many_runs");
  EXPECT_EQ(runs.error().retry_after_s, 42);
  EXPECT_NE(runs.error().message.find("tenant 'acme' has 1000 live agent runs (the limit)"), std::string::npos);
  reply.array = {num(1), str("run_calls"), num(10000)};
  EXPECT_EQ(decode_admit(reply, path).error().message,
            "run 'r1' remembers 10000 calls (the limit) and the oldest of them are still in flight; retry when one "
            "finishes.");
}

}  // namespace
}  // namespace tg::limits

namespace tg::limits {
namespace {

TEST(Limits, TokenCeilingIsTheSmallestTokensPerMinuteCeilOnThePath) {
  auto store = in_process_limit_store(config(R"(limits: { global: { tokens_per_min: 900000 } })",
                                             "    limits: { tokens_per_min: 600000 }\n    user_limits: { tokens_per_min: 240000 }"));
  Ask a = ask("alice");
  a.org = "demo";
  a.key = "k";
  a.model = "chat";
  a.deployment = "chat-sim";
  EXPECT_EQ(store->token_ceiling(a), 240000);
  a.user = "";  // no user scope on the path: the tenant's ceiling
  EXPECT_EQ(store->token_ceiling(a), 600000);
  Ask g = ask("carol", 10, "globex");
  g.org = "demo";
  EXPECT_EQ(store->token_ceiling(g), 900000);
  ASSERT_TRUE(store->set_limits("user:acme/alice", ScopeLimits{{}, {0, 50000}, 0}, 0).ok());  // an admin change counts
  a.user = "alice";
  EXPECT_EQ(store->token_ceiling(a), 50000);
  auto none = in_process_limit_store(config(""));
  EXPECT_EQ(none->token_ceiling(ask("alice")), 0);
}

}  // namespace
}  // namespace tg::limits
