#include <gtest/gtest.h>

#include <string>

#include "limits/refusal_budget.h"

namespace tg::limits {
namespace {

TEST(RefusalBudget, ASourceIsRefusedOnceItSpentItsBurstAndRecoversAtTheRate) {
  RefusalBudget b({10, 2, 100});
  double now = 1000;
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(b.blocked_for_s("key:a", now), 0) << i;
    b.charge("key:a", 1, now);
  }
  EXPECT_GE(b.blocked_for_s("key:a", now), 1);
  EXPECT_EQ(b.blocked_for_s("key:b", now), 0);  // others are untouched
  EXPECT_EQ(b.blocked_for_s("key:a", now + 0.6), 0);  // 1.2 units back
  b.charge("key:a", 1, now + 0.6);                     // 0.2 left: still served
  EXPECT_EQ(b.blocked_for_s("key:a", now + 0.6), 0);
  b.charge("key:a", 1, now + 0.6);                     // 0.8 in debt
  EXPECT_EQ(b.blocked_for_s("key:a", now + 0.6), 1);   // (0.8 + 1) / 2 per second, rounded up
}

TEST(RefusalBudget, LargeBodiesCostMoreAndTheWaitSaysHowLong) {
  EXPECT_DOUBLE_EQ(RefusalBudget::cost(true, 0), 1.0);
  EXPECT_DOUBLE_EQ(RefusalBudget::cost(false, 65536), 1.0);
  EXPECT_DOUBLE_EQ(RefusalBudget::cost(true, 3 * 65536), 4.0);
  RefusalBudget b({100, 5, 100});
  b.charge("key:big", RefusalBudget::cost(false, 4u << 20), 0);  // 64 units
  EXPECT_EQ(b.blocked_for_s("key:big", 0), 0);
  b.charge("key:big", RefusalBudget::cost(false, 4u << 20), 0);  // 128 units: 28 in debt
  EXPECT_EQ(b.blocked_for_s("key:big", 0), 6);  // (28 + 1) / 5 per second, rounded up
}

TEST(RefusalBudget, TracksAtMostMaxSourcesForgettingTheLeastRecentlyCharged) {
  RefusalBudget b({1, 0.001, 64});
  for (int i = 0; i < 10000; ++i) b.charge("ip:" + std::to_string(i), 5, 0);
  EXPECT_EQ(b.tracked(), 64u);
  EXPECT_GE(b.blocked_for_s("ip:9999", 0), 1);  // the newest are remembered
  EXPECT_EQ(b.blocked_for_s("ip:0", 0), 0);     // the oldest forgotten: a full budget again
}

TEST(RefusalBudget, ABurstOfZeroNeverRefuses) {
  RefusalBudget b({0, 0, 10});
  for (int i = 0; i < 100; ++i) b.charge("key:a", 100, 0);
  EXPECT_EQ(b.blocked_for_s("key:a", 0), 0);
  EXPECT_EQ(b.tracked(), 0u);
}

}  // namespace
}  // namespace tg::limits
