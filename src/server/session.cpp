#include "server/session.h"

#include <sys/socket.h>

#include <algorithm>
#include <charconv>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>
#include <fmt/format.h>

#include "api/errors.h"
#include "core/ids.h"
#include "core/text.h"
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

// Client bytes quoted in an error message: at most 64 of them, made printable
// (core/text.h), so that a hostile header can neither flood nor forge it.
std::string quote_client_bytes(std::string_view s) { return printable(s, 64); }

bool is_tchar(char c) {  // RFC 9110 §5.6.2
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c != '\0' && std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos);
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

ApiError conflicting_framing() {
  return invalid_request("The request has both Transfer-Encoding and Content-Length, so its body length is "
                         "ambiguous (RFC 9112 §6.3). Send only one of them.",
                         {}, "conflicting_framing");
}

ApiError transfer_encoding_in_http10() {
  return invalid_request("Transfer-Encoding is not defined in HTTP/1.0 (RFC 9112 §6.1). Send the body with "
                         "Content-Length, or use HTTP/1.1.",
                         {}, "transfer_encoding_in_http10");
}

// RFC 9112 §6: the framing of a request whose head Beast accepted. Beast
// frames a body as chunked only when `chunked` ends the first
// Transfer-Encoding line, reads no body at all for any other coding, and
// takes Content-Length next to a coding that is not chunked; the bytes of a
// body it did not frame are then parsed as the next request on the
// connection (request smuggling). So a request is refused, before a byte of
// its body is read, unless its framing is exactly one `chunked` as the final
// coding (501 when other codings precede it: the gateway decodes none), or
// one decimal Content-Length, or no body at all for a method without one.
std::optional<ApiError> framing_error(const http::request_parser<http::string_body>& parser) {
  const Request& head = parser.get();
  const auto te = head.equal_range(http::field::transfer_encoding);
  const auto cl = head.equal_range(http::field::content_length);
  if (te.first != te.second) {
    if (head.version() < 11) return transfer_encoding_in_http10();
    if (cl.first != cl.second) return conflicting_framing();
    int chunked = 0;
    std::string_view last, unsupported;
    for (auto line = te.first; line != te.second; ++line) {
      std::string_view list = line->value();
      for (;;) {  // a comma list; empty elements are allowed (RFC 9110 §5.6.1.2)
        const std::size_t comma = list.find(',');
        const std::string_view element = trim_ows(list.substr(0, comma));
        if (!element.empty()) {
          const std::size_t semi = element.find(';');
          const std::string_view name = trim_ows(element.substr(0, semi));
          if (name.empty() || !std::all_of(name.begin(), name.end(), is_tchar))
            return invalid_request(fmt::format("Transfer-Encoding element '{}' is not a transfer coding "
                                               "(RFC 9112 §6.1). Send 'Transfer-Encoding: chunked'.",
                                               quote_client_bytes(element)),
                                   {}, "invalid_transfer_encoding");
          const bool is_chunked = beast::iequals(name, "chunked");
          if (is_chunked && semi != std::string_view::npos)
            return invalid_request("The chunked transfer coding takes no parameters (RFC 9112 §7). Send "
                                   "'Transfer-Encoding: chunked'.",
                                   {}, "invalid_transfer_encoding");
          if (is_chunked) ++chunked;
          if (!is_chunked && unsupported.empty()) unsupported = name;
          last = name;
        }
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
      }
    }
    if (chunked > 1)
      return invalid_request(fmt::format("Transfer-Encoding applies chunked {} times (RFC 9112 §6.1). Send "
                                         "'Transfer-Encoding: chunked' once.", chunked),
                             {}, "invalid_transfer_encoding");
    if (last.empty() || !beast::iequals(last, "chunked"))
      return invalid_request(fmt::format("Transfer-Encoding {} not end in chunked, so the body length cannot be "
                                         "determined (RFC 9112 §6.3). Send 'Transfer-Encoding: chunked', or "
                                         "Content-Length.",
                                         last.empty() ? std::string("is empty: it does")
                                                      : fmt::format("ends in '{}': it does", quote_client_bytes(last))),
                             {}, "invalid_transfer_encoding");
    if (!unsupported.empty())
      return ApiError{501, "invalid_request_error", "unsupported_transfer_coding",
                      fmt::format("Transfer coding '{}' is not supported: the gateway decodes only chunked "
                                  "(RFC 9112 §6.1). Send the body with 'Transfer-Encoding: chunked' alone, or "
                                  "with Content-Length.",
                                  quote_client_bytes(unsupported)),
                      {}};
    if (!parser.chunked())  // our reading and Beast's must agree, or the body is framed two ways
      return invalid_request("Transfer-Encoding could not be read as chunked (RFC 9112 §6.1). Send "
                             "'Transfer-Encoding: chunked' on one line.",
                             {}, "invalid_transfer_encoding");
    return std::nullopt;
  }
  if (cl.first != cl.second) {
    if (std::next(cl.first) != cl.second)
      return invalid_request("Content-Length is sent more than once (RFC 9112 §6.3). Send it once.", {},
                             "invalid_content_length");
    const std::string_view v = cl.first->value();  // Beast trimmed its OWS
    if (v.empty() || !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return invalid_request(fmt::format("Content-Length '{}' is not one decimal number of bytes (RFC 9112 "
                                         "§6.3). Send the body's length in bytes, once.",
                                         quote_client_bytes(v)),
                             {}, "invalid_content_length");
    return std::nullopt;
  }
  const auto m = head.method();
  if (m == http::verb::post || m == http::verb::put || m == http::verb::patch)
    return ApiError{411, "invalid_request_error", "length_required",
                    fmt::format("A {} request needs Content-Length or 'Transfer-Encoding: chunked': without "
                                "either, its body would be read as the next request. Send Content-Length.",
                                head.method_string()),
                    {}};
  return std::nullopt;
}

// RFC 9112 §3.2: exactly one Host (required in HTTP/1.1), a host[:port].
std::optional<ApiError> host_error(const Request& head) {
  const std::size_t n = head.count(http::field::host);
  if (n > 1)
    return invalid_request(fmt::format("The request has {} Host header lines (RFC 9112 §3.2). Send exactly one.", n),
                           {}, "duplicate_host");
  if (n == 0) {
    if (head.version() < 11) return std::nullopt;
    return invalid_request("HTTP/1.1 requests must carry a Host header (RFC 9112 §3.2). Add 'Host: <gateway "
                           "host>'.",
                           {}, "missing_host");
  }
  const std::string_view v = head[http::field::host];
  // uri-host [":" port]: unreserved, sub-delims but ',', ':', '[', ']' and pct-encoding.
  constexpr std::string_view kHostPunct = "-._~!$&'()*+;=:[]%";
  const bool ok = std::all_of(v.begin(), v.end(), [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && kHostPunct.find(c) != std::string_view::npos);
  });
  if (!ok)
    return invalid_request(fmt::format("Host '{}' is not a host[:port] (RFC 9112 §3.2). Send one host name.",
                                       quote_client_bytes(v)),
                           {}, "invalid_host");
  return std::nullopt;
}

// The request-target in origin-form (path and query), for the router. An
// origin server must accept the absolute-form too (RFC 9112 §3.2.2: its
// path counts, Host does not); `*` is kept for OPTIONS; any other form, and
// an absolute URL that is not http(s), is refused.
Expected<std::string> origin_form(const Request& head) {
  const std::string_view t = head.target();
  if (t.starts_with('/') || (t == "*" && head.method() == http::verb::options)) return std::string(t);
  if (auto u = boost::urls::parse_absolute_uri(t);
      u && u->has_authority() && (beast::iequals(u->scheme(), "http") || beast::iequals(u->scheme(), "https"))) {
    std::string out(u->encoded_path());
    if (out.empty()) out = "/";
    if (u->has_query()) {
      out += '?';
      out += u->encoded_query();
    }
    return out;
  }
  return invalid_request(fmt::format("Request target '{}' is neither a path ('/v1/...') nor an absolute http(s) "
                                     "URL (RFC 9112 §3.2).",
                                     quote_client_bytes(t)),
                         {}, "invalid_request_target");
}

// The answer to a request head Beast could not parse. `unparsed` is what it
// left in the read buffer (the head from its start while the request line is
// unparsed: Beast parses that line only once it is whole).
ApiError head_parse_error(const boost::system::error_code& ec, const Request& partial, std::string_view unparsed,
                          std::size_t max_header_bytes) {
  if (ec == http::error::header_limit) {
    if (partial.method_string().empty() && unparsed.substr(0, max_header_bytes).find('\n') == std::string_view::npos)
      return ApiError{414, "invalid_request_error", "request_line_too_long",
                      fmt::format("The request line exceeds {} bytes (server.max_header_bytes). Send a shorter URL.",
                                  max_header_bytes),
                      {}};
    return ApiError{431, "invalid_request_error", "headers_too_large",
                    fmt::format("Request headers exceed {} bytes.", max_header_bytes), {}};
  }
  // Beast refuses some framings itself; say which, from the fields it kept
  // (all but the one it refused).
  if (ec == http::error::bad_content_length || ec == http::error::multiple_content_length ||
      ec == http::error::bad_transfer_encoding) {
    const bool te_refused = ec == http::error::bad_transfer_encoding;
    const bool has_te = te_refused || partial.count(http::field::transfer_encoding) > 0;
    const bool has_cl = !te_refused || partial.count(http::field::content_length) > 0;
    if (has_te && partial.version() < 11) return transfer_encoding_in_http10();
    if (has_te && has_cl) return conflicting_framing();
    if (te_refused)
      return invalid_request("Transfer-Encoding is sent again after chunked (RFC 9112 §6.1). Send "
                             "'Transfer-Encoding: chunked' once.",
                             {}, "invalid_transfer_encoding");
    return invalid_request("Content-Length is not one decimal number of bytes, sent once (RFC 9112 §6.3). Send "
                           "the body's length in bytes, once.",
                           {}, "invalid_content_length");
  }
  return invalid_request(fmt::format("Malformed HTTP request: {}.", ec.message()), {}, "malformed_http");
}
}  // namespace

Session::Session(net::ip::tcp::socket socket, const SessionDeps& deps, std::list<Session*>& registry,
                 net::cancellation_signal& cancel)
    : stream_(std::move(socket)), deadline_(deps.deadlines, stream_.socket()), cancel_(cancel), deps_(deps),
      registry_(registry) {
  self_ = registry_.insert(registry_.end(), this);
  boost::system::error_code ec;
  auto ep = stream_.socket().remote_endpoint(ec);
  if (!ec) peer_ = ep.address().to_string();
  stream_.socket().set_option(net::ip::tcp::no_delay(true), ec);
  deps_.stats.connections_accepted_total.fetch_add(1);
  deps_.stats.connections_open.fetch_add(1);
}

Session::~Session() {
  registry_.erase(self_);
  deps_.stats.connections_open.fetch_sub(1);
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

net::awaitable<void> Session::run() {
  const ServerConfig& sc = deps_.server;
  bool first = true;
  while (!closed_) {
    // Between requests: wait for the first byte under the idle timeout (the
    // header timeout for a brand-new connection).
    state_ = State::kIdle;
    if (deps_.draining.load() && !first) break;
    if (buffer_.size() == 0) {
      deadline_.arm(first ? sc.header_timeout : sc.idle_timeout);
      auto [ec, n] = co_await stream_.async_read_some(buffer_.prepare(8192), net::as_tuple(use_awaitable));
      deadline_.disarm();
      if (ec) {
        if (deadline_.expired()) deps_.stats.client_timeouts_total.fetch_add(1);
        break;
      }
      buffer_.commit(n);
    }
    first = false;
    state_ = State::kReading;
    Exchange x;
    x.start = std::chrono::steady_clock::now();
    x.who.request_id = new_request_id();
    x.client_ip = peer_;
    std::optional<Request> req;
    if (!co_await read_request(x, req)) break;
    state_ = State::kBusy;
    keep_alive_ = req->keep_alive() && !deps_.draining.load();
    {
      InFlight in_flight(deps_.stats);
      co_await deps_.handler.serve(*this, *req, x);
      deps_.handler.settle_unanswered(x);  // a request the path left unanswered (it settles before answering)
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

// Beast's header_limit bounds only the part of a head it has not parsed yet:
// the fields it parsed from earlier reads are not counted, so a head could
// pass server.max_header_bytes by what the first read brought (about half
// again). This loop feeds the parser itself and counts every byte, so the
// limit holds for the whole head. Returns Beast's error codes (header_limit
// for the bound, end_of_stream when the peer closed before any byte).
net::awaitable<boost::system::error_code> Session::read_head(http::request_parser<http::string_body>& parser) {
  const std::size_t limit = deps_.server.max_header_bytes;
  std::size_t parsed = 0;
  for (;;) {
    if (buffer_.size() > 0) {
      boost::system::error_code ec;
      const std::size_t used = parser.put(buffer_.data(), ec);
      buffer_.consume(used);
      parsed += used;
      if (parser.is_header_done()) co_return parsed > limit ? http::error::header_limit : ec;
      if (ec && ec != http::error::need_more) co_return ec;
    }
    if (parsed + buffer_.size() > limit) co_return http::error::header_limit;
    auto [ec, n] = co_await stream_.async_read_some(buffer_.prepare(8192), net::as_tuple(use_awaitable));
    if (ec == net::error::eof)
      co_return parser.got_some() ? http::error::partial_message : http::error::end_of_stream;
    if (ec) co_return ec;
    buffer_.commit(n);
  }
}

// Reads one request. Returns false when the connection must close (after
// answering the error, when there is one to answer).
net::awaitable<bool> Session::read_request(Exchange& x, std::optional<Request>& out) {
  const ServerConfig& sc = deps_.server;
  http::request_parser<http::string_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(sc.max_header_bytes));
  parser.body_limit(sc.max_body_bytes);
  auto too_large = [&]() -> ApiError {
    deps_.stats.bodies_too_large_total.fetch_add(1);
    return ApiError{413, "invalid_request_error", "request_too_large",
                    fmt::format("The request body exceeds the gateway's limit of {} bytes "
                                "(server.max_body_bytes). Send a smaller request.", sc.max_body_bytes),
                    {}};
  };
  deadline_.arm(sc.header_timeout);
  const boost::system::error_code ec = co_await read_head(parser);
  deadline_.disarm();
  if (ec) {
    if (deadline_.expired()) {
      deps_.stats.client_timeouts_total.fetch_add(1);
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
      co_await deps_.handler.refuse(*this, x, e);
      co_return false;
    }
    const std::string_view unparsed(static_cast<const char*>(buffer_.data().data()), buffer_.size());
    const ApiError e = head_parse_error(ec, parser.get(), unparsed, sc.max_header_bytes);
    co_await deps_.handler.refuse(*this, x, e);
    co_return false;
  }
  auto& head = parser.get();
  x.method = std::string(head.method_string());
  const Expected<std::string> target = origin_form(head);
  const std::string_view path = target ? std::string_view(*target) : std::string_view(head.target());
  x.path = std::string(path.substr(0, path.find('?')));
  // Judged before a byte of the body is read: a refused request's body stays
  // unread (then drained), never parsed as a next request.
  std::optional<ApiError> refusal = framing_error(parser);
  if (!refusal) refusal = host_error(head);
  if (!refusal && !target) refusal = target.error();
  // A key (or address) that spent its refusal budget costs no body read or parse.
  if (!refusal) refusal = deps_.handler.judge_head(head, x);
  if (refusal) {
    keep_alive_ = false;
    linger_ = true;
    co_await deps_.handler.refuse(*this, x, *refusal);
    co_return false;
  }

  if (auto len = parser.content_length(); len && *len > sc.max_body_bytes) {
    keep_alive_ = false;  // the unread body is still on the wire
    linger_ = true;
    const ApiError e = too_large();  // (no temporaries inside co_await: GCC 12 destroys them twice)
    co_await deps_.handler.refuse(*this, x, e);
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
      co_await deps_.handler.refuse(*this, x, e);
    } else if (deadline_.expired()) {
      // The timed-out socket is already closed: nothing can be answered.
      deps_.stats.client_timeouts_total.fetch_add(1);
      x.status = 408;
      x.error_code = "body_timeout";
      deps_.handler.settle_unanswered(x);
    } else if (ec2.category() == http::make_error_code(http::error::bad_chunk).category()) {
      // A body Beast cannot parse (a bad chunk size or extension, a broken
      // trailer, the client's FIN mid-body): answered, closed, settled.
      linger_ = true;
      const ApiError e = invalid_request(fmt::format("Malformed HTTP request body: {}.", ec2.message()), {},
                                         "malformed_http");
      co_await deps_.handler.refuse(*this, x, e);
    } else {
      // The socket failed (a reset) mid-body: nothing can be answered.
      x.status = 499;
      x.client_gone = true;
      x.error_code = "client_closed_request";
      deps_.handler.settle_unanswered(x);
    }
    co_return false;
  }
  out.emplace(parser.release());
  if (out->target() != *target) out->target(*target);  // absolute-form, served as its origin-form
  co_return true;
}

net::awaitable<void> Session::write_raw(std::string_view bytes) {
  deadline_.arm(deps_.server.write_timeout);
  auto [ec, n] = co_await net::async_write(stream_, net::buffer(bytes.data(), bytes.size()),
                                           net::as_tuple(use_awaitable));
  deadline_.disarm();
  if (ec) {
    if (deadline_.expired()) deps_.stats.client_timeouts_total.fetch_add(1);
    keep_alive_ = false;
    throw upstream::ClientGone();
  }
}

net::awaitable<void> Session::send(Exchange& x, int status, std::string_view content_type,
                                   const std::string& body, const std::string& extra_headers) {
  if (deps_.draining.load()) keep_alive_ = false;
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
  head += x.who.request_id;
  head += "\r\nContent-Length: ";
  head.append(num, std::to_chars(num, num + sizeof num, body.size()).ptr);
  head += keep_alive_ ? "\r\nConnection: keep-alive\r\n" : "\r\nConnection: close\r\n";
  head += x.extra_headers;
  head += extra_headers;
  head += "\r\n";
  std::array<net::const_buffer, 2> bufs{net::buffer(head), net::buffer(body)};
  deadline_.arm(deps_.server.write_timeout);
  auto [ec, n] = co_await net::async_write(stream_, bufs, net::as_tuple(use_awaitable));
  deadline_.disarm();
  if (ec) {
    if (deadline_.expired()) deps_.stats.client_timeouts_total.fetch_add(1);
    x.client_gone = true;
    keep_alive_ = false;
  }
}

net::awaitable<void> Session::begin_stream(Exchange& x) {
  keep_alive_ = keep_alive_ && !deps_.draining.load();
  std::string head = fmt::format(
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n"
      "x-request-id: {}\r\nTransfer-Encoding: chunked\r\nConnection: {}\r\n{}\r\n",
      x.who.request_id, keep_alive_ ? "keep-alive" : "close", x.extra_headers);
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
