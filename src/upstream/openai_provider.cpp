#include "upstream/openai_provider.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <fmt/format.h>

#include <charconv>

#include "api/sse.h"

namespace tg::upstream {
namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

std::unique_ptr<net::ssl::context> make_tls_client_context(const std::string& ca_file) {
  auto ctx = std::make_unique<net::ssl::context>(net::ssl::context::tls_client);
  ctx->set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                   net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                   net::ssl::context::no_tlsv1_1);
  if (ca_file.empty()) ctx->set_default_verify_paths();
  else ctx->load_verify_file(ca_file);
  ctx->set_verify_mode(net::ssl::verify_peer);
  return ctx;
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
                                       StreamSink& sink, ExchangeState& st, bool& keep_alive) {
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
    auto [ec, n] = co_await http::async_read(s, c.buffer, p, net::as_tuple(net::use_awaitable));
    if (ec == http::error::need_buffer) ec = {};
    if (ec) throw boost::system::system_error(ec);
    std::size_t got = cap - p.get().body().size;
    if (sse) {
      bool ok = parser.feed(std::string_view(buf, got), [&](api::SseEvent& e) { events.push_back(std::move(e.data)); });
      if (!ok) throw boost::system::system_error(http::error::body_limit);
      for (auto& e : events) co_await sink.event(e);
      events.clear();
    } else {
      if (reply.body.size() + got > kMaxBodyBytes) throw boost::system::system_error(http::error::body_limit);
      reply.body.append(buf, got);
    }
  }
  c.deadline->disarm();
  keep_alive = p.keep_alive();
  co_return reply;
}

}  // namespace

OpenAIProvider::OpenAIProvider(net::any_io_executor ex, const DeploymentConfig& d, net::ssl::context* tls,
                               io::DeadlineSweeper& deadlines)
    : d_(d), pool_(ex, d, tls, deadlines) {
  const bool default_port = (d_.scheme == "https" && d_.port == 443) || (d_.scheme == "http" && d_.port == 80);
  fixed_headers_ = fmt::format("Host: {}\r\nUser-Agent: tenantgate/0.1\r\nContent-Type: application/json\r\n",
                               default_port ? d_.host : fmt::format("{}:{}", d_.host, d_.port));
  if (!d_.api_key.empty()) fixed_headers_ += fmt::format("Authorization: Bearer {}\r\n", d_.api_key);
}

net::awaitable<UpstreamReply> OpenAIProvider::send(const UpstreamRequest& r, StreamSink& sink) {
  // The request head is assembled by hand from the part fixed per deployment:
  // Beast's serializer costs more than the whole head on this path.
  const std::string body = api::upstream_body(*r.parsed, d_.model);
  char num[24];
  std::string head;
  head.reserve(192 + fixed_headers_.size());
  head += "POST ";
  head += d_.base_path;
  head += api::endpoint_path(r.parsed->endpoint);
  head += " HTTP/1.1\r\n";
  head += fixed_headers_;
  head += r.parsed->stream ? "Accept: text/event-stream\r\nContent-Length: " : "Accept: application/json\r\nContent-Length: ";
  head.append(num, std::to_chars(num, num + sizeof num, body.size()).ptr);
  head += "\r\nx-request-id: ";
  head += r.request_id;
  head += "\r\n";
  if (!r.traceparent.empty() && r.traceparent.size() <= 512 &&
      r.traceparent.find_first_of("\r\n") == std::string::npos) {
    head += "traceparent: ";
    head += r.traceparent;
    head += "\r\n";
  }
  head += "\r\n";

  for (int attempt = 0;; ++attempt) {
    HttpPool::Lease lease;
    try {
      lease = co_await pool_.acquire(attempt > 0);
    } catch (const boost::system::system_error& e) {
      if (e.code() == net::error::operation_aborted && !pool_.last_dial_timed_out()) throw;
      UpstreamReply reply;
      reply.transport_error =
          transport_error(d_, pool_.last_dial_timed_out() ? beast::error::timeout : e.code(), false);
      co_return reply;
    }
    ExchangeState st;
    bool keep_alive = false;
    try {
      UpstreamReply reply;
      if (auto* plain = std::get_if<std::unique_ptr<Connection::Plain>>(&lease->stream))
        reply = co_await exchange(**plain, *lease, d_, head, body, r.parsed->stream, sink, st, keep_alive);
      else
        reply = co_await exchange(*std::get<std::unique_ptr<Connection::Tls>>(lease->stream), *lease, d_, head,
                                  body, r.parsed->stream, sink, st, keep_alive);
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
      reply.transport_error = transport_error(d_, timed_out ? beast::error::timeout : e.code(), true);
      co_return reply;
    }
  }
}

}  // namespace tg::upstream
