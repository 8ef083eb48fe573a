// server/stages/parse.h: the body in its door's terms, as one internal
// request; 415 unless it is declared JSON.
#include "server/stages/parse.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "fakes.h"

namespace tg::server::stages {
namespace {

using namespace tg::server::testing;

Expected<Parsed> parse_at(const char* path, const std::string& body, std::string content_type = "application/json") {
  auto r = route("POST", path);
  EXPECT_TRUE(r.ok());
  return parse(make_request("POST", path, body, {}, std::move(content_type)), *r, {});
}

TEST(ParseStage, ANonJsonContentTypeIs415) {
  for (const char* ct : {"text/plain", "application/x-www-form-urlencoded", "application/jsonx", "", "json"}) {
    SCOPED_TRACE(ct);
    for (const char* path : {"/v1/chat/completions", "/v1/messages"}) {
      auto p = parse_at(path, kChatBody, ct);
      ASSERT_FALSE(p.ok());
      EXPECT_EQ(p.error().status, 415);
      EXPECT_EQ(p.error().type, "invalid_request_error");
      EXPECT_EQ(p.error().code, "unsupported_media_type");
      EXPECT_NE(p.error().message.find("application/json"), std::string::npos);
    }
  }
  for (const char* ct : {"application/json", "application/json; charset=utf-8", "Application/JSON"}) {
    SCOPED_TRACE(ct);
    EXPECT_TRUE(parse_at("/v1/chat/completions", kChatBody, ct).ok());
  }
}

TEST(ParseStage, AnInvalidBodyIs400NamingTheField) {
  auto bad_json = parse_at("/v1/chat/completions", "{not json");
  ASSERT_FALSE(bad_json.ok());
  EXPECT_EQ(bad_json.error().status, 400);

  auto no_messages = parse_at("/v1/chat/completions", R"({"model":"chat"})");
  ASSERT_FALSE(no_messages.ok());
  EXPECT_EQ(no_messages.error().status, 400);
  EXPECT_EQ(no_messages.error().param, "messages");

  auto no_max = parse_at("/v1/messages", R"({"model":"chat","messages":[{"role":"user","content":"Hello"}]})");
  ASSERT_FALSE(no_max.ok());
  EXPECT_EQ(no_max.error().status, 400);
  EXPECT_EQ(no_max.error().param, "max_tokens") << no_max.error().message;
}

TEST(ParseStage, BothDoorsGiveTheSameInternalRequestForTheSameConversation) {
  auto openai = parse_at("/v1/chat/completions",
                         R"({"model":"chat","max_tokens":64,"stream":true,"messages":[)"
                         R"({"role":"system","content":"Be brief."},)"
                         R"({"role":"user","content":"Hello"},)"
                         R"({"role":"assistant","content":"Hi!"},)"
                         R"({"role":"user","content":"How are you?"}]})");
  auto anthropic = parse_at("/v1/messages",
                            R"({"model":"chat","max_tokens":64,"stream":true,"system":"Be brief.","messages":[)"
                            R"({"role":"user","content":"Hello"},)"
                            R"({"role":"assistant","content":[{"type":"text","text":"Hi!"}]},)"
                            R"({"role":"user","content":"How are you?"}]})");
  ASSERT_TRUE(openai.ok()) << openai.error().message;
  ASSERT_TRUE(anthropic.ok()) << anthropic.error().message;
  const api::ParsedRequest& a = openai->request;
  const api::ParsedRequest& b = anthropic->request;
  EXPECT_EQ(a.endpoint, api::Endpoint::kChatCompletions);
  EXPECT_EQ(b.endpoint, api::Endpoint::kChatCompletions);
  EXPECT_EQ(a.model, b.model);
  EXPECT_EQ(b.model, "chat");
  EXPECT_EQ(a.stream, b.stream);
  EXPECT_TRUE(b.stream);
  EXPECT_EQ(a.max_output_tokens, b.max_output_tokens);
  EXPECT_EQ(b.max_output_tokens, std::optional<std::uint32_t>(64));
  EXPECT_EQ(a.choices, b.choices);
  const auto ta = api::message_texts(a);
  const auto tb = api::message_texts(b);
  ASSERT_EQ(ta.size(), 4u);
  ASSERT_EQ(tb.size(), ta.size());
  for (std::size_t i = 0; i < ta.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(ta[i].role, tb[i].role);
    EXPECT_EQ(ta[i].content, tb[i].content);
  }
  EXPECT_EQ(api::prompt_text(a), api::prompt_text(b));
  EXPECT_TRUE(openai->stop_sequences.empty());
  EXPECT_FALSE(b.client_wants_usage) << "the Anthropic door reports usage in its own shape";
}

TEST(ParseStage, TheAnthropicDoorKeepsItsStopSequences) {
  auto p = parse_at("/v1/messages",
                    R"({"model":"chat","max_tokens":8,"stop_sequences":["END","###"],)"
                    R"("messages":[{"role":"user","content":"Hello"}]})");
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->stop_sequences, (std::vector<std::string>{"END", "###"}));
}

TEST(ParseStage, CountTokensDoesNotRequireMaxTokens) {
  const char* body = R"({"model":"chat","messages":[{"role":"user","content":"Hello"}]})";
  auto counted = parse_at("/v1/messages/count_tokens", body);
  ASSERT_TRUE(counted.ok()) << counted.error().message;
  EXPECT_EQ(counted->request.model, "chat");
  EXPECT_EQ(api::message_texts(counted->request).size(), 1u);
  EXPECT_FALSE(parse_at("/v1/messages", body).ok()) << "the Messages endpoint itself does";
}

TEST(ParseStage, EachOpenAIEndpointIsParsedAsItself) {
  auto c = parse_at("/v1/completions", R"({"model":"chat","prompt":"Once upon","max_tokens":5})");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->request.endpoint, api::Endpoint::kCompletions);
  auto e = parse_at("/v1/embeddings", R"({"model":"chat","input":"abc"})");
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ(e->request.endpoint, api::Endpoint::kEmbeddings);
}

}  // namespace
}  // namespace tg::server::stages
