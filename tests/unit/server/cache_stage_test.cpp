// server/stages/cache.h: off, bypass, miss then hit, public namespaces, and
// the door as part of what an answer is for.
#include "server/stages/cache.h"

#include <gtest/gtest.h>

#include "fakes.h"

namespace tg::server::stages {
namespace {

using namespace tg::server::testing;


api::ParsedRequest chat(double temperature = 0) {
  auto p = api::parse_request(
      api::Endpoint::kChatCompletions,
      fmt::format(R"({{"model":"chat","temperature":{},"messages":[{{"role":"user","content":"What is the capital of France?"}}]}})",
                  temperature));
  EXPECT_TRUE(p.ok()) << p.error().message;
  return std::move(*p);
}

class CacheStage : public ::testing::Test {
 protected:
  static std::unique_ptr<cache::CacheStore> make_store(const CacheConfig& c) {
    cache::StoreLimits limits;
    limits.ttl_s = c.ttl_s;
    return std::make_unique<cache::CacheStore>(limits);
  }
  // The lookup, on a fresh state; returns what it found.
  Expected<std::optional<std::string>> lookup(const Cache& c, const Request& head, const RequestIdentity& who,
                                              const api::ParsedRequest& r, CacheState& st, std::string& headers) {
    return run_sync(c.lookup(head, who, tenant_, r, st, headers));
  }

  Config config_ = test_config(R"(
cache:
  enabled: true
  exact: true
  semantic: false
  max_temperature: 1.0
  public_namespaces: [{ name: geo, writers: [acme] }]
)");
  const TenantConfig* tenant_ = &config_.tenants[0];
  std::unique_ptr<cache::CacheStore> store_ = make_store(config_.cache);
  upstream::Router embedders_{config_, [](const DeploymentConfig& d) { return std::make_unique<ScriptedProvider>(d); }};
  GatewayStats stats_;
  ManualClock clock_;
  Cache cache_{config_.cache, store_.get(), nullptr, embedders_, stats_, clock_};
  Request head_ = make_request("POST", "/v1/chat/completions", "");
};

TEST_F(CacheStage, OffDoesNothing) {
  Cache off(config_.cache, nullptr, nullptr, embedders_, stats_, clock_);
  EXPECT_FALSE(off.enabled());
  CacheState st;
  std::string headers;
  const api::ParsedRequest r = chat();
  auto got = lookup(off, head_, alice(), r, st, headers);
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(got->has_value());
  EXPECT_EQ(st.status, "");
  EXPECT_FALSE(st.key.has_value());
  EXPECT_EQ(headers, "");
  off.remember_answer(st, alice(), completion_body("Paris.", 10, 2));
  EXPECT_EQ(stats_.cache_writes_total.load(), 0);
  EXPECT_EQ(stats_.cache_misses_total.load() + stats_.cache_bypasses_total.load(), 0);
}

TEST_F(CacheStage, ATemperatureAboveTheMaximumBypasses) {
  CacheState st;
  std::string headers;
  const api::ParsedRequest r = chat(1.5);
  auto got = lookup(cache_, head_, alice(), r, st, headers);
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(got->has_value());
  EXPECT_EQ(st.status, "bypass");
  EXPECT_EQ(headers, "x-tg-cache: bypass\r\n");
  EXPECT_FALSE(st.key.has_value()) << "a bypassed request computes no key";
  EXPECT_EQ(stats_.cache_bypasses_total.load(), 1);
  cache_.remember_answer(st, alice(), completion_body("Paris.", 10, 2));
  EXPECT_EQ(stats_.cache_writes_total.load(), 0) << "nor is its answer stored";

  CacheState no_store;
  std::string h2;
  Request cc = make_request("POST", "/v1/chat/completions", "", {{"Cache-Control", "no-store"}});
  const api::ParsedRequest cold = chat(0);
  ASSERT_TRUE(lookup(cache_, cc, alice(), cold, no_store, h2).ok());
  EXPECT_EQ(no_store.status, "bypass");
}

TEST_F(CacheStage, AMissThenAHitOnceTheAnswerIsRemembered) {
  const api::ParsedRequest r = chat();
  CacheState first;
  std::string h1;
  auto miss = lookup(cache_, head_, alice("openai", "req-1"), r, first, h1);
  ASSERT_TRUE(miss.ok());
  EXPECT_FALSE(miss->has_value());
  EXPECT_EQ(first.status, "miss");
  EXPECT_EQ(h1, "x-tg-cache: miss\r\n");
  ASSERT_TRUE(first.key.has_value());
  EXPECT_EQ(first.key->tenant, "acme");

  const std::string answer = completion_body("Paris.", 10, 2);
  cache_.remember_answer(first, alice("openai", "req-1"), answer);
  EXPECT_EQ(stats_.cache_writes_total.load(), 1);
  EXPECT_EQ(first.audit.event, "write");
  EXPECT_EQ(first.audit.entry, "ce_req-1");

  CacheState second;
  std::string h2;
  auto hit = lookup(cache_, head_, alice("openai", "req-2"), r, second, h2);
  ASSERT_TRUE(hit.ok());
  ASSERT_TRUE(hit->has_value());
  EXPECT_EQ(**hit, answer);
  EXPECT_EQ(second.status, "hit");
  EXPECT_EQ(h2, "x-tg-cache: hit\r\n");
  EXPECT_EQ(second.audit.event, "hit");
  EXPECT_EQ(second.audit.origin_request_id, "req-1");
  EXPECT_EQ(stats_.cache_hits_total.load(), 1);
  EXPECT_EQ(stats_.cache_misses_total.load(), 1);

  // A hit is never written again.
  cache_.remember_answer(second, alice("openai", "req-2"), answer);
  EXPECT_EQ(stats_.cache_writes_total.load(), 1);

  // Another user of the same tenant has a partition of their own.
  RequestIdentity bob = alice("openai", "req-3");
  bob.user = "bob";
  bob.key_id = "acme-service";
  CacheState third;
  std::string h3;
  auto other = lookup(cache_, head_, bob, r, third, h3);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->has_value());
  EXPECT_EQ(third.status, "miss");
}

TEST_F(CacheStage, AnUnfinishedAnswerIsNotStored) {
  const api::ParsedRequest r = chat();
  CacheState st;
  std::string h;
  ASSERT_TRUE(lookup(cache_, head_, alice(), r, st, h).ok());
  // No finish reason: the answer is not known to be whole.
  cache_.remember_answer(st, alice(),
                         R"({"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,)"
                         R"("message":{"role":"assistant","content":"Par"},"finish_reason":null}]})");
  CacheState again;
  std::string h2;
  auto got = lookup(cache_, head_, alice("openai", "req-2"), r, again, h2);
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(got->has_value()) << "an unfinished answer was served from the cache";
  EXPECT_EQ(stats_.cache_writes_total.load(), 0);
}

TEST_F(CacheStage, AnUnknownPublicNamespaceIs400) {
  Request h = make_request("POST", "/v1/chat/completions", "", {{"X-TG-Cache-Namespace", "nope"}});
  CacheState st;
  std::string headers;
  const api::ParsedRequest r = chat();
  auto got = lookup(cache_, h, alice(), r, st, headers);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.error().status, 400);
  EXPECT_EQ(got.error().code, "invalid_header");
  EXPECT_EQ(got.error().param, "X-TG-Cache-Namespace");
  EXPECT_NE(got.error().message.find("'nope'"), std::string::npos) << got.error().message;
  EXPECT_NE(got.error().message.find("geo"), std::string::npos) << "names the namespaces defined";

  Request known = make_request("POST", "/v1/chat/completions", "", {{"X-TG-Cache-Namespace", "geo"}});
  CacheState ok;
  std::string h2;
  auto fine = lookup(cache_, known, alice(), r, ok, h2);
  ASSERT_TRUE(fine.ok());
  EXPECT_TRUE(ok.public_key.has_value());
  EXPECT_TRUE(ok.public_writer);
}

TEST_F(CacheStage, ThePublicNamespaceIsSharedAcrossTenants) {
  const api::ParsedRequest r = chat();
  Request geo = make_request("POST", "/v1/chat/completions", "", {{"X-TG-Cache-Namespace", "geo"}});
  CacheState w;
  std::string h;
  ASSERT_TRUE(lookup(cache_, geo, alice(), r, w, h).ok());
  cache_.remember_answer(w, alice(), completion_body("Paris.", 10, 2));

  RequestIdentity carol = alice("openai", "req-9");
  carol.tenant = "globex";
  carol.user = "carol";
  carol.key_id = "globex-carol";
  CacheState rd;
  std::string h2;
  auto got = run_sync(cache_.lookup(geo, carol, &config_.tenants[1], r, rd, h2));
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->has_value()) << "a reader of the public namespace";
  EXPECT_FALSE(rd.public_writer) << "globex is not one of its writers";

  CacheState private_rd;
  std::string h3;
  auto mine = run_sync(cache_.lookup(head_, carol, &config_.tenants[1], r, private_rd, h3));
  ASSERT_TRUE(mine.ok());
  EXPECT_FALSE(mine->has_value()) << "without the namespace, globex sees only its own partitions";
}

TEST_F(CacheStage, TheAnthropicDoorDoesNotHitAnAnswerStoredForTheOpenAIDoor) {
  const api::ParsedRequest r = chat();
  CacheState st;
  std::string h;
  ASSERT_TRUE(lookup(cache_, head_, alice("openai", "req-1"), r, st, h).ok());
  cache_.remember_answer(st, alice("openai", "req-1"), completion_body("Paris.", 10, 2));

  CacheState an;
  std::string h2;
  auto got = lookup(cache_, head_, alice("anthropic", "req-2"), r, an, h2);
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(got->has_value()) << "the same request through another door hit the other door's answer";
  EXPECT_EQ(an.status, "miss");
  ASSERT_TRUE(an.key.has_value());
  ASSERT_TRUE(st.key.has_value());
  EXPECT_NE(an.key->partition, st.key->partition) << "each door's answers live in partitions of their own";

  // And through its own door again, it does.
  CacheState again;
  std::string h3;
  auto hit = lookup(cache_, head_, alice("openai", "req-3"), r, again, h3);
  ASSERT_TRUE(hit.ok());
  EXPECT_TRUE(hit->has_value());
}

}  // namespace
}  // namespace tg::server::stages
