// cache_bench: what the response cache costs on the request path, on one
// core: building a request's key (canonical digest + partition), embedding
// its prompt with the built-in embedder, and a lookup (exact hit, semantic
// hit, miss) in a partition of 1,000 and 10,000 entries (HNSW), plus inserts.
// Prints microseconds per operation; never fails.
#include <fmt/format.h>

#include <chrono>
#include <random>
#include <string>
#include <vector>

#include "api/request.h"
#include "cache/local_embedder.h"
#include "cache/request_facts.h"
#include "cache/store.h"

using namespace tg::cache;
using Clock = std::chrono::steady_clock;

template <class F>
double us_per_op(int n, F&& f) {
  const auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) f(i);
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / n;
}

std::string question(std::mt19937& rng) {
  static const char* w[] = {"how", "do", "I", "reset", "my", "password", "account", "billing", "address", "change",
                            "order", "refund", "shipping", "cost", "delivery", "invoice", "plan", "upgrade", "team",
                            "export", "data", "report", "monthly", "usage", "limit", "api", "key", "rotate", "error",
                            "timeout", "latency", "region", "backup", "restore", "database", "cluster", "node"};
  std::string q;
  const int n = 8 + static_cast<int>(rng() % 10);
  for (int i = 0; i < n; ++i) q += std::string(i ? " " : "") + w[rng() % (sizeof w / sizeof *w)];
  return q + "?";
}

int main() {
  std::mt19937 rng(1);
  const std::string body =
      R"({"model":"sim-chat","temperature":0.2,"messages":[{"role":"system","content":"You are a helpful support agent for ACME."},{"role":"user","content":"How do I reset my password for the billing portal?"}]})";
  auto parsed = tg::api::parse_request(tg::api::Endpoint::kChatCompletions, body);
  fmt::print("per request (one core):\n");
  fmt::print("  key (canonical digest + partition)   {:8.2f} us\n",
             us_per_op(20000, [&](int) { (void)make_key(*parsed, "acme", "alice", false, {}); }));
  fmt::print("  built-in embedding (256 dims)        {:8.2f} us\n",
             us_per_op(20000, [&](int) { (void)local_embedding("How do I reset my password for the billing portal?"); }));
  for (int size : {1000, 10000}) {
    CacheStore store({});
    std::vector<Key> keys;
    for (int i = 0; i < size; ++i) {
      Key k{"p", fmt::format("x{}", i), "acme", "alice", "user:alice", question(rng), {}};
      k.embedding = local_embedding(k.prompt);
      keys.push_back(k);
    }
    const double ins = us_per_op(size, [&](int i) { store.insert(keys[i], "{\"answer\":\"...\"}", fmt::format("r{}", i), 0); });
    const double exact = us_per_op(20000, [&](int i) { (void)store.lookup(keys[i % size], 0.9f, 1); });
    const double sem = us_per_op(5000, [&](int i) {
      Key k = keys[i % size];
      k.exact = "none";  // not the exact entry: through the index (the vector is an entry's own: a hit)
      (void)store.lookup(k, 0.9f, 1);
    });
    std::vector<Key> fresh;
    for (int i = 0; i < 1000; ++i) {
      Key k{"p", "none", "acme", "alice", "user:alice", question(rng), {}};
      k.embedding = local_embedding(k.prompt);
      fresh.push_back(k);
    }
    const double miss = us_per_op(5000, [&](int i) { (void)store.lookup(fresh[i % 1000], 0.9f, 1); });
    fmt::print("partition of {:>6} entries: insert {:7.2f} us, exact hit {:6.2f} us, semantic hit {:6.2f} us, "
               "semantic miss {:6.2f} us\n", size, ins, exact, sem, miss);
  }
  return 0;
}
