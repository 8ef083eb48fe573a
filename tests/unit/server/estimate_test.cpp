// server/stages/estimate.h: the prompt counted exactly, the context window,
// counting that stops at the smallest tokens-per-minute ceiling, and large
// bodies counted on the counting executor.
#include "server/stages/estimate.h"

#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <future>

#include "fakes.h"
#include "server/stages/parse.h"

namespace tg::server::stages {
namespace {

using namespace tg::server::testing;

api::ParsedRequest chat(const std::string& content, int max_tokens = 16, int n = 1) {
  const std::string body = fmt::format(R"({{"model":"chat","max_tokens":{},"n":{},"messages":[{{"role":"user","content":"{}"}}]}})",
                                       max_tokens, n, content);
  auto p = api::parse_request(api::Endpoint::kChatCompletions, body);
  EXPECT_TRUE(p.ok()) << p.error().message;
  return std::move(*p);
}

RequestIdentity who(std::string tenant = "acme", std::string user = "alice") {
  RequestIdentity w;
  w.request_id = "req-1";
  w.org = "demo";
  w.tenant = std::move(tenant);
  w.user = std::move(user);
  w.key_id = w.tenant + "-" + w.user;
  w.model = "chat";
  w.deployment = "chat-up";
  w.door = "openai";
  return w;
}

std::string words(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += (i % 2 ? "apple " : "river ");
  return s;
}

class EstimateStage : public ::testing::Test {
 protected:
  void build(const std::string& top = "", const std::string& acme_extra = "") {
    config_ = test_config(top, acme_extra);
    store_ = limits::in_process_limit_store(config_);
    model_ = config_.find_model("chat");
    ASSERT_NE(model_, nullptr);
  }
  Config config_;
  std::unique_ptr<limits::LimitStore> store_;
  const ModelConfig* model_ = nullptr;
};

TEST_F(EstimateStage, ASmallChatIsCountedExactly) {
  build();
  Estimate estimate(config_, *store_, {});
  // OpenAI's count for [{"role":"user","content":"Hello"}]: 3 per message + "user" (1) + "Hello" (1) + 3 priming.
  auto e = run_sync(estimate.run(*model_, chat("Hello", 16), who(), 80));
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ(e->prompt_tokens, 8u);
  EXPECT_EQ(e->spend.tokens, 8 + 16);
  // $1 per 1M in, $2 per 1M out: 8 + 32 micro-dollars.
  EXPECT_EQ(e->spend.micros, 8 + 32);

  // n choices: each may generate max_tokens.
  auto three = run_sync(estimate.run(*model_, chat("Hello", 16, 3), who(), 80));
  ASSERT_TRUE(three.ok()) << three.error().message;
  EXPECT_EQ(three->spend.tokens, 8 + 3 * 16);

  // Without max_tokens, the default output estimate is reserved.
  auto p = api::parse_request(api::Endpoint::kChatCompletions,
                              R"({"model":"chat","messages":[{"role":"user","content":"Hello"}]})");
  ASSERT_TRUE(p.ok());
  Config wide = test_config();
  wide.models[0].context_tokens = 0;
  Estimate unbounded(wide, *store_, {});
  auto d = run_sync(unbounded.run(wide.models[0], *p, who(), 60));
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(d->spend.tokens, static_cast<std::int64_t>(8 + kDefaultOutputEstimate));
}

TEST_F(EstimateStage, APromptAndOutputPastTheWindowIsContextLengthExceededNamingTheNumbers) {
  build();
  Estimate estimate(config_, *store_, {});
  auto e = run_sync(estimate.run(*model_, chat("Hello", 995), who(), 80));
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().status, 400);
  EXPECT_EQ(e.error().type, "invalid_request_error");
  EXPECT_EQ(e.error().code, "context_length_exceeded");
  EXPECT_EQ(e.error().param, "messages");
  EXPECT_NE(e.error().message.find("maximum context length is 1000 tokens"), std::string::npos) << e.error().message;
  EXPECT_NE(e.error().message.find("8 tokens in the prompt and up to 995 to generate"), std::string::npos)
      << e.error().message;

  // Just fits: 8 + 992 = 1000.
  EXPECT_TRUE(run_sync(estimate.run(*model_, chat("Hello", 992), who(), 80)).ok());

  auto long_prompt = run_sync(estimate.run(*model_, chat(words(3000), 16), who(), 18000));
  ASSERT_FALSE(long_prompt.ok());
  EXPECT_EQ(long_prompt.error().code, "context_length_exceeded");
  EXPECT_NE(long_prompt.error().message.find("more than 1000 tokens in the prompt"), std::string::npos)
      << long_prompt.error().message;
}

TEST_F(EstimateStage, CountingStopsPastTheSmallestTokensPerMinuteCeiling) {
  build("", "    user_limits: { tokens_per_min: 200 }");
  Config wide = config_;
  wide.models[0].context_tokens = 0;  // no window: only the ceiling stops counting
  Estimate estimate(wide, *store_, {});
  const api::ParsedRequest r = chat(words(4000), 16);
  const std::uint64_t full = estimate.count_prompt(wide.models[0], r, std::numeric_limits<std::uint64_t>::max());
  ASSERT_GT(full, 3000u);

  auto e = run_sync(estimate.run(wide.models[0], r, who(), 24000));
  ASSERT_TRUE(e.ok()) << e.error().message << " (admit refuses it, not estimate)";
  EXPECT_GT(e->prompt_tokens, 200u - 16u) << "above the ceiling less the output";
  EXPECT_LT(e->prompt_tokens, full / 4) << "counting stopped well short of the whole prompt";
  // The admit stage then refuses it as one that can never fit.
  const auto refused = store_->admit(limits::Ask::of(who(), e->spend.tokens), 1'000'000);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, "tokens_exceed_limit");

  // A tenant without a ceiling is counted in full.
  auto g = run_sync(estimate.run(wide.models[0], r, who("globex", "carol"), 24000));
  ASSERT_TRUE(g.ok()) << g.error().message;
  EXPECT_EQ(g->prompt_tokens, full);
}

// The counting executor is a pool whose only thread the test holds: a large
// body cannot be counted until it is let go; a small one is counted in place.
TEST_F(EstimateStage, ALargeBodyIsCountedOnTheCountExecutor) {
  build("server: { access_log: \"off\", offload_count_bytes: 1024 }");
  net::thread_pool count_pool(1);
  std::promise<void> let_go;
  std::shared_future<void> gate = let_go.get_future().share();
  std::promise<std::thread::id> pool_thread;
  net::post(count_pool, [gate, &pool_thread] {
    pool_thread.set_value(std::this_thread::get_id());
    gate.wait();
  });
  const std::thread::id counter = pool_thread.get_future().get();
  ASSERT_NE(counter, std::this_thread::get_id());

  Estimate estimate(config_, *store_, count_pool.get_executor());
  net::io_context ioc;
  auto work = net::make_work_guard(ioc);

  // Small: done at once, in place, while the pool is held.
  const api::ParsedRequest small = chat("Hello", 16);
  const RequestIdentity alice = who();
  std::optional<Expected<Estimated>> small_result;
  net::co_spawn(
      ioc, [&]() -> net::awaitable<void> { small_result.emplace(co_await estimate.run(*model_, small, alice, 100)); },
      net::detached);
  ioc.run_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(small_result.has_value()) << "a small body must not wait for the counting thread";
  ASSERT_TRUE(small_result->ok());
  EXPECT_EQ((*small_result)->prompt_tokens, 8u);

  // Large: waits for the counting thread.
  const api::ParsedRequest large = chat(words(150), 16);
  std::optional<Expected<Estimated>> large_result;
  std::thread::id resumed_on;
  net::co_spawn(ioc,
                [&]() -> net::awaitable<void> {
                  large_result.emplace(co_await estimate.run(*model_, large, alice, 2048));
                  resumed_on = std::this_thread::get_id();
                },
                net::detached);
  ioc.restart();
  ioc.run_for(std::chrono::milliseconds(200));
  EXPECT_FALSE(large_result.has_value()) << "a large body was counted on the calling thread";

  let_go.set_value();
  for (int i = 0; i < 200 && !large_result; ++i) {
    ioc.restart();
    ioc.run_for(std::chrono::milliseconds(10));
  }
  work.reset();
  ASSERT_TRUE(large_result.has_value());
  ASSERT_TRUE(large_result->ok()) << large_result->error().message;
  EXPECT_EQ((*large_result)->prompt_tokens, estimate.count_prompt(*model_, large, 1000));
  EXPECT_EQ(resumed_on, std::this_thread::get_id()) << "the request resumes on its own worker";
  count_pool.join();
}

}  // namespace
}  // namespace tg::server::stages
