// server/door.h: the doors' dialects; here the Anthropic door passing a
// Messages upstream's bodies and events through.
#include "server/door.h"

#include <gtest/gtest.h>

#include "server/stages/relay.h"

namespace tg::server {
namespace {

constexpr std::string_view kStart =
    R"({"type":"message_start","message":{"id":"msg_up","type":"message","role":"assistant","model":"/models/x.gguf","content":[],"usage":{"input_tokens":7,"cache_read_input_tokens":3,"cache_creation_input_tokens":2,"output_tokens":0}}})";
constexpr std::string_view kDelta =
    R"({"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"output_tokens":4}})";

TEST(DoorPassthrough, EventsPassAsTheyAreNamedByTheirTypeWithTheAskedModel) {
  Dialect d(Door::kAnthropic, "req_1", "claude", {}, false);
  d.pass_through();
  EXPECT_EQ(d.stream_open(12), "");  // the upstream's message_start opens it
  std::string out;
  d.stream_event(kStart, api::ChunkVerdict::kForward, {}, out);
  EXPECT_EQ(out.rfind("event: message_start\ndata: ", 0), 0u) << out;
  EXPECT_NE(out.find(R"("model":"claude")"), std::string::npos) << out;
  EXPECT_EQ(out.find("x.gguf"), std::string::npos) << out;
  out.clear();
  d.stream_event(kDelta, api::ChunkVerdict::kForward, {}, out);
  EXPECT_EQ(out, "event: message_delta\ndata: " + std::string(kDelta) + "\n\n");
  out.clear();
  d.stream_event("not json", api::ChunkVerdict::kForward, {}, out);
  d.stream_event(R"({"no":"type"})", api::ChunkVerdict::kForward, {}, out);
  EXPECT_EQ(out, "");
  EXPECT_EQ(d.stream_close(4), "");  // the upstream's message_stop ends it
}

TEST(DoorPassthrough, UsageIsLearntFromMessageStartAndMessageDelta) {
  Dialect d(Door::kAnthropic, "req_1", "claude", {}, false);
  d.pass_through();
  std::optional<api::Usage> u;
  d.learn_usage(R"({"type":"ping"})", u);
  EXPECT_FALSE(u);
  d.learn_usage(kStart, u);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->prompt_tokens, 12u);  // input + cache reads + cache writes
  EXPECT_EQ(u->cached_tokens, 3u);
  EXPECT_EQ(u->cache_creation_tokens, 2u);
  d.learn_usage(kDelta, u);
  EXPECT_EQ(u->completion_tokens, 4u);
  EXPECT_EQ(u->prompt_tokens, 12u);
  const auto whole = Dialect::messages_usage(
      R"({"id":"m","type":"message","usage":{"input_tokens":5,"output_tokens":6}})");
  ASSERT_TRUE(whole);
  EXPECT_EQ(whole->prompt_tokens, 5u);
  EXPECT_EQ(whole->completion_tokens, 6u);
  EXPECT_FALSE(Dialect::messages_usage("[]"));
}

TEST(DoorPassthrough, AStreamOpenedWhileQueuedDropsTheUpstreamsMessageStart) {
  Dialect d(Door::kAnthropic, "req_1", "claude", {}, false);
  d.pass_through();
  const std::string own = d.open_for_wait(12);
  EXPECT_EQ(own.rfind("event: message_start\n", 0), 0u) << own;
  EXPECT_TRUE(d.opened());
  std::string out;
  d.stream_event(kStart, api::ChunkVerdict::kForward, {}, out);
  EXPECT_EQ(out, "");
  d.stream_event(kDelta, api::ChunkVerdict::kForward, {}, out);
  EXPECT_EQ(out.rfind("event: message_delta\n", 0), 0u);
}

TEST(DoorPassthrough, AWholeAnswerKeepsEverythingButNamesTheAskedModel) {
  Dialect d(Door::kAnthropic, "req_1", "claude", {}, false);
  d.pass_through();
  const std::string body = d.answer_body(
      R"({"id":"msg_up","type":"message","model":"up-model","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":1,"output_tokens":1}})");
  EXPECT_NE(body.find(R"("model":"claude")"), std::string::npos) << body;
  EXPECT_NE(body.find(R"("id":"msg_up")"), std::string::npos) << body;
  EXPECT_EQ(body.find("up-model"), std::string::npos) << body;
}

TEST(DoorPassthrough, TheUpstreamBodyIsTheClientsWithModelAndAttributedUser) {
  const std::string b = stages::messages_body_for(
      R"({"model":"claude","max_tokens":4,"metadata":{"user_id":"mallory"},"messages":[{"role":"user","content":[{"type":"text","text":"x","cache_control":{"type":"ephemeral"}}]}]})",
      "claude-up", "alice");
  EXPECT_NE(b.find(R"("model":"claude-up")"), std::string::npos) << b;
  EXPECT_NE(b.find(R"("user_id":"alice")"), std::string::npos) << b;
  EXPECT_NE(b.find("cache_control"), std::string::npos) << b;
  const std::string no_user = stages::messages_body_for(R"({"model":"c","max_tokens":1,"messages":[]})", "up", "alice");
  EXPECT_EQ(no_user.find("metadata"), std::string::npos) << no_user;
}

}  // namespace
}  // namespace tg::server
