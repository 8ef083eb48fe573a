// OpenAIProvider: any OpenAI-compatible HTTP or HTTPS endpoint (OpenAI, vLLM,
// llama.cpp's llama-server, TGI's OpenAI API, another gateway). Pooled
// keep-alive connections per worker thread, connect and read timeouts, one
// transparent retry when a reused keep-alive connection turns out to be dead
// before any response byte arrived (the request cannot have been processed):
// the policy of upstream::post() (http_pool.h), shared with AnthropicProvider.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ssl/context.hpp>

#include "upstream/http_pool.h"
#include "upstream/provider.h"

namespace tg::upstream {

class OpenAIProvider final : public Provider {
 public:
  OpenAIProvider(boost::asio::any_io_executor ex, const DeploymentConfig& d, boost::asio::ssl::context* tls,
                 io::DeadlineSweeper& deadlines);
  boost::asio::awaitable<UpstreamReply> send(const UpstreamRequest& req, StreamSink& sink) override;
  const DeploymentConfig& deployment() const override { return d_; }
  const HttpPool& pool() const { return pool_; }

 private:
  const DeploymentConfig& d_;
  HttpPool pool_;
  std::string fixed_headers_;  // Host, User-Agent, Content-Type, Authorization: built once
};

// A TLS client context: TLS 1.2+, system trust store or `ca_file`.
std::unique_ptr<boost::asio::ssl::context> make_tls_client_context(const std::string& ca_file);

}  // namespace tg::upstream
