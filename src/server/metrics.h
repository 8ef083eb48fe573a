// Metrics: the gateway's own request, token, limit and edge metrics,
// declared here and rendered in the Prometheus text format (version 0.0.4) by
// render(). Other components render their families themselves and /metrics
// appends them (server/endpoints.cpp): the pools' tg_pool_* and tg_queue_*
// (sched/live_pool.cpp), the Redis limit store's, the sim's.
// Thread-safe: scalar stats are atomics; labelled families take a mutex once
// per request (at settle), never per byte.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>

namespace tg::server {

// name, help
#define TG_ALL_GATEWAY_STATS(COUNTER, GAUGE)                                                      \
  COUNTER(connections_accepted_total, "Client TCP connections accepted")                           \
  COUNTER(client_timeouts_total, "Client connections closed for a header, body, idle or write timeout") \
  COUNTER(client_disconnects_total, "Requests whose client went away before the response ended")  \
  COUNTER(bodies_too_large_total, "Requests rejected with 413 for their body size")                \
  COUNTER(upstream_cancelled_total, "Upstream requests cancelled because the client went away")    \
  COUNTER(budget_rejections_total, "Requests refused with 429 budget_exceeded")                     \
  COUNTER(refusal_budget_rejections_total, "Requests refused unread: their key or address spent its refusal budget") \
  COUNTER(budget_soft_alerts_total, "Budgets whose spend crossed their soft threshold this period")  \
  COUNTER(cache_hits_total, "Requests answered from the response cache")                          \
  COUNTER(cache_misses_total, "Cache lookups that found nothing (or nothing the guards let through)") \
  COUNTER(cache_bypasses_total, "Requests the cache did not touch (no-store, temperature, embeddings)") \
  COUNTER(cache_refreshes_total, "Requests with Cache-Control: no-cache (answer rewritten)")      \
  COUNTER(cache_writes_total, "Answers stored in the response cache")                           \
  COUNTER(cache_guard_rejections_total, "Semantic candidates above the threshold turned away by the guards") \
  COUNTER(cache_embeddings_total, "Prompt embeddings asked of an upstream embedder")             \
  GAUGE(requests_in_flight, "Requests being processed now")                                       \
  GAUGE(connections_open, "Client connections open now")

struct GatewayStats {
#define TG_DECLARE_STAT(name, help) std::atomic<std::int64_t> name{0};
  TG_ALL_GATEWAY_STATS(TG_DECLARE_STAT, TG_DECLARE_STAT)
#undef TG_DECLARE_STAT
};

class Metrics {
 public:
  GatewayStats stats;

  // One finished request. `tenant`/`model` may be empty (rejected before
  // authentication or parsing); they are exported as "" then.
  void record_request(const std::string& tenant, const std::string& model, const std::string& endpoint,
                      int status, double seconds);
  void record_ttft(const std::string& tenant, const std::string& model, double seconds);
  void record_tokens(const std::string& tenant, const std::string& model, std::uint64_t prompt,
                     std::uint64_t completion);
  void record_upstream_error(const std::string& deployment, const std::string& code);
  void record_limit_rejection(const std::string& tenant, const std::string& code);

  // `extra` is appended verbatim (other components' metric text).
  std::string render(const std::string& extra = {}) const;

  static constexpr std::array<double, 15> kBuckets{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                   0.5,   1,      2.5,   5,    10,    30,   120};

 private:
  struct Histogram {
    std::array<std::uint64_t, kBuckets.size()> counts{};
    std::uint64_t count = 0;
    double sum = 0;
    void observe(double v);
  };
  mutable std::mutex mu_;
  // Transparent comparators: lookups use string_view tuples and allocate
  // only when a new label set first appears.
  using Key2 = std::tuple<std::string, std::string>;
  using Key3 = std::tuple<std::string, std::string, std::string>;
  using Key4 = std::tuple<std::string, std::string, std::string, int>;
  template <class K, class V>
  using Family = std::map<K, V, std::less<>>;
  Family<Key4, std::uint64_t> requests_;
  Family<Key2, Histogram> latency_;
  Family<Key2, Histogram> ttft_;
  Family<Key3, std::uint64_t> tokens_;
  Family<Key2, std::uint64_t> upstream_errors_;
  Family<Key2, std::uint64_t> limit_rejections_;
};

}  // namespace tg::server
