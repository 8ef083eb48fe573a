// AnthropicProvider: a deployment that speaks Anthropic's Messages API
// (Anthropic itself, or any server with POST {base_url}/messages, such as
// llama.cpp's llama-server). The gateway's OpenAI chat completions request is
// translated into a Messages request (api/anthropic_wire.h), and the answer
// back: a message into a chat.completion, an event stream into
// chat.completion.chunk payloads (translated as the events arrive, never
// buffered), an Anthropic error into OpenAI's error shape with its status
// (529 overloaded as 503). The rest of the gateway sees an OpenAI upstream.
//
// Connections, timeouts, the retry of dead keep-alive connections and
// cancellation are upstream::post()'s (http_pool.h), as for OpenAIProvider.
// Headers: anthropic-version (deployment `anthropic_version`) and the key as
// x-api-key, or as Authorization: Bearer with `auth_header: authorization`.
// A request with messages_body (the gateway's Anthropic door) passes through
// untranslated: that body is posted as it is, the answer returned as it is.
// Only chat completions: a completions or embeddings request gets 400
// unsupported_endpoint. Threading as for every Provider: one per worker.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ssl/context.hpp>

#include "upstream/http_pool.h"
#include "upstream/provider.h"

namespace tg::upstream {

class AnthropicProvider final : public Provider {
 public:
  // REQUIRES: `d` (provider anthropic) outlives the provider; `tls` is
  // non-null when d.scheme is https.
  AnthropicProvider(boost::asio::any_io_executor ex, const DeploymentConfig& d, boost::asio::ssl::context* tls,
                    io::DeadlineSweeper& deadlines);
  boost::asio::awaitable<UpstreamReply> send(const UpstreamRequest& req, StreamSink& sink) override;
  const DeploymentConfig& deployment() const override { return d_; }
  bool speaks_messages() const override { return true; }
  const HttpPool& pool() const { return pool_; }

 private:
  const DeploymentConfig& d_;
  HttpPool pool_;
  std::string fixed_headers_;  // origin, anthropic-version, the key: built once
};

// Logs (warn) a stop_reason the translation does not know, once per value
// and for at most 16 distinct values per process (an upstream names them,
// not a client, but logs stay bounded all the same). Thread-safe.
void note_unknown_stop_reason(const std::string& deployment, const std::string& stop_reason);

}  // namespace tg::upstream
