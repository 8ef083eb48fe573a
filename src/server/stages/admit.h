// admit: reserves the estimate at every limit on the request's path (in this
// process, or in Redis for a fleet), then at every budget; the refusal (429
// naming the scope, Retry-After with jitter) when one would be passed. What
// it returns is held until settle, which settles or releases it exactly
// once. Per worker.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <optional>
#include <string>

#include "core/clock.h"
#include "core/error.h"
#include "core/request_identity.h"
#include "limits/limit_store.h"
#include "meter/budget.h"
#include "server/metrics.h"
#include "store/redis_limit_store.h"

namespace tg::server::stages {

struct Admitted {
  limits::Admission admission;
  std::optional<meter::BudgetHold> budget_hold;
  std::string headers;  // x-ratelimit-* and RateLimit lines
};

class Admit {
 public:
  // `redis` (this worker's) replaces `local` when limits live in Redis.
  Admit(limits::LimitStore& local, store::RedisLimitStore* redis, meter::BudgetBook& budgets, Metrics& metrics,
        const Clock& clock)
      : local_(local), redis_(redis), budgets_(budgets), metrics_(metrics), clock_(clock) {}

  boost::asio::awaitable<Expected<Admitted>> run(const RequestIdentity& who, const meter::Spend& estimate) const;

  // The store the path's limits live in.
  limits::LimitStore& limits() const { return redis_ ? static_cast<limits::LimitStore&>(*redis_) : local_; }

 private:
  limits::LimitStore& local_;
  store::RedisLimitStore* redis_;
  meter::BudgetBook& budgets_;
  Metrics& metrics_;
  const Clock& clock_;
};

}  // namespace tg::server::stages
