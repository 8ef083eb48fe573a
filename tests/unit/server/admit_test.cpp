// server/stages/admit.h: limits then budgets; the 429 with jitter and its
// metric; nothing held after a refusal.
#include "server/stages/admit.h"

#include <gtest/gtest.h>

#include "fakes.h"

namespace tg::server::stages {
namespace {

using namespace tg::server::testing;


// A number field of a limits report; -1 when absent.
std::int64_t field(const Expected<std::string>& report, const std::string& name) {
  if (!report.ok()) return -1;
  const std::string key = "\"" + name + "\":";
  const auto at = report->find(key);
  return at == std::string::npos ? -1 : std::stoll(report->substr(at + key.size()));
}

class AdmitStage : public ::testing::Test {
 protected:
  void build(const std::string& top, const std::string& acme_extra) {
    config_ = test_config(top, acme_extra);
    store_ = limits::in_process_limit_store(config_);
    budgets_ = std::make_unique<meter::BudgetBook>(config_.budgets);
    admit_ = std::make_unique<Admit>(*store_, nullptr, *budgets_, metrics_, clock_);
  }
  Config config_;
  std::unique_ptr<limits::LimitStore> store_;
  std::unique_ptr<meter::BudgetBook> budgets_;
  Metrics metrics_;
  ManualClock clock_;
  std::unique_ptr<Admit> admit_;
};

TEST_F(AdmitStage, AdmittedHoldsTheReservationAndSaysTheRateLimitHeaders) {
  build("", "    user_limits: { requests_per_min: 5, tokens_per_min: 10000 }");
  EXPECT_EQ(&admit_->limits(), store_.get());
  auto a = run_sync(admit_->run(alice(), meter::Spend{100, 600}));
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_TRUE(a->admission.held());
  EXPECT_FALSE(a->budget_hold.has_value()) << "no budget configured";
  EXPECT_NE(a->headers.find("x-ratelimit-limit-requests: 5\r\n"), std::string::npos) << a->headers;
  EXPECT_NE(a->headers.find("x-ratelimit-remaining-requests: 4\r\n"), std::string::npos) << a->headers;
  EXPECT_NE(a->headers.find("x-ratelimit-limit-tokens: 10000\r\n"), std::string::npos) << a->headers;
  EXPECT_NE(a->headers.find("x-ratelimit-remaining-tokens: 9400\r\n"), std::string::npos) << a->headers;
  EXPECT_NE(a->headers.find("RateLimit-Policy:"), std::string::npos) << a->headers;
  EXPECT_EQ(field(store_->report("user:acme/alice", clock_.steady_us()), "in_flight"), 1);
  EXPECT_EQ(field(store_->report("user:acme/alice", clock_.steady_us()), "reserved_tokens"), 600);
  a->admission.settle(50, 0, clock_.steady_us());
  EXPECT_EQ(field(store_->report("user:acme/alice", clock_.steady_us()), "in_flight"), 0);
  EXPECT_EQ(field(store_->report("user:acme/alice", clock_.steady_us()), "reserved_tokens"), 0);
}

TEST_F(AdmitStage, RefusedIsTheLimitsOwn429WithJitterAddedAndItsMetric) {
  build("", "    user_limits: { requests_per_min: 1 }");
  auto first = run_sync(admit_->run(alice(), meter::Spend{1, 10}));
  ASSERT_TRUE(first.ok());
  // What the store itself says, then what the stage says, many times: the jitter is 0..10% (at least 0..1 s).
  const auto bare = store_->admit(limits::Ask::of(alice(), 10, 1), clock_.steady_us());
  ASSERT_FALSE(bare.ok());
  ASSERT_EQ(bare.error().retry_after_s, 60);
  int max_seen = 0;
  for (int i = 0; i < 200; ++i) {
    auto r = run_sync(admit_->run(alice(), meter::Spend{1, 10}));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().status, 429);
    EXPECT_EQ(r.error().type, bare.error().type);
    EXPECT_EQ(r.error().code, "user_rpm_exhausted");
    EXPECT_EQ(r.error().message, bare.error().message);
    EXPECT_GE(r.error().retry_after_s, 60);
    EXPECT_LE(r.error().retry_after_s, 66);
    max_seen = std::max(max_seen, r.error().retry_after_s);
  }
  EXPECT_GT(max_seen, 60) << "200 refusals and never any jitter";
  const std::string text = metrics_.render();
  EXPECT_NE(text.find(R"(tg_limit_rejections_total{tenant="acme",code="user_rpm_exhausted"} 200)"), std::string::npos)
      << text;
}

TEST_F(AdmitStage, ABudgetRefusalAfterTheLimitsAdmittedReleasesTheirReservation) {
  build(R"(
budgets:
  - { scope: tenant, tenant: acme, period: day, tokens: 1000 }
)",
        "    user_limits: { requests_per_min: 100, tokens_per_min: 10000 }");
  const Micros t = clock_.steady_us();
  const auto before = store_->report("user:acme/alice", t);
  ASSERT_TRUE(before.ok());

  auto r = run_sync(admit_->run(alice(), meter::Spend{100, 5000}));  // over the 1,000-token budget
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().status, 429);
  EXPECT_EQ(r.error().code, "budget_exceeded");
  EXPECT_EQ(metrics_.stats.budget_rejections_total.load(), 1);

  const auto after = store_->report("user:acme/alice", t);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(field(after, "in_flight"), 0) << *after;
  EXPECT_EQ(field(after, "reserved_tokens"), 0) << *after;

  // Within budget: admitted, with a budget hold.
  auto ok = run_sync(admit_->run(alice(), meter::Spend{1, 500}));
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  ASSERT_TRUE(ok->budget_hold.has_value());
  EXPECT_EQ(ok->budget_hold->reserved.tokens, 500);
  EXPECT_TRUE(ok->admission.held());
}

// A request the budget refused never ran: it should cost the tokens-per-minute
// limits nothing (its reservation released, not settled at its estimate).
TEST_F(AdmitStage, ABudgetRefusalChargesTheLimitsNoTokens) {
  build(R"(
budgets:
  - { scope: tenant, tenant: acme, period: day, tokens: 1000 }
)",
        "    user_limits: { tokens_per_min: 10000 }");
  const Micros t = clock_.steady_us();
  auto r = run_sync(admit_->run(alice(), meter::Spend{100, 5000}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "budget_exceeded");
  EXPECT_EQ(field(store_->report("user:acme/alice", t), "tokens_total"), 0)
      << "the refused request's 5,000-token estimate was charged: "
      << *store_->report("user:acme/alice", t);
  // What is left for the next request shows it too.
  auto next = store_->admit(limits::Ask::of(alice(), 1), t);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->quota().tokens.remaining, 10000 - 1);
}

}  // namespace
}  // namespace tg::server::stages
