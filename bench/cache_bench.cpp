// cache_bench: what the response cache costs, on one core, with distinct
// generated questions embedded by the built-in embedder:
// - per request: building a request's key (canonical digest + partition) and
//   embedding its prompt;
// - a lookup (exact hit, semantic hit, semantic miss) and an insert in one
//   partition of 1,000 and 10,000 entries, and in 10,000 entries spread over
//   1,000 partitions;
// - a partition's search, flat scan against HNSW, at 64 to 4,096 vectors,
//   with how often HNSW's best candidate is the exact one (the choice of
//   StoreLimits::flat_max_vectors);
// - process memory (VmRSS) for 10,000 single-entry partitions, each in a
//   forked child: as the store is now, with an HNSW index per partition
//   (flat_max_vectors 0) under the default bounds, and unbounded (the old
//   store's behaviour, measured on 200 partitions and scaled).
// Lookups: the fastest of three runs. Prints numbers; never fails.
#include <fmt/format.h>
#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "api/request.h"
#include "cache/local_embedder.h"
#include "cache/request_facts.h"
#include "cache/store.h"

using namespace tg::cache;
using Clock = std::chrono::steady_clock;

namespace {

template <class F>
double us_per_op(int n, F&& f) {
  const auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) f(i);
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / n;
}
// The fastest of three runs of a repeatable operation (other processes share the cores).
template <class F>
double best_us_per_op(int n, F&& f) {
  return std::min({us_per_op(n, f), us_per_op(n, f), us_per_op(n, f)});
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

Key semantic_key(std::string partition, std::string exact, std::mt19937& rng) {
  Key k{std::move(partition), std::move(exact), "acme", "alice", "user:alice", question(rng), {}};
  k.embedding = local_embedding(k.prompt);
  return k;
}

const std::string kAnswer =
    R"({"id":"chatcmpl-1","object":"chat.completion","model":"sim-chat","choices":[{"index":0,"message":{"role":"assistant","content":"To reset your password, open Settings, choose Security and follow the link we email you."},"finish_reason":"stop"}],"usage":{"prompt_tokens":31,"completion_tokens":19,"total_tokens":50}})";

std::int64_t rss_kb() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.starts_with("VmRSS:")) return std::stoll(line.substr(6));
  return -1;
}

// Runs `f` in a forked child, so each measurement of memory starts from the same heap.
template <class F>
void in_child(F&& f) {
  std::fflush(stdout);
  if (const pid_t pid = fork(); pid == 0) {
    f();
    std::fflush(stdout);
    _exit(0);
  } else if (pid > 0) {
    waitpid(pid, nullptr, 0);
  }
}

// `n` single-entry partitions, each minted as a user would (a different seed), with distinct prompts. Each
// key is built right before its insert, so what building it frees is reused by the next and not taken
// for the store's.
void partitions_rss(const char* what, StoreLimits limits, int n, int scale_to) {
  std::mt19937 rng(3);
  malloc_trim(0);  // what earlier sections freed leaves RSS, so that reusing it counts again
  const std::int64_t before = rss_kb();
  CacheStore store(limits);
  for (int i = 0; i < n; ++i) {
    const std::string prompt = question(rng);
    const auto req = tg::api::parse_request(
        tg::api::Endpoint::kChatCompletions,
        fmt::format(R"({{"model":"sim-chat","seed":{},"messages":[{{"role":"user","content":"{}"}}]}})", i, prompt));
    Key k = make_key(*req, "acme", i % 2 ? "alice" : "bob", false, {});
    k.embedding = local_embedding(k.prompt);
    store.insert(k, kAnswer, fmt::format("req_{}", i), 0);
  }
  const std::int64_t grew = rss_kb() - before;
  const StoreStats s = store.stats();
  fmt::print("  {:<44} {:>6} inserts: RSS +{:7.1f} MiB ({:6.1f} KiB a partition{}); counted {:7.1f} MiB, "
             "{} partitions ({} indexed), index {:.1f} MiB\n",
             what, n, grew / 1024.0, static_cast<double>(grew) / s.partitions,
             scale_to > n ? fmt::format(", x{} = {:.0f} MiB", scale_to, grew / 1024.0 * scale_to / n) : std::string(),
             s.bytes / 1048576.0, s.partitions, s.indexed_partitions, s.index_bytes / 1048576.0);
}

}  // namespace

int main() {
  std::mt19937 rng(1);
  const std::string body =
      R"({"model":"sim-chat","temperature":0.2,"messages":[{"role":"system","content":"You are a helpful support agent for ACME."},{"role":"user","content":"How do I reset my password for the billing portal?"}]})";
  auto parsed = tg::api::parse_request(tg::api::Endpoint::kChatCompletions, body);
  fmt::print("per request (one core):\n");
  fmt::print("  key (canonical digest + partition)   {:8.2f} us\n",
             best_us_per_op(20000, [&](int) { (void)make_key(*parsed, "acme", "alice", false, {}); }));
  fmt::print("  built-in embedding (256 dims)        {:8.2f} us\n",
             best_us_per_op(20000, [&](int) { (void)local_embedding("How do I reset my password for the billing portal?"); }));

  fmt::print("store, default limits (flat_max_vectors {}):\n", StoreLimits{}.flat_max_vectors);
  for (const auto& [size, partitions] : {std::pair{1000, 1}, {10000, 1}, {10000, 1000}}) {
    CacheStore store({});
    std::vector<Key> keys;
    for (int i = 0; i < size; ++i) keys.push_back(semantic_key(fmt::format("p{}", i % partitions), fmt::format("x{}", i), rng));
    const double ins = us_per_op(size, [&](int i) { store.insert(keys[i], kAnswer, fmt::format("r{}", i), 0); });
    const double exact = best_us_per_op(20000, [&](int i) { (void)store.lookup(keys[i % size], 0.9f, 1); });
    const double sem = best_us_per_op(5000, [&](int i) {
      Key k = keys[i % size];
      k.exact = "none";  // not the exact entry: through the vectors (the vector is an entry's own: a hit)
      (void)store.lookup(k, 0.9f, 1);
    });
    std::vector<Key> fresh;
    for (int i = 0; i < 1000; ++i) fresh.push_back(semantic_key(fmt::format("p{}", i % partitions), "none", rng));
    const double miss = best_us_per_op(5000, [&](int i) { (void)store.lookup(fresh[i % 1000], 0.9f, 1); });
    const StoreStats s = store.stats();
    fmt::print("  {:>6} entries in {:>5} partition(s) ({} indexed): insert {:7.2f} us, exact hit {:6.2f} us, "
               "semantic hit {:6.2f} us, semantic miss {:6.2f} us; {:.1f} MiB counted\n",
               s.entries, s.partitions, s.indexed_partitions, ins, exact, sem, miss, s.bytes / 1048576.0);
  }

  fmt::print("one partition, flat scan against HNSW (search: a semantic miss, 8 candidates, none served; insert: "
             "the average while it grew to that size):\n");
  for (int size : {64, 256, 512, 1024, 2048, 4096}) {
    StoreLimits flat_limits, hnsw_limits;
    flat_limits.flat_max_vectors = std::numeric_limits<std::uint32_t>::max();
    hnsw_limits.flat_max_vectors = 0;
    CacheStore flat(flat_limits), hnsw(hnsw_limits);
    std::vector<Key> keys;
    for (int i = 0; i < size; ++i) keys.push_back(semantic_key("p", fmt::format("x{}", i), rng));
    const double insert_flat = us_per_op(size, [&](int i) { flat.insert(keys[i], kAnswer, fmt::format("r{}", i), 0); });
    const double insert_hnsw = us_per_op(size, [&](int i) { hnsw.insert(keys[i], kAnswer, fmt::format("r{}", i), 0); });
    std::vector<Key> fresh;
    for (int i = 0; i < 1000; ++i) fresh.push_back(semantic_key("p", "none", rng));
    const int n = std::max(2000, 200000 / size);
    const double tf = best_us_per_op(n, [&](int i) { (void)flat.lookup(fresh[i % 1000], 0.99f, 1); });
    const double th = best_us_per_op(n, [&](int i) { (void)hnsw.lookup(fresh[i % 1000], 0.99f, 1); });
    int same = 0;
    for (const Key& k : fresh) {  // (ids match: both stores took the same inserts)
      const auto a = flat.lookup(k, 0.99f, 1), b = hnsw.lookup(k, 0.99f, 1);
      same += a.near_miss && b.near_miss && a.near_miss->entry_id == b.near_miss->entry_id;
    }
    fmt::print("  {:>5} vectors: search flat {:7.2f} us, HNSW {:7.2f} us (HNSW's best is the exact best for {:5.1f}%); "
               "insert flat {:6.2f} us, HNSW {:7.2f} us\n",
               size, tf, th, same / 10.0, insert_flat, insert_hnsw);
  }

  fmt::print("memory, 10,000 single-entry partitions (each line in a fresh child process):\n");
  in_child([] { partitions_rss("flat up to flat_max_vectors, default bounds", {}, 10000, 0); });
  StoreLimits indexed;
  indexed.flat_max_vectors = 0;
  in_child([&] { partitions_rss("an index per partition, default bounds", indexed, 10000, 0); });
  StoreLimits old = indexed;  // what the store did before it counted partitions and indexes
  old.max_bytes_per_tenant = old.max_bytes_total = std::numeric_limits<std::int64_t>::max();
  old.max_partitions_per_tenant = std::numeric_limits<std::int64_t>::max();
  in_child([&] { partitions_rss("an index per partition, unbounded (before)", old, 200, 10000); });
  return 0;
}
