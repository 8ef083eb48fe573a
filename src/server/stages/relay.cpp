#include "server/stages/relay.h"

#include <boost/json.hpp>
#include <fmt/format.h>

#include "api/errors.h"
#include "api/usage.h"

namespace tg::server::stages {
namespace net = boost::asio;

namespace {

// Relays an upstream event stream to the client chunk by chunk.
class RelaySink final : public upstream::StreamSink {
 public:
  RelaySink(Responder& out, Exchange& x, Dialect& d) : out_(out), x_(x), d_(d) {}

  net::awaitable<void> open() override {
    if (d_.opened()) co_return;  // opened while it waited in the queue (the door's keepalive)
    co_await out_.begin_stream(x_);
    const std::string first = d_.stream_open(x_.prompt_tokens_est);
    co_await out_.stream_chunk(x_, first);
  }

  net::awaitable<void> event(std::string_view data) override {
    out_bytes_.clear();
    api::ChunkVerdict verdict = api::ChunkVerdict::kForward;
    if (d_.passthrough()) {
      if (!x_.ttft)
        x_.ttft = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - x_.start);
      d_.learn_usage(data, x_.usage);
    } else if (data != "[DONE]") {
      if (!x_.ttft)
        x_.ttft = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - x_.start);
      // About one token an event: VTC charges as it streams, every 8 events (one
      // pool lock per 8, not per token); settle charges the rest exactly.
      if (++events_ % 8 == 0) x_.pool_ticket.output_so_far(events_);
      verdict = api::inspect_stream_chunk(data, d_.client_wants_usage(), rewritten_, x_.usage, x_.generated,
                                          x_.cache.key ? &x_.cache.capture : nullptr);
    }
    d_.stream_event(data, verdict, rewritten_, out_bytes_);
    co_await out_.stream_chunk(x_, out_bytes_);
  }

 private:
  Responder& out_;
  Exchange& x_;
  Dialect& d_;
  std::int64_t events_ = 0;
  std::string out_bytes_;
  std::string rewritten_;
};

}  // namespace

net::awaitable<upstream::UpstreamReply> Relay::run(Responder& out, Exchange& x, upstream::Provider& provider,
                                                   const api::ParsedRequest& r, const std::string& traceparent,
                                                   Dialect& dialect, const std::string& messages_body) const {
  upstream::UpstreamRequest req{&r, x.who.request_id, traceparent, {}};
  if (dialect.passthrough()) req.messages_body = messages_body;
  RelaySink sink(out, x, dialect);
  upstream::UpstreamReply reply = co_await provider.send(req, sink);
  x.upstream_status = reply.status;
  if (!reply.streamed && !reply.transport_error && reply.status >= 200 && reply.status < 300)
    x.usage = dialect.passthrough() ? Dialect::messages_usage(reply.body) : api::usage_of_body(reply.body);
  co_return reply;
}

std::string messages_body_for(std::string_view body, const std::string& upstream_model, const std::string& user) {
  boost::json::value v = boost::json::parse(body);  // (validated by parse: no throw)
  boost::json::object& o = v.as_object();
  o["model"] = upstream_model;
  if (auto* m = o.if_contains("metadata"); m && m->is_object())
    if (auto* u = m->get_object().if_contains("user_id"); u && !user.empty()) *u = user;
  return boost::json::serialize(v);
}

ApiError upstream_status_error(int status, const std::string& body, const std::string& deployment) {
  if (status == 401 || status == 403)
    return upstream_error(502,
                          fmt::format("upstream '{}' rejected the gateway's credentials (HTTP {}); the operator must "
                                      "fix the deployment's api_key_env",
                                      deployment, status),
                          "upstream_auth_error");
  ApiError e = api::error_from_upstream(status, body, deployment);
  if (status >= 500) e.status = 502;
  return e;
}

}  // namespace tg::server::stages
