// queue: fair admission to the deployment's engine pool (sched::LivePool).
// Returns at once while the pool has room; otherwise waits its turn in fair
// order (tenants, then their users; the batch lane behind interactive work)
// and is shed with 503 queue_timeout at the deadline. A request to a
// deployment without a pool is never queued. `keepalive`, when given, is
// sent every so often while the request waits. Throws
// system_error(operation_aborted) when cancelled (the client left). The
// pools are process-wide and thread-safe.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <map>
#include <memory>

#include "api/request.h"
#include "core/config.h"
#include "core/error.h"
#include "core/request_identity.h"
#include "sched/live_pool.h"

namespace tg::server::stages {

class Queue {
 public:
  using Pools = std::map<std::string, std::unique_ptr<sched::LivePool>>;
  explicit Queue(const Pools* pools) : pools_(pools) {}

  // An empty ticket when the deployment has no pool.
  boost::asio::awaitable<Expected<sched::Ticket>> run(const RequestIdentity& who, const ModelConfig* model,
                                                      const api::ParsedRequest& r, std::uint64_t prompt_tokens,
                                                      bool batch,
                                                      const sched::LivePool::Keepalive* keepalive = nullptr) const;
  bool has_pool(const std::string& deployment) const { return pools_ && pools_->contains(deployment); }

 private:
  const Pools* pools_;
};

}  // namespace tg::server::stages
