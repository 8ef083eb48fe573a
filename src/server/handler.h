// Handler: what a Session asks of the request path. The session owns the
// connection and HTTP framing; the handler judges a request head before its
// body is read, serves whole requests, and answers the session's own
// refusals (framing, sizes, timeouts) so they are settled and shaped like
// any other answer of their door. Implemented by server::RequestPath.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <optional>

#include "core/error.h"
#include "server/exchange.h"
#include "server/responder.h"

namespace tg::server {

using Request = boost::beast::http::request<boost::beast::http::string_body>;

class Handler {
 public:
  virtual ~Handler() = default;
  // Judged on the head alone, before a byte of the body is read: the refusal
  // of a request that must not cost a body read (nullopt: read it).
  virtual std::optional<ApiError> judge_head(const Request& head, Exchange& x) = 0;
  // Serves one whole request; settles it and writes its answer.
  virtual boost::asio::awaitable<void> serve(Responder& out, Request& req, Exchange& x) = 0;
  // Settles and answers a refusal the session decided (x.path may be a
  // prefix of the target; the body may be unread).
  virtual boost::asio::awaitable<void> refuse(Responder& out, Exchange& x, const ApiError& e) = 0;
  // Settles a request that gets no answer (the client is gone, a timeout):
  // metrics, access log, ledger. Idempotent.
  virtual void settle_unanswered(Exchange& x) = 0;
};

}  // namespace tg::server
