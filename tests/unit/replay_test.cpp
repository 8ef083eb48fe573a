// Offline replay: trace parsing (both formats, precise errors), completion of
// every request, determinism, and FCFS vs VTC on a small noisy-neighbour mix.
#include <gtest/gtest.h>

#include <cmath>

#include "sim/replay.h"

namespace tg::sim {
namespace {

TEST(Replay, ReadsBothTraceFormatsAndNamesTheBadLine) {
  auto simple = read_trace("arrival_s,tenant,user,prompt_tokens,output_tokens\n0.5,acme,alice,100,20\n1.0,globex,carol,50,5\n", "x");
  ASSERT_EQ(simple.size(), 2u);
  EXPECT_EQ(simple[1].tenant, "globex");
  EXPECT_EQ(simple[0].output_tokens, 20);
  auto azure = read_trace("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.5,374,44\n2023-11-16 18:15:50.0,396,109\n", "conv");
  ASSERT_EQ(azure.size(), 2u);
  EXPECT_DOUBLE_EQ(azure[0].arrival_s, 0);
  EXPECT_NEAR(azure[1].arrival_s, 3.5, 1e-9);
  EXPECT_EQ(azure[1].tenant, "conv");
  try {
    read_trace("arrival_s,tenant,user,prompt_tokens,output_tokens\n0.5,acme,alice,100,20\nnope\n", "x");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "trace line 3: 'nope' is not arrival_s,tenant,user,prompt_tokens,output_tokens");
  }
  EXPECT_THROW(read_trace("a,b\n", "x"), std::runtime_error);
  auto prio = read_trace("arrival_s,tenant,user,prompt_tokens,output_tokens,priority\n0,a,u,1,1,batch\n0,a,u,1,1,interactive\n", "x");
  EXPECT_EQ(prio[0].priority, sched::Priority::kBatch);
  EXPECT_EQ(prio[1].priority, sched::Priority::kInteractive);
  try {
    read_trace("arrival_s,tenant,user,prompt_tokens,output_tokens,priority\n0,a,u,1,1,urgent\n", "x");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "trace line 2: priority 'urgent' is not interactive or batch");
  }
}

std::vector<TraceRequest> mix() {
  std::vector<TraceRequest> t;
  // eight light tenants, one short chat each every 2 s; one heavy tenant with 28k-token prompts every 4 s
  for (int s = 0; s < 600; ++s)
    for (int k = 0; k < 8; ++k)
      if ((s + k) % 2 == 0) t.push_back({s + 0.1 * k, "light" + std::to_string(k), "u", 600, 150});
  auto heavy = heavy_tenant("heavy", 0.25, 600, 28'000, 1'000);
  t.insert(t.end(), heavy.begin(), heavy.end());
  return t;
}

TEST(Replay, CompletesEveryRequestDeterministically) {
  auto a = replay(mix(), llama3_8b_h100(), sched::Policy::kFair);
  auto b = replay(mix(), llama3_8b_h100(), sched::Policy::kFair);
  EXPECT_EQ(to_json(a), to_json(b));
  std::int64_t done = 0;
  for (const auto& [name, s] : a.tenants) done += s.completed;
  EXPECT_EQ(done, static_cast<std::int64_t>(mix().size()));
  EXPECT_GT(a.jain, 0);
  EXPECT_LE(a.jain, 1.0);
}

TEST(Replay, FairOrderShieldsLightTenantsFromAHeavyOneWhenThePoolIsSaturated) {
  sched::PoolConfig pool;  // a small pool, so requests queue at the gateway
  pool.max_seqs = 16;
  pool.inflight_tokens = 60'000;
  auto fcfs = replay(mix(), llama3_8b_h100(), sched::Policy::kFcfs, pool);
  auto fair = replay(mix(), llama3_8b_h100(), sched::Policy::kFair, pool);
  EXPECT_LT(fair.tenants["light0"].ttft_p99_s, fcfs.tenants["light0"].ttft_p99_s);
  EXPECT_GT(fair.tenants["heavy"].completed, 0) << "the heavy tenant still progresses";
  EXPECT_GT(fair.jain, fcfs.jain) << "backlogged tenants share service more evenly";
  EXPECT_GT(fair.tokens_per_s, 0.85 * fcfs.tokens_per_s);  // a deliberately tiny pool costs some throughput
}

// The noisy neighbour of the hol benchmark, on synthetic light traffic: a
// reasoning tenant (4k prompt, 24k output) pins KV for minutes; the pool is the
// engine's own (256 sequences, its KV capacity).
TEST(Replay, TheLaneKeepsLightTenantsNearIsolatedLatencyAtFcfsThroughput) {
  // Four light tenants, 4 requests/s in all at exponential gaps, prompts
  // log-uniform over 100-8,000 tokens and outputs 50-400 (the shape of the
  // Azure conversation trace), from a fixed-seed generator.
  std::vector<TraceRequest> light;
  std::uint64_t x = 42;
  auto uniform = [&x] {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<double>(x >> 11) / 9007199254740992.0;
  };
  for (double t = 0; t < 300;) {
    const int k = static_cast<int>(uniform() * 4);
    const auto prompt = static_cast<std::int64_t>(100 * std::pow(80.0, uniform()));
    const auto output = static_cast<std::int64_t>(50 + 350 * uniform());
    light.push_back({t, "light" + std::to_string(k), "u" + std::to_string(static_cast<int>(uniform() * 8)), prompt, output});
    t += -std::log(1 - uniform()) / 4.0;
  }
  auto noisy = light;
  auto heavy = heavy_tenant("heavy", 0.05, 300, 4'000, 24'000);
  noisy.insert(noisy.end(), heavy.begin(), heavy.end());
  const auto alone = replay(light, llama3_8b_h100(), sched::Policy::kFair);
  const auto fcfs = replay(noisy, llama3_8b_h100(), sched::Policy::kFcfs);
  const auto fair = replay(noisy, llama3_8b_h100(), sched::Policy::kFair);
  for (int k = 0; k < 4; ++k) {
    const std::string t = "light" + std::to_string(k);
    SCOPED_TRACE(t);
    const double isolated = alone.tenants.at(t).ttft_p99_s;
    EXPECT_GT(fcfs.tenants.at(t).ttft_p99_s, 3 * isolated) << "fcfs: light work queues behind pinned reasoning work";
    EXPECT_LE(fair.tenants.at(t).ttft_p99_s, 1.2 * isolated);
  }
  EXPECT_GE(fair.tokens_per_s, 0.95 * fcfs.tokens_per_s);
  EXPECT_EQ(fair.tenants.at("heavy").completed, static_cast<std::int64_t>(heavy.size())) << "no starvation";
}

}  // namespace
}  // namespace tg::sim
