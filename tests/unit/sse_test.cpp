#include <gtest/gtest.h>

#include "api/sse.h"

namespace tg::api {
namespace {

std::vector<std::string> feed_all(SseParser& p, const std::vector<std::string>& pieces) {
  std::vector<std::string> out;
  for (const auto& piece : pieces) p.feed(piece, [&](SseEvent& e) { out.push_back(e.data); });
  return out;
}

TEST(SseParser, SplitsEventsAcrossArbitraryChunkBoundaries) {
  const std::string stream = "data: {\"a\":1}\n\ndata: {\"b\":2}\r\n\r\n: keep-alive\n\ndata: [DONE]\n\n";
  // Every possible split point must give the same events.
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    SseParser p;
    auto ev = feed_all(p, {stream.substr(0, cut), stream.substr(cut)});
    ASSERT_EQ(ev.size(), 3u) << cut;
    EXPECT_EQ(ev[0], "{\"a\":1}");
    EXPECT_EQ(ev[1], "{\"b\":2}");
    EXPECT_EQ(ev[2], "[DONE]");
  }
  SseParser bytewise;
  std::vector<std::string> bytes;
  for (char c : stream) bytes.emplace_back(1, c);
  EXPECT_EQ(feed_all(bytewise, bytes).size(), 3u);
}

TEST(SseParser, JoinsMultiLineDataAndIgnoresOtherFields) {
  SseParser p;
  std::vector<SseEvent> got;
  p.feed("event: message\nid: 7\ndata: line1\ndata:line2\nretry: 10\n\n", [&](SseEvent& e) { got.push_back(e); });
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].event, "message");
  EXPECT_EQ(got[0].data, "line1\nline2");
}

TEST(SseParser, HandlesCrOnlyLineEndsAndNoDataEvents) {
  SseParser p;
  auto ev = feed_all(p, {"data: x\r", "\rdata: y\r\r", "event: ping\n\n"});
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[1], "y");
}

TEST(SseParser, BoundsMemory) {
  SseParser p(16);
  EXPECT_FALSE(p.feed("data: 0123456789012345678901234567890", [](SseEvent&) {}));
}

TEST(SseFraming, FramesPayloadsAsDataLines) {
  std::string out;
  append_sse_data(out, "{\"x\":1}");
  EXPECT_EQ(out, "data: {\"x\":1}\n\n");
  out.clear();
  append_sse_data(out, "a\nb");
  EXPECT_EQ(out, "data: a\ndata: b\n\n");
  SseParser p;
  auto ev = feed_all(p, {out});
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0], "a\nb");
}

}  // namespace
}  // namespace tg::api

#include "api/usage.h"

namespace tg::api {
namespace {

// A stored answer replayed as a stream, captured again and rebuilt: the same
// text per choice, finish reasons and usage (what the cache relies on).
TEST(CachedAnswers, StreamReplayRoundTripsEveryChoice) {
  const std::string body =
      R"({"id":"chatcmpl-x","object":"chat.completion","created":1,"model":"m","choices":[)"
      R"({"index":0,"message":{"role":"assistant","content":"Hello there"},"finish_reason":"stop"},)"
      R"({"index":1,"message":{"role":"assistant","content":"Hi"},"finish_reason":"length"}],)"
      R"("usage":{"prompt_tokens":5,"completion_tokens":4,"total_tokens":9}})";
  const auto chunks = chunks_from_completion(body, /*chat=*/true, /*include_usage=*/true, "chatcmpl-new", 42);
  ASSERT_EQ(chunks.size(), 5u);  // role+text and finish per choice, then usage
  StreamCapture cap;
  std::optional<Usage> usage;
  std::string rewritten, generated;
  for (const auto& c : chunks) inspect_stream_chunk(c, true, rewritten, usage, generated, &cap);
  EXPECT_EQ(cap.text[0], "Hello there");
  EXPECT_EQ(cap.text[1], "Hi");
  EXPECT_EQ(cap.finish[1], "length");
  ASSERT_TRUE(usage);
  EXPECT_EQ(usage->completion_tokens, 4u);
  const std::string rebuilt = completion_from_capture(cap, true, usage, "chatcmpl-new", 42);
  EXPECT_NE(rebuilt.find(R"("content":"Hello there")"), std::string::npos) << rebuilt;
  EXPECT_NE(rebuilt.find(R"("finish_reason":"length")"), std::string::npos) << rebuilt;
  // A tool call, or a choice that never finished, is not a complete answer.
  StreamCapture partial = cap;
  partial.finish.erase(1);
  EXPECT_EQ(completion_from_capture(partial, true, usage, "x", 1), "");
  StreamCapture tools = cap;
  tools.tool_calls = true;
  EXPECT_EQ(completion_from_capture(tools, true, usage, "x", 1), "");
  // Completions replay as text chunks; the id and created are fresh.
  const auto text = chunks_from_completion(
      R"({"id":"cmpl-x","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":"abc","finish_reason":"stop"}]})",
      false, false, "cmpl-new", 7);
  ASSERT_EQ(text.size(), 1u);
  EXPECT_NE(text[0].find(R"("id":"cmpl-new")"), std::string::npos);
  EXPECT_NE(text[0].find(R"("text":"abc")"), std::string::npos);
  EXPECT_NE(restamp_completion(body, "chatcmpl-new", 42).find(R"("id":"chatcmpl-new","object")"), std::string::npos);
}

}  // namespace
}  // namespace tg::api
