// server/routes.h: every URL matched in one place, 404/405 named.
#include "server/routes.h"

#include <gtest/gtest.h>

namespace tg::server {
namespace {

TEST(Routes, EachServedPathHasItsKindDoorAndEndpoint) {
  struct Case {
    const char* method;
    const char* path;
    RouteKind kind;
    Door door;
    const char* name;
    const char* rest;
  };
  const Case cases[] = {
      {"GET", "/healthz", RouteKind::kHealth, Door::kOpenAI, "", ""},
      {"GET", "/readyz", RouteKind::kReady, Door::kOpenAI, "", ""},
      {"GET", "/metrics", RouteKind::kMetrics, Door::kOpenAI, "", ""},
      {"GET", "/v1/models", RouteKind::kModels, Door::kOpenAI, "models", ""},
      {"GET", "/v1/models/chat", RouteKind::kModels, Door::kOpenAI, "models", "chat"},
      {"POST", "/v1/chat/completions", RouteKind::kInference, Door::kOpenAI, "chat.completions", ""},
      {"POST", "/v1/completions", RouteKind::kInference, Door::kOpenAI, "completions", ""},
      {"POST", "/v1/embeddings", RouteKind::kInference, Door::kOpenAI, "embeddings", ""},
      {"POST", "/v1/messages", RouteKind::kInference, Door::kAnthropic, "messages", ""},
      {"POST", "/v1/messages/count_tokens", RouteKind::kCountTokens, Door::kAnthropic, "messages.count_tokens", ""},
      {"PUT", "/admin/limits/tenant/acme", RouteKind::kAdminLimits, Door::kOpenAI, "admin.limits", "tenant/acme"},
      {"GET", "/admin/usage", RouteKind::kAdminUsage, Door::kOpenAI, "admin.usage", ""},
      {"DELETE", "/admin/cache", RouteKind::kAdminCache, Door::kOpenAI, "admin.cache", ""},
      {"GET", "/admin/cache/entries/ce_1", RouteKind::kAdminCache, Door::kOpenAI, "admin.cache", "ce_1"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.path);
    const auto r = route(c.method, c.path);
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->kind, c.kind);
    EXPECT_EQ(r->door, c.door);
    EXPECT_EQ(r->name, c.name);
    EXPECT_EQ(r->rest, c.rest);
  }
  EXPECT_EQ(route("POST", "/v1/completions")->endpoint, api::Endpoint::kCompletions);
  EXPECT_EQ(route("POST", "/v1/embeddings")->endpoint, api::Endpoint::kEmbeddings);
  EXPECT_EQ(route("POST", "/v1/messages")->endpoint, api::Endpoint::kChatCompletions);
}

TEST(Routes, AWrongMethodIs405NamingTheAllowedOnes) {
  const auto r = route("GET", "/v1/chat/completions");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().status, 405);
  EXPECT_EQ(r.error().code, "method_not_allowed");
  EXPECT_EQ(r.error().param, "POST");
  const auto l = route("DELETE", "/admin/limits/tenant/acme");
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.error().param, "GET, PUT");
  EXPECT_FALSE(route("POST", "/v1/messages/count_tokens/x").ok());
}

TEST(Routes, AnUnknownPathIs404AndNamesWhatIsServed) {
  for (const char* p : {"/", "/v1", "/v1/chat", "/v1/messagesx", "/admin", "/healthz/"}) {
    SCOPED_TRACE(p);
    const auto r = route("GET", p);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().status, 404);
    EXPECT_EQ(r.error().code, "unknown_url");
    EXPECT_NE(r.error().message.find("/v1/messages"), std::string::npos);
  }
}

TEST(Routes, TheDoorOfAPathDecidesTheErrorShapeBeforeRouting) {
  EXPECT_EQ(door_of("/v1/messages"), Door::kAnthropic);
  EXPECT_EQ(door_of("/v1/messages/count_tokens"), Door::kAnthropic);
  EXPECT_EQ(door_of("/v1/messagesx"), Door::kOpenAI);
  EXPECT_EQ(door_of("/v1/chat/completions"), Door::kOpenAI);
}

}  // namespace
}  // namespace tg::server
