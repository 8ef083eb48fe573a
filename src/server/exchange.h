// Exchange: the state of one request as it goes down the request path
// (server/request_path.cpp). Each stage returns its result and the path
// stores it in the member named after that stage; a stage reads only the
// members of the stages before it. Owned by one session coroutine; never
// shared across threads.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "api/usage.h"
#include "cache/store.h"
#include "core/config.h"
#include "core/request_identity.h"
#include "identity/keyring.h"
#include "limits/limit_store.h"
#include "meter/budget.h"
#include "ledger/ledger.h"
#include "sched/live_pool.h"

namespace tg::server {

// The cache stage's per-request state (server/stages/cache.h).
struct CacheState {
  std::string status;  // hit | miss | bypass | refresh; empty: the cache is off or not asked
  std::optional<cache::Key> key, shared_key;  // the user's partition; the tenant's when shareable
  std::optional<cache::Key> public_key;       // X-TG-Cache-Namespace: the public namespace's partition
  bool public_writer = false;                 // this tenant may write that namespace
  ledger::CacheAudit audit;                    // what the cache did (a write or a hit), for the audit trail
  api::StreamCapture capture;                 // a streamed answer's text, for the cache write
};

struct Exchange {
  // session: the HTTP request
  std::chrono::steady_clock::time_point start;
  std::string method;
  std::string path;
  std::string client_ip;
  std::size_t body_bytes = 0;  // for what a refusal costs (limits/refusal_budget.h)
  std::string endpoint;        // "chat.completions", "messages", "models", ...; empty for non-API paths
  // authenticate, identify, route
  RequestIdentity who;
  const identity::Principal* principal = nullptr;  // owned by the KeyRing
  bool batch = false;                              // X-TG-Priority: batch
  bool stream = false;
  const ModelConfig* model_config = nullptr;
  // estimate
  std::uint64_t prompt_tokens_est = 0;  // our own count of the prompt (real BPE)
  // admit, queue: held until settle, which settles or releases each exactly once
  bool reached_admission = false;
  limits::Admission admission;
  std::optional<meter::BudgetHold> budget_hold;
  sched::Ticket pool_ticket;
  std::string extra_headers;  // header lines the stages add: x-ratelimit-*, RateLimit, x-tg-cache
  // cache
  CacheState cache;
  // upstream
  std::optional<api::Usage> usage;
  std::optional<std::chrono::microseconds> ttft;
  std::string generated;  // streamed text relayed, for counting a stream cut short
  int upstream_status = 0;
  // the answer
  int status = 0;
  std::string error_code;
  std::uint64_t bytes_out = 0;
  bool client_gone = false;
  bool settled = false;  // settle ran (exactly once, before the answer's last bytes)
};

}  // namespace tg::server
