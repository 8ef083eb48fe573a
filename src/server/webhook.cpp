#include "server/webhook.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>
#include <spdlog/spdlog.h>

namespace tg::server {
namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {
net::awaitable<void> send(std::string url, std::string body) {
  try {
    auto u = boost::urls::parse_absolute_uri(url);
    if (!u) co_return;
    auto ex = co_await net::this_coro::executor;
    net::ip::tcp::resolver resolver(ex);
    std::string port = u->has_port() ? std::string(u->port()) : "80";
    auto results = co_await resolver.async_resolve(std::string(u->host_address()), port, net::use_awaitable);
    beast::tcp_stream stream(ex);
    stream.expires_after(std::chrono::seconds(5));
    co_await stream.async_connect(results, net::use_awaitable);
    std::string target = u->encoded_path().empty() ? "/" : std::string(u->encoded_path());
    if (u->has_query()) target += "?" + std::string(u->encoded_query());
    http::request<http::string_body> req{http::verb::post, target, 11};
    req.set(http::field::host, std::string(u->encoded_host_and_port()));
    req.set(http::field::content_type, "application/json");
    req.set(http::field::user_agent, "tenantgate/0.1");
    req.body() = std::move(body);
    req.prepare_payload();
    co_await http::async_write(stream, req, net::use_awaitable);
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    co_await http::async_read(stream, buf, res, net::use_awaitable);
    if (res.result_int() >= 300) spdlog::warn("webhook {} answered HTTP {}", url, res.result_int());
  } catch (const std::exception& e) {
    spdlog::warn("webhook {} failed: {}", url, e.what());
  }
}
}  // namespace

void Webhook::post(std::string url, std::string json_body) {
  net::co_spawn(ex_, send(std::move(url), std::move(json_body)), net::detached);
}

}  // namespace tg::server
