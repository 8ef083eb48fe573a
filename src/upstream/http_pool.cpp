#include "upstream/http_pool.h"

#include <openssl/ssl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <fmt/format.h>

#include <charconv>

namespace tg::upstream {
namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

beast::tcp_stream& Connection::lowest() {
  if (auto* p = std::get_if<std::unique_ptr<Plain>>(&stream)) return **p;
  return beast::get_lowest_layer(*std::get<std::unique_ptr<Tls>>(stream));
}

HttpPool::HttpPool(net::any_io_executor ex, const DeploymentConfig& d, net::ssl::context* tls,
                   io::DeadlineSweeper& deadlines)
    : ex_(ex), d_(d), tls_(tls), deadlines_(deadlines), resolver_(ex) {}

void HttpPool::Lease::give_back() {
  if (pool_ && conn_) pool_->release(std::move(conn_));
}

void HttpPool::release(std::unique_ptr<Connection> c) {
  if (idle_.size() >= d_.max_idle_connections) return;  // closed on destruction
  c->idle_since = std::chrono::steady_clock::now();
  ++c->uses;
  idle_.push_back(std::move(c));
}

net::awaitable<HttpPool::Lease> HttpPool::acquire(bool fresh_only) {
  const auto now = std::chrono::steady_clock::now();
  while (!fresh_only && !idle_.empty()) {
    std::unique_ptr<Connection> c = std::move(idle_.back());
    idle_.pop_back();
    if (now - c->idle_since > kMaxIdle) continue;  // the upstream may have dropped it
    // Leftover bytes after a complete response: the upstream misbehaves. (A
    // connection the upstream closed while idle is caught by send's one retry.)
    if (c->buffer.size() > 0) continue;
    co_return Lease(this, std::move(c), true);
  }
  co_return Lease(this, co_await dial(), false);
}

net::awaitable<std::unique_ptr<Connection>> HttpPool::dial() {
  last_dial_timed_out_ = false;
  auto results = co_await resolver_.async_resolve(d_.host, std::to_string(d_.port), net::use_awaitable);
  auto c = std::make_unique<Connection>();
  if (d_.scheme == "https") {
    auto s = std::make_unique<Connection::Tls>(ex_, *tls_);
    if (!SSL_set_tlsext_host_name(s->native_handle(), d_.host.c_str()))
      throw boost::system::system_error(static_cast<int>(::ERR_get_error()), net::error::get_ssl_category());
    if (d_.tls_verify) s->set_verify_callback(net::ssl::host_name_verification(d_.host));
    c->stream = std::move(s);
  } else {
    c->stream = std::make_unique<Connection::Plain>(ex_);
  }
  auto& tcp = c->lowest();
  c->deadline = std::make_unique<io::Deadline>(deadlines_, tcp.socket());
  c->deadline->arm(d_.connect_timeout);  // covers connect and the TLS handshake
  try {
    co_await tcp.async_connect(results, net::use_awaitable);
    tcp.socket().set_option(net::ip::tcp::no_delay(true));
    if (auto* tls = std::get_if<std::unique_ptr<Connection::Tls>>(&c->stream))
      co_await (*tls)->async_handshake(net::ssl::stream_base::client, net::use_awaitable);
  } catch (const boost::system::system_error&) {
    last_dial_timed_out_ = c->deadline->expired();
    throw;
  }
  c->deadline->disarm();
  ++dialed_;
  co_return c;
}

namespace {

constexpr std::size_t kMaxBodyBytes = 64u << 20;

struct ExchangeState {
  bool response_started = false;  // any response byte seen: no retry after this
  bool opened = false;            // sink.open() was called
};

ApiError transport_error(const DeploymentConfig& d, const boost::system::error_code& ec, bool connected) {
  std::string where = fmt::format("upstream '{}' ({}://{}:{})", d.id, d.scheme, d.host, d.port);
  if (ec == beast::error::timeout) {
    if (!connected)
      return upstream_error(504, fmt::format("{} did not accept a connection within {} ms", where,
                                             d.connect_timeout.count()), "upstream_connect_timeout");
    return upstream_error(504, fmt::format("{} sent nothing for {} ms (read timeout)", where,
                                           d.read_timeout.count()), "upstream_timeout");
  }
  if (ec.category() == net::error::get_ssl_category() || ec == net::ssl::error::stream_truncated)
    return upstream_error(502, fmt::format("{}: TLS failure: {}", where, ec.message()), "upstream_tls_error");
  if (!connected)
    return upstream_error(502, fmt::format("{} is unreachable: {}", where, ec.message()), "upstream_unavailable");
  return upstream_error(502, fmt::format("{} broke the connection: {}", where, ec.message()),
                        "upstream_connection_error");
}

template <class Stream>
net::awaitable<UpstreamReply> exchange(Stream& s, Connection& c, const DeploymentConfig& d,
                                       const std::string& head, const std::string& body, bool want_stream,
                                       StreamSink& sink, StreamTranslation* translation, ExchangeState& st,
                                       bool& keep_alive) {
  UpstreamReply reply;
  c.deadline->arm(d.read_timeout);
  std::array<net::const_buffer, 2> out{net::buffer(head), net::buffer(body)};
  co_await net::async_write(s, out, net::use_awaitable);

  http::response_parser<http::buffer_body> p;
  p.body_limit(boost::none);
  p.header_limit(64 * 1024);
  c.deadline->arm(d.read_timeout);
  co_await http::async_read_header(s, c.buffer, p, net::use_awaitable);
  st.response_started = true;
  reply.status = static_cast<int>(p.get().result_int());
  auto ct = p.get()[http::field::content_type];
  const bool sse = want_stream && reply.status == 200 &&
                   beast::iequals(ct.substr(0, std::min<std::size_t>(ct.size(), 17)), "text/event-stream");

  api::SseParser parser;
  std::vector<std::string> events;
  // The read buffer lives with the connection: a 16 KiB array in this
  // coroutine's frame would make every frame a fresh malloc.
  char* buf = c.chunk.data();
  const std::size_t cap = c.chunk.size();
  if (sse) {
    co_await sink.open();
    st.opened = true;
    reply.streamed = true;
  }
  while (!p.is_done()) {
    p.get().body().data = buf;
    p.get().body().size = cap;
    c.deadline->arm(d.read_timeout);
    // read_some: what one socket read brings is handed on at once. (async_read
    // would wait to fill the 16 KiB body buffer: a stream's events held back.)
    auto [ec, n] = co_await http::async_read_some(s, c.buffer, p, net::as_tuple(net::use_awaitable));
    if (ec == http::error::need_buffer) ec = {};
    if (ec) throw boost::system::system_error(ec);
    std::size_t got = cap - p.get().body().size;
    if (sse) {
      bool ok = parser.feed(std::string_view(buf, got), [&](api::SseEvent& e) {
        if (translation) translation->event(e, events);
        else events.push_back(std::move(e.data));
      });
      if (!ok) throw boost::system::system_error(http::error::body_limit);
      for (auto& e : events) co_await sink.event(e);
      events.clear();
    } else {
      if (reply.body.size() + got > kMaxBodyBytes) throw boost::system::system_error(http::error::body_limit);
      reply.body.append(buf, got);
    }
  }
  c.deadline->disarm();
  if (sse && translation) {
    translation->end(events);
    for (auto& e : events) co_await sink.event(e);
  }
  keep_alive = p.keep_alive();
  co_return reply;
}

}  // namespace

std::string origin_headers(const DeploymentConfig& d) {
  const bool default_port = (d.scheme == "https" && d.port == 443) || (d.scheme == "http" && d.port == 80);
  return fmt::format("Host: {}\r\nUser-Agent: tenantgate/0.1\r\nContent-Type: application/json\r\n",
                     default_port ? d.host : fmt::format("{}:{}", d.host, d.port));
}

std::string post_head(std::string_view base_path, std::string_view endpoint, std::string_view fixed_headers,
                      bool stream, std::size_t body_bytes, std::string_view request_id, std::string_view traceparent) {
  // Assembled by hand from the part fixed per deployment: Beast's serializer
  // costs more than the whole head on this path.
  char num[24];
  std::string head;
  head.reserve(192 + fixed_headers.size());
  head += "POST ";
  head += base_path;
  head += endpoint;
  head += " HTTP/1.1\r\n";
  head += fixed_headers;
  head += stream ? "Accept: text/event-stream\r\nContent-Length: " : "Accept: application/json\r\nContent-Length: ";
  head.append(num, std::to_chars(num, num + sizeof num, body_bytes).ptr);
  head += "\r\nx-request-id: ";
  head += request_id;
  head += "\r\n";
  if (!traceparent.empty() && traceparent.size() <= 512 && traceparent.find_first_of("\r\n") == std::string::npos) {
    head += "traceparent: ";
    head += traceparent;
    head += "\r\n";
  }
  head += "\r\n";
  return head;
}

net::awaitable<UpstreamReply> post(HttpPool& pool, const std::string& head, const std::string& body,
                                   bool want_stream, StreamSink& sink, StreamTranslation* translation) {
  const DeploymentConfig& d = pool.deployment();
  for (int attempt = 0;; ++attempt) {
    HttpPool::Lease lease;
    try {
      lease = co_await pool.acquire(attempt > 0);
    } catch (const boost::system::system_error& e) {
      if (e.code() == net::error::operation_aborted && !pool.last_dial_timed_out()) throw;
      UpstreamReply reply;
      reply.transport_error =
          transport_error(d, pool.last_dial_timed_out() ? beast::error::timeout : e.code(), false);
      co_return reply;
    }
    ExchangeState st;
    bool keep_alive = false;
    try {
      UpstreamReply reply;
      if (auto* plain = std::get_if<std::unique_ptr<Connection::Plain>>(&lease->stream))
        reply = co_await exchange(**plain, *lease, d, head, body, want_stream, sink, translation, st, keep_alive);
      else
        reply = co_await exchange(*std::get<std::unique_ptr<Connection::Tls>>(lease->stream), *lease, d, head,
                                  body, want_stream, sink, translation, st, keep_alive);
      if (keep_alive) lease.give_back();
      co_return reply;
    } catch (const boost::system::system_error& e) {
      const bool timed_out = lease->deadline->expired();
      if (e.code() == net::error::operation_aborted && !timed_out) throw;  // the client went away
      const bool stale = lease.reused() && !st.response_started &&
                         (e.code() == http::error::end_of_stream || e.code() == net::error::eof ||
                          e.code() == net::error::connection_reset || e.code() == net::error::broken_pipe);
      if (stale && attempt == 0) continue;
      UpstreamReply reply;
      reply.streamed = st.opened;
      reply.transport_error = transport_error(d, timed_out ? beast::error::timeout : e.code(), true);
      co_return reply;
    }
  }
}

}  // namespace tg::upstream
