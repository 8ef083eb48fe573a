#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

#include "api/errors.h"
#include "api/request.h"
#include "api/usage.h"

namespace tg::api {
namespace {
namespace json = boost::json;

ApiError parse_error(Endpoint ep, const std::string& body) {
  auto r = parse_request(ep, body);
  EXPECT_FALSE(r.ok()) << body;
  return r.ok() ? ApiError{} : r.error();
}

TEST(ParseRequest, AcceptsAFullChatRequestAndKeepsUnknownFields) {
  auto r = parse_request(Endpoint::kChatCompletions, R"({
    "model": "m", "stream": true, "stream_options": {"include_usage": true}, "max_completion_tokens": 7,
    "max_tokens": 99, "user": "end-7", "temperature": 0.5, "n": 2, "some_new_field": {"x": 1},
    "messages": [{"role": "system", "content": "be brief"},
                 {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "x"}}]},
                 {"role": "assistant", "content": null, "tool_calls": [{"id": "c1"}]},
                 {"role": "tool", "tool_call_id": "c1", "content": "42"}]})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->model, "m");
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->client_wants_usage);
  EXPECT_EQ(r->max_output_tokens, 7u);  // max_completion_tokens wins
  EXPECT_EQ(r->user, "end-7");
  EXPECT_TRUE(r->body.contains("some_new_field"));
  EXPECT_EQ(prompt_text(*r), "be brief\nhi\n\n42");
}

TEST(ParseRequest, NamesTheFieldForEachMistake) {
  struct Case { const char* body; const char* param; const char* code; };
  const Case cases[] = {
      {R"({"messages":[{"role":"user","content":"x"}]})", "model", "missing_required_parameter"},
      {R"({"model":"","messages":[{"role":"user","content":"x"}]})", "model", "invalid_value"},
      {R"({"model":"m"})", "messages", "missing_required_parameter"},
      {R"({"model":"m","messages":{}})", "messages", "invalid_type"},
      {R"({"model":"m","messages":[1]})", "messages[0]", "invalid_type"},
      {R"({"model":"m","messages":[{"content":"x"}]})", "messages[0].role", "missing_required_parameter"},
      {R"({"model":"m","messages":[{"role":"user","content":[{"text":"x"}]}]})", "messages[0].content[0].type", "missing_required_parameter"},
      {R"({"model":"m","messages":[{"role":"user","content":[{"type":"text","text":5}]}]})", "messages[0].content[0].text", "invalid_type"},
      {R"({"model":"m","messages":[{"role":"tool","content":"x"}]})", "messages[0].tool_call_id", "missing_required_parameter"},
      {R"({"model":"m","messages":[{"role":"user","content":"x"}],"n":0})", "n", "invalid_value"},
      {R"({"model":"m","messages":[{"role":"user","content":"x"}],"top_p":1.5})", "top_p", "invalid_value"},
      {R"({"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":"5"})", "max_tokens", "invalid_type"},
      {R"({"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":18446744073709551615})", "max_tokens", "invalid_value"},
      {R"({"model":"m","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":1}})", "stream_options.include_usage", "invalid_type"},
      {R"({"model":"m","messages":[{"role":"user","content":"x"}],"user":7})", "user", "invalid_type"},
  };
  for (const auto& c : cases) {
    ApiError e = parse_error(Endpoint::kChatCompletions, c.body);
    EXPECT_EQ(e.status, 400) << c.body;
    EXPECT_EQ(e.type, "invalid_request_error") << c.body;
    EXPECT_EQ(e.param, c.param) << c.body;
    EXPECT_EQ(e.code, c.code) << c.body << " -> " << e.message;
  }
}

TEST(ParseRequest, RejectsNonJsonAndNonObjects) {
  EXPECT_EQ(parse_error(Endpoint::kChatCompletions, "{").code, "invalid_json");
  EXPECT_EQ(parse_error(Endpoint::kChatCompletions, "").code, "invalid_json");
  EXPECT_EQ(parse_error(Endpoint::kChatCompletions, "[]").code, "invalid_json");
  EXPECT_EQ(parse_error(Endpoint::kChatCompletions, "\"x\"").code, "invalid_json");
}

TEST(ParseRequest, EmbeddingsInputs) {
  for (const char* ok : {R"({"model":"e","input":"x"})", R"({"model":"e","input":["a","b"]})",
                         R"({"model":"e","input":[1,2,3]})", R"({"model":"e","input":[[1],[2,3]]})"}) {
    EXPECT_TRUE(parse_request(Endpoint::kEmbeddings, ok).ok()) << ok;
  }
  EXPECT_EQ(parse_error(Endpoint::kEmbeddings, R"({"model":"e"})").param, "input");
  EXPECT_EQ(parse_error(Endpoint::kEmbeddings, R"({"model":"e","input":[]})").code, "empty_array");
  EXPECT_EQ(parse_error(Endpoint::kEmbeddings, R"({"model":"e","input":["a",1]})").code, "invalid_type");
  EXPECT_EQ(parse_error(Endpoint::kEmbeddings, R"({"model":"e","input":"x","dimensions":0})").param, "dimensions");
  auto r = parse_request(Endpoint::kEmbeddings, R"({"model":"e","input":["a","b"],"encoding_format":"base64"})");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->embeddings_base64);
  EXPECT_EQ(embedding_input_count(*r), 2u);
  EXPECT_EQ(embedding_input_text(*r, 1), "b");
}

TEST(UpstreamBody, RewritesModelAndForcesUsageOnStreams) {
  auto r = parse_request(Endpoint::kChatCompletions,
                         R"({"model":"alias","stream":true,"messages":[{"role":"user","content":"x"}]})");
  ASSERT_TRUE(r.ok());
  json::object o = json::parse(upstream_body(*r, "real-model")).as_object();
  EXPECT_EQ(o["model"].as_string(), "real-model");
  EXPECT_EQ(o["stream_options"].as_object()["include_usage"].as_bool(), true);
  EXPECT_FALSE(r->client_wants_usage);
  auto plain = parse_request(Endpoint::kChatCompletions, R"({"model":"a","messages":[{"role":"user","content":"x"}]})");
  EXPECT_FALSE(json::parse(upstream_body(*plain, "m")).as_object().contains("stream_options"));
}

TEST(ErrorBody, HasOpenAIsShape) {
  auto v = json::parse(error_body(invalid_request("bad", "messages[0]", "invalid_value"))).as_object();
  auto& e = v["error"].as_object();
  EXPECT_EQ(e["message"].as_string(), "bad");
  EXPECT_EQ(e["type"].as_string(), "invalid_request_error");
  EXPECT_EQ(e["param"].as_string(), "messages[0]");
  EXPECT_EQ(e["code"].as_string(), "invalid_value");
  auto n = json::parse(error_body(server_error("x"))).as_object();
  EXPECT_TRUE(n["error"].as_object()["param"].is_null());
}

TEST(ErrorFromUpstream, KeepsOpenAIErrorsAndWrapsOthers) {
  ApiError a = error_from_upstream(400, R"({"error":{"message":"too long","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}})", "d");
  EXPECT_EQ(a.status, 400);
  EXPECT_EQ(a.code, "context_length_exceeded");
  EXPECT_EQ(a.param, "messages");
  ApiError b = error_from_upstream(503, "<html>overloaded</html>", "dep-1");
  EXPECT_EQ(b.status, 502);
  EXPECT_EQ(b.code, "upstream_http_error");
  EXPECT_NE(b.message.find("dep-1"), std::string::npos);
  EXPECT_NE(b.message.find("503"), std::string::npos);
  ApiError c = error_from_upstream(400, R"({"error":{"code":400,"message":"m"}})", "d");  // llama.cpp style
  EXPECT_EQ(c.code, "400");
  EXPECT_EQ(c.type, "invalid_request_error");
}

TEST(Usage, ReadsCountsAndCachedTokens) {
  auto o = json::parse(R"({"usage":{"prompt_tokens":10,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":4}}})").as_object();
  auto u = usage_of(o);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->prompt_tokens, 10u);
  EXPECT_EQ(u->completion_tokens, 3u);
  EXPECT_EQ(u->cached_tokens, 4u);
  EXPECT_FALSE(usage_of(json::parse(R"({"usage":null})").as_object()));
  EXPECT_EQ(usage_json(*u).at("total_tokens").as_uint64(), 13u);
}

}  // namespace
}  // namespace tg::api

namespace tg::api {
namespace {
TEST(UsageOfBody, FindsTheTopLevelUsageWithoutParsingTheRest) {
  auto u = usage_of_body(R"({"choices":[{"message":{"content":"she said \"usage\": {\"prompt_tokens\": 99}"}}],)"
                         R"("usage" : {"prompt_tokens":7,"completion_tokens":2}})");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->prompt_tokens, 7u);
  EXPECT_EQ(u->completion_tokens, 2u);
  EXPECT_FALSE(usage_of_body(R"({"usage":null})"));
  EXPECT_FALSE(usage_of_body(R"({"choices":[]})"));
  EXPECT_FALSE(usage_of_body(R"({"usage":{"prompt_tokens":)"));  // truncated
  EXPECT_FALSE(usage_of_body("not json"));
}
}  // namespace
}  // namespace tg::api

namespace tg::api {
namespace {

TEST(ParseRequest, ChoicesAreNOrBestOfAndEveryOutputEstimateIsPerChoice) {
  auto one = parse_request(Endpoint::kChatCompletions, R"({"model":"m","messages":[{"role":"user","content":"x"}]})");
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->choices, 1u);
  auto many = parse_request(Endpoint::kChatCompletions,
                            R"({"model":"m","n":128,"max_tokens":10,"messages":[{"role":"user","content":"x"}]})");
  ASSERT_TRUE(many.ok());
  EXPECT_EQ(many->choices, 128u);
  EXPECT_EQ(*many->max_output_tokens, 10u);
  auto best = parse_request(Endpoint::kCompletions, R"({"model":"m","prompt":"x","n":2,"best_of":5})");
  ASSERT_TRUE(best.ok());
  EXPECT_EQ(best->choices, 5u);
  EXPECT_EQ(parse_error(Endpoint::kCompletions, R"({"model":"m","prompt":"x","n":5,"best_of":2})").param, "best_of");
  EXPECT_EQ(parse_error(Endpoint::kChatCompletions, R"({"model":"m","n":129,"messages":[{"role":"user","content":"x"}]})").param, "n");
}

TEST(ParseRequest, TheModelNameIsBoundedAndPrintable) {
  const std::string long_model = std::string(R"({"model":")") + std::string(257, 'm') + R"(","messages":[{"role":"user","content":"x"}]})";
  ApiError e = parse_error(Endpoint::kChatCompletions, long_model);
  EXPECT_EQ(e.code, "string_above_max_length");
  EXPECT_EQ(e.param, "model");
  EXPECT_LT(e.message.size(), 200u);
  EXPECT_EQ(parse_error(Endpoint::kChatCompletions, R"({"model":"a\u0000b","messages":[{"role":"user","content":"x"}]})").param, "model");
  EXPECT_TRUE(parse_request(Endpoint::kChatCompletions,
                            std::string(R"({"model":")") + std::string(256, 'm') + R"(","messages":[{"role":"user","content":"x"}]})")
                  .ok());
}

TEST(Traceparent, OnlyTheW3CFormatIsValid) {
  EXPECT_TRUE(is_valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
  EXPECT_TRUE(is_valid_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"));
  EXPECT_FALSE(is_valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"));  // version 00: exactly 55
  EXPECT_FALSE(is_valid_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
  EXPECT_FALSE(is_valid_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
  EXPECT_FALSE(is_valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"));
  EXPECT_FALSE(is_valid_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));
  EXPECT_FALSE(is_valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nx: y"));
  EXPECT_FALSE(is_valid_traceparent(""));
  EXPECT_FALSE(is_valid_traceparent(std::string(600, 'a')));
}

TEST(ErrorBody, EchoedTextIsValidUtf8AndBounded) {
  ApiError e = invalid_request(std::string("bad value '\xff\xfe\x1b[31m' ") + std::string(10000, 'x'), "p\xff", "c");
  const std::string body = error_body(e);
  auto v = json::parse(body);  // boost.json validates UTF-8 when parsing
  const std::string msg(v.at("error").at("message").as_string());
  EXPECT_NE(msg.find("\\xFF\\xFE\\x1B[31m"), std::string::npos) << msg;
  EXPECT_LT(body.size(), 2300u);
  EXPECT_EQ(std::string(v.at("error").at("param").as_string()), "p\\xFF");
}

}  // namespace
}  // namespace tg::api
