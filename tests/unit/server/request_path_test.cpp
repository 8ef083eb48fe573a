// server/request_path.h: the whole inference path, stage after stage, with
// a recording Responder and scripted upstreams behind a real Router. Every
// request is settled exactly once, before its answer's last bytes.
#include "server/request_path.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <map>

#include "fakes.h"

namespace tg::server {
namespace {

using namespace tg::server::testing;

// One worker's path and everything it is built from.
class World {
 public:
  explicit World(const std::string& top = "", const std::string& acme_extra = "")
      : config(test_config("server: { access_log: \"off\" }\n" + top, acme_extra)) {
    auto sink = std::make_unique<RecordingLedger>();
    ledger_rows = sink.get();
    ledger = std::make_unique<ledger::LedgerWriter>(std::move(sink), "", 1024, std::chrono::milliseconds(1));
    path = std::make_unique<RequestPath>(PathDeps{config, keys, router, metrics, access_log, draining, ledger.get(),
                                                  budgets, webhook, *limits, nullptr, &refusals, &pools, nullptr,
                                                  nullptr, admin_ioc.get_executor(), {}, clock});
  }

  // A pool of one sequence for `deployment` (fair admission).
  void add_pool(const std::string& deployment) {
    PoolSettings ps;
    ps.enabled = true;
    ps.max_seqs = 1;
    pools[deployment] = std::make_unique<sched::LivePool>(deployment, ps, config.scheduling, config.tenants);
  }

  // The session's part: judge the head, then serve or refuse.
  Exchange serve(RecordingResponder& out, Request req, std::string ip = "10.0.0.1") {
    Exchange x;
    x.start = std::chrono::steady_clock::now();
    x.who.request_id = fmt::format("req-{}", ++served);
    x.method = std::string(req.method_string());
    const std::string target(req.target());
    x.path = target.substr(0, target.find('?'));
    x.client_ip = std::move(ip);
    if (auto refusal = path->judge_head(req, x)) {
      run_sync(path->refuse(out, x, *refusal));
      return x;
    }
    run_sync(path->serve(out, req, x));
    return x;
  }

  std::vector<ledger::LedgerRow> rows() {
    ledger->flush();
    return ledger_rows->rows();
  }
  ScriptedProvider& provider(const std::string& deployment = "chat-up") { return *providers.at(deployment); }

  Config config;
  identity::KeyRing keys{config};
  std::map<std::string, ScriptedProvider*> providers;
  upstream::Router router{config, [this](const DeploymentConfig& d) {
                            auto p = std::make_unique<ScriptedProvider>(d);
                            providers[d.id] = p.get();
                            return p;
                          }};
  Metrics metrics;
  AccessLog access_log{"off"};
  std::atomic<bool> draining{false};
  RecordingLedger* ledger_rows = nullptr;
  std::unique_ptr<ledger::LedgerWriter> ledger;
  meter::BudgetBook budgets{config.budgets};
  net::io_context admin_ioc;
  Webhook webhook{admin_ioc.get_executor()};
  std::unique_ptr<limits::LimitStore> limits = limits::in_process_limit_store(config);
  limits::RefusalBudget refusals{limits::RefusalBudgetSettings{3, 0.1, 64}};
  stages::Queue::Pools pools;
  ManualClock clock;
  std::unique_ptr<RequestPath> path;
  int served = 0;
};

Request chat_request(const std::string& body = kChatBody, const char* key = kAliceKey) {
  Request r = make_request("POST", "/v1/chat/completions", body);
  if (key) r.set(http::field::authorization, std::string("Bearer ") + key);
  return r;
}

Request messages_request(const std::string& body, const char* key = kAliceKey, const char* path = "/v1/messages") {
  Request r = make_request("POST", path, body, {{"anthropic-version", "2023-06-01"}});
  if (key) r.set("x-api-key", key);
  return r;
}

constexpr const char* kStreamBody =
    R"({"model":"chat","stream":true,"max_tokens":16,"messages":[{"role":"user","content":"Hello"}]})";
constexpr const char* kMessagesBody = R"({"model":"chat","max_tokens":16,"messages":[{"role":"user","content":"Hello"}]})";

boost::json::object json_of(const std::string& body) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(body, ec);
  EXPECT_FALSE(ec) << body;
  EXPECT_TRUE(v.is_object()) << body;
  return v.is_object() ? v.get_object() : boost::json::object();
}

TEST(RequestPath, APlainAnswerIs200WithTheUpstreamsBodySettledBeforeItIsWritten) {
  World w("", "    user_limits: { requests_per_min: 100 }");
  w.provider().reply(200, completion_body("Hi there", 8, 3));
  RecordingResponder out;
  const Exchange x = w.serve(out, chat_request());
  EXPECT_EQ(out.sends, 1);
  EXPECT_EQ(out.status, 200);
  EXPECT_EQ(out.content_type, "application/json");
  EXPECT_EQ(out.body, completion_body("Hi there", 8, 3));
  ASSERT_TRUE(out.settled_at_last_bytes.has_value());
  EXPECT_TRUE(*out.settled_at_last_bytes) << "settled after the answer was written";
  EXPECT_NE(out.stage_headers.find("x-ratelimit-limit-requests: 100\r\n"), std::string::npos) << out.stage_headers;
  EXPECT_EQ(out.watches, 1);
  EXPECT_GE(out.stops, 1);
  EXPECT_FALSE(out.began);
  EXPECT_EQ(w.provider().calls, 1);
  EXPECT_EQ(w.provider().last_request_id, x.who.request_id);
  EXPECT_EQ(x.who.tenant, "acme");
  EXPECT_EQ(x.who.user, "alice");
  EXPECT_EQ(x.who.deployment, "chat-up");
  EXPECT_EQ(x.who.door, "openai");
  EXPECT_EQ(x.prompt_tokens_est, 8u);
  EXPECT_FALSE(x.admission.held()) << "the limits were settled";
  const auto rows = w.rows();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].status, 200);
  EXPECT_EQ(rows[0].usage_source, "upstream");
  EXPECT_EQ(rows[0].prompt_tokens, 8u);
  EXPECT_EQ(rows[0].completion_tokens, 3u);
  EXPECT_EQ(rows[0].endpoint, "chat.completions");
  EXPECT_FALSE(rows[0].stream);
  EXPECT_EQ(rows[0].cost_micros, 8 + 6);
  const std::string text = w.metrics.render();
  EXPECT_NE(text.find(R"(tg_requests_total{tenant="acme",model="chat",endpoint="chat.completions",status="200"} 1)"),
            std::string::npos)
      << text;
}

TEST(RequestPath, AStreamIs200EventByEventThenSettledThenEnded) {
  World w;
  w.provider().stream({chunk_text("Hi"), chunk_text(" there"), chunk_finish(), chunk_usage(8, 2), "[DONE]"});
  RecordingResponder out;
  const Exchange x = w.serve(out, chat_request(kStreamBody));
  EXPECT_EQ(out.sends, 0);
  EXPECT_TRUE(out.began);
  EXPECT_EQ(out.ends, 1);
  ASSERT_TRUE(out.settled_at_last_bytes.has_value());
  EXPECT_TRUE(*out.settled_at_last_bytes) << "settled after the stream ended";
  const std::string bytes = out.stream_bytes();
  EXPECT_NE(bytes.find("data: " + chunk_text("Hi") + "\n\n"), std::string::npos) << bytes;
  EXPECT_NE(bytes.find("data: [DONE]\n\n"), std::string::npos) << bytes;
  EXPECT_EQ(bytes.find("\"usage\""), std::string::npos) << "the client did not ask for usage";
  EXPECT_EQ(x.status, 200);
  ASSERT_TRUE(x.usage.has_value());
  const auto rows = w.rows();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_TRUE(rows[0].stream);
  EXPECT_EQ(rows[0].usage_source, "upstream");
  EXPECT_EQ(rows[0].completion_tokens, 2u);
  EXPECT_GE(rows[0].ttft_us, 0);
}

TEST(RequestPath, NoKeyIs401AndNothingRuns) {
  World w;
  RecordingResponder out;
  const Exchange x = w.serve(out, chat_request(kChatBody, nullptr));
  EXPECT_EQ(out.status, 401);
  const auto body = json_of(out.body);
  EXPECT_EQ(body.at("error").at("code").as_string(), "missing_api_key");
  EXPECT_EQ(body.at("error").at("type").as_string(), "authentication_error");
  EXPECT_TRUE(x.settled);
  EXPECT_TRUE(*out.settled_at_last_bytes);
  EXPECT_EQ(x.error_code, "missing_api_key");
  EXPECT_EQ(w.provider().calls, 0);
  EXPECT_TRUE(w.rows().empty()) << "no ledger row without a valid key";
  EXPECT_NE(w.metrics.render().find(R"(endpoint="chat.completions",status="401"} 1)"), std::string::npos);
}

TEST(RequestPath, AnUnknownModelIs404ModelNotFound) {
  World w;
  RecordingResponder out;
  const Exchange x =
      w.serve(out, chat_request(R"({"model":"nope","messages":[{"role":"user","content":"Hello"}]})"));
  EXPECT_EQ(out.status, 404);
  const auto body = json_of(out.body);
  EXPECT_EQ(body.at("error").at("code").as_string(), "model_not_found");
  EXPECT_EQ(w.provider().calls, 0);
  EXPECT_TRUE(*out.settled_at_last_bytes);
  EXPECT_FALSE(x.reached_admission);
  const auto rows = w.rows();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].status, 404);
  EXPECT_EQ(rows[0].error_code, "model_not_found");
  EXPECT_EQ(rows[0].cost_micros, 0);
}

TEST(RequestPath, ALimitRefusalIs429WithRetryAfterAndTheLimitsHeaders) {
  World w("", "    user_limits: { requests_per_min: 1 }");
  w.provider().reply(200, completion_body("Hi", 8, 1));
  RecordingResponder first;
  w.serve(first, chat_request());
  ASSERT_EQ(first.status, 200);
  RecordingResponder out;
  const Exchange x = w.serve(out, chat_request());
  EXPECT_EQ(out.status, 429);
  const auto body = json_of(out.body);
  EXPECT_EQ(body.at("error").at("code").as_string(), "user_rpm_exhausted");
  EXPECT_EQ(body.at("error").at("type").as_string(), "rate_limit_error");
  EXPECT_NE(out.extra.find("Retry-After: "), std::string::npos) << out.extra;
  EXPECT_NE(out.extra.find("x-ratelimit-remaining-requests: 0\r\n"), std::string::npos) << out.extra;
  EXPECT_TRUE(x.reached_admission);
  EXPECT_EQ(w.provider().calls, 1) << "the refused request never reached the upstream";
  EXPECT_TRUE(*out.settled_at_last_bytes);
  EXPECT_EQ(w.rows().size(), 2u);
  EXPECT_NE(w.metrics.render().find(R"(tg_limit_rejections_total{tenant="acme",code="user_rpm_exhausted"} 1)"),
            std::string::npos);
}

TEST(RequestPath, AnUpstream500IsA502) {
  World w;
  w.provider().reply(500, R"({"error":{"message":"engine crashed","type":"server_error"}})");
  RecordingResponder out;
  const Exchange x = w.serve(out, chat_request());
  EXPECT_EQ(out.status, 502);
  EXPECT_EQ(x.upstream_status, 500);
  EXPECT_EQ(x.status, 502);
  EXPECT_TRUE(*out.settled_at_last_bytes);
  const auto rows = w.rows();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].status, 502);
  EXPECT_NE(w.metrics.render().find(R"(tg_upstream_errors_total{deployment="chat-up",code="http_500"} 1)"),
            std::string::npos)
      << w.metrics.render();
}

TEST(RequestPath, ATransportErrorMidStreamIsSaidInBandThenTheStreamEnds) {
  World w;
  w.provider().stream({chunk_text("Hi"), chunk_text(" the")},
                      upstream_error(502, "upstream 'chat-up' closed the stream early", "upstream_stream_cut"));
  RecordingResponder out;
  const Exchange x = w.serve(out, chat_request(kStreamBody));
  EXPECT_TRUE(out.began);
  EXPECT_EQ(out.sends, 0) << "the head is gone: no second answer";
  EXPECT_EQ(out.ends, 1);
  EXPECT_TRUE(*out.settled_at_last_bytes);
  EXPECT_TRUE(out.close_after);
  ASSERT_FALSE(out.chunks.empty());
  EXPECT_NE(out.chunks.back().find("upstream_stream_cut"), std::string::npos) << out.chunks.back();
  EXPECT_EQ(out.chunks.back().rfind("data: {\"error\"", 0), 0u) << out.chunks.back();
  EXPECT_EQ(out.stream_bytes().find("[DONE]"), std::string::npos);
  EXPECT_EQ(x.error_code, "upstream_stream_cut");
  const auto rows = w.rows();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].error_code, "upstream_stream_cut");
  EXPECT_EQ(rows[0].usage_source, "gateway");
  EXPECT_EQ(rows[0].completion_tokens, 2u) << "'Hi the' counted by the gateway";
  EXPECT_NE(w.metrics.render().find(R"(tg_upstream_errors_total{deployment="chat-up",code="upstream_stream_cut"} 1)"),
            std::string::npos);
}

TEST(RequestPath, ATransportErrorBeforeAnyByteIsAnAnswer) {
  World w;
  w.provider().fail(upstream_error(502, "upstream 'chat-up' refused the connection", "upstream_unreachable"));
  RecordingResponder out;
  w.serve(out, chat_request());
  EXPECT_EQ(out.status, 502);
  EXPECT_EQ(json_of(out.body).at("error").at("code").as_string(), "upstream_unreachable");
  EXPECT_TRUE(*out.settled_at_last_bytes);
}

TEST(RequestPath, TheClientLeavingMidStreamIsSettledOnceWithoutAnEnd) {
  World w;
  w.provider().stream({chunk_text("Hi"), chunk_text(" there"), chunk_finish(), "[DONE]"});
  RecordingResponder out;
  out.throw_on_chunk = 2;
  const Exchange x = w.serve(out, chat_request(kStreamBody));
  EXPECT_TRUE(x.settled);
  EXPECT_TRUE(x.client_gone);
  EXPECT_EQ(x.error_code, "client_closed_request");
  EXPECT_EQ(out.ends, 0);
  EXPECT_TRUE(out.close_after);
  EXPECT_EQ(w.metrics.stats.client_disconnects_total.load(), 1);
  const auto rows = w.rows();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].error_code, "client_closed_request");
}

TEST(RequestPath, TheAnthropicDoorAnswersInItsOwnShape) {
  World w;
  w.provider().reply(200, completion_body("Hi there", 8, 3));
  RecordingResponder out;
  const Exchange x = w.serve(out, messages_request(kMessagesBody));
  EXPECT_EQ(out.status, 200);
  const auto body = json_of(out.body);
  EXPECT_EQ(body.at("type").as_string(), "message");
  EXPECT_EQ(body.at("id").as_string(), "msg_" + x.who.request_id);
  EXPECT_EQ(body.at("stop_reason").as_string(), "end_turn");
  EXPECT_EQ(body.at("usage").at("input_tokens").as_int64(), 8);
  EXPECT_EQ(x.who.door, "anthropic");
  EXPECT_NE(out.stage_headers.find("request-id: " + x.who.request_id + "\r\n"), std::string::npos);
  const auto rows = w.rows();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].endpoint, "messages");
}

TEST(RequestPath, TheAnthropicDoorsErrorsAreItsShape) {
  World w;
  RecordingResponder out;
  w.serve(out, messages_request(kMessagesBody, nullptr));
  EXPECT_EQ(out.status, 401);
  const auto body = json_of(out.body);
  EXPECT_EQ(body.at("type").as_string(), "error");
  EXPECT_EQ(body.at("error").at("type").as_string(), "authentication_error");
  EXPECT_FALSE(body.contains("code"));

  RecordingResponder bad;
  w.serve(bad, messages_request(R"({"model":"chat","messages":[{"role":"user","content":"Hello"}]})"));
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(json_of(bad.body).at("error").at("type").as_string(), "invalid_request_error");
}

TEST(RequestPath, AQueueTimeoutOnTheAnthropicDoorIs529Overloaded) {
  World w("scheduling: { interactive_timeout_ms: 50 }");
  w.add_pool("chat-up");
  // The pool's one sequence is taken.
  sched::AdmissionAsk ask;
  ask.who.tenant = "globex";
  ask.who.user = "carol";
  auto held = run_sync(w.pools["chat-up"]->acquire(ask));
  ASSERT_TRUE(held.ok());

  RecordingResponder out;
  const Exchange x = w.serve(out, messages_request(kMessagesBody));
  EXPECT_EQ(out.status, 529);
  const auto body = json_of(out.body);
  EXPECT_EQ(body.at("type").as_string(), "error");
  EXPECT_EQ(body.at("error").at("type").as_string(), "overloaded_error");
  EXPECT_NE(out.extra.find("Retry-After: "), std::string::npos) << out.extra;
  EXPECT_EQ(x.error_code, "queue_timeout");
  EXPECT_EQ(w.provider().calls, 0);
  EXPECT_TRUE(*out.settled_at_last_bytes);
  EXPECT_GE(out.stops, 1) << "stopped watching for a disconnect";

  // The OpenAI door says 503.
  RecordingResponder openai;
  w.serve(openai, chat_request());
  EXPECT_EQ(openai.status, 503);
  EXPECT_EQ(json_of(openai.body).at("error").at("code").as_string(), "queue_timeout");

  // Freed: served, and the ticket given back at settle.
  held = sched::Ticket();
  w.provider().reply(200, completion_body("Hi", 8, 1));
  RecordingResponder served;
  w.serve(served, chat_request());
  EXPECT_EQ(served.status, 200);
  EXPECT_EQ(w.pools["chat-up"]->snapshot().pool.inflight_seqs, 0);
}

TEST(RequestPath, CountTokensAnswersWithoutAdmissionOrUpstream) {
  World w("", "    user_limits: { requests_per_min: 1 }");
  for (int i = 0; i < 3; ++i) {
    RecordingResponder out;
    const Exchange x = w.serve(
        out, messages_request(R"({"model":"chat","messages":[{"role":"user","content":"Hello"}]})", kAliceKey,
                              "/v1/messages/count_tokens"));
    EXPECT_EQ(out.status, 200);
    EXPECT_EQ(out.body, R"({"input_tokens":8})");
    EXPECT_FALSE(x.reached_admission);
    EXPECT_TRUE(*out.settled_at_last_bytes);
  }
  EXPECT_EQ(w.provider().calls, 0);
}

TEST(RequestPath, ASourceThatSpentItsRefusalsIsRefusedUnread) {
  World w;
  for (int i = 0; i < 3; ++i) {
    RecordingResponder out;
    w.serve(out, chat_request(kChatBody, nullptr), "10.6.6.6");
    ASSERT_EQ(out.status, 401);
  }
  RecordingResponder out;
  const Exchange x = w.serve(out, chat_request(kChatBody, nullptr), "10.6.6.6");
  EXPECT_EQ(out.status, 429);
  EXPECT_EQ(json_of(out.body).at("error").at("code").as_string(), "too_many_refusals");
  EXPECT_TRUE(*out.settled_at_last_bytes);
  EXPECT_EQ(w.metrics.stats.refusal_budget_rejections_total.load(), 1);
  // On the Anthropic door, in its shape.
  RecordingResponder an;
  w.serve(an, messages_request(kMessagesBody, nullptr), "10.6.6.6");
  EXPECT_EQ(an.status, 429);
  EXPECT_EQ(json_of(an.body).at("error").at("type").as_string(), "rate_limit_error");
  // Another address is served.
  RecordingResponder other;
  w.serve(other, chat_request(kChatBody, nullptr), "10.7.7.7");
  EXPECT_EQ(other.status, 401);
}

TEST(RequestPath, AUserBoundKeyCannotSpeakForAnotherUser) {
  World w;
  RecordingResponder out;
  Request r = chat_request();
  r.set("X-TG-User", "bob");
  w.serve(out, r);
  EXPECT_EQ(out.status, 403);
  EXPECT_EQ(json_of(out.body).at("error").at("code").as_string(), "user_mismatch");
  EXPECT_EQ(w.provider().calls, 0);
}

}  // namespace
}  // namespace tg::server
