// Exchange: the per-request state that the stages of the request path fill
// in, in order (accept/parse → authenticate → route → upstream → settle).
// Owned by one session coroutine; never shared across threads.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "api/usage.h"
#include "core/config.h"
#include "meter/budget.h"
#include "identity/keyring.h"
#include "limits/limit_store.h"
#include "sched/live_pool.h"
#include "cache/store.h"
#include "meter/ledger.h"

namespace tg::server {

struct Exchange {
  std::string request_id;
  std::chrono::steady_clock::time_point start;
  std::string method;
  std::string path;
  std::string client_ip;
  std::string endpoint;  // "chat.completions", "models", ... ; empty for non-API paths
  // authenticate
  const identity::Principal* principal = nullptr;  // owned by the KeyRing
  std::string user;  // the end user: the key's, or X-TG-User / body `user` for tenant keys
  std::string run_id;   // X-TG-Run
  std::string parent_id;  // X-TG-Parent
  std::string feature;  // X-TG-Feature (cost attribution tag)
  bool batch = false;   // X-TG-Priority: batch
  std::size_t body_bytes = 0;      // of the request, for what a refusal costs (limits/refusal_budget.h)
  bool reached_admission = false;  // refused before admission or not (ditto)
  // parse + route
  const ModelConfig* model_config = nullptr;
  std::uint64_t prompt_tokens_est = 0;  // our own count of the prompt (real BPE)
  std::string generated;  // streamed text relayed, for counting a stream cut short
  std::optional<meter::BudgetHold> budget_hold;  // admitted: reservations to settle
  limits::Admission admission;  // admitted by the limits: settled (or released) exactly once
  sched::Ticket pool_ticket;    // admitted to the deployment's pool: released at settle (or by its destructor)
  // cache
  std::string cache_status;  // hit | miss | bypass | refresh; empty: the cache is off or not asked
  std::optional<cache::Key> cache_key, cache_shared_key;  // the user's partition; the tenant's when shareable
  std::optional<cache::Key> cache_public_key;  // X-TG-Cache-Namespace: the public namespace's partition
  bool cache_public_writer = false;             // this tenant may write that namespace
  meter::CacheAudit cache_audit;  // what the cache did (a write or a hit), for the ledger's audit trail
  api::StreamCapture capture;     // a streamed answer's text, for the cache write
  std::string extra_headers;    // header lines the stages add: x-ratelimit-*, RateLimit, x-tg-cache
  std::string model;       // alias asked for
  std::string deployment;  // deployment id that served it
  bool stream = false;
  // upstream + settle
  std::optional<api::Usage> usage;
  std::optional<std::chrono::microseconds> ttft;
  int upstream_status = 0;
  int status = 0;
  std::string error_code;
  std::uint64_t bytes_out = 0;
  bool client_gone = false;
  bool settled = false;  // settle ran: it runs once, just before the response's last bytes
};

}  // namespace tg::server
