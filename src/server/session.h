// Session: one client connection (HTTP/1.1, keep-alive). It reads requests
// under header, body and idle timeouts, enforces the header and body limits,
// hands each request to its Handler (the request path), and is the
// Responder the path answers through: a whole response, or a chunked event
// stream, plus watch_disconnect() to learn that the client went away
// mid-request. Refusals it decides itself go back through the handler, so
// they are settled and shaped like any other answer.
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

#include <atomic>

#include "core/config.h"
#include "core/error.h"
#include "io/deadlines.h"
#include "server/exchange.h"
#include "server/handler.h"
#include "server/metrics.h"
#include "server/responder.h"

namespace tg::server {

// What a worker's sessions share.
struct SessionDeps {
  const ServerConfig& server;
  GatewayStats& stats;
  io::DeadlineSweeper& deadlines;  // this worker's
  const std::atomic<bool>& draining;
  Handler& handler;  // this worker's request path
};

class Session final : public Responder {
 public:
  // `registry` is the worker's list of live sessions (for drain).
  // `cancel` is bound to the slot of the coroutine that runs this session.
  Session(boost::asio::ip::tcp::socket socket, const SessionDeps& deps, std::list<Session*>& registry,
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

  // --- Responder (server/responder.h) ---
  boost::asio::awaitable<void> send(Exchange& x, int status, std::string_view content_type, const std::string& body,
                                    const std::string& extra_headers) override;
  boost::asio::awaitable<void> begin_stream(Exchange& x) override;
  boost::asio::awaitable<void> stream_chunk(Exchange& x, std::string_view bytes) override;
  boost::asio::awaitable<void> end_stream(Exchange& x) override;
  // A client that closes its connection emits terminal cancellation on the
  // connection coroutine (`cancel`), which aborts whatever it awaits.
  void watch_disconnect() override;
  void stop_watching() override;
  void close_after_response() override { keep_alive_ = false; }
  unsigned char* json_arena() override { return json_arena_.get(); }

 private:
  enum class State { kIdle, kReading, kBusy };
  boost::asio::awaitable<bool> read_request(Exchange& x, std::optional<Request>& out);
  boost::asio::awaitable<boost::system::error_code> read_head(
      boost::beast::http::request_parser<boost::beast::http::string_body>& parser);
  boost::asio::awaitable<void> write_raw(std::string_view bytes);

  struct Watch {
    bool active = false;
    bool fired = false;
  };
  boost::beast::tcp_stream stream_;  // Beast's own timeouts unused: deadline_ instead
  io::Deadline deadline_;
  boost::asio::cancellation_signal& cancel_;
  std::shared_ptr<Watch> watch_;
  boost::beast::flat_buffer buffer_;
  const SessionDeps& deps_;
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
