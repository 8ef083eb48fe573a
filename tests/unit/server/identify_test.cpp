// server/stages/identify.h: the X-TG-* headers and the end user, checked
// and attributed; the upstream is sent the attributed user.
#include "server/stages/identify.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "fakes.h"

namespace tg::server::stages {
namespace {

using namespace tg::server::testing;

identity::Principal user_key() { return {"demo", "acme", "alice", "acme-alice", true, nullptr}; }
identity::Principal tenant_key() { return {"demo", "acme", "", "acme-service", false, nullptr}; }

RequestIdentity who_at(std::string door = "openai") {
  RequestIdentity w;
  w.request_id = "req-1";
  w.door = std::move(door);
  return w;
}

Request head(Headers h) { return make_request("POST", "/v1/chat/completions", "", h); }

Parsed parsed_openai(const std::string& body) {
  auto r = route("POST", "/v1/chat/completions");
  auto p = parse(make_request("POST", "/v1/chat/completions", body), *r, {});
  EXPECT_TRUE(p.ok()) << p.error().message;
  return std::move(*p);
}

Parsed parsed_anthropic(const std::string& body) {
  auto r = route("POST", "/v1/messages");
  auto p = parse(make_request("POST", "/v1/messages", body), *r, {});
  EXPECT_TRUE(p.ok()) << p.error().message;
  return std::move(*p);
}

TEST(IdentifyStage, FillsTheIdentityFromTheKeyAndTheHeaders) {
  RequestIdentity who = who_at();
  auto r = identify(tenant_key(), head({{"X-TG-Run", "run-42"}, {"X-TG-Parent", "req-0"}, {"X-TG-Feature", "search/v2"}}),
                    who);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_FALSE(r->batch);
  EXPECT_EQ(who.org, "demo");
  EXPECT_EQ(who.tenant, "acme");
  EXPECT_EQ(who.key_id, "acme-service");
  EXPECT_EQ(who.run_id, "run-42");
  EXPECT_EQ(who.parent_id, "req-0");
  EXPECT_EQ(who.feature, "search/v2");
  EXPECT_EQ(who.user, "");
  EXPECT_EQ(who.request_id, "req-1") << "set before, left alone";
  EXPECT_EQ(who.door, "openai");
}

TEST(IdentifyStage, EachBadIdHeaderIs400NamingTheHeader) {
  for (const char* name : {"X-TG-Run", "X-TG-Parent", "X-TG-Feature"}) {
    for (const std::string bad : {std::string("has space"), std::string("semi;colon"), std::string(129, 'a'),
                                  std::string("caf\xc3\xa9")}) {
      SCOPED_TRACE(std::string(name) + " = " + bad);
      RequestIdentity who = who_at();
      // (a good run id alongside, so X-TG-Parent's own value is what is judged)
      Request h = head({{"X-TG-Run", "run-1"}});
      h.set(name, bad);
      auto r = identify(tenant_key(), h, who);
      ASSERT_FALSE(r.ok());
      EXPECT_EQ(r.error().status, 400);
      EXPECT_EQ(r.error().type, "invalid_request_error");
      EXPECT_EQ(r.error().code, "invalid_header");
      EXPECT_EQ(r.error().param, name);
      EXPECT_NE(r.error().message.find(name), std::string::npos) << r.error().message;
    }
  }
  RequestIdentity who = who_at();
  EXPECT_TRUE(identify(tenant_key(), head({{"X-TG-Run", std::string(128, 'a')}}), who).ok()) << "128 is allowed";
}

TEST(IdentifyStage, AParentWithoutItsRunIsRefused) {
  RequestIdentity who = who_at();
  auto r = identify(tenant_key(), head({{"X-TG-Parent", "req-0"}}), who);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().status, 400);
  EXPECT_EQ(r.error().code, "parent_without_run");
  EXPECT_EQ(r.error().param, "X-TG-Parent");
}

TEST(IdentifyStage, PriorityIsBatchOrInteractive) {
  RequestIdentity a = who_at(), b = who_at(), c = who_at(), d = who_at();
  auto batch = identify(tenant_key(), head({{"X-TG-Priority", "batch"}}), a);
  ASSERT_TRUE(batch.ok());
  EXPECT_TRUE(batch->batch);
  auto interactive = identify(tenant_key(), head({{"X-TG-Priority", "interactive"}}), b);
  ASSERT_TRUE(interactive.ok());
  EXPECT_FALSE(interactive->batch);
  auto none = identify(tenant_key(), head({}), c);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->batch);
  auto other = identify(tenant_key(), head({{"X-TG-Priority", "urgent"}}), d);
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().status, 400);
  EXPECT_EQ(other.error().code, "invalid_header");
  EXPECT_EQ(other.error().param, "X-TG-Priority");
  EXPECT_NE(other.error().message.find("'urgent'"), std::string::npos) << other.error().message;
}

TEST(IdentifyStage, AUserBoundKeyCannotClaimAnotherUserInTheHeader) {
  RequestIdentity who = who_at();
  auto r = identify(user_key(), head({{"X-TG-User", "bob"}}), who);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().status, 403);
  EXPECT_EQ(r.error().type, "permission_error");
  EXPECT_EQ(r.error().code, "user_mismatch");
  EXPECT_NE(r.error().message.find("X-TG-User"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("'alice'"), std::string::npos) << r.error().message;

  RequestIdentity same = who_at();
  ASSERT_TRUE(identify(user_key(), head({{"X-TG-User", "alice"}}), same).ok());
  EXPECT_EQ(same.user, "alice");

  RequestIdentity bad = who_at();
  auto invalid = identify(tenant_key(), head({{"X-TG-User", "no spaces please"}}), bad);
  ASSERT_FALSE(invalid.ok());
  EXPECT_EQ(invalid.error().status, 400);
  EXPECT_EQ(invalid.error().code, "invalid_user_header");
  EXPECT_EQ(invalid.error().param, "X-TG-User");
}

TEST(IdentifyStage, AUserBoundKeyCannotClaimAnotherUserInTheBody) {
  Parsed p = parsed_openai(R"({"model":"chat","messages":[{"role":"user","content":"hi"}],"user":"bob"})");
  RequestIdentity who = who_at();
  ASSERT_TRUE(identify(user_key(), head({}), who).ok());
  auto refused = identify_user(user_key(), head({}), p, who);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->status, 403);
  EXPECT_EQ(refused->code, "user_mismatch");
  EXPECT_NE(refused->message.find("(user)"), std::string::npos) << "names the body's field: " << refused->message;

  // Its own user in the body is fine, and stays as sent.
  Parsed own = parsed_openai(R"({"model":"chat","messages":[{"role":"user","content":"hi"}],"user":"alice"})");
  RequestIdentity w2 = who_at();
  EXPECT_EQ(identify_user(user_key(), head({}), own, w2), std::nullopt);
  EXPECT_EQ(w2.user, "alice");
  EXPECT_EQ(w2.model, "chat");
  EXPECT_EQ(own.request.body.at("user").as_string(), "alice");

  // No claim at all: the key's user, and no `user` is added to the body.
  Parsed none = parsed_openai(R"({"model":"chat","messages":[{"role":"user","content":"hi"}]})");
  RequestIdentity w3 = who_at();
  EXPECT_EQ(identify_user(user_key(), head({}), none, w3), std::nullopt);
  EXPECT_EQ(w3.user, "alice");
  EXPECT_EQ(none.request.body.if_contains("user"), nullptr);
}

TEST(IdentifyStage, OnTheAnthropicDoorTheBodysClaimIsMetadataUserId) {
  const char* body =
      R"({"model":"chat","max_tokens":16,"messages":[{"role":"user","content":"hi"}],"metadata":{"user_id":"bob"}})";
  Parsed p = parsed_anthropic(body);
  EXPECT_EQ(p.request.user, "bob");
  RequestIdentity who = who_at("anthropic");
  auto refused = identify_user(user_key(), head({}), p, who);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->status, 403);
  EXPECT_EQ(refused->code, "user_mismatch");
  EXPECT_NE(refused->message.find("metadata.user_id"), std::string::npos) << refused->message;

  Parsed bad = parsed_anthropic(
      R"({"model":"chat","max_tokens":16,"messages":[{"role":"user","content":"hi"}],"metadata":{"user_id":"b o b"}})");
  RequestIdentity w2 = who_at("anthropic");
  auto invalid = identify_user(tenant_key(), head({}), bad, w2);
  ASSERT_TRUE(invalid.has_value());
  EXPECT_EQ(invalid->status, 400);
  EXPECT_EQ(invalid->code, "invalid_user");
  EXPECT_EQ(invalid->param, "metadata.user_id");

  Parsed bad_openai = parsed_openai(R"({"model":"chat","messages":[{"role":"user","content":"hi"}],"user":"b o b"})");
  RequestIdentity w3 = who_at("openai");
  auto invalid_openai = identify_user(tenant_key(), head({}), bad_openai, w3);
  ASSERT_TRUE(invalid_openai.has_value());
  EXPECT_EQ(invalid_openai->code, "invalid_user");
  EXPECT_EQ(invalid_openai->param, "user");
}

TEST(IdentifyStage, ATenantKeyTakesXTgUserOverTheBodyAndTheBodyIsRewritten) {
  Parsed p = parsed_openai(R"({"model":"chat","messages":[{"role":"user","content":"hi"}],"user":"dave"})");
  Request h = head({{"X-TG-User", "carol"}});
  RequestIdentity who = who_at();
  ASSERT_TRUE(identify(tenant_key(), h, who).ok());
  EXPECT_EQ(who.user, "carol");
  EXPECT_EQ(identify_user(tenant_key(), h, p, who), std::nullopt);
  EXPECT_EQ(who.user, "carol");
  EXPECT_EQ(p.request.body.at("user").as_string(), "carol") << "the upstream is sent the attributed user";

  // Without the header, the body's claim is the user.
  Parsed q = parsed_openai(R"({"model":"chat","messages":[{"role":"user","content":"hi"}],"user":"dave"})");
  RequestIdentity w2 = who_at();
  EXPECT_EQ(identify_user(tenant_key(), head({}), q, w2), std::nullopt);
  EXPECT_EQ(w2.user, "dave");
  EXPECT_EQ(q.request.body.at("user").as_string(), "dave");
}

TEST(IdentifyStage, ATenantKeysXTgUserOverridesMetadataUserIdOnTheAnthropicDoor) {
  // A tenant key naming X-TG-User on the Anthropic door: metadata.user_id is overridden in what goes upstream.
  Parsed p = parsed_anthropic(
      R"({"model":"chat","max_tokens":16,"messages":[{"role":"user","content":"hi"}],"metadata":{"user_id":"dave"}})");
  Request h = head({{"X-TG-User", "carol"}});
  RequestIdentity who = who_at("anthropic");
  ASSERT_TRUE(identify(tenant_key(), h, who).ok());
  EXPECT_EQ(identify_user(tenant_key(), h, p, who), std::nullopt);
  EXPECT_EQ(who.user, "carol");
  EXPECT_EQ(p.request.body.at("user").as_string(), "carol");
}

}  // namespace
}  // namespace tg::server::stages
