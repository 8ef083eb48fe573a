// CacheStore: the response cache's entries and indexes, partitioned by
// construction. Every entry lives in exactly one partition (a digest of
// tenant, visibility scope, model, system prompt, tools, response format,
// sampling class, conversation history and context access; see
// request_facts.h), and a lookup only ever reads its own partition: the exact
// tier by the canonical request's digest, the semantic tier over that
// partition's own vectors (inner product over L2-normalised vectors), where a
// neighbour above the threshold is served only when the entity and polarity
// guards pass. A partition of at most `flat_max_vectors` vectors is searched
// by an exact scan of its contiguous vector matrix; above that it also keeps
// an HNSW index (hnswlib), freed again when it shrinks to half that bound.
// Both searches hand the same best-first candidates to the same threshold,
// guards and verification.
//
// Bounded by construction, and counted honestly: `bytes` is what the store
// allocates, each entry (strings, guard facts, map and list nodes) plus each
// partition's own cost (its node and exact map, its vector matrix and, when
// it has one, its HNSW index as hnswlib allocates it: max_elements slots of
// level 0, locks and levels per slot, upper-level link lists, the visited
// list, the label map and the fixed table of 65,536 mutexes, about 2.6 MB).
// A partition's cost is charged to the tenant that owns it: the one whose
// insert created it; a public partition, shared by tenants, passes to a
// tenant that still has entries in it when its owner has none left (that
// tenant's bounds then apply at its next insert). Bounds: a TTL per entry;
// per tenant, entries, bytes and owned partitions; store-wide, bytes. Each is
// enforced at insert by evicting least-recently-used entries (which frees a
// partition with its last entry): the inserting tenant's for the tenant's
// bounds, the LRU entry of the tenant holding the most bytes for the
// store-wide one (so one tenant filling the store evicts its own entries
// first). An insert never evicts the entry it adds: a single entry larger
// than a bound stays until the next insert.
//
// Thread-safe: lookups search under a shared lock; inserts, hits and purges
// hold it alone. Time is passed in (seconds on any clock).
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
  std::int64_t max_bytes_per_tenant = 64ll << 20;  // its entries and the partitions it owns (see above)
  std::int64_t max_partitions_per_tenant = 10'000;  // partitions it owns
  std::int64_t max_bytes_total = 512ll << 20;       // every tenant's bytes
  // A partition with more vectors than this keeps an HNSW index; at half
  // (rounded down) or fewer it frees it and scans flat again. 0: always an
  // index. At 512 vectors a scan takes 1.1-1.3x as long as an HNSW search,
  // but it is exact, an insert is 3-10x cheaper and there is no 2.6 MB index;
  // at 1,024 it takes twice as long (bench/cache_bench).
  std::uint32_t flat_max_vectors = 512;
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
  std::int64_t entries = 0;
  std::int64_t bytes = 0;  // what the bounds count: entries, partitions and indexes (see above)
  std::int64_t partitions = 0, flat_partitions = 0, indexed_partitions = 0;
  std::int64_t index_bytes = 0;  // the HNSW indexes' part of `bytes`
  std::int64_t index_slots = 0;  // vectors held by the HNSW indexes, deleted ones included
};

class CacheStore {
 public:
  explicit CacheStore(StoreLimits limits);
  ~CacheStore();
  CacheStore(const CacheStore&) = delete;
  CacheStore& operator=(const CacheStore&) = delete;

  // A semantic candidate is served when its similarity reaches `threshold`,
  // both guards pass and, when `verify_lexical` > 0, the built-in lexical
  // embedder also puts the two prompts at or above it (the verification step,
  // for upstream embedders that rate loosely related prompts close).
  LookupResult lookup(const Key& key, float threshold, double now, float verify_lexical = 0);
  // Returns the new entry's id (an existing exact entry is replaced); its ref
  // is "ce_" + origin_request_id. Evicts to the bounds (see above).
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
    std::int64_t entries = 0, bytes = 0, partitions = 0;  // partitions: those it owns
    std::list<std::uint64_t> lru;  // front: most recent
  };
  struct Slot {
    Entry e;  // e.key.embedding is empty when the vector is a row of its partition's matrix
    GuardFacts facts;  // of its prompt, for the guards
    std::list<std::uint64_t>::iterator lru;
    std::int64_t bytes = 0;
    std::uint32_t row = UINT32_MAX;  // in its partition's matrix; UINT32_MAX: no vector there
    std::int64_t footprint() const;
  };
  void remove_locked(std::uint64_t id);
  void touch_locked(Slot& s);
  void evict_tenant_locked(const std::string& tenant);
  void evict_total_locked(std::uint64_t keep);
  void charge_locked(Partition& p);    // brings the owner's and the store's counts to p's cost now
  void uncharge_locked(Partition& p);  // takes p's cost off them
  Entry entry_locked(const Slot& s) const;

  StoreLimits limits_;
  mutable std::shared_mutex mu_;  // searches share it; writes, hits and purges hold it alone
  std::uint64_t next_id_ = 1;
  std::unordered_map<std::uint64_t, Slot> entries_;
  std::unordered_map<std::string, std::uint64_t> by_ref_;
  std::map<std::string, std::unique_ptr<Partition>> partitions_;
  std::map<std::string, TenantUse> tenants_;
  std::int64_t bytes_ = 0, index_bytes_ = 0, index_slots_ = 0, indexed_partitions_ = 0;  // sums over tenants_/partitions_
};

}  // namespace tg::cache
