// The continuous-batching engine model: calibration against the published
// figures it is built from, and invariants under random load.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "sim/batch_engine.h"

namespace tg::sim {
namespace {

TEST(BatchEngine, RooflineMatchesTheH100Calibration) {
  BatchEngine e(llama3_8b_h100());
  // decode, batch 1: about 8 ms
  EXPECT_NEAR(e.step_seconds(0, 1, 2048), 0.008, 0.0015);
  // decode, 64 sequences of 2k context: about 15 ms
  EXPECT_NEAR(e.step_seconds(0, 64, 64 * 2048), 0.015, 0.0015);
  // prefill: 35-45k tokens/s
  const double rate = 8192 / e.step_seconds(8192, 0, 8192);
  EXPECT_GT(rate, 35'000);
  EXPECT_LT(rate, 45'000);
  // KV: about 450k tokens
  EXPECT_NEAR(static_cast<double>(e.kv_capacity_tokens()), 450'000, 20'000);
}

struct EngineRun {
  std::map<std::uint64_t, std::int64_t> generated, firsts, finishes;
  std::int64_t prefill_tokens = 0;
  std::uint64_t preemptions = 0;
  double end = 0;
};

EngineRun run_random(EngineProfile p, int n, std::uint32_t seed) {
  BatchEngine e(p);
  std::mt19937 rng(seed);
  EngineRun r;
  for (int i = 0; i < n; ++i)
    e.submit({static_cast<std::uint64_t>(i), std::uniform_int_distribution<std::int64_t>(1, 3000)(rng),
              std::uniform_int_distribution<std::int64_t>(1, 400)(rng)});
  while (e.busy()) {
    StepResult s = e.step();
    EXPECT_LE(e.kv_used_tokens(), e.kv_capacity_tokens());
    EXPECT_LE(s.prefill_tokens + s.decode_tokens, p.max_num_batched_tokens + 3000);  // a whole prompt may exceed it only unchunked
    EXPECT_LE(s.running, p.max_num_seqs);
    EXPECT_GT(s.end_s, s.start_s);
    r.prefill_tokens += s.prefill_tokens;
    for (const auto& ev : s.events) {
      r.generated[ev.id] += ev.tokens;
      r.firsts[ev.id] += ev.first;
      r.finishes[ev.id] += ev.finished;
    }
  }
  EXPECT_EQ(e.kv_used_tokens(), 0) << "all KV freed at the end";
  r.preemptions = e.preemptions();
  r.end = e.now();
  return r;
}

TEST(BatchEngine, EveryRequestCompletesOnceWithItsTokensAndKvNeverOverflows) {
  for (bool chunked : {true, false}) {
    EngineProfile p = llama3_8b_h100();
    p.chunked_prefill = chunked;
    EngineRun r = run_random(p, 500, 7);
    ASSERT_EQ(r.finishes.size(), 500u);
    std::mt19937 rng(7);
    for (int i = 0; i < 500; ++i) {
      std::uniform_int_distribution<std::int64_t>(1, 3000)(rng);
      const std::int64_t out = std::uniform_int_distribution<std::int64_t>(1, 400)(rng);
      EXPECT_EQ(r.generated[i], out) << i;
      EXPECT_EQ(r.firsts[i], 1) << i;
      EXPECT_EQ(r.finishes[i], 1) << i;
    }
  }
}

TEST(BatchEngine, PreemptedWorkIsRecomputed) {
  EngineProfile p = llama3_8b_h100();
  p.kv_capacity_tokens = 40'000;  // far too little for 500 requests: decodes must preempt
  EngineRun r = run_random(p, 500, 11);
  EXPECT_GT(r.preemptions, 0u);
  ASSERT_EQ(r.finishes.size(), 500u);
  for (const auto& [id, n] : r.finishes) EXPECT_EQ(n, 1) << id;
  // Recompute: more prefill work than the prompts alone.
  std::mt19937 rng(11);
  std::int64_t prompts = 0;
  for (int i = 0; i < 500; ++i) {
    prompts += std::uniform_int_distribution<std::int64_t>(1, 3000)(rng);
    std::uniform_int_distribution<std::int64_t>(1, 400)(rng);
  }
  EXPECT_GT(r.prefill_tokens, prompts);
}

TEST(BatchEngine, IsDeterministic) {
  EngineRun a = run_random(llama3_8b_h100(), 200, 3), b = run_random(llama3_8b_h100(), 200, 3);
  EXPECT_EQ(a.end, b.end);
  EXPECT_EQ(a.prefill_tokens, b.prefill_tokens);
}

// Why chunked prefill exists: a 28k-token prompt stalls everyone's decode for
// its whole prefill without it, and only for one budget-sized chunk per step with it.
TEST(BatchEngine, ChunkedPrefillBoundsTheStallALongPromptCauses) {
  auto worst_gap = [](bool chunked) {
    EngineProfile p = llama3_8b_h100();
    p.chunked_prefill = chunked;
    BatchEngine e(p);
    for (std::uint64_t i = 0; i < 8; ++i) e.submit({i, 200, 400});
    for (int k = 0; k < 20; ++k) e.step();  // the short ones are decoding
    e.submit({100, 28'000, 10});
    double last = e.now(), worst = 0;
    for (int k = 0; k < 60 && e.busy(); ++k) {
      StepResult s = e.step();
      for (const auto& ev : s.events)
        if (ev.id == 0 && ev.tokens) {
          worst = std::max(worst, s.end_s - last);
          last = s.end_s;
        }
    }
    return worst;
  };
  const double unchunked = worst_gap(false), chunked = worst_gap(true);
  EXPECT_GT(unchunked, 0.6) << "the whole 28k prefill in one step";
  EXPECT_LT(chunked, 0.3) << "at most one 8192-token chunk per step";
}

TEST(BatchEngine, ACancelledRequestFreesItsKvAndTheOthersFinish) {
  EngineProfile p = llama3_8b_h100();
  p.kv_capacity_tokens = 4096;
  BatchEngine e(p);
  e.submit({1, 2000, 500});
  e.submit({2, 1000, 50});
  e.submit({3, 100, 10});  // waiting: no room beside the first two
  e.step();
  e.step();
  EXPECT_GT(e.kv_used_tokens(), 2000);
  EXPECT_TRUE(e.cancel(1));
  EXPECT_FALSE(e.cancel(1));
  EXPECT_LT(e.kv_used_tokens(), 1200) << "the cancelled request's blocks are free at once";
  std::map<std::uint64_t, int> finished;
  while (e.busy())
    for (const TokenEvent& ev : e.step().events) {
      EXPECT_NE(ev.id, 1u);
      if (ev.finished) ++finished[ev.id];
    }
  EXPECT_EQ(finished, (std::map<std::uint64_t, int>{{2, 1}, {3, 1}}));
  EXPECT_EQ(e.kv_used_tokens(), 0);
  EXPECT_FALSE(e.cancel(3)) << "finished requests are gone";
}

}  // namespace
}  // namespace tg::sim
