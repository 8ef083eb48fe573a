// sched::Pool with an injected clock: capacity, the long-request lane and its
// work conservation, strict priority with aging, deadlines, cancellation.
#include <gtest/gtest.h>

#include "sched/pool.h"

namespace tg::sched {
namespace {

using Ids = std::vector<std::uint64_t>;

PoolConfig config(std::int64_t seqs, std::int64_t tokens) {
  PoolConfig c;
  c.max_seqs = seqs;
  c.inflight_tokens = tokens;
  c.long_tokens = 8'000;
  c.long_share = 0.5;
  c.batch_aging_s = 30;
  return c;
}

PoolRequest req(std::uint64_t id, const std::string& tenant, std::int64_t prompt, std::int64_t output,
                Priority p = Priority::kInteractive, double deadline = 0) {
  return {id, tenant, tenant + "-u", prompt, output, p, deadline};
}

TEST(Pool, GoesAtOnceWhileThereIsRoomAndWaitsOnlyWhenSaturated) {
  Pool pool(config(2, 100'000));
  pool.arrive(req(1, "a", 100, 100), 0);
  pool.arrive(req(2, "b", 100, 100), 0);
  pool.arrive(req(3, "c", 100, 100), 0);
  EXPECT_EQ(pool.dispatch(0), (Ids{1, 2}));
  EXPECT_EQ(pool.stats().waiting, 1u);
  EXPECT_EQ(pool.dispatch(1), Ids{});
  pool.finish(1, 0);
  EXPECT_EQ(pool.dispatch(2), (Ids{3}));
  EXPECT_EQ(pool.stats().inflight_seqs, 2);
  EXPECT_EQ(pool.stats().inflight_tokens, 400);
}

TEST(Pool, TheTokenBudgetBoundsInFlightWorkButAnEmptyPoolTakesAnything) {
  Pool pool(config(100, 1'000));
  pool.arrive(req(1, "a", 5'000, 5'000), 0);  // larger than the whole budget
  EXPECT_EQ(pool.dispatch(0), (Ids{1}));
  pool.arrive(req(2, "b", 10, 10), 0);
  EXPECT_EQ(pool.dispatch(0), Ids{}) << "over budget while the big one runs";
  pool.finish(1, 0);
  EXPECT_EQ(pool.dispatch(1), (Ids{2}));
}

TEST(Pool, LongWorkHoldsAtMostItsShareWhileShortWorkIsPresent) {
  Pool pool(config(100, 100'000));  // lane: 50,000 tokens of long work while short is present
  pool.arrive(req(100, "light", 500, 500), 0);
  ASSERT_EQ(pool.dispatch(0), (Ids{100}));  // short work running
  for (std::uint64_t i = 1; i <= 4; ++i) pool.arrive(req(i, "heavy", 4'000, 16'000), 0);
  EXPECT_EQ(pool.dispatch(0), (Ids{1, 2})) << "two 20k-token requests fill the 50k lane";
  EXPECT_EQ(pool.stats().long_inflight_tokens, 40'000);
  pool.arrive(req(101, "light", 500, 500), 1);
  EXPECT_EQ(pool.dispatch(1), (Ids{101})) << "short work passes the waiting long work";
  // Short work gone for a moment: a gap between chats, not idleness.
  pool.finish(100, 2);
  pool.finish(101, 2);
  EXPECT_EQ(pool.dispatch(5), Ids{}) << "long work would hold the pool for minutes";
  // Gone for short_idle_s (10 s): long work may fill the pool (work-conserving).
  EXPECT_EQ(pool.dispatch(12), (Ids{3, 4}));
  EXPECT_EQ(pool.stats().long_inflight_tokens, 80'000);
}

TEST(Pool, OneLongRequestIsAlwaysAllowedSoLongWorkNeverStarves) {
  Pool pool(config(3, 100'000));
  for (std::uint64_t i = 1; i <= 3; ++i) pool.arrive(req(i, "light", 500, 500), 0);
  pool.arrive(req(9, "heavy", 20'000, 20'000), 0);  // 40k: over the 50k lane? no, but short work comes first
  EXPECT_EQ(pool.dispatch(0), (Ids{9, 1, 2})) << "with no long request in flight, the long one goes first";
  pool.arrive(req(10, "heavy", 20'000, 20'000), 0);
  pool.finish(1, 0);
  EXPECT_EQ(pool.dispatch(1), (Ids{3})) << "then short work before more long work";
}

TEST(Pool, TheLaneIsFairAmongTenantsOnLongServiceOnly) {
  Pool pool(config(100, 100'000));
  pool.arrive(req(100, "mixed", 500, 500), 0);
  pool.arrive(req(1, "flood", 4'000, 16'000), 0);
  ASSERT_EQ(pool.dispatch(0), (Ids{1, 100}));
  // "mixed" has had lots of short service; "flood" has had long service.
  for (std::uint64_t i = 200; i < 230; ++i) {
    pool.arrive(req(i, "mixed", 2'000, 500), 1);
    pool.dispatch(1);
    pool.charge_output(i, 500);
    pool.finish(i, 0);
  }
  for (std::uint64_t i = 2; i <= 6; ++i) pool.arrive(req(i, "flood", 4'000, 16'000), 2);
  EXPECT_EQ(pool.dispatch(2), (Ids{2}));  // the 50k lane holds two 20k requests
  pool.arrive(req(50, "mixed", 9'000, 1'000), 3);  // mixed's one long request, behind flood's backlog in time
  // Each release makes room for one long request. On a shared counter mixed's
  // short service would put it behind all of flood's backlog; on long service
  // it is lifted level with flood and goes within the next two.
  pool.finish(1, 0);
  Ids order = pool.dispatch(4);
  pool.finish(2, 0);
  for (auto id : pool.dispatch(5)) order.push_back(id);
  ASSERT_GE(order.size(), 2u);
  EXPECT_EQ(Ids(order.begin(), order.begin() + 2), (Ids{3, 50}));
}

TEST(Pool, FcfsHasNoLaneAndKeepsArrivalOrder) {
  PoolConfig c = config(2, 100'000);
  c.policy = Policy::kFcfs;
  Pool pool(c);
  pool.arrive(req(1, "heavy", 20'000, 20'000), 0);
  pool.arrive(req(2, "heavy", 20'000, 20'000), 0);
  pool.arrive(req(3, "light", 100, 100), 0);
  EXPECT_EQ(pool.dispatch(0), (Ids{1, 2}));
  pool.arrive(req(4, "heavy", 20'000, 20'000), 1);
  pool.finish(1, 0);
  EXPECT_EQ(pool.dispatch(2), (Ids{3}));
}

TEST(Pool, InteractiveGoesFirstAndBatchAgesIntoIt) {
  Pool pool(config(1, 100'000));
  pool.arrive(req(1, "a", 100, 100), 0);
  ASSERT_EQ(pool.dispatch(0), (Ids{1}));
  pool.arrive(req(2, "a", 100, 100, Priority::kBatch), 0);
  pool.arrive(req(3, "b", 100, 100), 5);
  pool.finish(1, 0);
  EXPECT_EQ(pool.dispatch(10), (Ids{3})) << "interactive before an older batch request";
  pool.arrive(req(4, "b", 100, 100), 20);
  pool.finish(3, 0);
  EXPECT_EQ(pool.dispatch(31), (Ids{2})) << "after 30 s the batch request competes as interactive and wins on VTC";
  pool.finish(2, 0);
  EXPECT_EQ(pool.dispatch(32), (Ids{4}));
}

TEST(Pool, DeadlinesShedWaitingRequestsOnly) {
  Pool pool(config(1, 100'000));
  pool.arrive(req(1, "a", 100, 100, Priority::kInteractive, 5), 0);
  ASSERT_EQ(pool.dispatch(0), (Ids{1}));
  pool.arrive(req(2, "a", 100, 100, Priority::kInteractive, 5), 0);
  pool.arrive(req(3, "b", 100, 100, Priority::kBatch, 60), 0);
  EXPECT_EQ(pool.expire(4.9), Ids{});
  EXPECT_EQ(pool.expire(5), (Ids{2})) << "an admitted request is never shed";
  EXPECT_EQ(pool.waiting("a"), 0u);
  EXPECT_EQ(pool.stats().waiting, 1u);
  pool.finish(1, 0);
  EXPECT_EQ(pool.dispatch(6), (Ids{3}));
}

TEST(Pool, CancelledWaitersLeaveNoTraceAndAbandonedAdmissionsFreeCapacity) {
  Pool pool(config(1, 100'000));
  pool.arrive(req(1, "a", 100, 100), 0);
  pool.dispatch(0);
  for (std::uint64_t i = 2; i < 1'000; ++i) pool.arrive(req(i, "t" + std::to_string(i % 7), 100, 100), 0);
  for (std::uint64_t i = 2; i < 1'000; ++i) EXPECT_TRUE(pool.cancel(i));
  EXPECT_FALSE(pool.cancel(1)) << "admitted: finish() frees it, cancel() does not";
  EXPECT_EQ(pool.stats().waiting, 0u);
  pool.finish(1, 0);
  const PoolStats s = pool.stats();
  EXPECT_EQ(s.inflight_seqs, 0);
  EXPECT_EQ(s.inflight_tokens, 0);
  pool.arrive(req(5'000, "a", 100, 100), 1);
  EXPECT_EQ(pool.dispatch(1), (Ids{5'000}));
}

}  // namespace
}  // namespace tg::sched

#include "sched/live_pool.h"

namespace tg::sched {
namespace {

TEST(LivePool, ExpectedOutputBeforeHistory) {
  SchedulingConfig sc;
  sc.default_output_tokens = 500;
  LivePool pool("d", PoolSettings{}, sc, {});
  AdmissionAsk ask{{.tenant = "t", .user = "u"}, 100, std::nullopt, "", false, Priority::kInteractive};
  EXPECT_EQ(pool.expected_output(ask), 500);
  ask.reasoning_model = true;
  EXPECT_EQ(pool.expected_output(ask), 1000) << "a reasoning model counts as medium effort";
  ask.reasoning_effort = "high";
  EXPECT_EQ(pool.expected_output(ask), 2000);
  ask.max_output_tokens = 1200;
  EXPECT_EQ(pool.expected_output(ask), 1200) << "max_tokens is the prediction until the tenant has history";
}

}  // namespace
}  // namespace tg::sched
