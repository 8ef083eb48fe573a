#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <cmath>

#include "api/usage.h"
#include "sim/engine_model.h"
#include "meter/tokenizer.h"
#include "sim/responder.h"

namespace tg::sim {
namespace {
namespace json = boost::json;

api::ParsedRequest chat(const std::string& extra = "") {
  auto r = api::parse_request(api::Endpoint::kChatCompletions,
                              R"({"model":"m","messages":[{"role":"user","content":"Hello there, world 12345"}])" + extra + "}");
  EXPECT_TRUE(r.ok());
  return std::move(*r);
}

TEST(EngineModel, TimingFollowsTheProfile) {
  SimProfile p;
  p.prefill_tokens_per_s = 1000;
  p.decode_ms_per_token = 10;
  p.ttft_base_ms = 5;
  EngineModel m(p);
  EXPECT_EQ(m.time_to_first_token(100).count(), 105'000);
  EXPECT_EQ(m.inter_token().count(), 10'000);
  EXPECT_EQ(m.total(100, 11).count(), 205'000);
}

TEST(Responder, CountsPromptsWithTheRealTokenizer) {
  // "Hello there, world 12345" in o200k_base, plus OpenAI's chat framing
  // (3 per message + the role + 3 for the reply).
  auto req = chat();
  const auto& tok = meter::Tokenizer::builtin(meter::Encoding::kO200kBase);
  EXPECT_EQ(Responder::count_prompt_tokens(req), 3 + tok.count("user") + tok.count("Hello there, world 12345") + 3);
}

TEST(Responder, IsDeterministicAndHonoursMaxTokens) {
  SimProfile p;
  p.default_output_tokens = 20;
  Responder r(p, "sim-1");
  auto req = chat();
  Generation a = r.generate(req), b = r.generate(req);
  EXPECT_EQ(a.choices, b.choices);
  EXPECT_EQ(a.completion_tokens, 20u);
  EXPECT_FALSE(a.truncated);
  auto limited = chat(R"(,"max_tokens":5,"n":3)");
  Generation c = r.generate(limited);
  EXPECT_EQ(c.choices.size(), 3u);
  EXPECT_EQ(c.completion_tokens, 15u);
  EXPECT_TRUE(c.truncated);
  EXPECT_NE(c.choices[0], c.choices[1]);
  json::object body = json::parse(r.completion_body(limited, c, "id1", 1)).as_object();
  EXPECT_EQ(body["choices"].as_array().size(), 3u);
  EXPECT_EQ(body["choices"].as_array()[0].as_object()["finish_reason"].as_string(), "length");
  auto u = api::usage_of(body);
  EXPECT_EQ(u->completion_tokens, 15u);
  EXPECT_EQ(u->prompt_tokens, c.prompt_tokens);
}

TEST(Responder, StreamChunksConcatenateToTheSameTextAndEndWithUsage) {
  SimProfile p;
  p.default_output_tokens = 9;
  Responder r(p, "sim-1");
  auto req = chat(R"(,"stream":true)");
  Generation g = r.generate(req);
  auto chunks = r.stream_chunks(req, g, "id", 1);
  std::string streamed, whole;
  for (const auto& t : g.choices[0]) whole += t;
  for (std::size_t i = 0; i + 1 < chunks.size(); ++i) {
    auto o = json::parse(chunks[i]).as_object();
    auto& delta = o["choices"].as_array()[0].as_object()["delta"].as_object();
    if (delta.contains("content")) streamed += delta["content"].as_string().c_str();
  }
  EXPECT_EQ(streamed, whole);
  auto last = json::parse(chunks.back()).as_object();
  EXPECT_TRUE(last["choices"].as_array().empty());
  EXPECT_EQ(api::usage_of(last)->completion_tokens, 9u);
}

TEST(Responder, EmbeddingsAreUnitLengthAndSimilarForSimilarText) {
  auto a = Responder::embed("how do I reset my password", 256);
  auto b = Responder::embed("how can I reset my password", 256);
  auto c = Responder::embed("quarterly revenue grew in europe", 256);
  auto dot = [](const std::vector<float>& x, const std::vector<float>& y) {
    double s = 0;
    for (std::size_t i = 0; i < x.size(); ++i) s += x[i] * y[i];
    return s;
  };
  EXPECT_NEAR(dot(a, a), 1.0, 1e-5);
  EXPECT_GT(dot(a, b), dot(a, c) + 0.3);
  SimProfile p;
  Responder r(p, "e");
  auto req = api::parse_request(api::Endpoint::kEmbeddings, R"({"model":"e","input":["x","y"],"dimensions":32})");
  auto body = json::parse(r.embeddings_body(*req)).as_object();
  EXPECT_EQ(body["data"].as_array().size(), 2u);
  EXPECT_EQ(body["data"].as_array()[1].as_object()["embedding"].as_array().size(), 32u);
  auto b64 = api::parse_request(api::Endpoint::kEmbeddings, R"({"model":"e","input":"x","dimensions":3,"encoding_format":"base64"})");
  auto bb = json::parse(r.embeddings_body(*b64)).as_object();
  EXPECT_EQ(bb["data"].as_array()[0].as_object()["embedding"].as_string().size(), 16u);  // 12 bytes -> 16 chars
}

}  // namespace
}  // namespace tg::sim
