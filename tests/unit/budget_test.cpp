#include <gtest/gtest.h>

#include "meter/budget.h"

namespace tg::meter {
namespace {
using namespace std::chrono;

SysTime at(int y, unsigned m, unsigned d, int h = 0, int min = 0) {
  return sys_days(year{y} / month{m} / day{d}) + hours(h) + minutes(min);
}

BudgetConfig tenant_usd(const char* t, std::int64_t micros, BudgetPeriod p = BudgetPeriod::kDay) {
  BudgetConfig b;
  b.scope = BudgetScope::kTenant;
  b.tenant = t;
  b.period = p;
  b.limit = micros;
  return b;
}

TEST(BudgetBook, AdmitsExactlyUpToTheLimit) {
  BudgetBook book({tenant_usd("acme", 1000)});
  BudgetSubject acme{.tenant = "acme", .user = "alice", .key_id = "k"};
  auto now = at(2026, 11, 27, 10);
  auto a = book.reserve(acme, {600, 0}, now);
  ASSERT_TRUE(a.ok());
  auto b = book.reserve(acme, {400, 0}, now);  // 600 + 400 == 1000: allowed
  ASSERT_TRUE(b.ok());
  auto c = book.reserve(acme, {1, 0}, now);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().status, 429);
  EXPECT_EQ(c.error().code, "budget_exceeded");
  EXPECT_NE(c.error().message.find("tenant 'acme' daily budget of $0.001000"), std::string::npos) << c.error().message;
  EXPECT_NE(c.error().message.find("resets at 2026-11-28T00:00:00Z"), std::string::npos);
  EXPECT_EQ(c.error().retry_after_s, 14 * 3600);
  // Other tenants are untouched.
  EXPECT_TRUE(book.reserve({"globex", "", "", ""}, {5000, 0}, now).ok());
}

TEST(BudgetBook, SettleRefundsOrChargesTheDifference) {
  BudgetBook book({tenant_usd("acme", 1000)});
  BudgetSubject acme{.tenant = "acme"};
  auto now = at(2026, 11, 27, 10);
  auto h = book.reserve(acme, {900, 0}, now);
  ASSERT_TRUE(h.ok());
  EXPECT_FALSE(book.reserve(acme, {200, 0}, now).ok());
  book.settle(*h, {100, 0}, now);  // the request cost far less than its estimate
  EXPECT_TRUE(book.reserve(acme, {900, 0}, now).ok());
}

TEST(BudgetBook, ResetsAtUtcMidnightAndOnTheFirstOfTheMonth) {
  BudgetBook book({tenant_usd("acme", 100), tenant_usd("acme", 150, BudgetPeriod::kMonth)});
  BudgetSubject acme{.tenant = "acme"};
  auto h = book.reserve(acme, {100, 0}, at(2026, 11, 30, 23, 59));
  ASSERT_TRUE(h.ok());
  book.settle(*h, {100, 0}, at(2026, 11, 30, 23, 59));
  EXPECT_FALSE(book.reserve(acme, {1, 0}, at(2026, 11, 30, 23, 59)).ok());
  // A new day and a new month: both budgets start again.
  EXPECT_TRUE(book.reserve(acme, {100, 0}, at(2026, 12, 1, 0, 0)).ok());
  EXPECT_EQ(BudgetBook::period_start(BudgetPeriod::kMonth, at(2026, 12, 15)),
            duration_cast<milliseconds>(at(2026, 12, 1).time_since_epoch()).count());
  EXPECT_EQ(BudgetBook::period_end(BudgetPeriod::kMonth, at(2026, 12, 15)),
            duration_cast<milliseconds>(at(2027, 1, 1).time_since_epoch()).count());
}

TEST(BudgetBook, ReservesAtEveryScopeOrNone) {
  BudgetConfig user;
  user.scope = BudgetScope::kUser;
  user.tenant = "acme";
  user.user = "alice";
  user.in_tokens = true;
  user.limit = 50;
  BudgetBook book({tenant_usd("acme", 1000), user});
  BudgetSubject alice{.tenant = "acme", .user = "alice", .key_id = "k"};
  auto now = at(2026, 11, 27);
  auto fail = book.reserve(alice, {500, 60}, now);  // the user's token budget refuses
  ASSERT_FALSE(fail.ok());
  EXPECT_NE(fail.error().message.find("user 'alice' of tenant 'acme' daily budget of 50 tokens"), std::string::npos);
  // ...and the tenant budget was not charged for the refused request.
  EXPECT_TRUE(book.reserve({"acme", "bob", "k2", ""}, {1000, 0}, now).ok());
}

TEST(BudgetBook, SoftThresholdAlertsOncePerPeriod) {
  auto b = tenant_usd("acme", 1000);
  b.soft_percent = 50;
  BudgetBook book({b});
  BudgetSubject acme{.tenant = "acme"};
  auto now = at(2026, 11, 27);
  auto h1 = book.reserve(acme, {400, 0}, now);
  EXPECT_TRUE(book.settle(*h1, {400, 0}, now).empty());
  auto h2 = book.reserve(acme, {200, 0}, now);
  auto alerts = book.settle(*h2, {200, 0}, now);
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0].spent, 600);
  auto h3 = book.reserve(acme, {10, 0}, now);
  EXPECT_TRUE(book.settle(*h3, {10, 0}, now).empty());
}

TEST(BudgetBook, PreloadCountsOnlyTheCurrentPeriod) {
  BudgetBook book({tenant_usd("acme", 1000)});
  BudgetSubject acme{.tenant = "acme"};
  auto now = at(2026, 11, 27, 12);
  book.preload(acme, {900, 0}, at(2026, 11, 27, 3), now);
  book.preload(acme, {5000, 0}, at(2026, 11, 26, 3), now);  // yesterday: ignored
  EXPECT_FALSE(book.reserve(acme, {101, 0}, now).ok());
  EXPECT_TRUE(book.reserve(acme, {100, 0}, now).ok());
}

}  // namespace
}  // namespace tg::meter
