#include "server/cache_stage.h"

#include <boost/json.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "api/sse.h"
#include "api/usage.h"
#include "cache/guards.h"
#include "cache/local_embedder.h"
#include "cache/request_facts.h"
#include "server/session.h"

namespace tg::server {
namespace net = boost::asio;

namespace {

double cache_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

cache::Policy policy_of(const CacheConfig& c) { return {c.max_temperature, c.prior_turns}; }

void set_status(WorkerContext& ctx, Exchange& x, const char* status) {
  const std::string_view st(status);
  auto& m = ctx.metrics.stats;
  (st == "hit" ? m.cache_hits_total : st == "miss" ? m.cache_misses_total : st == "bypass" ? m.cache_bypasses_total
                                                                                           : m.cache_refreshes_total)
      .fetch_add(1);
  x.cache_status = status;
  x.extra_headers += "x-tg-cache: ";
  x.extra_headers += status;
  x.extra_headers += "\r\n";
}

// Collects a non-streamed reply; an embeddings call never streams.
struct NoStream final : upstream::StreamSink {
  net::awaitable<void> open() override { co_return; }
  net::awaitable<void> event(std::string_view) override { co_return; }
};

// The prompt's embedding: the built-in embedder, or the configured model's
// /v1/embeddings (L2-normalised here). Empty when the upstream fails: the
// request then uses the exact tier only (logged).
net::awaitable<std::vector<float>> embed(WorkerContext& ctx, const Exchange& x, const std::string& prompt) {
  const std::string& embedder = ctx.config.cache.embedder;
  if (embedder == "local") co_return cache::local_embedding(prompt);
  std::vector<float> out;
  auto provider = ctx.router.route(embedder, nullptr);
  if (!provider) co_return out;
  boost::json::object body;
  body["model"] = embedder;
  body["input"] = prompt;
  const std::string text = boost::json::serialize(body);
  auto parsed = api::parse_request(api::Endpoint::kEmbeddings, text);
  if (!parsed) co_return out;
  const upstream::UpstreamRequest ureq{&*parsed, x.request_id + "-embed", {}};
  NoStream sink;
  upstream::UpstreamReply reply = co_await (*provider)->send(ureq, sink);
  boost::system::error_code ec;
  boost::json::value v = reply.status == 200 ? boost::json::parse(reply.body, ec) : boost::json::value();
  const boost::json::value* data = v.is_object() ? v.get_object().if_contains("data") : nullptr;
  if (data && data->is_array() && !data->get_array().empty() && data->get_array()[0].is_object())
    if (const auto* e = data->get_array()[0].get_object().if_contains("embedding"); e && e->is_array()) {
      double norm = 0;
      for (const auto& f : e->get_array()) {
        const float c = static_cast<float>(f.is_double() ? f.get_double() : f.is_int64() ? static_cast<double>(f.get_int64()) : 0.0);
        out.push_back(c);
        norm += static_cast<double>(c) * c;
      }
      if (norm > 0)
        for (float& f : out) f = static_cast<float>(f / std::sqrt(norm));
    }
  if (out.empty())
    spdlog::warn("cache: embedder '{}' gave no embedding (status {}): exact tier only for {}", embedder, reply.status,
                 x.request_id);
  ctx.metrics.stats.cache_embeddings_total.fetch_add(1);
  co_return out;
}

}  // namespace

net::awaitable<bool> serve_from_cache(Session& s, WorkerContext& ctx, const Request& req, Exchange& x,
                                      const api::ParsedRequest& parsed) {
  if (!ctx.cache) co_return false;
  const cache::Decision d = cache::decide(parsed, req["cache-control"], policy_of(ctx.config.cache));
  if (d.mode == cache::Mode::kBypass) {
    set_status(ctx, x, "bypass");
    co_return false;
  }
  const TenantConfig* t = x.principal->tenant_config;
  // X-TG-Cache-Namespace: an operator-defined public namespace.
  const PublicNamespace* ns = nullptr;
  if (std::string_view name = req["x-tg-cache-namespace"]; !name.empty()) {
    for (const auto& n : ctx.config.cache.public_namespaces)
      if (n.name == name) ns = &n;
    if (!ns) {
      std::string known;
      for (const auto& n : ctx.config.cache.public_namespaces) known += (known.empty() ? "" : ", ") + n.name;
      const ApiError e = invalid_request(
          fmt::format("Unknown X-TG-Cache-Namespace '{}' ({}).", std::string(name),
                      known.empty() ? "this gateway defines no public cache namespace" : "defined: " + known),
          "X-TG-Cache-Namespace", "invalid_header");
      co_await s.send_error(x, e);
      co_return true;
    }
  }
  // The request's facts once; its key in each partition it may use (one hash each).
  const cache::RequestFacts facts = cache::request_facts(parsed, policy_of(ctx.config.cache));
  x.cache_key = cache::key_in(facts, x.principal->tenant, x.user, false, {}, x.principal->key_id);
  const bool may_share = (t && t->cache_tenant_scope) || ns;
  // Semantic matching of a very long prompt is neither useful nor cheap (embedding and the guards'
  // scans are linear in it, on this worker): such prompts use the exact tier only, and are never
  // shared (the personal-data scan is not run on them either).
  constexpr std::size_t kMaxSemanticPromptBytes = 16 << 10;
  // Shared answers (a tenant that opted in, a public namespace) only to prompts without personal data.
  if (may_share && facts.prompt.size() <= kMaxSemanticPromptBytes && !cache::has_personal_data(facts.prompt)) {
    if (t && t->cache_tenant_scope) x.cache_shared_key = cache::key_in(facts, x.principal->tenant, x.user, true);
    if (ns) {
      x.cache_public_key = cache::key_in(facts, x.principal->tenant, x.user, false, ns->name);
      x.cache_public_writer = std::find(ns->writers.begin(), ns->writers.end(), x.principal->tenant) != ns->writers.end();
    }
  }
  if (ctx.config.cache.semantic && !x.cache_key->prompt.empty() && x.cache_key->prompt.size() <= kMaxSemanticPromptBytes) {
    std::vector<float> v = co_await embed(ctx, x, x.cache_key->prompt);
    if (x.cache_shared_key) x.cache_shared_key->embedding = v;
    if (x.cache_public_key) x.cache_public_key->embedding = v;
    x.cache_key->embedding = std::move(v);
  }
  if (d.mode == cache::Mode::kRefresh) {
    set_status(ctx, x, "refresh");
    co_return false;
  }
  // Each namespace's threshold: the public namespace's, the tenant's, or the cache's.
  auto threshold_of = [&](const cache::Key* k) {
    if (!ctx.config.cache.semantic) return 2.0f;  // no semantic hits
    const bool in_public = x.cache_public_key && k == &*x.cache_public_key;
    if (in_public && ns->threshold > 0) return static_cast<float>(ns->threshold);
    if (!in_public && t && t->cache_threshold > 0) return static_cast<float>(t->cache_threshold);
    return static_cast<float>(ctx.config.cache.threshold);
  };
  const double now = cache_now();
  std::optional<cache::Hit> hit;
  const cache::Key* found_in = nullptr;
  for (const auto* k : {x.cache_public_key ? &*x.cache_public_key : nullptr,
                        x.cache_shared_key ? &*x.cache_shared_key : nullptr, &*x.cache_key}) {
    if (!k) continue;
    const cache::Key* probe = k;
    cache::Key no_exact;  // with the exact tier off, a copy whose exact digest matches nothing
    if (!ctx.config.cache.exact) {
      no_exact = *k;
      no_exact.exact.clear();
      probe = &no_exact;
    }
    const float threshold = threshold_of(k);
    cache::LookupResult r = ctx.cache->lookup(*probe, threshold, now, static_cast<float>(ctx.config.cache.verify_lexical));
    if (r.near_miss && r.near_miss->similarity >= threshold && !r.near_miss->guards.pass())
      ctx.metrics.stats.cache_guard_rejections_total.fetch_add(1);
    if (r.hit) {
      hit = std::move(r.hit);
      found_in = k;
      break;
    }
  }
  if (!hit) {
    set_status(ctx, x, "miss");
    co_return false;
  }
  set_status(ctx, x, "hit");
  x.cache_audit = {"hit", hit->entry_ref, found_in->partition, found_in->scope, hit->origin_request_id, 0, hit->similarity, hit->threshold,
                   hit->exact ? "exact" : fmt::format("entities={} polarity={}", hit->guards.entities_match ? "match" : "differ",
                                                      hit->guards.polarity_match ? "match" : "differ")};
  x.deployment.clear();  // no upstream served it
  const bool chat = parsed.endpoint == api::Endpoint::kChatCompletions;
  const std::string id = (chat ? "chatcmpl-" : "cmpl-") + x.request_id;
  if (!parsed.stream) {
    const std::string body = api::restamp_completion(hit->body, id, unix_now());
    co_await s.send_json(x, 200, body);
    co_return true;
  }
  const auto chunks = api::chunks_from_completion(hit->body, chat, parsed.client_wants_usage, id, unix_now());
  std::string ev;
  try {
    co_await s.begin_stream(x);
    for (const auto& c : chunks) {
      ev.clear();
      api::append_sse_data(ev, c);
      co_await s.stream_chunk(x, ev);
    }
    ev.clear();
    api::append_sse_data(ev, "[DONE]");
    co_await s.stream_chunk(x, ev);
    co_await s.end_stream(x);
  } catch (const upstream::ClientGone&) {
    x.client_gone = true;
  }
  co_return true;
}

namespace {

void store(WorkerContext& ctx, Exchange& x, std::string body, std::string_view answer_text) {
  // A public or shared (tenant) entry only when the answer holds no personal data either.
  const bool may_share = (x.cache_public_key && x.cache_public_writer) || x.cache_shared_key;
  const bool personal = may_share && cache::has_personal_data(answer_text);
  const bool in_public = x.cache_public_key && x.cache_public_writer && !personal;
  const bool shared = x.cache_shared_key && !personal;
  const cache::Key& k = in_public ? *x.cache_public_key : shared ? *x.cache_shared_key : *x.cache_key;
  cache::Key stored = k;
  if (!ctx.config.cache.semantic) stored.embedding.clear();
  const double now = cache_now();
  const std::uint64_t id = ctx.cache->insert(stored, std::move(body), x.request_id, now);
  ctx.metrics.stats.cache_writes_total.fetch_add(1);
  if (ctx.cache_replica)
    if (auto e = ctx.cache->entry(id)) ctx.cache_replica->put(*e);
  const auto wall_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch()).count();
  x.cache_audit = {"write", "ce_" + x.request_id, stored.partition, stored.scope, x.request_id,
                   wall_ms + static_cast<std::int64_t>(ctx.config.cache.ttl_s * 1000), 0, 0, ""};
}


}  // namespace

void remember_answer(WorkerContext& ctx, Exchange& x, const api::ParsedRequest&, std::string_view body) {
  if (!ctx.cache || !x.cache_key || x.cache_status == "hit") return;
  const cache::Answer a = cache::read_answer(body);
  if (a.storable) store(ctx, x, std::string(body), a.text);
}

void remember_stream(WorkerContext& ctx, Exchange& x, const api::ParsedRequest& parsed) {
  if (!ctx.cache || !x.cache_key || x.cache_status == "hit" || x.client_gone) return;
  const bool chat = parsed.endpoint == api::Endpoint::kChatCompletions;
  std::string body = api::completion_from_capture(x.capture, chat, x.usage, (chat ? "chatcmpl-" : "cmpl-") + x.request_id,
                                                  unix_now());
  if (body.empty()) return;
  std::string text;
  for (const auto& [idx, t] : x.capture.text) text += t;
  store(ctx, x, std::move(body), text);
}

}  // namespace tg::server
