#include "server/session.h"

#include <sys/socket.h>

#include <charconv>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>

#include "api/errors.h"
#include "core/ids.h"
#include "server/handlers.h"
#include "upstream/provider.h"

namespace tg::server {
namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using net::use_awaitable;

namespace {

// A request counted in tg_requests_in_flight for exactly its lifetime.
struct InFlight {
  explicit InFlight(GatewayStats& s) : s_(s) { s_.requests_in_flight.fetch_add(1); }
  ~InFlight() { s_.requests_in_flight.fetch_sub(1); }
  GatewayStats& s_;
};
}  // namespace

Session::Session(net::ip::tcp::socket socket, WorkerContext& ctx, std::list<Session*>& registry,
                 net::cancellation_signal& cancel)
    : stream_(std::move(socket)), deadline_(ctx.deadlines, stream_.socket()), cancel_(cancel), ctx_(ctx),
      registry_(registry) {
  self_ = registry_.insert(registry_.end(), this);
  boost::system::error_code ec;
  auto ep = stream_.socket().remote_endpoint(ec);
  if (!ec) peer_ = ep.address().to_string();
  stream_.socket().set_option(net::ip::tcp::no_delay(true), ec);
  ctx_.metrics.stats.connections_accepted_total.fetch_add(1);
  ctx_.metrics.stats.connections_open.fetch_add(1);
}

Session::~Session() {
  registry_.erase(self_);
  ctx_.metrics.stats.connections_open.fetch_sub(1);
}

void Session::close_if_idle() {
  keep_alive_ = false;
  if (state_ == State::kIdle) force_close();
}

void Session::force_close() {
  closed_ = true;
  boost::system::error_code ec;
  stream_.socket().shutdown(net::ip::tcp::socket::shutdown_both, ec);
  stream_.socket().close(ec);
}

// Settles (metrics, access log, budgets, the ledger row and its journal
// append) once. send() and end_stream() call it just before writing the last
// bytes of a response, so a client that has its whole answer also has its
// ledger row in the journal, whatever happens to the process next.
void Session::finish(Exchange& x) {
  if (x.settled) return;
  x.settled = true;
  settle(ctx_, x);
}

net::awaitable<void> Session::run() {
  const ServerConfig& sc = ctx_.config.server;
  bool first = true;
  while (!closed_) {
    // Between requests: wait for the first byte under the idle timeout (the
    // header timeout for a brand-new connection).
    state_ = State::kIdle;
    if (ctx_.draining.load() && !first) break;
    if (buffer_.size() == 0) {
      deadline_.arm(first ? sc.header_timeout : sc.idle_timeout);
      auto [ec, n] = co_await stream_.async_read_some(buffer_.prepare(8192), net::as_tuple(use_awaitable));
      deadline_.disarm();
      if (ec) {
        if (deadline_.expired()) ctx_.metrics.stats.client_timeouts_total.fetch_add(1);
        break;
      }
      buffer_.commit(n);
    }
    first = false;
    state_ = State::kReading;
    Exchange x;
    x.start = std::chrono::steady_clock::now();
    x.request_id = new_request_id();
    x.client_ip = peer_;
    std::optional<Request> req;
    if (!co_await read_request(x, req)) break;
    state_ = State::kBusy;
    keep_alive_ = req->keep_alive() && !ctx_.draining.load();
    {
      InFlight in_flight(ctx_.metrics.stats);
      co_await handle(*this, ctx_, *req, x);
      finish(x);
    }
    if (!keep_alive_) break;
  }
  boost::system::error_code ec;
  stream_.socket().shutdown(net::ip::tcp::socket::shutdown_send, ec);
  if (linger_ && !closed_) {
    // Lingering close: the client may still be sending a body we refused.
    // Closing now would make the kernel answer with RST, which can destroy
    // our error response before the client reads it; drain briefly instead.
    std::size_t drained = 0;
    deadline_.arm(std::chrono::seconds(2));
    while (drained < (4u << 20)) {
      auto [rec, n] = co_await stream_.async_read_some(buffer_.prepare(16384), net::as_tuple(use_awaitable));
      if (rec) break;
      drained += n;
      buffer_.consume(buffer_.size());
    }
  }
  stream_.close();
}

// Reads one request. Returns false when the connection must close (after
// answering the error, when there is one to answer).
net::awaitable<bool> Session::read_request(Exchange& x, std::optional<Request>& out) {
  const ServerConfig& sc = ctx_.config.server;
  http::request_parser<http::string_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(sc.max_header_bytes));
  parser.body_limit(sc.max_body_bytes);
  auto too_large = [&]() -> ApiError {
    ctx_.metrics.stats.bodies_too_large_total.fetch_add(1);
    return ApiError{413, "invalid_request_error", "request_too_large",
                    fmt::format("The request body exceeds the gateway's limit of {} bytes "
                                "(server.max_body_bytes). Send a smaller request.", sc.max_body_bytes),
                    {}};
  };
  deadline_.arm(sc.header_timeout);
  auto [ec, hn] = co_await http::async_read_header(stream_, buffer_, parser, net::as_tuple(use_awaitable));
  deadline_.disarm();
  if (ec) {
    if (deadline_.expired()) {
      ctx_.metrics.stats.client_timeouts_total.fetch_add(1);
      co_return false;  // a stalled header gets no answer: the peer may be hostile
    }
    if (ec == http::error::end_of_stream || ec == net::error::eof || ec == net::error::connection_reset)
      co_return false;
    keep_alive_ = false;
    linger_ = true;
    x.method = std::string(parser.get().method_string());
    x.path = std::string(parser.get().target());
    if (ec == http::error::body_limit) {  // Content-Length alone is over the limit
      const ApiError e = too_large();
      co_await send_error(x, e);
      finish(x);
      co_return false;
    }
    ApiError e = ec == http::error::header_limit
                     ? ApiError{431, "invalid_request_error", "headers_too_large",
                                fmt::format("Request headers exceed {} bytes.", sc.max_header_bytes), {}}
                     : invalid_request(fmt::format("Malformed HTTP request: {}.", ec.message()), {},
                                       "malformed_http");
    co_await send_error(x, e);
    finish(x);
    co_return false;
  }
  auto& head = parser.get();
  x.method = std::string(head.method_string());
  x.path = std::string(head.target().substr(0, head.target().find('?')));

  if (auto len = parser.content_length(); len && *len > sc.max_body_bytes) {
    keep_alive_ = false;  // the unread body is still on the wire
    linger_ = true;
    const ApiError e = too_large();  // (no temporaries inside co_await: GCC 12 destroys them twice)
    co_await send_error(x, e);
    finish(x);
    co_return false;
  }
  if (beast::iequals(head[http::field::expect], "100-continue"))
    co_await write_raw("HTTP/1.1 100 Continue\r\n\r\n");

  deadline_.arm(sc.body_timeout);
  auto [ec2, bn] = co_await http::async_read(stream_, buffer_, parser, net::as_tuple(use_awaitable));
  deadline_.disarm();
  if (ec2) {
    keep_alive_ = false;
    if (ec2 == http::error::body_limit) {
      linger_ = true;
      const ApiError e = too_large();
      co_await send_error(x, e);
      finish(x);
    } else if (deadline_.expired()) {
      // The timed-out socket is already closed: nothing can be answered.
      ctx_.metrics.stats.client_timeouts_total.fetch_add(1);
      x.status = 408;
      x.error_code = "body_timeout";
      finish(x);
    }
    co_return false;
  }
  out.emplace(parser.release());
  co_return true;
}

net::awaitable<void> Session::write_raw(std::string_view bytes) {
  deadline_.arm(ctx_.config.server.write_timeout);
  auto [ec, n] = co_await net::async_write(stream_, net::buffer(bytes.data(), bytes.size()),
                                           net::as_tuple(use_awaitable));
  deadline_.disarm();
  if (ec) {
    if (deadline_.expired()) ctx_.metrics.stats.client_timeouts_total.fetch_add(1);
    keep_alive_ = false;
    throw upstream::ClientGone();
  }
}

net::awaitable<void> Session::send(Exchange& x, int status, std::string_view content_type,
                                   const std::string& body, const std::string& extra_headers) {
  if (ctx_.draining.load()) keep_alive_ = false;
  // Appended by hand: this head is written once per request.
  std::string head;
  head.reserve(160 + content_type.size() + extra_headers.size());
  char num[24];
  head += "HTTP/1.1 ";
  head.append(num, std::to_chars(num, num + sizeof num, status).ptr);
  head += ' ';
  head += http::obsolete_reason(static_cast<http::status>(status));
  head += "\r\nContent-Type: ";
  head += content_type;
  head += "\r\nx-request-id: ";
  head += x.request_id;
  head += "\r\nContent-Length: ";
  head.append(num, std::to_chars(num, num + sizeof num, body.size()).ptr);
  head += keep_alive_ ? "\r\nConnection: keep-alive\r\n" : "\r\nConnection: close\r\n";
  head += x.extra_headers;
  head += extra_headers;
  head += "\r\n";
  x.status = status;
  x.bytes_out += body.size();
  finish(x);
  std::array<net::const_buffer, 2> bufs{net::buffer(head), net::buffer(body)};
  deadline_.arm(ctx_.config.server.write_timeout);
  auto [ec, n] = co_await net::async_write(stream_, bufs, net::as_tuple(use_awaitable));
  deadline_.disarm();
  if (ec) {
    if (deadline_.expired()) ctx_.metrics.stats.client_timeouts_total.fetch_add(1);
    x.client_gone = true;
    keep_alive_ = false;
  }
}

net::awaitable<void> Session::send_json(Exchange& x, int status, const std::string& body) {
  static const std::string kNone;
  co_await send(x, status, "application/json", body, kNone);
}

net::awaitable<void> Session::send_error(Exchange& x, const ApiError& e) {
  std::string extra;
  if (e.retry_after_s >= 0) extra += fmt::format("Retry-After: {}\r\n", e.retry_after_s);
  if (e.status == 405) extra += fmt::format("Allow: {}\r\n", e.param);
  extra += e.headers;
  const std::string body = api::error_body(e);
  x.error_code = e.code;
  co_await send(x, e.status, "application/json", body, extra);
}

net::awaitable<void> Session::begin_stream(Exchange& x) {
  keep_alive_ = keep_alive_ && !ctx_.draining.load();
  std::string head = fmt::format(
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n"
      "x-request-id: {}\r\nTransfer-Encoding: chunked\r\nConnection: {}\r\n{}\r\n",
      x.request_id, keep_alive_ ? "keep-alive" : "close", x.extra_headers);
  x.status = 200;
  co_await write_raw(head);
}

net::awaitable<void> Session::stream_chunk(Exchange& x, std::string_view bytes) {
  if (bytes.empty()) co_return;
  std::string framed = fmt::format("{:x}\r\n", bytes.size());
  framed.append(bytes);
  framed.append("\r\n");
  x.bytes_out += bytes.size();
  co_await write_raw(framed);
}

net::awaitable<void> Session::end_stream(Exchange& x) {
  finish(x);
  co_await write_raw("0\r\n\r\n");
}

void Session::watch_disconnect() {
  watch_ = std::make_shared<Watch>();
  watch_->active = true;
  auto& sock = stream_.socket();
  // A plain callback, not a coroutine: no frame, no exception on cancel.
  sock.async_wait(net::ip::tcp::socket::wait_read,
                  [w = watch_, &sock, sig = &cancel_](const boost::system::error_code& ec) {
                    if (ec || !w->active) return;  // cancelled, or the request already ended
                    char c;
                    ssize_t n = ::recv(sock.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
                    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
                      w->fired = true;
                      sig->emit(net::cancellation_type::terminal);
                    }
                    // n > 0: a pipelined next request, not a close; stop watching.
                  });
}

void Session::stop_watching() {
  if (!watch_) return;
  watch_->active = false;
  if (!watch_->fired) {
    boost::system::error_code ec;
    stream_.socket().cancel(ec);  // only the watch is outstanding here
  }
  watch_.reset();
}

}  // namespace tg::server
