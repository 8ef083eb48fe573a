// What one worker thread's sessions share: the immutable config and key ring
// (process-wide), this worker's router and upstream providers, and the
// process-wide metrics and access log. Built by Gateway.
#pragma once

#include <map>
#include <memory>

#include "cache/store.h"
#include "store/cache_replica.h"
#include "sched/live_pool.h"

#include <atomic>
#include <boost/asio/any_io_executor.hpp>

#include "core/config.h"
#include "identity/keyring.h"
#include "limits/limit_store.h"
#include "limits/refusal_budget.h"
#include "io/deadlines.h"
#include "meter/budget.h"
#include "meter/ledger.h"
#include "server/access_log.h"
#include "server/metrics.h"
#include "server/webhook.h"
#include "store/redis_limit_store.h"
#include "upstream/router.h"

namespace tg::server {

struct WorkerContext {
  const Config& config;
  const identity::KeyRing& keys;
  upstream::Router& router;
  Metrics& metrics;
  AccessLog& access_log;
  const std::atomic<bool>& draining;
  io::DeadlineSweeper& deadlines;  // this worker's
  meter::LedgerWriter* ledger;     // null when metering.ledger_sqlite is "off"
  meter::BudgetBook& budgets;
  boost::asio::any_io_executor admin_executor;  // slow admin queries run here, off the worker
  Webhook& webhook;
  limits::LimitStore& limits;  // process-wide, thread-safe
  store::RedisLimitStore* redis_limits = nullptr;  // this worker's, when limits live in Redis
  // Fair admission pools by deployment id (process-wide, thread-safe); a
  // deployment without one is never queued.
  const std::map<std::string, std::unique_ptr<sched::LivePool>>* pools = nullptr;
  cache::CacheStore* cache = nullptr;  // process-wide, thread-safe; null when the cache is off
  store::CacheReplica* cache_replica = nullptr;  // fleet mode: the cache's entries in Redis
  limits::RefusalBudget* refusals = nullptr;  // this worker's; null when refusals are not limited
  boost::asio::any_io_executor count_executor;  // large prompts are tokenized here, off the worker
};

}  // namespace tg::server
