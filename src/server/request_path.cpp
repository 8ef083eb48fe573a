#include "server/request_path.h"

#include <boost/asio/use_awaitable.hpp>
#include <boost/json/monotonic_resource.hpp>
#include <fmt/format.h>

#include "api/request.h"
#include "api/usage.h"
#include "server/stages/identify.h"
#include "server/stages/parse.h"

namespace tg::server {
namespace net = boost::asio;

namespace {
// How often a queued Anthropic stream is pinged.
constexpr std::chrono::milliseconds kQueuePingEvery{1000};

limits::LimitStore& limits_of(const PathDeps& d) {
  return d.redis_limits ? static_cast<limits::LimitStore&>(*d.redis_limits) : d.limits;
}
}  // namespace

RequestPath::RequestPath(const PathDeps& d)
    : config_(d.config),
      metrics_(d.metrics),
      endpoints_(d.config, d.metrics, d.draining, d.pools, d.redis_limits),
      admin_({d.config, d.keys, d.limits, d.redis_limits, d.ledger, d.cache, d.cache_replica, d.admin_executor, d.clock}),
      authenticate_(d.keys, d.refusals, d.metrics.stats, d.clock),
      routing_(d.router, d.config),
      estimate_(d.config, limits_of(d), d.count_executor),
      admit_(d.limits, d.redis_limits, d.budgets, d.metrics, d.clock),
      cache_(d.config.cache, d.cache, d.cache_replica, d.router, d.metrics.stats, d.clock),
      queue_(d.pools),
      settle_(d.config, d.metrics, d.access_log, authenticate_, d.ledger, d.budgets, d.webhook, d.clock) {}

std::optional<ApiError> RequestPath::judge_head(const Request& head, Exchange& x) {
  return authenticate_.refused_unread(head, x);
}

namespace {
// Anthropic's clients read the request id from `request-id`.
void mark_door(Exchange& x, Door door) {
  x.who.door = std::string(door_name(door));
  if (door == Door::kAnthropic) x.extra_headers += "request-id: " + x.who.request_id + "\r\n";
}
}  // namespace

net::awaitable<void> RequestPath::refuse(Responder& out, Exchange& x, const ApiError& e) {
  const Door door = door_of(x.path);
  mark_door(x, door);
  co_await fail(out, x, door, e);
}

net::awaitable<void> RequestPath::answer(Responder& out, Exchange& x, int status, std::string_view content_type,
                                         const std::string& body, std::string_view headers) {
  x.status = status;
  x.bytes_out += body.size();
  settle_.run(x);
  const std::string extra(headers);
  co_await out.send(x, status, content_type, body, extra);
}

net::awaitable<void> RequestPath::fail(Responder& out, Exchange& x, Door door, const ApiError& e) {
  x.error_code = e.code;
  const ErrorAnswer a = error_answer(door, e);
  co_await answer(out, x, a.status, "application/json", a.body, a.headers);
}

net::awaitable<void> RequestPath::end_stream(Responder& out, Exchange& x, const std::string& last_events) {
  settle_.run(x);
  try {
    co_await out.stream_chunk(x, last_events);
    co_await out.end_stream(x);
  } catch (const upstream::ClientGone&) {
    x.client_gone = true;
  }
}

// Routing, once: the plain endpoints answer here; the admin API and
// inference have their own paths.
net::awaitable<void> RequestPath::serve(Responder& out, Request& req, Exchange& x) {
  x.body_bytes = req.body().size();
  const Expected<Route> r = route(x.method, x.path);
  mark_door(x, r ? r->door : door_of(x.path));
  if (!r) co_return co_await fail(out, x, door_of(x.path), r.error());
  x.endpoint = std::string(r->name);
  switch (r->kind) {
    case RouteKind::kHealth: {
      const Plain p = endpoints_.health();
      co_return co_await answer(out, x, p.status, p.content_type, p.body);
    }
    case RouteKind::kReady: {
      const Plain p = endpoints_.ready();
      co_return co_await answer(out, x, p.status, p.content_type, p.body);
    }
    case RouteKind::kMetrics: {
      const Plain p = endpoints_.metrics();
      co_return co_await answer(out, x, p.status, p.content_type, p.body);
    }
    case RouteKind::kModels: {
      auto principal = authenticate_.run(req);
      if (!principal) co_return co_await fail(out, x, Door::kOpenAI, principal.error());
      x.principal = *principal;
      x.who.user = x.principal->user;
      const auto p = endpoints_.models(x.principal->tenant_config, r->rest);
      if (!p) co_return co_await fail(out, x, Door::kOpenAI, p.error());
      co_return co_await answer(out, x, p->status, p->content_type, p->body);
    }
    case RouteKind::kAdminLimits:
    case RouteKind::kAdminUsage:
    case RouteKind::kAdminCache: {
      const admin::Resource what = r->kind == RouteKind::kAdminLimits  ? admin::Resource::kLimits
                                   : r->kind == RouteKind::kAdminUsage ? admin::Resource::kUsage
                                                                       : admin::Resource::kCache;
      const Expected<admin::Reply> a = co_await admin_.serve(what, req, x.path, r->rest, x.who.request_id);
      if (!a) co_return co_await fail(out, x, Door::kOpenAI, a.error());
      co_return co_await answer(out, x, 200, a->content_type, a->body);
    }
    case RouteKind::kInference:
    case RouteKind::kCountTokens:
      co_return co_await serve_inference(out, req, x, *r);
  }
}

// The inference path: one stage after another; each refusal is answered in
// the door's shape and ends the request.
net::awaitable<void> RequestPath::serve_inference(Responder& out, Request& req, Exchange& x, const Route& route) {
  const Door door = route.door;
  // The request's JSON lives in the session's arena, which outlives `parsed`.
  boost::json::monotonic_resource arena(out.json_arena(), Responder::kJsonArenaBytes);

  // authenticate (done already when the head was judged against the refusal budget)
  if (!x.principal) {
    auto principal = authenticate_.run(req);
    if (!principal) co_return co_await fail(out, x, door, principal.error());
    x.principal = *principal;
  }
  x.who.user = x.principal->user;

  // identify (the headers: a refusal here costs no parse)
  const auto identified = stages::identify(*x.principal, req, x.who);
  if (!identified) co_return co_await fail(out, x, door, identified.error());
  x.batch = identified->batch;

  // parse, then the end user the body claims
  auto parsed = stages::parse(req, route, &arena);
  if (!parsed) co_return co_await fail(out, x, door, parsed.error());
  api::ParsedRequest& request = parsed->request;
  x.stream = request.stream;
  if (auto refused = stages::identify_user(*x.principal, req, *parsed, x.who))
    co_return co_await fail(out, x, door, *refused);

  // route
  const auto routed = routing_.run(x.who.model, x.principal->tenant_config);
  if (!routed) co_return co_await fail(out, x, door, routed.error());
  x.who.deployment = routed->provider->deployment().id;
  x.model_config = routed->model;

  // estimate
  const auto estimated = co_await estimate_.run(*x.model_config, request, x.who, x.body_bytes);
  if (!estimated) co_return co_await fail(out, x, door, estimated.error());
  x.prompt_tokens_est = estimated->prompt_tokens;
  if (route.kind == RouteKind::kCountTokens) {  // counted: nothing is admitted or sent upstream
    x.who.deployment.clear();
    const std::string body = fmt::format(R"({{"input_tokens":{}}})", x.prompt_tokens_est);
    co_return co_await answer(out, x, 200, "application/json", body);
  }

  // admit
  x.reached_admission = true;
  auto admitted = co_await admit_.run(x.who, estimated->spend);
  if (!admitted) co_return co_await fail(out, x, door, admitted.error());
  x.admission = std::move(admitted->admission);
  x.budget_hold = std::move(admitted->budget_hold);
  x.extra_headers += admitted->headers;

  // cache
  Dialect dialect(door, x.who.request_id, x.who.model, std::move(parsed->stop_sequences), request.client_wants_usage);
  // The Anthropic door to a Messages upstream: the client's body goes as it is (its model and end user
  // set to the gateway's), the answer comes back as it is; such answers are not cached.
  std::string messages_body;
  if (door == Door::kAnthropic && routed->provider->speaks_messages()) {
    dialect.pass_through();
    messages_body = stages::messages_body_for(req.body(), routed->provider->deployment().model, x.who.user);
  } else {
    const auto cached =
        co_await cache_.lookup(req, x.who, x.principal->tenant_config, request, x.cache, x.extra_headers);
    if (!cached) co_return co_await fail(out, x, door, cached.error());
    if (*cached) co_return co_await serve_hit(out, x, request, **cached, dialect);
  }

  // queue, then relay: raced against the client going away
  // (named, never a temporary inside co_await: GCC 12, docs/architecture.md)
  std::string traceparent(req["traceparent"]);
  if (!api::is_valid_traceparent(traceparent)) traceparent.clear();  // an invalid one is dropped, as the spec says
  // An Anthropic stream that waits in the queue opens at once and pings meanwhile, as Anthropic's API does.
  const sched::LivePool::Keepalive ping{kQueuePingEvery, [&]() -> net::awaitable<void> {
    std::string bytes;
    if (!dialect.opened()) {
      co_await out.begin_stream(x);
      bytes = dialect.open_for_wait(x.prompt_tokens_est);
    }
    bytes += dialect.ping();
    co_await out.stream_chunk(x, bytes);
  }};
  const bool pings = door == Door::kAnthropic && request.stream;
  std::optional<upstream::UpstreamReply> reply;
  out.watch_disconnect();
  try {
    auto ticket = co_await queue_.run(x.who, x.model_config, request, x.prompt_tokens_est, x.batch,
                                      pings ? &ping : nullptr);
    if (!ticket) {  // shed at the deadline (counted in tg_queue_timeouts_total by the pool)
      out.stop_watching();
      if (!dialect.opened()) co_return co_await fail(out, x, door, ticket.error());
      x.error_code = ticket.error().code;  // the stream is open: said in-band
      const std::string last = dialect.stream_error(ticket.error());
      co_return co_await end_stream(out, x, last);
    }
    x.pool_ticket = std::move(*ticket);
    reply = co_await relay_.run(out, x, *routed->provider, request, traceparent, dialect, messages_body);
  } catch (const upstream::ClientGone&) {
  } catch (const boost::system::system_error& e) {
    if (e.code() != net::error::operation_aborted) {
      out.stop_watching();
      throw;
    }
  }
  out.stop_watching();

  // settle, then the answer's last bytes
  if (!reply) {  // the client left first: the upstream call was cancelled
    x.client_gone = true;
    if (!x.status) x.status = 499;
    x.error_code = "client_closed_request";
    metrics_.stats.client_disconnects_total.fetch_add(1);
    metrics_.stats.upstream_cancelled_total.fetch_add(1);
    out.close_after_response();
    settle_.run(x);
    co_return;
  }
  if (reply->transport_error) {
    const ApiError& e = *reply->transport_error;
    metrics_.record_upstream_error(x.who.deployment, e.code);
    if (!reply->streamed) co_return co_await fail(out, x, door, e);
    x.error_code = e.code;  // the head is gone: said in-band, then the stream ends
    out.close_after_response();
    const std::string last = dialect.stream_error(e);
    co_return co_await end_stream(out, x, last);
  }
  if (reply->streamed) {
    if (!x.client_gone) cache_.remember_stream(x.cache, x.who, request, x.usage);
    const std::uint64_t output = x.usage ? x.usage->completion_tokens : 0;
    const std::string last = dialect.stream_close(output);
    co_return co_await end_stream(out, x, last);
  }
  if (reply->status < 200 || reply->status >= 300) {
    metrics_.record_upstream_error(x.who.deployment, fmt::format("http_{}", reply->status));
    const ApiError e = stages::upstream_status_error(reply->status, reply->body, x.who.deployment);
    if (!dialect.opened()) co_return co_await fail(out, x, door, e);
    x.error_code = e.code;
    const std::string last = dialect.stream_error(e);
    co_return co_await end_stream(out, x, last);
  }
  cache_.remember_answer(x.cache, x.who, reply->body);
  if (door == Door::kOpenAI) co_return co_await answer(out, x, reply->status, "application/json", reply->body);
  const std::string body = dialect.answer_body(reply->body);
  co_await answer(out, x, reply->status, "application/json", body);
}

// A stored answer, served again in the door's shape: a fresh id and time; as
// a stream when the client asked for one.
net::awaitable<void> RequestPath::serve_hit(Responder& out, Exchange& x, const api::ParsedRequest& r,
                                            const std::string& stored, Dialect& dialect) {
  x.who.deployment.clear();  // no upstream served it
  const bool chat = r.endpoint == api::Endpoint::kChatCompletions;
  const std::string id = (chat ? "chatcmpl-" : "cmpl-") + x.who.request_id;
  const std::int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(
                                 std::chrono::system_clock::now().time_since_epoch()).count();
  if (!r.stream) {
    const std::string body = dialect.answer_body(api::restamp_completion(stored, id, now_s));
    co_return co_await answer(out, x, 200, "application/json", body);
  }
  const bool usage = dialect.client_wants_usage() || dialect.door() == Door::kAnthropic;
  std::string ev;
  try {
    co_await out.begin_stream(x);
    ev = dialect.stream_open(x.prompt_tokens_est);
    for (const auto& c : api::chunks_from_completion(stored, chat, usage, id, now_s))
      dialect.stream_event(c, api::ChunkVerdict::kForward, {}, ev);
    dialect.stream_event("[DONE]", api::ChunkVerdict::kForward, {}, ev);
    co_await out.stream_chunk(x, ev);
  } catch (const upstream::ClientGone&) {
    x.client_gone = true;
    settle_.run(x);
    co_return;
  }
  const std::string last = dialect.stream_close(0);
  co_await end_stream(out, x, last);
}

}  // namespace tg::server
