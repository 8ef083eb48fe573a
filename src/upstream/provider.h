// Provider is one upstream deployment as the request path sees it: send a
// request, get a reply, with streamed replies pushed into a StreamSink as
// they arrive (never buffered whole). Implementations: OpenAIProvider (any
// OpenAI-compatible HTTP/HTTPS endpoint) and sim::SimProvider.
//
// Threading: a Provider instance belongs to one worker thread (its pooled
// connections and timers live on that thread's io_context); the gateway builds
// one set per worker. Cancellation: send() honours Asio's per-operation
// cancellation (terminal), which the server emits when the client goes away;
// a cancelled send() throws boost::system::system_error(operation_aborted)
// and leaves nothing behind (its connection is closed, not pooled).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <exception>
#include <optional>
#include <string>
#include <string_view>

#include "api/request.h"
#include "core/config.h"
#include "core/error.h"

namespace tg::upstream {

struct UpstreamRequest {
  const api::ParsedRequest* parsed = nullptr;  // the validated client request
  std::string request_id;
  std::string traceparent;  // W3C trace context, passed through when present
  // Not empty: an Anthropic Messages request to send as it is (the Anthropic
  // door to a provider that speaks_messages()); the reply, whole or each
  // stream event's data, comes back untranslated.
  std::string messages_body;
};

// Receives a streamed reply. open() is called once, when the upstream has
// accepted the stream (status 200, text/event-stream); event() once per SSE
// data payload, "[DONE]" included, in arrival order. Both may suspend: that is
// the back-pressure from a slow client reaching the upstream read loop. When
// the client is gone they throw ClientGone, which providers let through.
struct ClientGone : std::exception {
  const char* what() const noexcept override { return "client went away"; }
};

class StreamSink {
 public:
  virtual ~StreamSink() = default;
  virtual boost::asio::awaitable<void> open() = 0;
  virtual boost::asio::awaitable<void> event(std::string_view data) = 0;
};

struct UpstreamReply {
  int status = 0;       // the upstream's HTTP status; 0 when none was received
  std::string body;     // the whole body of a non-streamed reply or of an error
  bool streamed = false;  // open() was called: the reply went to the sink
  std::optional<ApiError> transport_error;  // refused, timed out, reset, TLS...
};

class Provider {
 public:
  virtual ~Provider() = default;
  virtual boost::asio::awaitable<UpstreamReply> send(const UpstreamRequest& req, StreamSink& sink) = 0;
  virtual const DeploymentConfig& deployment() const = 0;
  // Takes UpstreamRequest::messages_body (Anthropic's Messages API) as it is.
  virtual bool speaks_messages() const { return false; }
};

}  // namespace tg::upstream
