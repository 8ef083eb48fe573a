#include "server/stages/cache.h"

#include <boost/json.hpp>
#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "api/usage.h"
#include "cache/guards.h"
#include "cache/local_embedder.h"
#include "cache/request_facts.h"

namespace tg::server::stages {
namespace net = boost::asio;

namespace {

cache::Policy policy_of(const CacheConfig& c) { return {c.max_temperature, c.prior_turns}; }

// Collects a non-streamed reply; an embeddings call never streams.
struct NoStream final : upstream::StreamSink {
  net::awaitable<void> open() override { co_return; }
  net::awaitable<void> event(std::string_view) override { co_return; }
};

// Semantic matching of a very long prompt is neither useful nor cheap (embedding and the guards'
// scans are linear in it, on this worker): such prompts use the exact tier only, and are never
// shared (the personal-data scan is not run on them either).
constexpr std::size_t kMaxSemanticPromptBytes = 16 << 10;

}  // namespace

void Cache::set_status(CacheState& st, std::string& headers, const char* status) const {
  const std::string_view s(status);
  (s == "hit"    ? stats_.cache_hits_total
   : s == "miss" ? stats_.cache_misses_total
   : s == "bypass" ? stats_.cache_bypasses_total
                   : stats_.cache_refreshes_total)
      .fetch_add(1);
  st.status = status;
  headers += "x-tg-cache: ";
  headers += status;
  headers += "\r\n";
}

// The prompt's embedding: the built-in embedder, or the configured model's
// /v1/embeddings (L2-normalised here). Empty when the upstream fails: the
// request then uses the exact tier only (logged).
net::awaitable<std::vector<float>> Cache::embed(const RequestIdentity& who, const std::string& prompt) const {
  const std::string& embedder = config_.embedder;
  if (embedder == "local") co_return cache::local_embedding(prompt);
  std::vector<float> out;
  auto provider = embedders_.route(embedder, nullptr);
  if (!provider) co_return out;
  boost::json::object body;
  body["model"] = embedder;
  body["input"] = prompt;
  const std::string text = boost::json::serialize(body);
  auto parsed = api::parse_request(api::Endpoint::kEmbeddings, text);
  if (!parsed) co_return out;
  const upstream::UpstreamRequest ureq{&*parsed, who.request_id + "-embed", {}};
  NoStream sink;
  upstream::UpstreamReply reply = co_await (*provider)->send(ureq, sink);
  boost::system::error_code ec;
  boost::json::value v = reply.status == 200 ? boost::json::parse(reply.body, ec) : boost::json::value();
  const boost::json::value* data = v.is_object() ? v.get_object().if_contains("data") : nullptr;
  if (data && data->is_array() && !data->get_array().empty() && data->get_array()[0].is_object())
    if (const auto* e = data->get_array()[0].get_object().if_contains("embedding"); e && e->is_array()) {
      double norm = 0;
      for (const auto& f : e->get_array()) {
        const float c = static_cast<float>(f.is_double()  ? f.get_double()
                                           : f.is_int64() ? static_cast<double>(f.get_int64())
                                                          : 0.0);
        out.push_back(c);
        norm += static_cast<double>(c) * c;
      }
      if (norm > 0)
        for (float& f : out) f = static_cast<float>(f / std::sqrt(norm));
    }
  if (out.empty())
    spdlog::warn("cache: embedder '{}' gave no embedding (status {}): exact tier only for {}", embedder, reply.status,
                 who.request_id);
  stats_.cache_embeddings_total.fetch_add(1);
  co_return out;
}

net::awaitable<Expected<std::optional<std::string>>> Cache::lookup(const Request& head, const RequestIdentity& who,
                                                                   const TenantConfig* t, const api::ParsedRequest& r,
                                                                   CacheState& st, std::string& headers) const {
  if (!store_) co_return std::nullopt;
  const cache::Decision d = cache::decide(r, head["cache-control"], policy_of(config_));
  if (d.mode == cache::Mode::kBypass) {
    set_status(st, headers, "bypass");
    co_return std::nullopt;
  }
  // X-TG-Cache-Namespace: an operator-defined public namespace.
  const PublicNamespace* ns = nullptr;
  if (std::string_view name = head["x-tg-cache-namespace"]; !name.empty()) {
    for (const auto& n : config_.public_namespaces)
      if (n.name == name) ns = &n;
    if (!ns) {
      std::string known;
      for (const auto& n : config_.public_namespaces) known += (known.empty() ? "" : ", ") + n.name;
      co_return invalid_request(
          fmt::format("Unknown X-TG-Cache-Namespace '{}' ({}).", std::string(name),
                      known.empty() ? "this gateway defines no public cache namespace" : "defined: " + known),
          "X-TG-Cache-Namespace", "invalid_header");
    }
  }
  // The request's facts once; its key in each partition it may use (one hash each).
  const cache::RequestFacts facts =
      cache::request_facts(r, policy_of(config_), who.door == "openai" ? std::string_view() : who.door);
  st.key = cache::key_in(facts, who.tenant, who.user, false, {}, who.key_id);
  const bool may_share = (t && t->cache_tenant_scope) || ns;
  // Shared answers (a tenant that opted in, a public namespace) only to prompts without personal data.
  if (may_share && facts.prompt.size() <= kMaxSemanticPromptBytes && !cache::has_personal_data(facts.prompt)) {
    if (t && t->cache_tenant_scope) st.shared_key = cache::key_in(facts, who.tenant, who.user, true);
    if (ns) {
      st.public_key = cache::key_in(facts, who.tenant, who.user, false, ns->name);
      st.public_writer = std::find(ns->writers.begin(), ns->writers.end(), who.tenant) != ns->writers.end();
    }
  }
  if (config_.semantic && !st.key->prompt.empty() && st.key->prompt.size() <= kMaxSemanticPromptBytes) {
    std::vector<float> v = co_await embed(who, st.key->prompt);
    if (st.shared_key) st.shared_key->embedding = v;
    if (st.public_key) st.public_key->embedding = v;
    st.key->embedding = std::move(v);
  }
  if (d.mode == cache::Mode::kRefresh) {
    set_status(st, headers, "refresh");
    co_return std::nullopt;
  }
  // Each namespace's threshold: the public namespace's, the tenant's, or the cache's.
  auto threshold_of = [&](const cache::Key* k) {
    if (!config_.semantic) return 2.0f;  // no semantic hits
    const bool in_public = st.public_key && k == &*st.public_key;
    if (in_public && ns->threshold > 0) return static_cast<float>(ns->threshold);
    if (!in_public && t && t->cache_threshold > 0) return static_cast<float>(t->cache_threshold);
    return static_cast<float>(config_.threshold);
  };
  const double now = clock_.steady_s();
  std::optional<cache::Hit> hit;
  const cache::Key* found_in = nullptr;
  for (const auto* k : {st.public_key ? &*st.public_key : nullptr, st.shared_key ? &*st.shared_key : nullptr,
                        &*st.key}) {
    if (!k) continue;
    const cache::Key* probe = k;
    cache::Key no_exact;  // with the exact tier off, a copy whose exact digest matches nothing
    if (!config_.exact) {
      no_exact = *k;
      no_exact.exact.clear();
      probe = &no_exact;
    }
    const float threshold = threshold_of(k);
    cache::LookupResult res = store_->lookup(*probe, threshold, now, static_cast<float>(config_.verify_lexical));
    if (res.near_miss && res.near_miss->similarity >= threshold && !res.near_miss->guards.pass())
      stats_.cache_guard_rejections_total.fetch_add(1);
    if (res.hit) {
      hit = std::move(res.hit);
      found_in = k;
      break;
    }
  }
  if (!hit) {
    set_status(st, headers, "miss");
    co_return std::nullopt;
  }
  set_status(st, headers, "hit");
  st.audit = {"hit",
              hit->entry_ref,
              found_in->partition,
              found_in->scope,
              hit->origin_request_id,
              0,
              hit->similarity,
              hit->threshold,
              hit->exact ? "exact"
                         : fmt::format("entities={} polarity={}", hit->guards.entities_match ? "match" : "differ",
                                       hit->guards.polarity_match ? "match" : "differ")};
  co_return std::move(hit->body);
}

void Cache::store(CacheState& st, const RequestIdentity& who, std::string body, std::string_view answer_text) const {
  // A public or shared (tenant) entry only when the answer holds no personal data either.
  const bool may_share = (st.public_key && st.public_writer) || st.shared_key;
  const bool personal = may_share && cache::has_personal_data(answer_text);
  const bool in_public = st.public_key && st.public_writer && !personal;
  const bool shared = st.shared_key && !personal;
  const cache::Key& k = in_public ? *st.public_key : shared ? *st.shared_key : *st.key;
  cache::Key stored = k;
  if (!config_.semantic) stored.embedding.clear();
  const std::uint64_t id = store_->insert(stored, std::move(body), who.request_id, clock_.steady_s());
  stats_.cache_writes_total.fetch_add(1);
  if (replica_)
    if (auto e = store_->entry(id)) replica_->put(*e);
  st.audit = {"write", "ce_" + who.request_id, stored.partition, stored.scope, who.request_id,
              clock_.wall_ms() + static_cast<std::int64_t>(config_.ttl_s * 1000), 0, 0, ""};
}

void Cache::remember_answer(CacheState& st, const RequestIdentity& who, std::string_view body) const {
  if (!store_ || !st.key || st.status == "hit") return;
  const cache::Answer a = cache::read_answer(body);
  if (a.storable) store(st, who, std::string(body), a.text);
}

void Cache::remember_stream(CacheState& st, const RequestIdentity& who, const api::ParsedRequest& r,
                            const std::optional<api::Usage>& usage) const {
  if (!store_ || !st.key || st.status == "hit") return;
  const bool chat = r.endpoint == api::Endpoint::kChatCompletions;
  std::string body = api::completion_from_capture(st.capture, chat, usage,
                                                  (chat ? "chatcmpl-" : "cmpl-") + who.request_id, clock_.wall_ms() / 1000);
  if (body.empty()) return;
  std::string text;
  for (const auto& [idx, t] : st.capture.text) text += t;
  store(st, who, std::move(body), text);
}

}  // namespace tg::server::stages
