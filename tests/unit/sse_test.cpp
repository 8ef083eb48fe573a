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
