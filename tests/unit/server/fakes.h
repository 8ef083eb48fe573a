// Fakes for the request path's stage tests: a recording Responder, a
// scripted upstream Provider, a recording ledger sink, and helpers to build
// requests and configs and to run a coroutine to completion. Header-only;
// each test file includes it.
#pragma once

#include <gtest/gtest.h>

#include "core/request_identity.h"

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/verb.hpp>
#include <fmt/format.h>
#include <initializer_list>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "core/config_load.h"
#include "identity/keys.h"
#include "ledger/ledger.h"
#include "server/handler.h"
#include "server/responder.h"
#include "upstream/provider.h"

namespace tg::server::testing {

namespace net = boost::asio;
namespace http = boost::beast::http;

// ---- running coroutines ---------------------------------------------------

// Runs `a` on a fresh io_context until it completes; rethrows what it threw.
template <class T>
T run_sync(net::awaitable<T> a) {
  net::io_context ioc;
  std::optional<T> out;
  net::co_spawn(
      ioc, [&]() -> net::awaitable<void> { out.emplace(co_await std::move(a)); },
      [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
      });
  ioc.run();
  if (!out) throw std::runtime_error("run_sync: the coroutine did not complete");
  return std::move(*out);
}

inline void run_sync(net::awaitable<void> a) {
  net::io_context ioc;
  bool done = false;
  net::co_spawn(
      ioc,
      [&]() -> net::awaitable<void> {
        co_await std::move(a);
        done = true;
      },
      [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
      });
  ioc.run();
  if (!done) throw std::runtime_error("run_sync: the coroutine did not complete");
}

// ---- requests -------------------------------------------------------------

using Headers = std::initializer_list<std::pair<std::string, std::string>>;

// A request as the session hands it to the path: method, target, headers,
// string body, Content-Type (empty: none).
inline Request make_request(std::string_view method, std::string_view target, std::string body,
                            Headers headers = {}, std::string content_type = "application/json") {
  Request req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, "gateway.test");
  if (!content_type.empty()) req.set(http::field::content_type, content_type);
  for (const auto& [k, v] : headers) req.set(k, v);
  req.body() = std::move(body);
  req.prepare_payload();
  return req;
}

// The secrets of the keys in test_config().
// alice of tenant acme (org demo, her own key), asking for `chat` on `chat-up`.
inline RequestIdentity alice(std::string door = "openai", std::string request_id = "req-1",
                             std::string deployment = "chat-up") {
  RequestIdentity w;
  w.request_id = std::move(request_id);
  w.org = "demo";
  w.tenant = "acme";
  w.user = "alice";
  w.key_id = "acme-alice";
  w.model = "chat";
  w.deployment = std::move(deployment);
  w.door = std::move(door);
  return w;
}

inline constexpr const char* kAliceKey = "tg-test-acme-alice";      // user-bound (alice)
inline constexpr const char* kServiceKey = "tg-test-acme-service";  // tenant key (no user)
inline constexpr const char* kGlobexKey = "tg-test-globex-carol";   // user-bound (carol at globex)

inline std::string hex_of(const char* secret) { return identity::to_hex(identity::sha256(secret)); }

// Loads `yaml`; a problem fails the test.
inline Config load(const std::string& yaml) {
  auto r = load_config(yaml, "test.yaml", [](const std::string&) { return std::optional<std::string>(); });
  if (auto* p = std::get_if<ConfigProblems>(&r)) {
    ADD_FAILURE() << p->joined();
    return Config{};
  }
  return std::get<Config>(std::move(r));
}

// A small gateway: one org, model `chat` (o200k, 1,000-token window, $1 / $2
// per 1M tokens) served by deployment `chat-up`, tenants acme (alice, bob;
// a user-bound and a tenant key) and globex (carol). `top` is YAML added at
// the top level (server:, limits:, cache:, budgets: ...); `acme_extra` lines
// inside tenant acme (indented 4 spaces).
inline Config test_config(const std::string& top = "", const std::string& acme_extra = "") {
  const std::string yaml = fmt::format(R"(
metering: {{ ledger_sqlite: "off" }}
{}
orgs: [{{ id: demo }}]
models:
  - alias: chat
    encoding: o200k_base
    context_tokens: 1000
    price: {{ input_per_1m: "1.00", output_per_1m: "2.00" }}
    deployments: [{{ id: chat-up, provider: sim }}]
tenants:
  - id: acme
    org: demo
    users: [alice, bob]
    keys:
      - {{ id: acme-alice, user: alice, sha256: {} }}
      - {{ id: acme-service, sha256: {} }}
{}
  - id: globex
    org: demo
    users: [carol]
    keys:
      - {{ id: globex-carol, user: carol, sha256: {} }}
)",
                                       top, hex_of(kAliceKey), hex_of(kServiceKey), acme_extra, hex_of(kGlobexKey));
  return load(yaml);
}

inline const char* kChatBody = R"({"model":"chat","messages":[{"role":"user","content":"Hello"}],"max_tokens":16})";

// ---- the Responder --------------------------------------------------------

// Records what the path writes. Can be told to throw ClientGone on a stream
// write (begin_stream, or the n-th stream_chunk), as Session does when the
// client is gone. Records whether x.settled was already true when the
// answer's last bytes went out (send, or end_stream).
class RecordingResponder final : public Responder {
 public:
  // send()
  int sends = 0;
  int status = 0;
  std::string content_type, body, extra;  // `extra`: the send's own header lines
  std::string stage_headers;              // x.extra_headers at the last bytes
  // streams
  bool began = false;
  std::vector<std::string> chunks;
  int ends = 0;
  // the last bytes
  std::optional<bool> settled_at_last_bytes;
  // the rest
  int watches = 0, stops = 0;
  bool close_after = false;

  // Failures to play.
  bool throw_on_begin = false;
  int throw_on_chunk = -1;  // the index of the stream_chunk call that throws; -1: none
  bool fail_send = false;   // send() fails as a dead socket does: sets x.client_gone

  std::string stream_bytes() const {
    std::string s;
    for (const auto& c : chunks) s += c;
    return s;
  }

  net::awaitable<void> send(Exchange& x, int st, std::string_view ct, const std::string& b,
                            const std::string& extra_headers) override {
    ++sends;
    settled_at_last_bytes = x.settled;
    x.status = st;
    if (fail_send) {
      x.client_gone = true;
      co_return;
    }
    status = st;
    content_type = std::string(ct);
    body = b;
    extra = extra_headers;
    stage_headers = x.extra_headers;
    co_return;
  }
  net::awaitable<void> begin_stream(Exchange& x) override {
    if (throw_on_begin) throw upstream::ClientGone();
    began = true;
    x.status = 200;
    co_return;
  }
  net::awaitable<void> stream_chunk(Exchange&, std::string_view bytes) override {
    if (throw_on_chunk >= 0 && static_cast<int>(chunk_calls_++) == throw_on_chunk) throw upstream::ClientGone();
    chunks.emplace_back(bytes);
    co_return;
  }
  net::awaitable<void> end_stream(Exchange& x) override {
    ++ends;
    settled_at_last_bytes = x.settled;
    stage_headers = x.extra_headers;
    co_return;
  }
  void watch_disconnect() override { ++watches; }
  void stop_watching() override { ++stops; }
  void close_after_response() override { close_after = true; }
  unsigned char* json_arena() override { return arena_.data(); }

 private:
  std::size_t chunk_calls_ = 0;
  alignas(16) std::array<unsigned char, kJsonArenaBytes> arena_{};
};

// ---- the Provider ---------------------------------------------------------

// An upstream deployment that plays a script: a whole reply; or a stream
// (open, each event, then optionally a transport error: the stream cut);
// or a transport error before any byte. Records each request it was sent.
class ScriptedProvider final : public upstream::Provider {
 public:
  struct Script {
    int status = 200;
    std::string body;                           // a whole reply
    std::optional<std::vector<std::string>> events;  // a stream: these data payloads
    std::optional<ApiError> transport_error;   // before any byte, or after the events
  };

  explicit ScriptedProvider(const DeploymentConfig& d) : d_(d) {}

  Script script;
  int calls = 0;
  std::string last_request_id, last_traceparent, last_model;

  void reply(int status, std::string body) { script = Script{status, std::move(body), std::nullopt, std::nullopt}; }
  void stream(std::vector<std::string> events, std::optional<ApiError> cut = std::nullopt) {
    script = Script{200, {}, std::move(events), std::move(cut)};
  }
  void fail(ApiError e) { script = Script{0, {}, std::nullopt, std::move(e)}; }

  net::awaitable<upstream::UpstreamReply> send(const upstream::UpstreamRequest& req,
                                               upstream::StreamSink& sink) override {
    ++calls;
    last_request_id = req.request_id;
    last_traceparent = req.traceparent;
    last_model = req.parsed ? req.parsed->model : "";
    upstream::UpstreamReply r;
    if (script.events) {
      co_await sink.open();
      r.streamed = true;
      r.status = 200;
      for (const auto& e : *script.events) co_await sink.event(e);
      r.transport_error = script.transport_error;
      co_return r;
    }
    if (script.transport_error) {
      r.transport_error = script.transport_error;
      co_return r;
    }
    r.status = script.status;
    r.body = script.body;
    co_return r;
  }
  const DeploymentConfig& deployment() const override { return d_; }

 private:
  const DeploymentConfig& d_;
};

// ---- the ledger -----------------------------------------------------------

// A ledger that keeps its rows in memory (read after LedgerWriter::flush()).
class RecordingLedger final : public ledger::LedgerSink {
 public:
  void write(const std::vector<ledger::LedgerRow>& rows) override {
    std::lock_guard lock(mu_);
    rows_.insert(rows_.end(), rows.begin(), rows.end());
  }
  std::vector<ledger::LedgerRow> rows() const {
    std::lock_guard lock(mu_);
    return rows_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<ledger::LedgerRow> rows_;
};

// ---- upstream bodies ------------------------------------------------------

inline std::string completion_body(std::string_view text, int prompt_tokens, int completion_tokens,
                                   std::string_view finish = "stop") {
  return fmt::format(
      R"({{"id":"chatcmpl-up","object":"chat.completion","created":1,"model":"chat-up",)"
      R"("choices":[{{"index":0,"message":{{"role":"assistant","content":"{}"}},"finish_reason":"{}"}}],)"
      R"("usage":{{"prompt_tokens":{},"completion_tokens":{},"total_tokens":{}}}}})",
      text, finish, prompt_tokens, completion_tokens, prompt_tokens + completion_tokens);
}

inline std::string chunk_text(std::string_view text) {
  return fmt::format(R"({{"id":"chatcmpl-up","object":"chat.completion.chunk","created":1,"model":"chat-up",)"
                     R"("choices":[{{"index":0,"delta":{{"content":"{}"}},"finish_reason":null}}]}})",
                     text);
}

inline std::string chunk_finish(std::string_view finish = "stop") {
  return fmt::format(R"({{"id":"chatcmpl-up","object":"chat.completion.chunk","created":1,"model":"chat-up",)"
                     R"("choices":[{{"index":0,"delta":{{}},"finish_reason":"{}"}}]}})",
                     finish);
}

inline std::string chunk_usage(int prompt_tokens, int completion_tokens) {
  return fmt::format(R"({{"id":"chatcmpl-up","object":"chat.completion.chunk","created":1,"model":"chat-up",)"
                     R"("choices":[],"usage":{{"prompt_tokens":{},"completion_tokens":{},"total_tokens":{}}}}})",
                     prompt_tokens, completion_tokens, prompt_tokens + completion_tokens);
}

}  // namespace tg::server::testing
