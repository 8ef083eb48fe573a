// CacheStore: the response cache's entries and indexes, partitioned by
// construction. Every entry lives in exactly one partition (a digest of
// tenant, visibility scope, model, system prompt, tools, response format,
// sampling class, conversation history and context access; see
// request_facts.h), and a lookup only ever reads its own partition: the exact
// tier by the canonical request's digest, the semantic tier through that
// partition's own HNSW index (hnswlib, inner product over L2-normalised
// vectors), where a neighbour above the threshold is served only when the
// entity and polarity guards pass.
//
// Limits: a TTL per entry, and per tenant a number of entries and of bytes,
// evicting the least recently used entry of that tenant. Thread-safe (one
// mutex); time is passed in (seconds on any clock).
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "cache/guards.h"

namespace tg::cache {

struct StoreLimits {
  double ttl_s = 3600;
  std::int64_t max_entries_per_tenant = 10'000;
  std::int64_t max_bytes_per_tenant = 64ll << 20;
  std::uint32_t dims = 256;  // a partition's vector size when its first entry has none
};

// What a request contributes to the cache (see request_facts.h).
struct Key {
  std::string partition;  // hex digest
  std::string exact;      // hex digest of the canonical request, inside the partition
  std::string tenant, user, scope;
  std::string prompt;             // the text that was embedded (last user turn, plus prior turns)
  std::vector<float> embedding;  // empty: no semantic tier for this request
};

struct Entry {
  std::uint64_t id = 0;
  std::string ref;  // "ce_<origin request id>": unique across restarts and a fleet; what the audit trail names
  Key key;
  std::string body;  // the completion as the client received it (JSON)
  std::string origin_request_id;
  double created_s = 0, expires_s = 0;
  std::uint64_t hits = 0;
};

struct Hit {
  std::uint64_t entry_id = 0;
  std::string entry_ref;
  double expires_s = 0;
  std::string body, origin_request_id;
  bool exact = false;
  float similarity = 1;  // 1 for exact hits
  float threshold = 0;
  GuardVerdict guards;   // of the semantic candidate (pass() when served)
  float lexical = 0;     // the verification's similarity, when it ran
};

// A semantic candidate that the guards (or the threshold) turned away.
struct NearMiss {
  std::uint64_t entry_id = 0;
  float similarity = 0;
  GuardVerdict guards;
};

struct LookupResult {
  std::optional<Hit> hit;
  std::optional<NearMiss> near_miss;  // the best candidate when there is no hit
};

struct StoreStats {
  std::int64_t entries = 0, bytes = 0, partitions = 0;
  std::int64_t index_slots = 0;  // vectors held by the HNSW indexes, deleted ones included
};

class CacheStore {
 public:
  explicit CacheStore(StoreLimits limits);
  ~CacheStore();

  // A semantic candidate is served when its similarity reaches `threshold`,
  // both guards pass and, when `verify_lexical` > 0, the built-in lexical
  // embedder also puts the two prompts at or above it (the verification step,
  // for upstream embedders that rate loosely related prompts close).
  LookupResult lookup(const Key& key, float threshold, double now, float verify_lexical = 0);
  // Returns the new entry's id (an existing exact entry is replaced); its ref
  // is "ce_" + origin_request_id.
  // `ttl_s` < 0: the configured TTL (a replica passes what is left of the origin's).
  std::uint64_t insert(const Key& key, std::string body, std::string origin_request_id, double now, double ttl_s = -1);

  // Purges; each returns the number of entries removed.
  std::size_t purge_tenant(const std::string& tenant);
  std::size_t purge_user(const std::string& tenant, const std::string& user);
  bool purge_entry(std::uint64_t id);
  bool purge_entry(const std::string& ref);

  std::optional<Entry> entry(std::uint64_t id) const;
  std::optional<Entry> entry(const std::string& ref) const;
  StoreStats stats() const;
  std::int64_t tenant_entries(const std::string& tenant) const;

 private:
  struct Partition;
  struct TenantUse {
    std::int64_t entries = 0, bytes = 0;
    std::list<std::uint64_t> lru;  // front: most recent
  };
  struct Slot {
    Entry e;
    GuardFacts facts;  // of its prompt, for the guards
    std::list<std::uint64_t>::iterator lru;
    std::int64_t bytes = 0;
  };
  void remove_locked(std::uint64_t id);
  void touch_locked(Slot& s);
  void evict_locked(const std::string& tenant);

  StoreLimits limits_;
  mutable std::shared_mutex mu_;  // searches share it; writes, hits and purges hold it alone
  std::uint64_t next_id_ = 1;
  std::unordered_map<std::uint64_t, Slot> entries_;
  std::unordered_map<std::string, std::uint64_t> by_ref_;
  std::map<std::string, std::unique_ptr<Partition>> partitions_;
  std::map<std::string, TenantUse> tenants_;
};

}  // namespace tg::cache
