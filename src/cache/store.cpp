#include "cache/store.h"

#include <hnswlib/hnswlib.h>

#include <algorithm>
#include <bit>

#include <fmt/format.h>

#include "cache/local_embedder.h"

namespace tg::cache {

namespace {

using Index = hnswlib::HierarchicalNSW<float>;
constexpr std::uint32_t kNoRow = UINT32_MAX;
constexpr std::size_t kCandidates = 8;  // nearest vectors handed to the threshold and guards

// What glibc's malloc takes for a request of n bytes: an 8-byte header,
// 16-byte granules, 32 bytes at least.
constexpr std::int64_t malloc_bytes(std::size_t n) {
  return n == 0 ? 0 : std::max<std::int64_t>(32, static_cast<std::int64_t>((n + 8 + 15) / 16 * 16));
}
std::int64_t string_bytes(const std::string& s) {  // its buffer, when it is not held inline
  static const std::size_t kInline = std::string().capacity();
  return s.capacity() > kInline ? malloc_bytes(s.capacity() + 1) : 0;
}
constexpr std::int64_t kTreeNode = 32;  // std::map/std::set node header: colour and three links
constexpr std::int64_t kHashNode = 8;   // std::unordered_map node header: next (string keys add a cached hash)
// A node of a store-wide hash map, and its bucket (load factor 1); `extra`: a cached hash (string keys).
template <class V>
constexpr std::int64_t hash_node(std::size_t extra = 0) {
  return malloc_bytes(kHashNode + extra + sizeof(V)) + static_cast<std::int64_t>(sizeof(void*));
}

}  // namespace

// One partition: its exact map, its vectors as one contiguous matrix (what a
// flat search scans and an index is built from), and its HNSW index while it
// holds more than flat_max_vectors of them (labels are entry ids).
struct CacheStore::Partition {
  Partition(std::uint32_t d, std::string owner_tenant, std::int64_t node)
      : dims(d), space(d), dist(space.get_dist_func()), dist_param(space.get_dist_func_param()),
        owner(std::move(owner_tenant)), node_bytes(node) {}
  std::uint32_t dims;  // of its vectors: the first embedding's (the embedder's) size
  hnswlib::InnerProductSpace space;
  hnswlib::DISTFUNC<float> dist;  // 1 - inner product: the flat scan uses the index's own kernel
  void* dist_param;
  std::string owner;  // the tenant its own cost is charged to
  std::int64_t owner_entries = 0;  // the owner's entries in it (> 0 while it exists)
  std::int64_t node_bytes;  // its node in partitions_, key included
  std::unordered_map<std::string, std::uint64_t> exact;
  std::size_t live = 0;  // entries in this partition
  std::vector<float> matrix;  // row r: the vector of entry row_ids[r]
  std::vector<std::uint64_t> row_ids;
  std::unique_ptr<Index> index;
  std::size_t deleted = 0;  // vectors marked deleted in the index (hnswlib 0.6 never reuses their slots)
  std::int64_t upper_links = 0;  // what hnswlib allocated for the index's upper-level link lists
  // What is charged for it now, to its owner and in the store's sums.
  std::int64_t charged = 0, charged_index = 0, charged_slots = 0;
  bool charged_indexed = false;

  std::size_t rows() const { return row_ids.size(); }
  const float* row(std::size_t r) const { return matrix.data() + r * dims; }

  void index_row(std::size_t r) {
    if (index->cur_element_count >= index->max_elements_) index->resizeIndex(index->max_elements_ * 2);
    const hnswlib::tableint c = index->addPoint(row(r), row_ids[r], -1);
    if (const int level = index->element_levels_[c]; level > 0)
      upper_links += malloc_bytes(index->size_links_per_element_ * level + 1);  // (addPoint's own malloc)
  }
  // (Re)builds the index from the matrix: on crossing flat_max_vectors, and
  // when churn left more deleted slots than live ones.
  void build_index() {
    // M 16, ef_construction 64: build cost matters here, recall stays high at these sizes.
    index = std::make_unique<Index>(&space, std::max<std::size_t>(64, std::bit_ceil(rows() + 1)), 16, 64, 42);
    index->setEf(16);  // search breadth, set once: concurrent searches must not write it
    deleted = 0;
    upper_links = 0;
    for (std::size_t r = 0; r < rows(); ++r) index_row(r);
  }
  void drop_index() {
    index.reset();
    deleted = 0;
    upper_links = 0;
  }

  // What hnswlib 0.6 allocates for the index (hnswalg.h: the constructor,
  // resizeIndex and addPoint).
  std::int64_t index_bytes() const {
    if (!index) return 0;
    const Index& x = *index;
    const std::size_t n = x.max_elements_;
    return malloc_bytes(sizeof(Index)) +
           malloc_bytes(n * x.size_data_per_element_) +  // level 0: links, vector and label per slot
           malloc_bytes(n * sizeof(void*)) +             // linkLists_
           malloc_bytes(n * sizeof(std::mutex)) +        // link_list_locks_
           malloc_bytes(sizeof(int) * n) +               // element_levels_
           malloc_bytes(Index::max_update_element_locks * sizeof(std::mutex)) +  // 65,536, whatever the size
           malloc_bytes(sizeof(hnswlib::VisitedListPool)) + malloc_bytes(64) + malloc_bytes(512) +  // the pool and its deque
           malloc_bytes(sizeof(hnswlib::VisitedList)) + malloc_bytes(n * sizeof(hnswlib::vl_type)) +  // one visited list (each
           // search running concurrently with another on this index adds one more, kept until the index goes)
           upper_links +
           static_cast<std::int64_t>(x.label_lookup_.size()) *
               malloc_bytes(kHashNode + sizeof(std::pair<const hnswlib::labeltype, hnswlib::tableint>)) +
           static_cast<std::int64_t>(x.label_lookup_.bucket_count() * sizeof(void*));
  }
  // Its own cost but the index's (the entries in it count their own).
  std::int64_t bytes_without_index() const {
    return node_bytes + malloc_bytes(sizeof(Partition)) + string_bytes(owner) +
           static_cast<std::int64_t>(exact.bucket_count() * sizeof(void*)) + malloc_bytes(matrix.capacity() * sizeof(float)) +
           malloc_bytes(row_ids.capacity() * sizeof(std::uint64_t));
  }

  // The nearest vectors to `q` (dims floats), best first: (similarity, entry id).
  std::vector<std::pair<float, std::uint64_t>> nearest(const float* q, std::size_t k) const {
    std::vector<std::pair<float, std::uint64_t>> out;
    k = std::min(k, rows());
    out.reserve(k + 1);
    const auto better = [](const auto& a, const auto& b) { return a.first > b.first; };
    if (index) {
      auto found = index->searchKnn(q, k);
      while (!found.empty()) {
        out.emplace_back(1.0f - found.top().first, static_cast<std::uint64_t>(found.top().second));
        found.pop();
      }
      std::sort(out.begin(), out.end(), better);
      return out;
    }
    for (std::size_t r = 0; r < rows(); ++r) {
      const float sim = 1.0f - dist(q, row(r), dist_param);
      if (out.size() == k && sim <= out.back().first) continue;
      out.insert(std::upper_bound(out.begin(), out.end(), std::pair{sim, std::uint64_t{0}}, better),
                 std::pair{sim, row_ids[r]});
      if (out.size() > k) out.pop_back();
    }
    return out;
  }
};

std::int64_t CacheStore::Slot::footprint() const {
  std::int64_t b = hash_node<std::pair<const std::uint64_t, Slot>>();  // in entries_
  for (const std::string* s : {&e.ref, &e.key.partition, &e.key.exact, &e.key.tenant, &e.key.user, &e.key.scope,
                               &e.key.prompt, &e.body, &e.origin_request_id})
    b += string_bytes(*s);
  b += malloc_bytes(e.key.embedding.capacity() * sizeof(float));  // (none when it is a row of the partition's matrix)
  for (const std::string& x : facts.entities) b += malloc_bytes(kTreeNode + sizeof(std::string)) + string_bytes(x);
  b += malloc_bytes(2 * sizeof(void*) + sizeof(std::uint64_t));  // its node in the tenant's LRU list
  b += hash_node<std::pair<const std::string, std::uint64_t>>(sizeof(std::size_t)) + string_bytes(e.ref);  // in by_ref_
  // In its partition's exact map (whose buckets the partition counts).
  b += malloc_bytes(kHashNode + sizeof(std::size_t) + sizeof(std::pair<const std::string, std::uint64_t>)) + string_bytes(e.key.exact);
  return b;
}

CacheStore::CacheStore(StoreLimits limits) : limits_(limits) {}
CacheStore::~CacheStore() = default;

void CacheStore::touch_locked(Slot& s) {
  auto& t = tenants_.at(s.e.key.tenant);
  t.lru.splice(t.lru.begin(), t.lru, s.lru);
}

void CacheStore::charge_locked(Partition& p) {
  TenantUse& owner = tenants_.at(p.owner);
  const std::int64_t index = p.index_bytes(), total = p.bytes_without_index() + index;
  owner.bytes += total - p.charged;
  bytes_ += total - p.charged;
  p.charged = total;
  index_bytes_ += index - p.charged_index;
  p.charged_index = index;
  const std::int64_t slots = p.index ? static_cast<std::int64_t>(p.index->cur_element_count) : 0;
  index_slots_ += slots - p.charged_slots;
  p.charged_slots = slots;
  indexed_partitions_ += static_cast<int>(p.index != nullptr) - static_cast<int>(p.charged_indexed);
  p.charged_indexed = p.index != nullptr;
}

void CacheStore::uncharge_locked(Partition& p) {
  TenantUse& owner = tenants_.at(p.owner);
  owner.bytes -= p.charged;
  bytes_ -= p.charged;
  index_bytes_ -= p.charged_index;
  index_slots_ -= p.charged_slots;
  indexed_partitions_ -= static_cast<int>(p.charged_indexed);
  p.charged = p.charged_index = p.charged_slots = 0;
  p.charged_indexed = false;
}

// Two phases: the search (exact map, nearest vectors, guards) under a shared
// lock, so workers search in parallel; then, under the exclusive lock, the
// chosen entry's hit is counted (if it is still there) and expired ones are
// dropped.
LookupResult CacheStore::lookup(const Key& key, float threshold, double now, float verify_lexical) {
  LookupResult out;
  struct Chosen {
    std::uint64_t id = 0;
    bool exact = false;
    float sim = 0, lexical = 0;
    GuardVerdict guards;
  };
  std::optional<Chosen> chosen;
  std::vector<std::uint64_t> expired;
  {
    std::shared_lock lock(mu_);
    auto pit = partitions_.find(key.partition);
    if (pit == partitions_.end()) return out;
    const Partition& p = *pit->second;
    if (auto e = p.exact.find(key.exact); e != p.exact.end()) {
      if (entries_.at(e->second).e.expires_s > now) chosen = Chosen{e->second, true, 1.0f, 0, {}};
      else expired.push_back(e->second);
    }
    if (!chosen && !key.embedding.empty() && key.embedding.size() == p.dims && p.rows() > 0) {
      const auto cands = p.nearest(key.embedding.data(), kCandidates);  // flat or HNSW: (similarity, id), best first
      std::optional<GuardFacts> fresh;  // the new prompt's, computed once if a candidate qualifies
      for (const auto& [sim, id] : cands) {
        auto it = entries_.find(id);
        if (it == entries_.end()) continue;
        const Slot& s = it->second;
        if (s.e.expires_s <= now) {
          expired.push_back(id);
          continue;
        }
        if (sim < threshold) {  // best first: nothing further can qualify
          if (!out.near_miss) out.near_miss = NearMiss{id, sim, {}};
          break;
        }
        if (!fresh) fresh = guard_facts(key.prompt);
        GuardVerdict g = check_guards(s.facts, *fresh);
        float lexical = 0;
        if (g.pass() && verify_lexical > 0) {
          lexical = cosine(local_embedding(s.e.key.prompt), local_embedding(key.prompt));
          if (lexical < verify_lexical) {
            g.why = fmt::format("verification: lexical similarity {:.3f} under {:.3f}", lexical, verify_lexical);
            if (!out.near_miss) out.near_miss = NearMiss{id, sim, std::move(g)};
            continue;
          }
        }
        if (g.pass()) {
          chosen = Chosen{id, false, sim, lexical, std::move(g)};
          break;
        }
        if (!out.near_miss) out.near_miss = NearMiss{id, sim, std::move(g)};
      }
    }
  }
  if (!chosen && expired.empty()) return out;
  std::unique_lock lock(mu_);
  for (std::uint64_t id : expired)
    if (auto it = entries_.find(id); it != entries_.end() && it->second.e.expires_s <= now) remove_locked(id);
  if (chosen) {
    auto it = entries_.find(chosen->id);
    if (it != entries_.end() && it->second.e.expires_s > now) {  // (purged meanwhile: a miss)
      Slot& s = it->second;
      ++s.e.hits;
      touch_locked(s);
      out.hit = Hit{s.e.id, s.e.ref, s.e.expires_s, s.e.body, s.e.origin_request_id, chosen->exact, chosen->sim,
                    threshold, std::move(chosen->guards), chosen->lexical};
      out.near_miss.reset();
    }
  }
  return out;
}

std::uint64_t CacheStore::insert(const Key& key, std::string body, std::string origin_request_id, double now,
                                 double ttl_s) {
  std::unique_lock lock(mu_);
  const std::uint64_t id = next_id_++;
  std::string ref = "ce_" + (origin_request_id.empty() ? std::to_string(id) : origin_request_id);
  // Replace what this request (or this exact request) stored before; removals
  // may drop an emptied partition (and tenant), so both are looked up after them.
  if (auto old = by_ref_.find(ref); old != by_ref_.end()) remove_locked(old->second);
  if (auto pit = partitions_.find(key.partition); pit != partitions_.end())
    if (auto e = pit->second->exact.find(key.exact); e != pit->second->exact.end()) remove_locked(e->second);
  TenantUse& t = tenants_[key.tenant];
  auto& owned = partitions_[key.partition];
  if (!owned) {
    const std::uint32_t dims = key.embedding.empty() ? limits_.dims : static_cast<std::uint32_t>(key.embedding.size());
    const std::int64_t node = malloc_bytes(kTreeNode + sizeof(std::pair<const std::string, std::unique_ptr<Partition>>)) +
                              string_bytes(key.partition);
    owned = std::make_unique<Partition>(dims, key.tenant, node);
    ++t.partitions;
  }
  Partition& p = *owned;
  Slot s;
  // Guards judge semantic candidates only: an entry without a vector (the exact tier alone, e.g. a
  // very long prompt) needs no facts, and scanning a long prompt under the exclusive lock would stall searches.
  if (!key.embedding.empty()) s.facts = guard_facts(key.prompt);
  by_ref_[ref] = id;
  s.e = Entry{id, std::move(ref), Key{key.partition, key.exact, key.tenant, key.user, key.scope, key.prompt, {}},
              std::move(body), std::move(origin_request_id), now, now + (ttl_s < 0 ? limits_.ttl_s : ttl_s), 0};
  if (!key.embedding.empty() && key.embedding.size() == p.dims) {
    s.row = static_cast<std::uint32_t>(p.rows());
    p.matrix.insert(p.matrix.end(), key.embedding.begin(), key.embedding.end());
    p.row_ids.push_back(id);
    if (p.index) p.index_row(s.row);
    else if (p.rows() > limits_.flat_max_vectors) p.build_index();
  } else {
    s.e.key.embedding = key.embedding;  // kept with the entry (for the replica), not searched
  }
  s.bytes = s.footprint();
  t.lru.push_front(id);
  s.lru = t.lru.begin();
  t.entries += 1;
  t.bytes += s.bytes;
  bytes_ += s.bytes;
  p.exact[key.exact] = id;
  ++p.live;
  if (p.owner == key.tenant) ++p.owner_entries;
  entries_.emplace(id, std::move(s));
  charge_locked(p);
  evict_tenant_locked(key.tenant);
  evict_total_locked(id);
  return id;
}

void CacheStore::evict_tenant_locked(const std::string& tenant) {
  TenantUse& t = tenants_.at(tenant);
  while (t.lru.size() > 1 && (t.entries > limits_.max_entries_per_tenant || t.bytes > limits_.max_bytes_per_tenant ||
                              t.partitions > limits_.max_partitions_per_tenant))
    remove_locked(t.lru.back());
}

// O(tenants) per evicted entry; it runs only while the store is over its bound.
void CacheStore::evict_total_locked(std::uint64_t keep) {
  while (bytes_ > limits_.max_bytes_total) {
    const TenantUse* largest = nullptr;
    for (const auto& [name, t] : tenants_)
      if (t.lru.back() != keep && (!largest || t.bytes > largest->bytes)) largest = &t;
    if (!largest) return;
    remove_locked(largest->lru.back());
  }
}

void CacheStore::remove_locked(std::uint64_t id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  Slot& s = it->second;
  const std::string tenant = s.e.key.tenant;
  TenantUse& t = tenants_.at(tenant);
  t.lru.erase(s.lru);
  t.entries -= 1;
  t.bytes -= s.bytes;
  bytes_ -= s.bytes;
  if (auto pit = partitions_.find(s.e.key.partition); pit != partitions_.end()) {
    Partition& p = *pit->second;
    if (auto e = p.exact.find(s.e.key.exact); e != p.exact.end() && e->second == id) p.exact.erase(e);
    if (p.owner == tenant) --p.owner_entries;
    if (s.row != kNoRow) {  // the last row takes its place
      const std::size_t last = p.rows() - 1;
      if (s.row != last) {
        std::copy_n(p.row(last), p.dims, p.matrix.begin() + static_cast<std::ptrdiff_t>(s.row) * p.dims);
        p.row_ids[s.row] = p.row_ids[last];
        entries_.at(p.row_ids[s.row]).row = s.row;
      }
      p.matrix.resize(last * p.dims);
      p.row_ids.pop_back();
      if (p.row_ids.size() * 4 <= p.row_ids.capacity()) {  // a shrunk partition gives its memory back
        p.matrix.shrink_to_fit();
        p.row_ids.shrink_to_fit();
      }
      if (p.index) {
        p.index->markDelete(id);
        ++p.deleted;
      }
    }
    if (--p.live == 0) {
      uncharge_locked(p);
      --tenants_.at(p.owner).partitions;
      partitions_.erase(pit);
    } else {
      if (p.index && p.rows() <= limits_.flat_max_vectors / 2) {
        p.drop_index();
      } else if (p.index && p.deleted > 64 && p.deleted > p.rows()) {
        p.build_index();  // churn (TTL, LRU, purges) would grow the index forever
      }
      if (p.owner_entries == 0) {  // a shared partition: another tenant with entries in it takes it over
        uncharge_locked(p);
        --tenants_.at(p.owner).partitions;
        p.owner = entries_.at(p.exact.begin()->second).e.key.tenant;
        p.owner_entries = std::count_if(p.exact.begin(), p.exact.end(), [&](const auto& e) {
          return entries_.at(e.second).e.key.tenant == p.owner;
        });
        ++tenants_.at(p.owner).partitions;
      }
      charge_locked(p);
    }
  }
  if (auto r = by_ref_.find(s.e.ref); r != by_ref_.end() && r->second == id) by_ref_.erase(r);
  entries_.erase(it);
  if (t.entries == 0) tenants_.erase(tenant);  // (it owns no partition then, so its bytes are 0)
}

std::size_t CacheStore::purge_tenant(const std::string& tenant) {
  std::unique_lock lock(mu_);
  auto t = tenants_.find(tenant);
  if (t == tenants_.end()) return 0;
  std::vector<std::uint64_t> ids(t->second.lru.begin(), t->second.lru.end());
  for (auto id : ids) remove_locked(id);
  return ids.size();
}

std::size_t CacheStore::purge_user(const std::string& tenant, const std::string& user) {
  std::unique_lock lock(mu_);
  auto t = tenants_.find(tenant);
  if (t == tenants_.end()) return 0;
  std::vector<std::uint64_t> ids;
  for (auto id : t->second.lru)
    if (entries_.at(id).e.key.user == user) ids.push_back(id);
  for (auto id : ids) remove_locked(id);
  return ids.size();
}

bool CacheStore::purge_entry(std::uint64_t id) {
  std::unique_lock lock(mu_);
  if (!entries_.count(id)) return false;
  remove_locked(id);
  return true;
}

bool CacheStore::purge_entry(const std::string& ref) {
  std::unique_lock lock(mu_);
  auto r = by_ref_.find(ref);
  if (r == by_ref_.end()) return false;
  remove_locked(r->second);
  return true;
}

Entry CacheStore::entry_locked(const Slot& s) const {
  Entry e = s.e;
  if (s.row != kNoRow) {
    const Partition& p = *partitions_.at(s.e.key.partition);
    e.key.embedding.assign(p.row(s.row), p.row(s.row) + p.dims);
  }
  return e;
}

std::optional<Entry> CacheStore::entry(const std::string& ref) const {
  std::shared_lock lock(mu_);
  auto r = by_ref_.find(ref);
  if (r == by_ref_.end()) return std::nullopt;
  return entry_locked(entries_.at(r->second));
}

std::optional<Entry> CacheStore::entry(std::uint64_t id) const {
  std::shared_lock lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return std::nullopt;
  return entry_locked(it->second);
}

StoreStats CacheStore::stats() const {
  std::shared_lock lock(mu_);
  StoreStats s;
  s.entries = static_cast<std::int64_t>(entries_.size());
  s.bytes = bytes_;
  s.partitions = static_cast<std::int64_t>(partitions_.size());
  s.indexed_partitions = indexed_partitions_;
  s.flat_partitions = s.partitions - indexed_partitions_;
  s.index_bytes = index_bytes_;
  s.index_slots = index_slots_;
  return s;
}

std::int64_t CacheStore::tenant_entries(const std::string& tenant) const {
  std::shared_lock lock(mu_);
  auto t = tenants_.find(tenant);
  return t == tenants_.end() ? 0 : t->second.entries;
}

}  // namespace tg::cache
