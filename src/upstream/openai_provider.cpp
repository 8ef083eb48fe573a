#include "upstream/openai_provider.h"

#include <fmt/format.h>

namespace tg::upstream {
namespace net = boost::asio;

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

OpenAIProvider::OpenAIProvider(net::any_io_executor ex, const DeploymentConfig& d, net::ssl::context* tls,
                               io::DeadlineSweeper& deadlines)
    : d_(d), pool_(ex, d, tls, deadlines), fixed_headers_(origin_headers(d)) {
  if (!d_.api_key.empty()) fixed_headers_ += fmt::format("Authorization: Bearer {}\r\n", d_.api_key);
}

net::awaitable<UpstreamReply> OpenAIProvider::send(const UpstreamRequest& r, StreamSink& sink) {
  const std::string body = api::upstream_body(*r.parsed, d_.model);
  const std::string head = post_head(d_.base_path, api::endpoint_path(r.parsed->endpoint), fixed_headers_,
                                     r.parsed->stream, body.size(), r.request_id, r.traceparent);
  co_return co_await post(pool_, head, body, r.parsed->stream, sink);
}

}  // namespace tg::upstream
