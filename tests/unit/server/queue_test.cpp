// server/stages/queue.h: no pool, no wait; a saturated pool sheds at the
// deadline with 503 queue_timeout (a real sched::LivePool on an io_context
// the test runs).
#include "server/stages/queue.h"

#include <gtest/gtest.h>

#include "fakes.h"

namespace tg::server::stages {
namespace {

using namespace tg::server::testing;


api::ParsedRequest chat() {
  auto p = api::parse_request(api::Endpoint::kChatCompletions,
                              R"({"model":"chat","max_tokens":16,"messages":[{"role":"user","content":"Hello"}]})");
  EXPECT_TRUE(p.ok());
  return std::move(*p);
}

class QueueStage : public ::testing::Test {
 protected:
  QueueStage() {
    PoolSettings ps;
    ps.enabled = true;
    ps.max_seqs = 1;  // one request at a time
    SchedulingConfig sc;
    sc.interactive_timeout = std::chrono::milliseconds(50);
    sc.batch_timeout = std::chrono::milliseconds(80);
    pools_["chat-up"] = std::make_unique<sched::LivePool>("chat-up", ps, sc, config_.tenants);
  }
  Config config_ = test_config();
  Queue::Pools pools_;
  const api::ParsedRequest r_ = chat();
};

TEST_F(QueueStage, WithoutAPoolThereIsNoTicketAndNoWait) {
  Queue none(nullptr);
  EXPECT_FALSE(none.has_pool("chat-up"));
  const auto t0 = std::chrono::steady_clock::now();
  auto t = run_sync(none.run(alice(), config_.find_model("chat"), r_, 8, false));
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(static_cast<bool>(*t));

  Queue other(&pools_);
  EXPECT_TRUE(other.has_pool("chat-up"));
  EXPECT_FALSE(other.has_pool("elsewhere"));
  auto u = run_sync(other.run(alice("openai", "req-1", "elsewhere"), config_.find_model("chat"), r_, 8, false));
  ASSERT_TRUE(u.ok());
  EXPECT_FALSE(static_cast<bool>(*u)) << "a deployment without a pool is never queued";
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(40));
}

TEST_F(QueueStage, ARoomyPoolAdmitsAtOnce) {
  Queue q(&pools_);
  auto t = run_sync(q.run(alice(), config_.find_model("chat"), r_, 8, false));
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_TRUE(static_cast<bool>(*t));
  EXPECT_EQ(pools_["chat-up"]->snapshot().pool.inflight_seqs, 1);
  t->release(4);
  EXPECT_EQ(pools_["chat-up"]->snapshot().pool.inflight_seqs, 0);
}

TEST_F(QueueStage, APoolAtCapacityShedsAtTheDeadlineWith503QueueTimeout) {
  Queue q(&pools_);
  net::io_context ioc;
  std::optional<Expected<sched::Ticket>> holder, waiter, batch_waiter;
  const RequestIdentity a = alice();
  const ModelConfig* m = config_.find_model("chat");
  net::co_spawn(ioc, [&]() -> net::awaitable<void> { holder.emplace(co_await q.run(a, m, r_, 8, false)); }, net::detached);
  ioc.run();
  ASSERT_TRUE(holder.has_value());
  ASSERT_TRUE(holder->ok());
  ASSERT_TRUE(static_cast<bool>(**holder));

  const auto t0 = std::chrono::steady_clock::now();
  net::co_spawn(ioc, [&]() -> net::awaitable<void> { waiter.emplace(co_await q.run(a, m, r_, 8, false)); }, net::detached);
  ioc.restart();
  ioc.run();
  const auto waited = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(waiter.has_value());
  ASSERT_FALSE(waiter->ok());
  EXPECT_EQ(waiter->error().status, 503);
  EXPECT_EQ(waiter->error().code, "queue_timeout");
  EXPECT_GE(waiter->error().retry_after_s, 1);
  EXPECT_NE(waiter->error().message.find("'chat-up'"), std::string::npos) << waiter->error().message;
  EXPECT_NE(waiter->error().message.find("interactive"), std::string::npos) << waiter->error().message;
  EXPECT_GE(waited, std::chrono::milliseconds(45)) << "shed before its deadline";
  EXPECT_EQ(pools_["chat-up"]->snapshot().tenants["acme"].shed, 1u);

  // The batch lane has its own deadline and says so.
  net::co_spawn(ioc, [&]() -> net::awaitable<void> { batch_waiter.emplace(co_await q.run(a, m, r_, 8, true)); },
                net::detached);
  ioc.restart();
  ioc.run();
  ASSERT_TRUE(batch_waiter.has_value());
  ASSERT_FALSE(batch_waiter->ok());
  EXPECT_EQ(batch_waiter->error().code, "queue_timeout");
  EXPECT_NE(batch_waiter->error().message.find("batch"), std::string::npos) << batch_waiter->error().message;

  // Capacity freed: the next one goes at once.
  holder.reset();
  EXPECT_EQ(pools_["chat-up"]->snapshot().pool.inflight_seqs, 0);
  std::optional<Expected<sched::Ticket>> next;
  net::co_spawn(ioc, [&]() -> net::awaitable<void> { next.emplace(co_await q.run(a, m, r_, 8, false)); }, net::detached);
  ioc.restart();
  ioc.run();
  ASSERT_TRUE(next.has_value());
  ASSERT_TRUE(next->ok());
  EXPECT_TRUE(static_cast<bool>(**next));
}

TEST_F(QueueStage, AWaiterIsAdmittedWhenTheHolderReleases) {
  Queue q(&pools_);
  net::io_context ioc;
  std::optional<Expected<sched::Ticket>> holder, waiter;
  const RequestIdentity a = alice();
  const ModelConfig* m = config_.find_model("chat");
  net::co_spawn(ioc, [&]() -> net::awaitable<void> { holder.emplace(co_await q.run(a, m, r_, 8, false)); }, net::detached);
  ioc.run();
  ASSERT_TRUE(holder && holder->ok());
  net::co_spawn(ioc, [&]() -> net::awaitable<void> { waiter.emplace(co_await q.run(a, m, r_, 8, false)); }, net::detached);
  ioc.restart();
  ioc.run_for(std::chrono::milliseconds(10));
  EXPECT_FALSE(waiter.has_value()) << "admitted past a full pool";
  (**holder).release(3);
  ioc.restart();
  ioc.run();
  ASSERT_TRUE(waiter.has_value());
  ASSERT_TRUE(waiter->ok()) << waiter->error().message;
  EXPECT_TRUE(static_cast<bool>(**waiter));
}

}  // namespace
}  // namespace tg::server::stages
