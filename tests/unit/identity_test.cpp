#include <gtest/gtest.h>

#include <regex>
#include <set>

#include "core/config_load.h"
#include "identity/keyring.h"
#include "identity/keys.h"

namespace tg::identity {
namespace {

TEST(Keys, Sha256MatchesTheStandardVector) {
  EXPECT_EQ(to_hex(sha256("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(to_hex(sha256("tg-demo-acme-alice")),
            "ee710a59742613919631058bec5f5d41996ed75d2d456bc33438591e24f58a54");
}

TEST(Keys, GeneratedKeysHaveTheFormatAndDoNotRepeat) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string k = generate_key();
    ASSERT_TRUE(std::regex_match(k, std::regex("tg-[0-9A-Za-z]{43}"))) << k;
    ASSERT_TRUE(seen.insert(k).second);
  }
}

class KeyRingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = load_config(embedded_default_config(), "default", [](const std::string&) { return std::nullopt; });
    config_ = std::get<Config>(std::move(r));
    ring_ = std::make_unique<KeyRing>(config_);
  }
  Config config_;
  std::unique_ptr<KeyRing> ring_;
};

TEST_F(KeyRingTest, ResolvesBearerAndXApiKey) {
  auto p = ring_->authenticate("Bearer tg-demo-acme-alice", "");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ((*p)->org, "demo");
  EXPECT_EQ((*p)->tenant, "acme");
  EXPECT_EQ((*p)->user, "alice");
  EXPECT_EQ((*p)->key_id, "acme-alice");
  EXPECT_TRUE((*p)->user_bound);
  auto q = ring_->authenticate("", "tg-demo-globex-carol");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ((*q)->tenant, "globex");
  auto lower = ring_->authenticate("bearer   tg-demo-acme-bob ", "");
  ASSERT_TRUE(lower.ok());
  EXPECT_EQ((*lower)->user, "bob");
  auto svc = ring_->authenticate("Bearer tg-demo-acme-service", "");
  ASSERT_TRUE(svc.ok());
  EXPECT_FALSE((*svc)->user_bound);
  EXPECT_TRUE((*svc)->user.empty());
}

TEST_F(KeyRingTest, RejectsWithPreciseCodes) {
  EXPECT_EQ(ring_->authenticate("", "").error().code, "missing_api_key");
  EXPECT_EQ(ring_->authenticate("Basic dXNlcg==", "").error().code, "invalid_authorization_header");
  EXPECT_EQ(ring_->authenticate("Bearer ", "").error().code, "invalid_authorization_header");
  auto bad = ring_->authenticate("Bearer tg-wrong-secret-value", "");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().status, 401);
  EXPECT_EQ(bad.error().code, "invalid_api_key");
  EXPECT_EQ(bad.error().message.find("secret-value"), std::string::npos) << "the key must not be echoed";
}

TEST(BearerToken, TheSchemeIsParsedNotSkipped) {
  EXPECT_EQ(bearer_token("Bearer abc"), std::optional<std::string_view>("abc"));
  EXPECT_EQ(bearer_token("bearer abc"), std::optional<std::string_view>("abc"));
  EXPECT_EQ(bearer_token("BEARER   abc  "), std::optional<std::string_view>("abc"));
  EXPECT_EQ(bearer_token(""), std::optional<std::string_view>(""));
  EXPECT_EQ(bearer_token("XXXXXXXabc"), std::nullopt);  // 7 characters are not a scheme
  EXPECT_EQ(bearer_token("Bearerabc"), std::nullopt);
  EXPECT_EQ(bearer_token("Basic abc"), std::nullopt);
  EXPECT_EQ(bearer_token("Bearer\tabc"), std::nullopt);
  EXPECT_EQ(bearer_token("Bearer "), std::nullopt);
  EXPECT_EQ(bearer_token("Bearer"), std::nullopt);
}

}  // namespace
}  // namespace tg::identity
