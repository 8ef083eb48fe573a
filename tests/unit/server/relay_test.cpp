// server/stages/relay.h: the upstream call; a whole reply returned, a stream
// relayed event by event in the door's dialect, what is learnt on the way.
#include "server/stages/relay.h"

#include <gtest/gtest.h>

#include "fakes.h"

namespace tg::server::stages {
namespace {

using namespace tg::server::testing;

api::ParsedRequest chat(bool stream, bool include_usage = false) {
  const std::string body = fmt::format(
      R"({{"model":"chat","max_tokens":16,"stream":{},{}"messages":[{{"role":"user","content":"Hello"}}]}})",
      stream ? "true" : "false", include_usage ? R"("stream_options":{"include_usage":true},)" : "");
  auto p = api::parse_request(api::Endpoint::kChatCompletions, body);
  EXPECT_TRUE(p.ok()) << p.error().message;
  return std::move(*p);
}

class RelayStage : public ::testing::Test {
 protected:
  RelayStage() {
    x_.start = std::chrono::steady_clock::now();
    x_.who.request_id = "req-7";
    x_.who.deployment = "chat-up";
    x_.prompt_tokens_est = 8;
  }
  upstream::UpstreamReply relay(const api::ParsedRequest& r, Dialect& d, std::string traceparent = "") {
    return run_sync(relay_.run(out_, x_, provider_, r, traceparent, d));
  }
  Config config_ = test_config();
  ScriptedProvider provider_{config_.models[0].deployments[0]};
  RecordingResponder out_;
  Exchange x_;
  Relay relay_;
};

TEST_F(RelayStage, APlainReplyIsReturnedWholeAndItsUsageLearnt) {
  provider_.reply(200, completion_body("Hi there", 8, 3));
  const api::ParsedRequest r = chat(false);
  Dialect d(Door::kOpenAI, "req-7", "chat", {}, false);
  const auto reply = relay(r, d, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  EXPECT_EQ(reply.status, 200);
  EXPECT_FALSE(reply.streamed);
  EXPECT_FALSE(reply.transport_error.has_value());
  EXPECT_EQ(reply.body, completion_body("Hi there", 8, 3));
  EXPECT_EQ(x_.upstream_status, 200);
  ASSERT_TRUE(x_.usage.has_value());
  EXPECT_EQ(x_.usage->prompt_tokens, 8u);
  EXPECT_EQ(x_.usage->completion_tokens, 3u);
  EXPECT_EQ(provider_.calls, 1);
  EXPECT_EQ(provider_.last_request_id, "req-7");
  EXPECT_EQ(provider_.last_traceparent, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  EXPECT_EQ(provider_.last_model, "chat");
  EXPECT_FALSE(out_.began) << "the relay writes nothing of a whole reply: the path answers it";
  EXPECT_EQ(out_.sends, 0);
}

TEST_F(RelayStage, AnUpstreamErrorStatusIsReturnedWithoutUsage) {
  provider_.reply(500, R"({"error":{"message":"boom","type":"server_error"}})");
  const api::ParsedRequest r = chat(false);
  Dialect d(Door::kOpenAI, "req-7", "chat", {}, false);
  const auto reply = relay(r, d);
  EXPECT_EQ(reply.status, 500);
  EXPECT_EQ(x_.upstream_status, 500);
  EXPECT_FALSE(x_.usage.has_value());
  const ApiError e = upstream_status_error(reply.status, reply.body, "chat-up");
  EXPECT_EQ(e.status, 502) << "an upstream 5xx is the gateway's 502";
  const ApiError creds = upstream_status_error(401, R"({"error":{"message":"bad key"}})", "chat-up");
  EXPECT_EQ(creds.status, 502);
  EXPECT_EQ(creds.code, "upstream_auth_error");
  EXPECT_NE(creds.message.find("'chat-up'"), std::string::npos);
  const ApiError client = upstream_status_error(400, R"({"error":{"message":"bad","type":"invalid_request_error","param":"temperature","code":"bad_temp"}})", "chat-up");
  EXPECT_EQ(client.status, 400) << "other errors pass as they are";
}

TEST_F(RelayStage, AnOpenAIStreamIsRelayedEventByEventWithoutTheUsageChunkTheClientDidNotAskFor) {
  provider_.stream({chunk_text("Hi"), chunk_text(" there"), chunk_finish(), chunk_usage(8, 2), "[DONE]"});
  const api::ParsedRequest r = chat(true, false);
  Dialect d(Door::kOpenAI, "req-7", "chat", {}, r.client_wants_usage);
  const auto reply = relay(r, d);
  EXPECT_TRUE(reply.streamed);
  EXPECT_FALSE(reply.transport_error.has_value());
  EXPECT_TRUE(out_.began);
  EXPECT_EQ(out_.sends, 0);
  EXPECT_EQ(out_.ends, 0) << "the stream's end is the path's, after settling";
  const std::string bytes = out_.stream_bytes();
  const std::string expected = "data: " + chunk_text("Hi") + "\n\n" + "data: " + chunk_text(" there") + "\n\n" +
                               "data: " + chunk_finish() + "\n\n" + "data: [DONE]\n\n";
  EXPECT_EQ(bytes, expected);
  EXPECT_EQ(bytes.find("\"usage\""), std::string::npos) << "the usage chunk reached a client that did not ask";
  ASSERT_TRUE(x_.usage.has_value()) << "usage is learnt from the stream";
  EXPECT_EQ(x_.usage->prompt_tokens, 8u);
  EXPECT_EQ(x_.usage->completion_tokens, 2u);
  EXPECT_EQ(x_.generated, "Hi there");
  EXPECT_TRUE(x_.ttft.has_value());
  EXPECT_EQ(x_.upstream_status, 200);
}

TEST_F(RelayStage, AnOpenAIStreamKeepsTheUsageChunkWhenTheClientAskedForIt) {
  provider_.stream({chunk_text("Hi"), chunk_finish(), chunk_usage(8, 1), "[DONE]"});
  const api::ParsedRequest r = chat(true, true);
  ASSERT_TRUE(r.client_wants_usage);
  Dialect d(Door::kOpenAI, "req-7", "chat", {}, r.client_wants_usage);
  relay(r, d);
  const std::string bytes = out_.stream_bytes();
  EXPECT_NE(bytes.find(R"("completion_tokens":1)"), std::string::npos) << bytes;
  ASSERT_TRUE(x_.usage.has_value());
  EXPECT_EQ(x_.usage->completion_tokens, 1u);
}

TEST_F(RelayStage, AnAnthropicStreamIsWrittenAsMessagesEvents) {
  provider_.stream({chunk_text("Hi"), chunk_text(" there"), chunk_finish(), chunk_usage(8, 2), "[DONE]"});
  const api::ParsedRequest r = chat(true, false);
  Dialect d(Door::kAnthropic, "req-7", "chat", {}, false);
  const auto reply = relay(r, d);
  EXPECT_TRUE(reply.streamed);
  ASSERT_FALSE(out_.chunks.empty());
  EXPECT_EQ(out_.chunks.front().rfind("event: message_start\n", 0), 0u) << out_.chunks.front();
  EXPECT_NE(out_.chunks.front().find(R"("id":"msg_req-7")"), std::string::npos) << out_.chunks.front();
  const std::string bytes = out_.stream_bytes();
  const auto start = bytes.find("event: message_start");
  const auto block = bytes.find("event: content_block_start");
  const auto delta = bytes.find("event: content_block_delta");
  ASSERT_NE(block, std::string::npos) << bytes;
  ASSERT_NE(delta, std::string::npos) << bytes;
  EXPECT_LT(start, block);
  EXPECT_LT(block, delta);
  EXPECT_NE(bytes.find(R"("text":"Hi")"), std::string::npos) << bytes;
  EXPECT_NE(bytes.find(R"("text":" there")"), std::string::npos) << bytes;
  EXPECT_EQ(bytes.find("data: {\"id\":\"chatcmpl"), std::string::npos) << "no OpenAI chunk leaks through";
  EXPECT_EQ(bytes.find("[DONE]"), std::string::npos);
  EXPECT_EQ(bytes.find("event: message_stop"), std::string::npos) << "the close is the path's, after settling";
  ASSERT_TRUE(x_.usage.has_value());
  EXPECT_EQ(x_.usage->completion_tokens, 2u);
  // What the path writes last closes it.
  const std::string last = d.stream_close(x_.usage->completion_tokens);
  EXPECT_NE(last.find("event: message_delta"), std::string::npos) << last;
  EXPECT_NE(last.find("event: message_stop"), std::string::npos) << last;
  EXPECT_NE(last.find(R"("stop_reason":"end_turn")"), std::string::npos) << last;
}

TEST_F(RelayStage, ATransportErrorComesBackInTheReply) {
  provider_.fail(upstream_error(502, "upstream 'chat-up' refused the connection", "upstream_unreachable"));
  const api::ParsedRequest r = chat(false);
  Dialect d(Door::kOpenAI, "req-7", "chat", {}, false);
  const auto reply = relay(r, d);
  ASSERT_TRUE(reply.transport_error.has_value());
  EXPECT_EQ(reply.transport_error->code, "upstream_unreachable");
  EXPECT_EQ(reply.transport_error->status, 502);
  EXPECT_FALSE(reply.streamed);
  EXPECT_EQ(x_.upstream_status, 0);
  EXPECT_FALSE(x_.usage.has_value());
  EXPECT_FALSE(out_.began);
}

TEST_F(RelayStage, AStreamCutShortReturnsWhatWasRelayedAndTheError) {
  provider_.stream({chunk_text("Hi"), chunk_text(" the")},
                   upstream_error(502, "upstream 'chat-up' closed the stream", "upstream_stream_cut"));
  const api::ParsedRequest r = chat(true);
  Dialect d(Door::kOpenAI, "req-7", "chat", {}, false);
  const auto reply = relay(r, d);
  EXPECT_TRUE(reply.streamed);
  ASSERT_TRUE(reply.transport_error.has_value());
  EXPECT_EQ(reply.transport_error->code, "upstream_stream_cut");
  EXPECT_EQ(x_.generated, "Hi the") << "for the gateway's own count";
  EXPECT_FALSE(x_.usage.has_value());
}

TEST_F(RelayStage, ClientGoneFromTheResponderPropagates) {
  provider_.stream({chunk_text("Hi"), chunk_text(" there"), "[DONE]"});
  const api::ParsedRequest r = chat(true);
  {
    Dialect d(Door::kOpenAI, "req-7", "chat", {}, false);
    out_.throw_on_begin = true;
    EXPECT_THROW(relay(r, d), upstream::ClientGone);
    EXPECT_FALSE(out_.began);
  }
  {
    RecordingResponder later;
    later.throw_on_chunk = 2;  // the open's (empty) chunk, "Hi", then " there" fails
    Exchange x;
    x.start = std::chrono::steady_clock::now();
    x.who.request_id = "req-8";
    Dialect d(Door::kOpenAI, "req-8", "chat", {}, false);
    EXPECT_THROW(run_sync(relay_.run(later, x, provider_, r, "", d)), upstream::ClientGone);
    ASSERT_EQ(later.chunks.size(), 2u);
    EXPECT_EQ(later.chunks[1], "data: " + chunk_text("Hi") + "\n\n");
    EXPECT_EQ(x.generated, "Hi there") << "the event was inspected before its write failed";
  }
}

}  // namespace
}  // namespace tg::server::stages
