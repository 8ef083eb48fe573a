// Session: one client connection (HTTP/1.1, keep-alive). It reads requests
// under header, body and idle timeouts, enforces the header and body limits,
// hands each request to the handlers, and offers them the primitives to
// answer: a whole response, or a chunked event stream, plus
// wait_disconnect() to learn that the client went away mid-request.
// Lives on one worker thread; not thread-safe.
//
// Framing (RFC 9112): a request head is judged before a byte of its body is
// read. Its body must be framed one way only: `Transfer-Encoding: chunked`
// as the one and final coding (other codings: 501), or one decimal
// Content-Length, or nothing for a method without a body (POST, PUT, PATCH:
// 411); never both; no Transfer-Encoding in HTTP/1.0. It must carry exactly
// one Host (none is allowed in HTTP/1.0) and an origin- or absolute-form
// target (the absolute-form is served as its path). A head or body that
// fails any of this is answered with a 4xx/5xx, settled, and the connection
// closed (its unread bytes drained), so no byte of a refused request is ever
// parsed as the next one. Error messages quote client bytes only cut short
// and escaped.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <list>
#include <memory>
#include <optional>

#include "core/error.h"
#include "io/deadlines.h"
#include "server/exchange.h"
#include "server/worker_context.h"

namespace tg::server {

using Request = boost::beast::http::request<boost::beast::http::string_body>;

class Session {
 public:
  // `registry` is the worker's list of live sessions (for drain).
  // `cancel` is bound to the slot of the coroutine that runs this session.
  Session(boost::asio::ip::tcp::socket socket, WorkerContext& ctx, std::list<Session*>& registry,
          boost::asio::cancellation_signal& cancel);
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
  // Sends a whole response (one gather write of a hand-formatted head and the
  // body); adds x-request-id, Content-Length and Connection. `extra_headers`
  // is "Name: value\r\n" lines. Arguments are lvalues on purpose: GCC 12 may
  // destroy temporaries inside a co_await expression twice.
  boost::asio::awaitable<void> send(Exchange& x, int status, std::string_view content_type,
                                    const std::string& body, const std::string& extra_headers);
  boost::asio::awaitable<void> send_json(Exchange& x, int status, const std::string& body);
  boost::asio::awaitable<void> send_error(Exchange& x, const ApiError& e);
  // A chunked text/event-stream response: head, then chunks, then the end.
  // Write failures throw upstream::ClientGone.
  boost::asio::awaitable<void> begin_stream(Exchange& x);
  boost::asio::awaitable<void> stream_chunk(Exchange& x, std::string_view bytes);
  boost::asio::awaitable<void> end_stream(Exchange& x);
  // While a request is upstream: when the client closes the connection, emit
  // terminal cancellation on the connection coroutine (`cancel`), which
  // aborts whatever it awaits (the upstream call). stop_watching() ends it.
  void watch_disconnect();
  void stop_watching();
  bool client_gone() const { return watch_ && watch_->fired; }
  void close_after_response() { keep_alive_ = false; }
  // Scratch memory for one request's JSON (a monotonic arena): requests on a
  // connection are sequential, so one buffer serves them all.
  unsigned char* json_arena() { return json_arena_.get(); }
  static constexpr std::size_t kJsonArenaBytes = 16 * 1024;

 private:
  enum class State { kIdle, kReading, kBusy };
  boost::asio::awaitable<bool> read_request(Exchange& x, std::optional<Request>& out);
  boost::asio::awaitable<boost::system::error_code> read_head(
      boost::beast::http::request_parser<boost::beast::http::string_body>& parser);
  boost::asio::awaitable<void> write_raw(std::string_view bytes);
  void finish(Exchange& x);

  struct Watch {
    bool active = false;
    bool fired = false;
  };
  boost::beast::tcp_stream stream_;  // Beast's own timeouts unused: deadline_ instead
  io::Deadline deadline_;
  boost::asio::cancellation_signal& cancel_;
  std::shared_ptr<Watch> watch_;
  boost::beast::flat_buffer buffer_;
  WorkerContext& ctx_;
  std::list<Session*>& registry_;
  std::list<Session*>::iterator self_;
  std::string peer_;
  State state_ = State::kIdle;
  std::unique_ptr<unsigned char[]> json_arena_{new unsigned char[kJsonArenaBytes]};
  bool keep_alive_ = true;
  bool linger_ = false;  // drain the client's unread bytes before closing
  bool closed_ = false;
};

}  // namespace tg::server
