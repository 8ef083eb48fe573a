// The cache stages of the request path (src/cache/ does the deciding):
// lookup after admission and before the queue, the write just before a
// complete answer's last bytes. Each response says what happened in
// `x-tg-cache: hit|miss|bypass|refresh` and nothing else about the cache
// (no key, no similarity).
#pragma once

#include <boost/asio/awaitable.hpp>

#include "api/request.h"
#include "server/exchange.h"
#include "server/session.h"
#include "server/worker_context.h"

namespace tg::server {

// Decides the request's cache mode and looks it up. Returns true when it
// answered from the cache (the response is sent).
boost::asio::awaitable<bool> serve_from_cache(Session& s, WorkerContext& ctx, const Request& req, Exchange& x,
                                              const api::ParsedRequest& parsed);

// Stores a complete answer (a non-streamed body, or a stream's capture) when
// the lookup said it may.
void remember_answer(WorkerContext& ctx, Exchange& x, const api::ParsedRequest& parsed, std::string_view body);
void remember_stream(WorkerContext& ctx, Exchange& x, const api::ParsedRequest& parsed);

}  // namespace tg::server
