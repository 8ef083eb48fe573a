#include "server/stages/queue.h"

namespace tg::server::stages {
namespace net = boost::asio;

net::awaitable<Expected<sched::Ticket>> Queue::run(const RequestIdentity& who, const ModelConfig* model,
                                                   const api::ParsedRequest& r, std::uint64_t prompt_tokens,
                                                   bool batch, const sched::LivePool::Keepalive* keepalive) const {
  if (!pools_) co_return sched::Ticket();
  auto it = pools_->find(who.deployment);
  if (it == pools_->end()) co_return sched::Ticket();
  sched::AdmissionAsk ask{who, static_cast<std::int64_t>(prompt_tokens), r.max_output_tokens, std::string(),
                          model && model->reasoning,
                          batch ? sched::Priority::kBatch : sched::Priority::kInteractive, r.choices};
  if (auto e = r.body.if_contains("reasoning_effort"); e && e->is_string()) ask.reasoning_effort = e->as_string();
  co_return co_await it->second->acquire(ask, keepalive);
}

}  // namespace tg::server::stages
