#include "upstream/http_pool.h"

#include <openssl/ssl.h>

#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>

namespace tg::upstream {
namespace net = boost::asio;
namespace beast = boost::beast;

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

}  // namespace tg::upstream
