// server/stages/settle.h: once per request; metrics, the ledger row (usage
// from the upstream or the gateway's own count, cost, cache status), the
// limits and budgets settled, a 4xx charged to its source.
#include "server/stages/settle.h"

#include <gtest/gtest.h>

#include "fakes.h"

namespace tg::server::stages {
namespace {

using namespace tg::server::testing;

std::int64_t field(const Expected<std::string>& report, const std::string& name) {
  if (!report.ok()) return -1;
  const std::string key = "\"" + name + "\":";
  const auto at = report->find(key);
  return at == std::string::npos ? -1 : std::stoll(report->substr(at + key.size()));
}

class SettleStage : public ::testing::Test {
 protected:
  SettleStage() {
    auto sink = std::make_unique<RecordingLedger>();
    ledger_rows_ = sink.get();
    ledger_ = std::make_unique<ledger::LedgerWriter>(std::move(sink), "", 1024, std::chrono::milliseconds(1));
    settle_ = std::make_unique<Settle>(config_, metrics_, access_log_, auth_, ledger_.get(), budgets_, webhook_, clock_);
  }

  // A chat request by alice that reached the upstream.
  Exchange exchange() {
    Exchange x;
    x.start = std::chrono::steady_clock::now();
    x.method = "POST";
    x.path = "/v1/chat/completions";
    x.client_ip = "10.0.0.1";
    x.endpoint = "chat.completions";
    x.principal = *keys_.authenticate(std::string("Bearer ") + kAliceKey, "");
    x.who.request_id = "req-1";
    x.who.org = "demo";
    x.who.tenant = "acme";
    x.who.user = "alice";
    x.who.key_id = "acme-alice";
    x.who.model = "chat";
    x.who.deployment = "chat-up";
    x.who.door = "openai";
    x.model_config = config_.find_model("chat");
    x.prompt_tokens_est = 12;
    x.reached_admission = true;
    x.upstream_status = 200;
    x.status = 200;
    return x;
  }
  std::vector<ledger::LedgerRow> rows() {
    ledger_->flush();
    return ledger_rows_->rows();
  }

  Config config_ = test_config(R"(
server: { access_log: "off" }
budgets:
  - { scope: tenant, tenant: acme, period: day, tokens: 100000 }
)",
                               "    user_limits: { tokens_per_min: 10000 }");
  identity::KeyRing keys_{config_};
  Metrics metrics_;
  AccessLog access_log_{"off"};
  ManualClock clock_;
  limits::RefusalBudget refusals_{limits::RefusalBudgetSettings{2, 0.1, 16}};
  Authenticate auth_{keys_, &refusals_, metrics_.stats, clock_};
  meter::BudgetBook budgets_{config_.budgets};
  net::io_context webhook_ioc_;
  Webhook webhook_{webhook_ioc_.get_executor()};
  std::unique_ptr<limits::LimitStore> limits_ = limits::in_process_limit_store(config_);
  RecordingLedger* ledger_rows_ = nullptr;
  std::unique_ptr<ledger::LedgerWriter> ledger_;
  std::unique_ptr<Settle> settle_;
};

TEST_F(SettleStage, RunsOnceASecondCallDoesNothing) {
  Exchange x = exchange();
  x.usage = api::Usage{10, 4, 0};
  settle_->run(x);
  EXPECT_TRUE(x.settled);
  settle_->run(x);
  settle_->run(x);
  const std::string text = metrics_.render();
  EXPECT_NE(text.find(R"(tg_requests_total{tenant="acme",model="chat",endpoint="chat.completions",status="200"} 1)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(R"(tg_tokens_total{tenant="acme",model="chat",kind="prompt"} 10)"), std::string::npos) << text;
  const auto r = rows();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].who.request_id, "req-1");
}

TEST_F(SettleStage, TheLedgerRowTakesTheUpstreamsUsageAndPricesIt) {
  Exchange x = exchange();
  x.usage = api::Usage{1000, 500, 0};
  x.stream = true;
  x.ttft = std::chrono::microseconds(1234);
  const ledger::LedgerRow row = settle_->ledger_row(x);
  EXPECT_EQ(row.usage_source, "upstream");
  EXPECT_EQ(row.prompt_tokens, 1000u);
  EXPECT_EQ(row.completion_tokens, 500u);
  EXPECT_EQ(row.cost_micros, 1000 + 1000) << "$1/1M in, $2/1M out";
  EXPECT_EQ(row.status, 200);
  EXPECT_EQ(row.endpoint, "chat.completions");
  EXPECT_TRUE(row.stream);
  EXPECT_EQ(row.ttft_us, 1234);
  EXPECT_EQ(row.cache_status, "none");
  EXPECT_EQ(row.who.tenant, "acme");
  EXPECT_EQ(row.who.user, "alice");
  EXPECT_EQ(row.who.key_id, "acme-alice");
  EXPECT_EQ(row.who.deployment, "chat-up");
  EXPECT_LE(row.ts_ms, clock_.wall_ms());
}

TEST_F(SettleStage, WithoutUpstreamUsageTheGatewayCountsItself) {
  Exchange x = exchange();
  x.generated = "Hello world";  // two o200k tokens
  const ledger::LedgerRow row = settle_->ledger_row(x);
  EXPECT_EQ(row.usage_source, "gateway");
  EXPECT_EQ(row.prompt_tokens, 12u) << "the estimate: the prompt reached the upstream";
  EXPECT_EQ(row.completion_tokens, 2u);
  EXPECT_EQ(row.cost_micros, 12 + 4);
  EXPECT_EQ(row.ttft_us, -1);

  // Refused before any upstream: nothing reached an engine.
  Exchange refused = exchange();
  refused.upstream_status = 0;
  refused.status = 429;
  refused.error_code = "user_rpm_exhausted";
  const ledger::LedgerRow none = settle_->ledger_row(refused);
  EXPECT_EQ(none.prompt_tokens, 0u);
  EXPECT_EQ(none.completion_tokens, 0u);
  EXPECT_EQ(none.cost_micros, 0);
  EXPECT_EQ(none.error_code, "user_rpm_exhausted");
  EXPECT_EQ(none.status, 429);

  // The client left while the upstream worked: the prompt is charged.
  Exchange gone = exchange();
  gone.upstream_status = 0;
  gone.client_gone = true;
  gone.status = 499;
  EXPECT_EQ(settle_->ledger_row(gone).prompt_tokens, 12u);
}

TEST_F(SettleStage, ACacheHitCostsNothingAndSaysSo) {
  Exchange x = exchange();
  x.who.deployment.clear();
  x.upstream_status = 0;
  x.cache.status = "hit";
  x.cache.audit.event = "hit";
  x.cache.audit.origin_request_id = "req-0";
  const ledger::LedgerRow row = settle_->ledger_row(x);
  EXPECT_EQ(row.usage_source, "cache");
  EXPECT_EQ(row.cache_status, "hit");
  EXPECT_EQ(row.cache.origin_request_id, "req-0");
  EXPECT_EQ(row.prompt_tokens, 0u);
  EXPECT_EQ(row.cost_micros, 0);

  Exchange miss = exchange();
  miss.cache.status = "miss";
  EXPECT_EQ(settle_->ledger_row(miss).cache_status, "miss");
}

TEST_F(SettleStage, TheLimitsAdmissionAndTheBudgetAreSettledAtTheActualSpend) {
  Exchange x = exchange();
  const Micros t = clock_.steady_us();
  auto admitted = limits_->admit(limits::Ask::of(x.who, 1000, 0), t);
  ASSERT_TRUE(admitted.ok());
  x.admission = std::move(*admitted);
  auto hold = budgets_.reserve(x.who, meter::Spend{3000, 1000}, clock_.wall());
  ASSERT_TRUE(hold.ok());
  x.budget_hold = std::move(*hold);
  EXPECT_EQ(field(limits_->report("user:acme/alice", t), "reserved_tokens"), 1000);

  x.usage = api::Usage{10, 5, 0};
  settle_->run(x);
  EXPECT_FALSE(x.admission.held());
  const auto after = limits_->report("user:acme/alice", t);
  EXPECT_EQ(field(after, "in_flight"), 0) << *after;
  EXPECT_EQ(field(after, "reserved_tokens"), 0) << *after;
  EXPECT_EQ(field(after, "tokens_total"), 15) << *after;

  // The budget holds what was spent (15 tokens), not the 1,000 reserved: 99,985 left for a reservation.
  auto rest = budgets_.reserve(x.who, meter::Spend{0, 100000 - 15}, clock_.wall());
  EXPECT_TRUE(rest.ok()) << rest.error().message;
  auto over = budgets_.reserve(x.who, meter::Spend{0, 1}, clock_.wall());
  EXPECT_FALSE(over.ok());

  const auto r = rows();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].prompt_tokens, 10u);
  EXPECT_EQ(r[0].completion_tokens, 5u);
}

TEST_F(SettleStage, A4xxChargesTheRefusalBudgetOfItsSource) {
  Request head = make_request("POST", "/v1/chat/completions", "");  // no key: by address
  for (int i = 0; i < 2; ++i) {
    Exchange x;
    x.start = std::chrono::steady_clock::now();
    x.path = "/v1/chat/completions";
    x.client_ip = "10.9.9.9";
    x.status = 401;
    x.error_code = "missing_api_key";
    settle_->run(x);
  }
  Exchange next;
  next.path = "/v1/chat/completions";
  next.client_ip = "10.9.9.9";
  auto refused = auth_.refused_unread(head, next);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->code, "too_many_refusals");
  EXPECT_TRUE(rows().empty()) << "no ledger row without a valid key";

  // A 200 and a 500 charge nothing.
  for (int status : {200, 500}) {
    Exchange x;
    x.start = std::chrono::steady_clock::now();
    x.path = "/v1/chat/completions";
    x.client_ip = "10.8.8.8";
    x.status = status;
    settle_->run(x);
    settle_->run(x);
    settle_->run(x);
  }
  Exchange other;
  other.path = "/v1/chat/completions";
  other.client_ip = "10.8.8.8";
  EXPECT_EQ(auth_.refused_unread(head, other), std::nullopt);
}

TEST_F(SettleStage, AnUnknownModelIsOneMetricLabel) {
  Exchange x = exchange();
  x.model_config = nullptr;
  x.who.model = "client-chosen-name-1";
  x.status = 404;
  settle_->run(x);
  Exchange y = exchange();
  y.model_config = nullptr;
  y.who.model = "client-chosen-name-2";
  y.status = 404;
  settle_->run(y);
  const std::string text = metrics_.render();
  EXPECT_NE(text.find(R"(model="_unknown",endpoint="chat.completions",status="404"} 2)"), std::string::npos) << text;
  EXPECT_EQ(text.find("client-chosen-name"), std::string::npos);
}

TEST_F(SettleStage, TheReleasedPoolTicketIsToldWhatWasProduced) {
  PoolSettings ps;
  ps.enabled = true;
  ps.max_seqs = 1;
  sched::LivePool pool("chat-up", ps, config_.scheduling, config_.tenants);
  sched::AdmissionAsk ask{exchange().who, 10, 16, "", false, sched::Priority::kInteractive, 1};
  auto t = run_sync(pool.acquire(ask));
  ASSERT_TRUE(t.ok());
  Exchange x = exchange();
  x.pool_ticket = std::move(*t);
  x.usage = api::Usage{10, 5, 0};
  EXPECT_EQ(pool.snapshot().pool.inflight_seqs, 1);
  settle_->run(x);
  EXPECT_EQ(pool.snapshot().pool.inflight_seqs, 0) << "settle frees the pool's capacity";
  EXPECT_FALSE(static_cast<bool>(x.pool_ticket));
}

}  // namespace
}  // namespace tg::server::stages
