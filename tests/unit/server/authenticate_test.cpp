// server/stages/authenticate.h: the key (Bearer or x-api-key), 401s as the
// key ring names them, and the refusal budget judged on the head alone.
#include "server/stages/authenticate.h"

#include <gtest/gtest.h>

#include "server/metrics.h"
#include "fakes.h"

namespace tg::server::stages {
namespace {

using namespace tg::server::testing;

constexpr Micros kSec = 1'000'000;

class AuthenticateStage : public ::testing::Test {
 protected:
  Config config_ = test_config();
  identity::KeyRing keys_{config_};
  GatewayStats stats_;
  ManualClock clock_;
  // 2 units held at once, one back every 10 s.
  limits::RefusalBudget refusals_{limits::RefusalBudgetSettings{2, 0.1, 16}};
  Authenticate auth_{keys_, &refusals_, stats_, clock_};

  static Exchange exchange(std::string path = "/v1/chat/completions", std::string ip = "10.0.0.1") {
    Exchange x;
    x.start = std::chrono::steady_clock::now();
    x.method = "POST";
    x.path = std::move(path);
    x.client_ip = std::move(ip);
    x.who.request_id = "req-1";
    return x;
  }
  // A request refused before admission (one unit), answered 400.
  void charge_refusal(const Exchange& head) {
    Exchange x = exchange(head.path, head.client_ip);
    x.principal = head.principal;
    x.status = 400;
    x.error_code = "invalid_request";
    auth_.charge(x);
  }
};

TEST_F(AuthenticateStage, BearerAndXApiKeyAreBothAccepted) {
  auto bearer = auth_.run(make_request("POST", "/v1/chat/completions", "", {{"Authorization", std::string("Bearer ") + kAliceKey}}));
  ASSERT_TRUE(bearer.ok()) << bearer.error().message;
  EXPECT_EQ((*bearer)->key_id, "acme-alice");
  EXPECT_EQ((*bearer)->tenant, "acme");
  EXPECT_EQ((*bearer)->user, "alice");
  EXPECT_TRUE((*bearer)->user_bound);
  EXPECT_EQ((*bearer)->tenant_config, &config_.tenants[0]);

  auto api_key = auth_.run(make_request("POST", "/v1/messages", "", {{"x-api-key", kServiceKey}}));
  ASSERT_TRUE(api_key.ok()) << api_key.error().message;
  EXPECT_EQ((*api_key)->key_id, "acme-service");
  EXPECT_FALSE((*api_key)->user_bound);
  EXPECT_EQ((*api_key)->user, "");
}

TEST_F(AuthenticateStage, AMissingOrWrongKeyIs401WithTheKeyRingsCode) {
  struct Case {
    std::string authorization, api_key;
    const char* code;
  };
  const Case cases[] = {
      {"", "", "missing_api_key"},
      {"Basic dXNlcjpwYXNz", "", "invalid_authorization_header"},
      {"Bearer tg-not-a-configured-key", "", "invalid_api_key"},
      {"", "tg-not-a-configured-key", "invalid_api_key"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.code);
    Request req = make_request("POST", "/v1/chat/completions", "");
    if (!c.authorization.empty()) req.set(http::field::authorization, c.authorization);
    if (!c.api_key.empty()) req.set("x-api-key", c.api_key);
    auto r = auth_.run(req);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().status, 401);
    EXPECT_EQ(r.error().type, "authentication_error");
    EXPECT_EQ(r.error().code, c.code);
    // The stage says exactly what the ring says.
    auto ring = keys_.authenticate(c.authorization, c.api_key);
    ASSERT_FALSE(ring.ok());
    EXPECT_EQ(r.error().code, ring.error().code);
    EXPECT_EQ(r.error().message, ring.error().message);
    EXPECT_EQ(r.error().message.find("tg-not-a-configured-key"), std::string::npos) << "a key is never echoed";
  }
}

TEST_F(AuthenticateStage, RefusedUnreadOnlyOnceTheAddressSpentItsBudget) {
  Request head = make_request("POST", "/v1/chat/completions", "");  // no key: judged by address
  Exchange x = exchange();
  EXPECT_EQ(auth_.refused_unread(head, x), std::nullopt);
  EXPECT_EQ(x.principal, nullptr);
  charge_refusal(x);
  Exchange y = exchange();
  EXPECT_EQ(auth_.refused_unread(head, y), std::nullopt) << "one unit left of two";
  charge_refusal(y);

  Exchange z = exchange();
  auto refused = auth_.refused_unread(head, z);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->status, 429);
  EXPECT_EQ(refused->type, "rate_limit_error");
  EXPECT_EQ(refused->code, "too_many_refusals");
  EXPECT_EQ(refused->retry_after_s, 10) << "one unit comes back in 10 s";
  EXPECT_NE(refused->message.find("this address"), std::string::npos) << refused->message;
  EXPECT_EQ(stats_.refusal_budget_rejections_total.load(), 1);

  // Another address has its own budget.
  Exchange other = exchange("/v1/chat/completions", "10.0.0.2");
  EXPECT_EQ(auth_.refused_unread(head, other), std::nullopt);

  // The budget refills with the clock.
  clock_.advance_us(10 * kSec);
  Exchange later = exchange();
  EXPECT_EQ(auth_.refused_unread(head, later), std::nullopt);
  EXPECT_EQ(stats_.refusal_budget_rejections_total.load(), 1);
}

TEST_F(AuthenticateStage, RefusedUnreadIsOnlyForV1Paths) {
  Request head = make_request("GET", "/healthz", "", {}, "");
  Exchange spent = exchange();
  charge_refusal(spent);
  charge_refusal(spent);
  Exchange v1 = exchange();
  ASSERT_TRUE(auth_.refused_unread(make_request("POST", "/v1/chat/completions", ""), v1).has_value());
  for (const char* path : {"/healthz", "/metrics", "/admin/usage", "/v1"}) {
    SCOPED_TRACE(path);
    Exchange x = exchange(path);
    EXPECT_EQ(auth_.refused_unread(head, x), std::nullopt);
  }
}

TEST_F(AuthenticateStage, AValidKeyIsJudgedByItsKeyIdNotItsAddress) {
  Request alice = make_request("POST", "/v1/chat/completions", "", {{"Authorization", std::string("Bearer ") + kAliceKey}});
  Exchange x = exchange();
  EXPECT_EQ(auth_.refused_unread(alice, x), std::nullopt);
  ASSERT_NE(x.principal, nullptr) << "a valid key sets the principal";
  EXPECT_EQ(x.principal->key_id, "acme-alice");
  charge_refusal(x);
  charge_refusal(x);

  // The key is spent, from any address...
  Exchange elsewhere = exchange("/v1/chat/completions", "192.168.7.7");
  auto refused = auth_.refused_unread(alice, elsewhere);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->code, "too_many_refusals");
  EXPECT_NE(refused->message.find("key 'acme-alice'"), std::string::npos) << refused->message;
  ASSERT_NE(elsewhere.principal, nullptr);
  EXPECT_EQ(elsewhere.principal->key_id, "acme-alice");

  // ...but its address is not, for another key or no key at all.
  Request service = make_request("POST", "/v1/chat/completions", "", {{"x-api-key", kServiceKey}});
  Exchange same_ip = exchange();
  EXPECT_EQ(auth_.refused_unread(service, same_ip), std::nullopt);
  Exchange anonymous = exchange();
  EXPECT_EQ(auth_.refused_unread(make_request("POST", "/v1/chat/completions", ""), anonymous), std::nullopt);
  EXPECT_EQ(anonymous.principal, nullptr);
}

TEST_F(AuthenticateStage, ChargeIgnoresAnswersThatAreNot4xxAndRefusalsOfTheBudgetItself) {
  Exchange x = exchange();
  for (int status : {200, 204, 301, 500, 502, 503}) {
    Exchange a = exchange();
    a.status = status;
    a.error_code = status >= 500 ? "upstream_error" : "";
    auth_.charge(a);
    auth_.charge(a);
    auth_.charge(a);
  }
  Exchange unread = exchange();
  unread.status = 429;
  unread.error_code = "too_many_refusals";
  for (int i = 0; i < 5; ++i) auth_.charge(unread);
  EXPECT_EQ(auth_.refused_unread(make_request("POST", "/v1/chat/completions", ""), x), std::nullopt)
      << "nothing above charged the budget";

  // A 429 of a limit (after admission: 0 units + body) and a 404 do.
  Exchange limited = exchange();
  limited.status = 429;
  limited.error_code = "user_rpm_exhausted";
  limited.reached_admission = true;
  limited.body_bytes = 128 << 10;  // two units of body
  auth_.charge(limited);
  Exchange y = exchange();
  auto refused = auth_.refused_unread(make_request("POST", "/v1/chat/completions", ""), y);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->code, "too_many_refusals");
}

TEST_F(AuthenticateStage, WithoutARefusalBudgetNothingIsRefusedUnread) {
  Authenticate open(keys_, nullptr, stats_, clock_);
  Exchange x = exchange();
  for (int i = 0; i < 10; ++i) {
    Exchange r = exchange();
    r.status = 400;
    open.charge(r);
  }
  EXPECT_EQ(open.refused_unread(make_request("POST", "/v1/chat/completions", ""), x), std::nullopt);
}

}  // namespace
}  // namespace tg::server::stages
