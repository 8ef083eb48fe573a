// Session: one client connection (HTTP/1.1, keep-alive). It reads requests
// under header, body and idle timeouts, enforces the body limit before
// reading a body, hands each request to the handlers, and offers them the
// primitives to answer: a whole response, or a chunked event stream, plus
// wait_disconnect() to learn that the client went away mid-request.
// Lives on one worker thread; not thread-safe.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <list>
#include <optional>

#include "core/error.h"
#include "server/exchange.h"
#include "server/worker_context.h"

namespace tg::server {

using Request = boost::beast::http::request<boost::beast::http::string_body>;
using Response = boost::beast::http::response<boost::beast::http::string_body>;

class Session {
 public:
  // `registry` is the worker's list of live sessions (for drain).
  Session(boost::asio::ip::tcp::socket socket, WorkerContext& ctx, std::list<Session*>& registry);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  boost::asio::awaitable<void> run();

  // Drain: closes the connection now if it is between requests; otherwise the
  // current response is the last (Connection: close).
  void close_if_idle();
  // Drain deadline: closes the connection whatever it is doing.
  void force_close();

  // --- for handlers ---
  // Sends a whole response; adds x-request-id and Connection headers.
  // Arguments are lvalues on purpose: GCC 12 may destroy temporaries that
  // appear inside a co_await expression twice, so callers name them first.
  boost::asio::awaitable<void> send(Exchange& x, Response& res);
  boost::asio::awaitable<void> send_json(Exchange& x, int status, std::string& body);  // consumes body
  boost::asio::awaitable<void> send_error(Exchange& x, const ApiError& e);
  // A chunked text/event-stream response: head, then chunks, then the end.
  // Write failures throw upstream::ClientGone.
  boost::asio::awaitable<void> begin_stream(Exchange& x);
  boost::asio::awaitable<void> stream_chunk(Exchange& x, std::string_view bytes);
  boost::asio::awaitable<void> end_stream(Exchange& x);
  // Completes when the client closes the connection; never completes while it
  // stays open (cancel it, e.g. with awaitable operator ||).
  boost::asio::awaitable<void> wait_disconnect();
  void close_after_response() { keep_alive_ = false; }

 private:
  enum class State { kIdle, kReading, kBusy };
  boost::asio::awaitable<bool> read_request(Exchange& x, std::optional<Request>& out);
  boost::asio::awaitable<void> write_raw(std::string_view bytes);
  void finish(Exchange& x);

  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  WorkerContext& ctx_;
  std::list<Session*>& registry_;
  std::list<Session*>::iterator self_;
  std::string peer_;
  State state_ = State::kIdle;
  bool keep_alive_ = true;
  bool closed_ = false;
};

}  // namespace tg::server
