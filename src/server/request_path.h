// RequestPath: what the gateway does with one request, per worker thread.
// Routing happens once (server/routes.h); the plain endpoints answer at
// once (server/endpoints.h), the admin API in its own folder (admin/), and
// inference requests, through either door (OpenAI or Anthropic), go down
// the stages of src/server/stages/ in this order:
//
//   authenticate → parse → identify → route → estimate → admit → cache
//     → queue → relay (upstream) → settle → the answer's last bytes
//
// Each stage is built once here with its config slice and the collaborators
// it uses, and returns its result; serve_inference() in request_path.cpp
// reads as that list. Settling is its own explicit step, taken before the
// last bytes of every answer (and by settle_unanswered() for a request that
// gets none), never a side effect of writing.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <optional>

#include "admin/admin_api.h"
#include "core/clock.h"
#include "server/door.h"
#include "server/endpoints.h"
#include "server/handler.h"
#include "server/routes.h"
#include "server/stages/admit.h"
#include "server/stages/authenticate.h"
#include "server/stages/cache.h"
#include "server/stages/estimate.h"
#include "server/stages/queue.h"
#include "server/stages/relay.h"
#include "server/stages/route.h"
#include "server/stages/settle.h"

namespace tg::server {

// Everything one worker's path is built from (the gateway owns them all).
struct PathDeps {
  const Config& config;
  const identity::KeyRing& keys;
  upstream::Router& router;  // this worker's
  Metrics& metrics;
  AccessLog& access_log;
  const std::atomic<bool>& draining;
  ledger::LedgerWriter* ledger;  // null: the ledger is off
  meter::BudgetBook& budgets;
  Webhook& webhook;
  limits::LimitStore& limits;                  // process-wide, thread-safe
  store::RedisLimitStore* redis_limits;        // this worker's, when limits live in Redis
  limits::RefusalBudget* refusals;             // this worker's; null: refusals not limited
  const stages::Queue::Pools* pools;           // fair admission pools by deployment id
  cache::CacheStore* cache;                    // null: the cache is off
  store::CacheReplica* cache_replica;          // fleet mode
  boost::asio::any_io_executor admin_executor;  // slow admin queries
  boost::asio::any_io_executor count_executor;  // large prompts are counted here
  const Clock& clock;
};

class RequestPath final : public Handler {
 public:
  explicit RequestPath(const PathDeps& d);

  std::optional<ApiError> judge_head(const Request& head, Exchange& x) override;
  boost::asio::awaitable<void> serve(Responder& out, Request& req, Exchange& x) override;
  boost::asio::awaitable<void> refuse(Responder& out, Exchange& x, const ApiError& e) override;
  void settle_unanswered(Exchange& x) override { settle_.run(x); }

 private:
  boost::asio::awaitable<void> serve_inference(Responder& out, Request& req, Exchange& x, const Route& route);
  boost::asio::awaitable<void> serve_hit(Responder& out, Exchange& x, const api::ParsedRequest& r,
                                         const std::string& stored, Dialect& dialect);
  // Settles, then writes the whole answer.
  boost::asio::awaitable<void> answer(Responder& out, Exchange& x, int status, std::string_view content_type,
                                      const std::string& body, std::string_view headers = {});
  boost::asio::awaitable<void> fail(Responder& out, Exchange& x, Door door, const ApiError& e);
  // Settles, then writes a stream's last events and its end.
  boost::asio::awaitable<void> end_stream(Responder& out, Exchange& x, const std::string& last_events);

  const Config& config_;
  Metrics& metrics_;
  Endpoints endpoints_;
  admin::AdminApi admin_;
  stages::Authenticate authenticate_;
  stages::Routing routing_;
  stages::Estimate estimate_;
  stages::Admit admit_;
  stages::Cache cache_;
  stages::Queue queue_;
  stages::Relay relay_;
  stages::Settle settle_;
};

}  // namespace tg::server
