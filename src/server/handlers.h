// The request path for one parsed HTTP request, as a chain of stages:
//   authenticate → parse → route → upstream (stream relay) → settle
// Each stage is a call into its own folder (identity, api, upstream); this
// file only wires them and turns their errors into responses.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <functional>
#include <optional>
#include <string>

#include "server/exchange.h"
#include "server/session.h"
#include "server/worker_context.h"

namespace tg::server {

boost::asio::awaitable<void> handle(Session& s, WorkerContext& ctx, Request& req, Exchange& x);

// Judged on the head alone, before the body is read: the 429 too_many_refusals
// of a /v1/ request whose key (or, without a valid key, address) spent its
// refusal budget (limits/refusal_budget.h). Sets x.principal when the key is valid.
std::optional<ApiError> refused_before_body(WorkerContext& ctx, const Request& head, Exchange& x);

// The last stage for every request, answered or not: metrics and the access
// log line. Called exactly once per request.
void settle(WorkerContext& ctx, Exchange& x);

// Runs `query` (a blocking ledger query) as a coroutine on the admin thread;
// the caller resumes on its worker. Returns what it threw, or "".
boost::asio::awaitable<std::string> on_admin_thread(WorkerContext& ctx, const std::function<void()>& query);

// The admin API's authentication: the admin key, never a tenant key.
std::optional<ApiError> check_admin_key(const WorkerContext& ctx, const Request& req);

}  // namespace tg::server
