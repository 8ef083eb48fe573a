#include "server/handlers.h"
#include "server/admin_cache.h"
#include "server/cache_stage.h"

#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>

#include "api/errors.h"
#include "api/request.h"
#include "api/sse.h"
#include "api/usage.h"
#include "core/ids.h"
#include "meter/chat_count.h"
#include "meter/pricing.h"
#include "meter/tokenizer.h"
#include "meter/usage_query.h"
#include "identity/keys.h"
#include "limits/limit_store.h"
#include "limits/refusal_budget.h"
#include "core/text.h"

#include <random>

#include <boost/url/parse.hpp>
#include <boost/url/parse_path.hpp>
#include <boost/asio/co_spawn.hpp>
#include "sim/sim_provider.h"

#include <spdlog/spdlog.h>

namespace tg::server {
namespace net = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;

namespace {

// Relays an upstream event stream to the client chunk by chunk. Learns usage
// from the stream and strips the usage-only chunk (and "usage": null fields)
// when the client did not ask for stream_options.include_usage.
class RelaySink final : public upstream::StreamSink {
 public:
  RelaySink(Session& s, Exchange& x, bool client_wants_usage)
      : s_(s), x_(x), client_wants_usage_(client_wants_usage) {}

  net::awaitable<void> open() override {
    co_await s_.begin_stream(x_);
    opened_ = true;
  }

  net::awaitable<void> event(std::string_view data) override {
    out_.clear();
    if (data == "[DONE]") {
      api::append_sse_data(out_, data);
      co_await s_.stream_chunk(x_, out_);
      co_return;
    }
    if (!x_.ttft) x_.ttft = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now() - x_.start);
    // About one token an event: VTC charges as it streams, every 8 events (one
    // pool lock per 8, not per token); settle charges the rest exactly.
    if (++events_ % 8 == 0) x_.pool_ticket.output_so_far(events_);
    switch (api::inspect_stream_chunk(data, client_wants_usage_, rewritten_, x_.usage, x_.generated,
                                      x_.cache_key ? &x_.capture : nullptr)) {
      case api::ChunkVerdict::kDrop: co_return;  // the usage chunk only the gateway asked for
      case api::ChunkVerdict::kRewritten: api::append_sse_data(out_, rewritten_); break;
      case api::ChunkVerdict::kForward: api::append_sse_data(out_, data); break;
    }
    co_await s_.stream_chunk(x_, out_);
  }

  bool opened() const { return opened_; }

 private:
  Session& s_;
  Exchange& x_;
  bool client_wants_usage_;
  bool opened_ = false;
  std::int64_t events_ = 0;
  std::string out_;
  std::string rewritten_;
};

bool is_json_content_type(std::string_view ct) {
  auto semi = ct.find(';');
  std::string_view base = ct.substr(0, semi);
  while (!base.empty() && base.back() == ' ') base.remove_suffix(1);
  return boost::beast::iequals(base, "application/json");
}

// Upstream errors the client should see in their own terms: an upstream that
// rejects the gateway's credentials is the operator's problem, not the caller's.
ApiError map_upstream_status(int status, const std::string& body, const std::string& deployment) {
  if (status == 401 || status == 403)
    return upstream_error(502, fmt::format("upstream '{}' rejected the gateway's credentials (HTTP {}); "
                                           "the operator must fix the deployment's api_key_env",
                                           deployment, status),
                          "upstream_auth_error");
  ApiError e = api::error_from_upstream(status, body, deployment);
  if (status >= 500) e.status = 502;
  return e;
}

// The end user a request is for: the key's own user, else X-TG-User, else the
// body's `user` field. A user-bound key cannot speak for someone else, by
// header or by body; both are validated alike.
Expected<std::string> resolve_user(const identity::Principal& p, std::string_view header,
                                   const std::string& body_user) {
  struct Claim {
    std::string value;
    const char* param;
    const char* code;
  };
  const Claim claims[] = {{std::string(header), "X-TG-User", "invalid_user_header"},
                          {body_user, "user", "invalid_user"}};
  for (const Claim& c : claims) {
    if (c.value.empty()) continue;
    if (!is_valid_external_id(c.value))
      return invalid_request(fmt::format("Invalid {}: use 1-128 characters of A-Z a-z 0-9 . _ : @ / -.",
                                         c.param == std::string_view("user") ? "'user' field" : "X-TG-User header"),
                             c.param, c.code);
    if (p.user_bound && c.value != p.user)
      return permission_error(fmt::format("This key belongs to user '{}' and cannot act as '{}' ({}). Use a "
                                          "tenant-level key to send requests for other users.", p.user, c.value,
                                          c.param),
                              "user_mismatch");
  }
  if (p.user_bound) return p.user;
  return claims[0].value.empty() ? body_user : claims[0].value;
}

// A whole answer for the endpoints that never suspend before answering.
struct Answer {
  int status = 200;
  std::string body;
  const char* content_type = "application/json";
  std::optional<ApiError> error;
};

net::awaitable<void> send_answer(Session& s, Exchange& x, Answer& a) {
  if (a.error) co_return co_await s.send_error(x, *a.error);
  static const std::string kNone;
  co_await s.send(x, a.status, a.content_type, a.body, kNone);
}

Answer answer_models(WorkerContext& ctx, Request& req, Exchange& x, const std::string& id) {
  x.endpoint = "models";
  auto principal = ctx.keys.authenticate(req[http::field::authorization], req["x-api-key"]);
  if (!principal) return {0, {}, {}, principal.error()};
  x.principal = *principal;
  x.user = x.principal->user;
  const TenantConfig* t = x.principal->tenant_config;
  auto model_json = [](const ModelConfig& m) {
    json::object o;
    o["id"] = m.alias;
    o["object"] = "model";
    o["created"] = 1735689600;  // fixed: aliases have no creation time of their own
    o["owned_by"] = m.owned_by;
    return o;
  };
  if (!id.empty()) {
    const ModelConfig* m = ctx.config.find_model(id);
    if (!m || !upstream::Router::allowed(t, m->alias))
      return {0, {}, {},
              not_found(fmt::format("The model '{}' does not exist or you do not have access to it.", id),
                        "model_not_found", "model")};
    return {200, json::serialize(model_json(*m))};
  }
  json::array data;
  for (const auto& m : ctx.config.models)
    if (upstream::Router::allowed(t, m.alias)) data.push_back(model_json(m));
  json::object list;
  list["object"] = "list";
  list["data"] = std::move(data);
  return {200, json::serialize(list)};
}

const meter::Tokenizer& tokenizer_for(const WorkerContext& ctx, const ModelConfig& m) {
  const std::string& name = m.encoding.empty() ? ctx.config.metering.default_encoding : m.encoding;
  return meter::Tokenizer::builtin(*meter::encoding_from_name(name));  // validated at config load
}

// The prompt's tokens as OpenAI counts them (estimate cost stage).
// Past `limit` the count stops and is some number above it.
std::uint64_t estimate_prompt_tokens(const WorkerContext& ctx, const ModelConfig& m, const api::ParsedRequest& r,
                                     std::uint64_t limit) {
  const meter::Tokenizer& tok = tokenizer_for(ctx, m);
  if (r.endpoint == api::Endpoint::kChatCompletions) {
    auto texts = api::message_texts(r);
    std::vector<meter::ChatTurn> turns;
    turns.reserve(texts.size());
    for (const auto& t : texts) turns.push_back({t.role, t.name, t.content});
    return meter::count_chat_tokens(tok, turns, limit);
  }
  return tok.count(api::prompt_text(r), static_cast<std::size_t>(std::min<std::uint64_t>(limit, SIZE_MAX)));
}

// A request without max_tokens is reserved as if it may produce this many
// tokens; settlement charges what it actually produced.
constexpr std::uint64_t kDefaultOutputEstimate = 1024;

// The limits' clock: microseconds of the steady clock (the store never reads one).
limits::Micros limits_now() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The refusal budget's clock: seconds of the steady clock.
double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Retry-After gets 0..10% (at least 0..1 s) added, so clients refused together
// do not all come back in the same second.
int retry_jitter_s(int retry_after_s) {
  thread_local std::minstd_rand rng(std::random_device{}());
  return std::uniform_int_distribution<int>(0, std::max(1, retry_after_s / 10))(rng);
}

// The refusal budget's source: the key, or the client's address without one.
std::string refusal_source(const Exchange& x) {
  return x.principal ? "key:" + x.principal->key_id : "ip:" + x.client_ip;
}

// A source that spent its refusal budget (limits/refusal_budget.h) is
// refused before anything of its request is parsed or counted.
std::optional<ApiError> refused_unread(WorkerContext& ctx, const Exchange& x) {
  if (!ctx.refusals) return std::nullopt;
  const int wait_s = ctx.refusals->blocked_for_s(refusal_source(x), seconds_now());
  if (!wait_s) return std::nullopt;
  ctx.metrics.stats.refusal_budget_rejections_total.fetch_add(1);
  ApiError e{429, "rate_limit_error", "too_many_refusals",
             fmt::format("Too many refused requests from {} recently (their parsing and counting has a cost too): "
                         "requests from it are refused unread for {} s. Fix what the earlier errors name, then retry.",
                         x.principal ? fmt::format("key '{}'", x.principal->key_id) : std::string("this address"),
                         wait_s),
             {}};
  e.retry_after_s = wait_s;
  return e;
}

}  // namespace

std::optional<ApiError> refused_before_body(WorkerContext& ctx, const Request& head, Exchange& x) {
  if (!ctx.refusals || !x.path.starts_with("/v1/")) return std::nullopt;
  if (auto principal = ctx.keys.authenticate(head[http::field::authorization], head["x-api-key"])) x.principal = *principal;
  return refused_unread(ctx, x);
}

namespace {

// Everything an inference request needs before it goes upstream, decided
// without suspending: authenticate → parse → resolve the end user → route.
struct Prepared {
  api::ParsedRequest parsed;
  upstream::Provider* provider = nullptr;
  meter::Spend estimate;  // prompt + the most it may generate, in tokens and micro-dollars
};

Expected<Prepared> prepare_inference(WorkerContext& ctx, Request& req, Exchange& x, api::Endpoint ep,
                                     json::storage_ptr storage) {
  x.endpoint = std::string(api::endpoint_name(ep));
  // (authenticated already when the session judged the refusal budget on the head)
  if (!x.principal) {
    auto principal = ctx.keys.authenticate(req[http::field::authorization], req["x-api-key"]);
    if (!principal) return principal.error();
    x.principal = *principal;
  }
  x.user = x.principal->user;
  if (!is_json_content_type(req[http::field::content_type]))
    return ApiError{415, "invalid_request_error", "unsupported_media_type",
                    fmt::format("Content-Type must be application/json, got '{}'. Send the request body "
                                "as JSON with 'Content-Type: application/json'.",
                                std::string(req[http::field::content_type])),
                    {}};
  static constexpr std::pair<const char*, const char*> kIdHeaders[] = {
      {"x-tg-run", "X-TG-Run"}, {"x-tg-parent", "X-TG-Parent"}, {"x-tg-feature", "X-TG-Feature"}};
  std::string* const outs[] = {&x.run_id, &x.parent_id, &x.feature};
  for (std::size_t i = 0; i < std::size(kIdHeaders); ++i) {
    std::string v(req[kIdHeaders[i].first]);
    if (v.empty()) continue;
    if (!is_valid_external_id(v))
      return invalid_request(fmt::format("Invalid {} header: use 1-128 characters of A-Z a-z 0-9 . _ : @ / -.",
                                         kIdHeaders[i].second),
                             kIdHeaders[i].second, "invalid_header");
    *outs[i] = std::move(v);
  }
  if (std::string_view prio = req["x-tg-priority"]; !prio.empty()) {
    if (prio == "batch") x.batch = true;
    else if (prio != "interactive")
      return invalid_request(fmt::format("Invalid X-TG-Priority header '{}': use interactive (the default) or batch.",
                                         std::string(prio)),
                             "X-TG-Priority", "invalid_header");
  }
  if (!x.parent_id.empty() && x.run_id.empty())
    return invalid_request("X-TG-Parent links a call to its parent inside an agent run: send X-TG-Run with it "
                           "(the run id the parent was sent with).", "X-TG-Parent", "parent_without_run");
  auto parsed = api::parse_request(ep, req.body(), std::move(storage));
  if (!parsed) return parsed.error();
  x.model = parsed->model;
  x.stream = parsed->stream;
  auto user = resolve_user(*x.principal, req["x-tg-user"], parsed->user);
  if (!user) return user.error();
  x.user = std::move(*user);
  // The upstream sees the user the gateway attributed, never a claim it overrode.
  if (!parsed->user.empty() && parsed->user != x.user) parsed->body["user"] = x.user;
  auto provider = ctx.router.route(parsed->model, x.principal->tenant_config);
  if (!provider) return provider.error();
  x.deployment = (*provider)->deployment().id;
  x.model_config = ctx.config.find_model(parsed->model);
  return Prepared{std::move(*parsed), *provider, {}};
}

// The scopes of the request's path, as the limit stores see them (views into `x`).
limits::Ask limits_ask(const Exchange& x) {
  limits::Ask a;
  a.org = x.principal->org;
  a.tenant = x.principal->tenant;
  a.user = x.user;
  a.key = x.principal->key_id;
  a.model = x.model;
  a.deployment = x.deployment;
  return a;
}

// estimate: the prompt's tokens (counted on the counting thread when the
// body is large, so an I/O worker never spends long on one request) plus the
// most it may generate (per choice, times the choices). Counting stops once
// the prompt cannot fit the model's context window.
net::awaitable<std::optional<ApiError>> estimate(WorkerContext& ctx, Exchange& x, Prepared& prep, std::size_t body_bytes) {
  const ModelConfig& m = *x.model_config;
  const std::uint64_t out = std::uint64_t{prep.parsed.max_output_tokens.value_or(kDefaultOutputEstimate)} * prep.parsed.choices;
  // Counting stops where the answer is known to be a refusal: past the context window, or past the
  // path's smallest tokens-per-minute ceiling less the output (admit refuses it: tokens_exceed_limit).
  std::uint64_t limit = m.context_tokens ? m.context_tokens : std::numeric_limits<std::uint64_t>::max();
  const limits::Ask path = limits_ask(x);
  limits::LimitStore& store = ctx.redis_limits ? static_cast<limits::LimitStore&>(*ctx.redis_limits) : ctx.limits;
  if (const std::int64_t ceiling = store.token_ceiling(path); ceiling > 0)
    limit = std::min<std::uint64_t>(limit, static_cast<std::uint64_t>(ceiling) > out ? ceiling - out : 0);
  auto count = [&] { x.prompt_tokens_est = estimate_prompt_tokens(ctx, m, prep.parsed, limit); };
  if (body_bytes > ctx.config.server.offload_count_bytes && ctx.count_executor) {
    auto work = [&]() -> net::awaitable<void> {
      count();
      co_return;
    };
    co_await net::co_spawn(ctx.count_executor, work, net::use_awaitable);
  } else {
    count();
  }
  // Each choice is its own sequence: the window holds the prompt and one choice's output.
  const std::uint64_t per_choice = prep.parsed.max_output_tokens.value_or(0);
  if (m.context_tokens && x.prompt_tokens_est + per_choice > m.context_tokens) {
    const std::string what = x.prompt_tokens_est > m.context_tokens
                                 ? fmt::format("more than {} tokens in the prompt", m.context_tokens)
                                 : fmt::format("{} tokens in the prompt and up to {} to generate", x.prompt_tokens_est, per_choice);
    co_return invalid_request(fmt::format("This model's maximum context length is {} tokens; the request has {}. "
                                          "Shorten the messages or lower max_tokens.", m.context_tokens, what),
                              "messages", "context_length_exceeded");
  }
  const PriceConfig& pr = m.price;
  prep.estimate = {meter::cost_micros({pr.input_per_1m, pr.output_per_1m, pr.cached_input_per_1m}, x.prompt_tokens_est,
                                      out, 0),
                   static_cast<std::int64_t>(x.prompt_tokens_est + out)};
  co_return std::nullopt;
}

// admit: reserve the estimate at every limit on the request's path (in this
// process, or in Redis for a fleet), then at every budget. The refusal, if any.
net::awaitable<std::optional<ApiError>> admit(WorkerContext& ctx, Exchange& x, const meter::Spend& est) {
  x.reached_admission = true;
  limits::Ask ask = limits_ask(x);
  ask.run_id = x.run_id;
  ask.parent_id = x.parent_id;
  ask.request_id = x.request_id;
  ask.tokens = est.tokens;
  ask.cost_micros = est.micros;
  // (no conditional expression around the co_await: GCC 12 mishandles its temporaries)
  Expected<limits::Admission> admitted = ApiError{};
  if (ctx.redis_limits) admitted = co_await ctx.redis_limits->admit_async(ask);
  else admitted = ctx.limits.admit(ask, limits_now());
  if (!admitted) {
    ApiError e = admitted.error();
    ctx.metrics.record_limit_rejection(x.principal->tenant, e.code);
    if (e.retry_after_s > 0) e.retry_after_s += retry_jitter_s(e.retry_after_s);
    co_return e;
  }
  x.admission = std::move(*admitted);
  x.extra_headers = limits::rate_limit_headers(x.admission.quota());
  if (ctx.budgets.size()) {
    auto hold = ctx.budgets.reserve({x.principal->tenant, x.user, x.principal->key_id, x.feature}, est,
                                    std::chrono::system_clock::now());
    if (!hold) {
      ctx.metrics.stats.budget_rejections_total.fetch_add(1);
      co_return hold.error();
    }
    x.budget_hold = std::move(*hold);
  }
  co_return std::nullopt;
}

// queue: fair admission to the deployment's pool (sched::LivePool). Waits
// only while the pool is saturated; a 503 queue_timeout at the deadline.
// Throws system_error(operation_aborted) when the client leaves meanwhile.
net::awaitable<std::optional<ApiError>> enter_pool(WorkerContext& ctx, Exchange& x, const api::ParsedRequest& parsed) {
  if (!ctx.pools) co_return std::nullopt;
  auto it = ctx.pools->find(x.deployment);
  if (it == ctx.pools->end()) co_return std::nullopt;
  sched::AdmissionAsk ask{x.principal->tenant, x.user, static_cast<std::int64_t>(x.prompt_tokens_est),
                          parsed.max_output_tokens, std::string(), false,
                          x.batch ? sched::Priority::kBatch : sched::Priority::kInteractive, parsed.choices};
  if (auto e = parsed.body.if_contains("reasoning_effort"); e && e->is_string()) ask.reasoning_effort = e->as_string();
  ask.reasoning_model = x.model_config && x.model_config->reasoning;
  Expected<sched::Ticket> t = co_await it->second->acquire(ask);
  if (!t) co_return t.error();
  x.pool_ticket = std::move(*t);
  co_return std::nullopt;
}

net::awaitable<void> serve_inference(Session& s, WorkerContext& ctx, Request& req, Exchange& x,
                                     api::Endpoint ep) {
  // The request's JSON lives in the session's arena; `arena` outlives `prep`.
  json::monotonic_resource arena(s.json_arena(), Session::kJsonArenaBytes);
  auto prep = prepare_inference(ctx, req, x, ep, &arena);
  if (!prep) co_return co_await s.send_error(x, prep.error());
  if (auto refused = co_await estimate(ctx, x, *prep, req.body().size())) co_return co_await s.send_error(x, *refused);
  if (auto refused = co_await admit(ctx, x, prep->estimate)) co_return co_await s.send_error(x, *refused);
  const api::ParsedRequest& parsed = prep->parsed;
  if (co_await serve_from_cache(s, ctx, req, x, parsed)) co_return;
  upstream::Provider& up = *prep->provider;

  // upstream, raced against the client going away
  const std::string_view traceparent = req["traceparent"];
  upstream::UpstreamRequest ureq{&parsed, x.request_id,
                                 api::is_valid_traceparent(traceparent) ? std::string(traceparent) : std::string()};
  RelaySink sink(s, x, parsed.client_wants_usage);
  std::optional<upstream::UpstreamReply> reply;
  s.watch_disconnect();
  try {
    std::optional<ApiError> shed = co_await enter_pool(ctx, x, parsed);
    if (shed) {  // (counted in tg_queue_timeouts_total by the pool)
      s.stop_watching();
      co_return co_await s.send_error(x, *shed);
    }
    reply = co_await up.send(ureq, sink);
  } catch (const upstream::ClientGone&) {
  } catch (const boost::system::system_error& e) {
    if (e.code() != net::error::operation_aborted) {
      s.stop_watching();
      throw;
    }
  }
  s.stop_watching();
  if (!reply) {  // the client left first: the upstream call was cancelled
    x.client_gone = true;
    if (!x.status) x.status = 499;
    x.error_code = "client_closed_request";
    ctx.metrics.stats.client_disconnects_total.fetch_add(1);
    ctx.metrics.stats.upstream_cancelled_total.fetch_add(1);
    s.close_after_response();
    co_return;
  }
  x.upstream_status = reply->status;
  if (reply->transport_error) {
    const ApiError& e = *reply->transport_error;
    ctx.metrics.record_upstream_error(x.deployment, e.code);
    if (!reply->streamed) co_return co_await s.send_error(x, e);
    // Headers are gone: say it in-band, as OpenAI streams do, then end.
    x.error_code = e.code;
    std::string ev;
    api::append_sse_data(ev, api::error_body(e));
    try {
      co_await s.stream_chunk(x, ev);
      co_await s.end_stream(x);
    } catch (const upstream::ClientGone&) {
      x.client_gone = true;
    }
    s.close_after_response();
    co_return;
  }
  if (reply->streamed) {
    remember_stream(ctx, x, parsed);
    try {
      co_await s.end_stream(x);
    } catch (const upstream::ClientGone&) {
      x.client_gone = true;
    }
    co_return;
  }
  if (reply->status < 200 || reply->status >= 300) {
    const ApiError e = map_upstream_status(reply->status, reply->body, x.deployment);
    ctx.metrics.record_upstream_error(x.deployment, fmt::format("http_{}", reply->status));
    co_return co_await s.send_error(x, e);
  }
  x.usage = api::usage_of_body(reply->body);
  remember_answer(ctx, x, parsed, reply->body);
  co_await s.send_json(x, reply->status, reply->body);
}

ApiError method_not_allowed(const std::string& method, const std::string& path, const char* allow) {
  return ApiError{405, "invalid_request_error", "method_not_allowed",
                  fmt::format("{} is not allowed on {}; use {}.", method, path, allow), allow};
}

}  // namespace

net::awaitable<std::string> on_admin_thread(WorkerContext& ctx, const std::function<void()>& query) {
  std::string failure;
  auto work = [&]() -> net::awaitable<void> {
    try {
      query();
    } catch (const std::exception& e) {
      failure = e.what();
    }
    co_return;
  };
  co_await net::co_spawn(ctx.admin_executor, work, net::use_awaitable);
  co_return failure;
}

// The admin API's authentication: the admin key, never a tenant key.
std::optional<ApiError> check_admin_key(const WorkerContext& ctx, const Request& req) {
  const std::string_view auth = req[http::field::authorization];
  if (auth.empty()) return authentication_error("The admin API needs the admin key as 'Authorization: Bearer <key>'.", "missing_api_key");
  const std::optional<std::string_view> key = identity::bearer_token(auth);
  if (!key)
    return authentication_error("The Authorization header must be 'Bearer <admin key>'.", "invalid_authorization_header");
  const Sha256 h = identity::sha256(*key);
  bool admin = false;
  for (const auto& k : ctx.config.admin_keys) admin = admin || k == h;
  if (!admin && ctx.keys.authenticate(auth, "").ok())
    return permission_error("This is a tenant key; the admin API needs an admin key (admin.key_sha256).", "admin_key_required");
  if (!admin) return authentication_error("Incorrect admin key.");
  return std::nullopt;
}

namespace {

// The body of PUT /admin/limits/{scope}: the fields of a `limits:` block,
// each a number (the cap), {"rate": R, "ceil": C}, or null (no limit);
// absent fields are none. Every field null removes all of the scope's limits
// (a body that sets no limit otherwise is refused by the store).
Expected<limits::LimitsUpdate> parse_scope_limits(std::string_view body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object())
    return invalid_request("The body must be a JSON object like {\"requests_per_min\": 120, \"tokens_per_min\": "
                           "{\"rate\": 20000, \"ceil\": 60000}, \"concurrency\": 8}.", {}, "invalid_json");
  ScopeLimits l;
  constexpr std::int64_t kMax = 1'000'000'000;
  auto number = [&](const json::value& n, const std::string& field, std::int64_t& out) -> std::optional<ApiError> {
    if (n.is_int64() && n.as_int64() >= 1 && n.as_int64() <= kMax) { out = n.as_int64(); return std::nullopt; }
    if (n.is_uint64() && n.as_uint64() >= 1 && n.as_uint64() <= kMax) { out = static_cast<std::int64_t>(n.as_uint64()); return std::nullopt; }
    return invalid_request(fmt::format("'{}' must be an integer from 1 to {}.", field, kMax), field, "invalid_value");
  };
  unsigned nulled = 0;  // the fields given as null
  for (const auto& [k, val] : v.as_object()) {
    const std::string key(k);
    const unsigned bit = key == "requests_per_min" ? 1u : key == "tokens_per_min" ? 2u : key == "concurrency" ? 4u : 0u;
    if (bit && val.is_null()) {
      nulled |= bit;
      continue;
    }
    if (key == "concurrency") {
      if (auto e = number(val, key, l.concurrency)) return *e;
      continue;
    }
    RateLimit* r = key == "requests_per_min" ? &l.requests_per_min : key == "tokens_per_min" ? &l.tokens_per_min : nullptr;
    if (!r) return invalid_request(fmt::format("Unknown field '{}' (requests_per_min, tokens_per_min, concurrency).", key), key, "unknown_parameter");
    if (val.is_object()) {
      for (const auto& [rk, rv] : val.as_object()) {
        const std::string f = key + "." + std::string(rk);
        if (rk == "rate") { if (auto e = number(rv, f, r->rate)) return *e; }
        else if (rk == "ceil") { if (auto e = number(rv, f, r->ceil)) return *e; }
        else return invalid_request(fmt::format("Unknown field '{}' (rate, ceil).", f), f, "unknown_parameter");
      }
      if (r->rate && r->ceil && r->rate > r->ceil)
        return invalid_request(fmt::format("'{}.rate' ({}) is above its ceil ({}).", key, r->rate, r->ceil), key + ".rate", "invalid_value");
      if (!r->ceil) r->ceil = r->rate;
    } else if (auto e = number(val, key, r->ceil)) {
      return *e;
    }
  }
  return limits::LimitsUpdate(l, nulled == 7u);
}

// GET /admin/limits/{scope}: a scope's limits, usage and reservations.
// PUT /admin/limits/{scope} with a `limits:` block as JSON: new limits, now.
net::awaitable<void> serve_admin_limits(Session& s, WorkerContext& ctx, Request& req, Exchange& x) {
  x.endpoint = "admin.limits";
  if (auto e = check_admin_key(ctx, req)) co_return co_await s.send_error(x, *e);
  const std::string_view rest = std::string_view(x.path).substr(std::string_view("/admin/limits/").size());
  auto decoded = boost::urls::parse_path(rest);  // views `rest`
  std::string scope;
  if (decoded)
    for (auto seg : *decoded) scope += (scope.empty() ? "" : "/") + seg.decode();
  Expected<std::string> r = std::string();
  if (req.method() == http::verb::get) {
    if (ctx.redis_limits) r = co_await ctx.redis_limits->report_async(scope);
    else r = ctx.limits.report(scope, limits_now());
  } else {
    auto l = parse_scope_limits(req.body());
    if (!l) co_return co_await s.send_error(x, l.error());
    if (ctx.redis_limits) r = co_await ctx.redis_limits->set_limits_async(scope, *l);
    else r = ctx.limits.set_limits(scope, *l, limits_now());
    if (r) spdlog::info("admin: limits of {} set to {}", scope, req.body());
  }
  if (!r) co_return co_await s.send_error(x, r.error());
  co_await s.send_json(x, 200, *r);
}

// GET /admin/usage?group_by=tenant,user&from=&to=&granularity=hour|day&tenant=
// with the admin key; JSON, or CSV for Accept: text/csv. The SQLite query
// runs on the admin thread, never on a worker.
net::awaitable<void> serve_admin_usage(Session& s, WorkerContext& ctx, Request& req, Exchange& x) {
  x.endpoint = "admin.usage";
  std::optional<ApiError> err = check_admin_key(ctx, req);
  meter::UsageQuery q;
  if (!err) {
    auto target = boost::urls::parse_origin_form(req.target());
    if (!target) err = invalid_request("Malformed query string.", {}, "invalid_query");
    for (const auto& param : target ? target->params() : boost::urls::params_view()) {
      std::string k(param.key), v(param.value);
      auto time = [&](std::optional<std::int64_t>& out) {
        out = meter::parse_time(v);
        if (!out) err = invalid_request(fmt::format("Invalid '{}': '{}' is not a date (2026-11-01), a UTC time "
                                                    "(2026-11-01T00:00:00Z) or Unix milliseconds.", k, v), k, "invalid_value");
      };
      if (k == "group_by") {
        for (std::size_t i = 0; i <= v.size();) {
          std::size_t j = std::min(v.find(',', i), v.size());
          if (j > i) q.group_by.push_back(v.substr(i, j - i));
          i = j + 1;
        }
      } else if (k == "from") time(q.from_ms);
      else if (k == "to") time(q.to_ms);
      else if (k == "granularity") q.granularity = v;
      else if (k == "tenant") q.tenant = v;
      else err = invalid_request(fmt::format("Unknown parameter '{}' (group_by, from, to, granularity, tenant).", k), k, "unknown_parameter");
    }
    if (!err)
      if (auto why = meter::validate(q)) err = invalid_request(*why, why->substr(0, why->find(':')), "invalid_value");
    if (!err && ctx.config.metering.ledger_sqlite == "off" && ctx.config.metering.ledger_postgres.empty())
      err = not_found("The ledger is off (metering.ledger_sqlite: off): there is no usage to query.", "ledger_disabled");
  }
  if (err) co_return co_await s.send_error(x, *err);
  std::vector<meter::UsageRow> rows;
  const std::function<void()> query = [&] {
    rows = meter::query_usage({ctx.config.metering.ledger_sqlite, ctx.config.metering.ledger_postgres}, q);
  };
  const std::string failure = co_await on_admin_thread(ctx, query);
  if (!failure.empty()) {
    const ApiError e = server_error("Usage query failed: " + failure, "ledger_error");
    co_return co_await s.send_error(x, e);
  }
  static const std::string kNone;
  if (req[http::field::accept].find("text/csv") != std::string_view::npos) {
    const std::string csv = meter::usage_csv(q, rows);
    co_return co_await s.send(x, 200, "text/csv; charset=utf-8", csv, kNone);
  }
  json::array data;
  for (const auto& r : rows) {
    json::object o;
    for (std::size_t i = 0; i < q.group_by.size(); ++i) o[q.group_by[i]] = r.groups[i];
    if (!q.granularity.empty()) o["period_start_ms"] = r.period_start_ms;
    o["requests"] = r.requests;
    o["prompt_tokens"] = r.prompt_tokens;
    o["completion_tokens"] = r.completion_tokens;
    o["cached_tokens"] = r.cached_tokens;
    o["cost_micros"] = r.cost_micros;
    o["cost_usd"] = meter::format_micros_usd(r.cost_micros);
    data.push_back(std::move(o));
  }
  json::object out;
  out["object"] = "list";
  out["data"] = std::move(data);
  const std::string body = json::serialize(out);
  co_await s.send_json(x, 200, body);
}

// Answers what needs no I/O beyond the reply (health, metrics, models, routing
// errors). Sets *deferred for routes served as coroutines by handle(): the
// inference endpoints (*ep says which) and the admin API.
Answer answer_plain(WorkerContext& ctx, Request& req, Exchange& x, bool* deferred, api::Endpoint* ep) {
  const std::string& p = x.path;
  const auto m = req.method();
  auto get_only = [&]() -> std::optional<ApiError> {
    if (m == http::verb::get) return std::nullopt;
    return method_not_allowed(x.method, p, "GET");
  };
  if (p == "/healthz") {
    if (auto e = get_only()) return {0, {}, {}, e};
    return {200, R"({"status":"ok"})"};
  }
  if (p == "/readyz") {
    if (auto e = get_only()) return {0, {}, {}, e};
    if (ctx.draining.load()) return {503, R"({"status":"draining"})"};
    return {200, R"({"status":"ready"})"};
  }
  if (p == "/metrics") {
    if (auto e = get_only()) return {0, {}, {}, e};
    std::string extra = fmt::format(
        "# HELP tg_sim_cancelled_streams_total Sim streams cut short because the client went away\n"
        "# TYPE tg_sim_cancelled_streams_total counter\ntg_sim_cancelled_streams_total {}\n",
        sim::SimProvider::cancelled_streams.load());
    if (ctx.pools) extra += sched::render_pool_metrics(*ctx.pools);
    if (ctx.redis_limits)
      extra += fmt::format(
          "# HELP tg_limit_store_up 1 while the shared (Redis) limit store answers\n# TYPE tg_limit_store_up gauge\n"
          "tg_limit_store_up {}\n# HELP tg_limit_store_fallbacks_total Requests decided without the shared limit "
          "store (local share or fail closed)\n# TYPE tg_limit_store_fallbacks_total counter\n"
          "tg_limit_store_fallbacks_total {}\n",
          ctx.redis_limits->stats().up.load() ? 1 : 0, ctx.redis_limits->stats().fallbacks.load());
    return {200, ctx.metrics.render(extra), "text/plain; version=0.0.4; charset=utf-8"};
  }
  if (p == "/v1/models" || p.starts_with("/v1/models/")) {
    if (auto e = get_only()) return {0, {}, {}, e};
    return answer_models(ctx, req, x, p.size() > 11 ? p.substr(11) : std::string());
  }
  if (p.starts_with("/admin/limits/")) {
    if (m != http::verb::get && m != http::verb::put) return {0, {}, {}, method_not_allowed(x.method, p, "GET, PUT")};
    *deferred = true;
    return {};
  }
  if (p == "/admin/usage") {
    if (auto e = get_only()) return {0, {}, {}, e};
    *deferred = true;
    return {};
  }
  if (is_admin_cache_path(p)) {
    if (m != http::verb::get && m != http::verb::delete_) return {0, {}, {}, method_not_allowed(x.method, p, "GET, DELETE")};
    *deferred = true;
    return {};
  }
  struct Route { const char* path; api::Endpoint ep; };
  static constexpr Route kRoutes[] = {{"/v1/chat/completions", api::Endpoint::kChatCompletions},
                                      {"/v1/completions", api::Endpoint::kCompletions},
                                      {"/v1/embeddings", api::Endpoint::kEmbeddings}};
  for (const auto& r : kRoutes) {
    if (p != r.path) continue;
    if (m != http::verb::post) return {0, {}, {}, method_not_allowed(x.method, p, "POST")};
    *deferred = true;
    *ep = r.ep;
    return {};
  }
  return {0, {}, {}, not_found(fmt::format("Unknown request URL: {} {}. Please check the URL for typos; "
                                           "tenantgate serves /v1/chat/completions, /v1/completions, "
                                           "/v1/embeddings and /v1/models.", x.method, p),
                               "unknown_url")};
}

}  // namespace

net::awaitable<void> handle(Session& s, WorkerContext& ctx, Request& req, Exchange& x) {
  x.body_bytes = req.body().size();
  bool deferred = false;
  api::Endpoint ep{};
  Answer a = answer_plain(ctx, req, x, &deferred, &ep);
  if (deferred && x.path == "/admin/usage") co_return co_await serve_admin_usage(s, ctx, req, x);
  if (deferred && x.path.starts_with("/admin/limits/")) co_return co_await serve_admin_limits(s, ctx, req, x);
  if (deferred && is_admin_cache_path(x.path)) co_return co_await serve_admin_cache(s, ctx, req, x);
  if (deferred) co_return co_await serve_inference(s, ctx, req, x, ep);
  co_await send_answer(s, x, a);
}

namespace {
// The one ledger row of a request with a valid key. Usage is the upstream's
// when it reported one; otherwise the gateway's own count (the prompt as
// estimated, plus the text actually streamed when a stream was cut short).
meter::LedgerRow ledger_row(const WorkerContext& ctx, const Exchange& x) {
  meter::LedgerRow r;
  r.ts_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch() -
                                                                  (std::chrono::steady_clock::now() - x.start))
                .count();
  r.request_id = x.request_id;
  r.org = x.principal->org;
  r.tenant = x.principal->tenant;
  r.user = x.user;
  r.key_id = x.principal->key_id;
  r.run_id = x.run_id;
  r.feature = x.feature;
  r.model = x.model;
  r.deployment = x.deployment;
  r.endpoint = x.endpoint;
  r.stream = x.stream;
  if (x.usage) {
    r.prompt_tokens = x.usage->prompt_tokens;
    r.completion_tokens = x.usage->completion_tokens;
    r.cached_tokens = x.usage->cached_tokens;
    r.usage_source = "upstream";
  } else if (x.model_config) {
    r.prompt_tokens = x.upstream_status || x.client_gone ? x.prompt_tokens_est : 0;  // nothing reached an engine otherwise
    r.completion_tokens = x.generated.empty() ? 0 : tokenizer_for(ctx, *x.model_config).count(x.generated);
    r.usage_source = "gateway";
  } else {
    r.usage_source = "gateway";
  }
  if (x.cache_status == "hit") r.usage_source = "cache";  // served from the cache: nothing reached an engine
  if (!x.cache_status.empty()) r.cache_status = x.cache_status;
  r.cache = x.cache_audit;
  if (x.model_config) {
    const PriceConfig& p = x.model_config->price;
    r.cost_micros = meter::cost_micros({p.input_per_1m, p.output_per_1m, p.cached_input_per_1m}, r.prompt_tokens,
                                       r.completion_tokens, r.cached_tokens);
  }
  r.status = x.status;
  r.error_code = printable(x.error_code, 64);  // an upstream's code may be anything
  r.ttft_us = x.ttft ? x.ttft->count() : -1;
  r.latency_us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - x.start).count();
  return r;
}
}  // namespace

void settle(WorkerContext& ctx, Exchange& x) {
  static const std::string kNone, kUnknownModel = "_unknown";
  // Metric labels are bounded by the configuration: a tenant id, a configured
  // model alias, or one value for every model the configuration does not know.
  const std::string& tenant = x.principal ? x.principal->tenant : kNone;
  const ModelConfig* known = x.model_config ? x.model_config : x.model.empty() ? nullptr : ctx.config.find_model(x.model);
  const std::string& model = known ? known->alias : x.model.empty() ? kNone : kUnknownModel;
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - x.start).count();
  ctx.metrics.record_request(tenant, model, x.endpoint, x.status, secs);
  if (x.ttft) ctx.metrics.record_ttft(tenant, model, std::chrono::duration<double>(*x.ttft).count());
  if (x.usage) ctx.metrics.record_tokens(tenant, model, x.usage->prompt_tokens, x.usage->completion_tokens);
  ctx.access_log.write(x);
  // A refusal costs its source (limits/refusal_budget.h); one refused unread costs nothing more.
  if (ctx.refusals && x.status >= 400 && x.status < 500 && x.error_code != "too_many_refusals")
    ctx.refusals->charge(refusal_source(x), limits::RefusalBudget::cost(!x.reached_admission, x.body_bytes),
                         seconds_now());
  x.pool_ticket.release(x.usage ? static_cast<std::int64_t>(x.usage->completion_tokens) : -1);
  if (!x.principal || (!ctx.ledger && !x.budget_hold && !x.admission.held())) return;
  meter::LedgerRow row = ledger_row(ctx, x);
  x.admission.settle(static_cast<std::int64_t>(row.prompt_tokens + row.completion_tokens), row.cost_micros,
                     limits_now());
  if (x.budget_hold) {
    auto alerts = ctx.budgets.settle(*x.budget_hold,
                                     {row.cost_micros, static_cast<std::int64_t>(row.prompt_tokens + row.completion_tokens)},
                                     std::chrono::system_clock::now());
    for (const auto& a : alerts) {
      ctx.metrics.stats.budget_soft_alerts_total.fetch_add(1);
      spdlog::warn("budget soft threshold crossed: {} at {} of {} {}", a.scope, a.spent, a.limit, a.unit);
      if (!a.webhook.empty()) {
        json::object alert;
        alert["type"] = "budget.soft_threshold";
        alert["scope"] = a.scope;
        alert["spent"] = a.spent;
        alert["limit"] = a.limit;
        alert["unit"] = a.unit;
        alert["resets_at_ms"] = a.resets_at_ms;
        alert["request_id"] = x.request_id;
        ctx.webhook.post(a.webhook, json::serialize(alert));
      }
    }
  }
  if (ctx.ledger) ctx.ledger->submit(std::move(row));
}

}  // namespace tg::server
