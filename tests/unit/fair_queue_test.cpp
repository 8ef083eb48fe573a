// VTC ordering, weights, counter lifting, users inside a tenant; FCFS.
#include <gtest/gtest.h>

#include "sched/fair_queue.h"

namespace tg::sched {
namespace {

QueuedRequest req(std::uint64_t id, const char* tenant, std::int64_t prompt, const char* user = "u") {
  return {id, tenant, user, prompt, 0};
}

TEST(FairQueue, FcfsIsArrivalOrder) {
  FairQueue q(Policy::kFcfs);
  for (std::uint64_t i = 0; i < 5; ++i) q.push(req(i, i % 2 ? "a" : "b", 100));
  for (std::uint64_t i = 0; i < 5; ++i) EXPECT_EQ(q.pop().id, i);
  EXPECT_TRUE(q.empty());
}

TEST(FairQueue, ServesTheTenantWithTheLowestVirtualCounter) {
  FairQueue q(Policy::kFair);
  // heavy queues ten 28k-token prompts before light's short ones arrive
  for (std::uint64_t i = 0; i < 10; ++i) q.push(req(i, "heavy", 28'000));
  for (std::uint64_t i = 100; i < 103; ++i) q.push(req(i, "light", 200));
  EXPECT_EQ(q.pop().tenant, "heavy");  // equal counters: by name; then heavy has 28k charged
  EXPECT_EQ(q.pop().tenant, "light");
  EXPECT_EQ(q.pop().tenant, "light");
  EXPECT_EQ(q.pop().tenant, "light");
  EXPECT_EQ(q.pop().tenant, "heavy");
  EXPECT_DOUBLE_EQ(q.counter("heavy"), 56'000);
  EXPECT_DOUBLE_EQ(q.counter("light"), 600);
}

TEST(FairQueue, OutputTokensAreChargedAtTwiceTheInputWeight) {
  FairQueue q(Policy::kFair);
  q.push(req(1, "a", 100));
  q.pop();
  q.charge_output("a", "u", 50);
  EXPECT_DOUBLE_EQ(q.counter("a"), 100 + 2 * 50);
}

TEST(FairQueue, WeightsDivideTheCharge) {
  FairQueue q(Policy::kFair);
  q.set_tenant_weight("gold", 2);
  for (std::uint64_t i = 0; i < 30; ++i) {
    q.push(req(i, "gold", 100));
    q.push(req(100 + i, "free", 100));
  }
  int gold = 0;
  for (int i = 0; i < 30; ++i) gold += q.pop().tenant == "gold";
  EXPECT_EQ(gold, 20) << "twice the service of a weight-1 tenant";
}

TEST(FairQueue, AReturningTenantIsLiftedSoIdleTimeIsNotBanked) {
  FairQueue q(Policy::kFair);
  // busy works alone for a long time
  for (std::uint64_t i = 0; i < 100; ++i) {
    q.push(req(i, "busy", 1000));
    q.pop();
  }
  EXPECT_DOUBLE_EQ(q.counter("busy"), 100'000);
  q.push(req(1000, "busy", 1000));
  // idle returns: lifted to busy's counter, not left at 0 with 100k of credit
  q.push(req(2000, "idle", 1000));
  EXPECT_DOUBLE_EQ(q.counter("idle"), 100'000);
  for (std::uint64_t i = 1; i < 10; ++i) {
    q.push(req(1000 + i, "busy", 1000));
    q.push(req(2000 + i, "idle", 1000));
  }
  int idle = 0;
  for (int i = 0; i < 10; ++i) idle += q.pop().tenant == "idle";
  EXPECT_EQ(idle, 5) << "they alternate instead of idle taking the next 100";
}

TEST(FairQueue, UsersInsideATenantShareItTheSameWay) {
  FairQueue q(Policy::kFair);
  for (std::uint64_t i = 0; i < 10; ++i) q.push(req(i, "t", 1000, "agent"));
  q.push(req(100, "t", 100, "human"));
  EXPECT_EQ(q.pop().user, "agent");
  EXPECT_EQ(q.pop().user, "human") << "the human's one request does not wait behind the agent's nine";
  EXPECT_EQ(q.waiting("t"), 9u);
}

}  // namespace
}  // namespace tg::sched
