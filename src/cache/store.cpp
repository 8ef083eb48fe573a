#include "cache/store.h"

#include <hnswlib/hnswlib.h>

#include <algorithm>

#include <fmt/format.h>

#include "cache/local_embedder.h"

namespace tg::cache {

// One partition: its exact map and its own HNSW index (labels are entry ids).
struct CacheStore::Partition {
  explicit Partition(std::uint32_t d) : dims(d), space(d) {}
  std::uint32_t dims;  // of its vectors: the first embedding's (the embedder's) size
  hnswlib::InnerProductSpace space;
  std::unique_ptr<hnswlib::HierarchicalNSW<float>> index;
  std::unordered_map<std::string, std::uint64_t> exact;
  std::size_t live = 0;  // entries in this partition
  std::size_t vectors = 0;  // live vectors in the index
  std::size_t deleted = 0;  // vectors marked deleted (hnswlib 0.6 never reuses their slots)

  void add_vector(const std::vector<float>& v, std::uint64_t id) {
    if (!index) {
      index = std::make_unique<hnswlib::HierarchicalNSW<float>>(&space, 64, 16, 64, 42);
      index->setEf(16);  // search breadth, set once: concurrent searches must not write it
    }
    if (index->cur_element_count >= index->max_elements_) index->resizeIndex(index->max_elements_ * 2);
    // (M 16, ef_construction 64: build cost matters here, recall stays high at these sizes.)
    index->addPoint(v.data(), id);
    ++vectors;
  }
};

CacheStore::CacheStore(StoreLimits limits) : limits_(limits) {}
CacheStore::~CacheStore() = default;

void CacheStore::touch_locked(Slot& s) {
  auto& t = tenants_[s.e.key.tenant];
  t.lru.splice(t.lru.begin(), t.lru, s.lru);
}

// Two phases: the search (exact map, HNSW, guards) under a shared lock, so
// workers search in parallel; then, under the exclusive lock, the chosen
// entry's hit is counted (if it is still there) and expired ones are dropped.
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
    if (!chosen && !key.embedding.empty() && key.embedding.size() == p.dims && p.index && p.vectors > 0) {
      const std::size_t k = std::min<std::size_t>(8, p.vectors);
      auto found = p.index->searchKnn(key.embedding.data(), k);
      std::vector<std::pair<float, std::uint64_t>> cands;  // (similarity, id), best first
      while (!found.empty()) {
        cands.emplace_back(1.0f - found.top().first, static_cast<std::uint64_t>(found.top().second));
        found.pop();
      }
      std::sort(cands.begin(), cands.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
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
  // may drop an emptied partition, so the partition is looked up after them.
  if (auto old = by_ref_.find(ref); old != by_ref_.end()) remove_locked(old->second);
  if (auto pit = partitions_.find(key.partition); pit != partitions_.end())
    if (auto e = pit->second->exact.find(key.exact); e != pit->second->exact.end()) remove_locked(e->second);
  auto& p = partitions_[key.partition];
  if (!p) p = std::make_unique<Partition>(key.embedding.empty() ? limits_.dims : static_cast<std::uint32_t>(key.embedding.size()));
  Slot s;
  s.facts = guard_facts(key.prompt);
  by_ref_[ref] = id;
  s.e = Entry{id, std::move(ref), key, std::move(body), std::move(origin_request_id), now,
              now + (ttl_s < 0 ? limits_.ttl_s : ttl_s), 0};
  s.bytes = static_cast<std::int64_t>(s.e.body.size() + s.e.key.prompt.size() + s.e.key.embedding.size() * sizeof(float) + 256);
  TenantUse& t = tenants_[key.tenant];
  t.lru.push_front(id);
  s.lru = t.lru.begin();
  t.entries += 1;
  t.bytes += s.bytes;
  p->exact[key.exact] = id;
  ++p->live;
  if (!key.embedding.empty() && key.embedding.size() == p->dims) p->add_vector(key.embedding, id);
  entries_.emplace(id, std::move(s));
  evict_locked(key.tenant);
  return id;
}

void CacheStore::evict_locked(const std::string& tenant) {
  TenantUse& t = tenants_[tenant];
  while (t.lru.size() > 1 && (t.entries > limits_.max_entries_per_tenant || t.bytes > limits_.max_bytes_per_tenant))
    remove_locked(t.lru.back());
}

void CacheStore::remove_locked(std::uint64_t id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  Slot& s = it->second;
  const std::string tenant = s.e.key.tenant, partition = s.e.key.partition;
  TenantUse& t = tenants_[tenant];
  t.lru.erase(s.lru);
  t.entries -= 1;
  t.bytes -= s.bytes;
  auto pit = partitions_.find(partition);
  if (pit != partitions_.end()) {
    Partition& p = *pit->second;
    if (auto e = p.exact.find(s.e.key.exact); e != p.exact.end() && e->second == id) p.exact.erase(e);
    if (!s.e.key.embedding.empty() && p.index) {
      try {
        p.index->markDelete(id);
        --p.vectors;
        ++p.deleted;
      } catch (const std::exception&) {
      }
    }
    if (--p.live == 0) {
      partitions_.erase(pit);
    } else if (p.deleted > 64 && p.deleted > p.vectors) {
      // Churn (TTL, LRU, purges) would grow the index forever: rebuild it from the live vectors.
      p.index.reset();
      p.vectors = p.deleted = 0;
      for (const auto& [exact, eid] : p.exact)
        if (eid != id)
          if (const Slot& live = entries_.at(eid); live.e.key.embedding.size() == p.dims) p.add_vector(live.e.key.embedding, eid);
    }
  }
  if (auto r = by_ref_.find(s.e.ref); r != by_ref_.end() && r->second == id) by_ref_.erase(r);
  entries_.erase(it);
  if (t.entries == 0) tenants_.erase(tenant);
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

std::optional<Entry> CacheStore::entry(const std::string& ref) const {
  std::unique_lock lock(mu_);
  auto r = by_ref_.find(ref);
  if (r == by_ref_.end()) return std::nullopt;
  return entries_.at(r->second).e;
}

std::optional<Entry> CacheStore::entry(std::uint64_t id) const {
  std::unique_lock lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return std::nullopt;
  return it->second.e;
}

StoreStats CacheStore::stats() const {
  std::unique_lock lock(mu_);
  StoreStats s;
  s.entries = static_cast<std::int64_t>(entries_.size());
  for (const auto& [name, t] : tenants_) s.bytes += t.bytes;
  s.partitions = static_cast<std::int64_t>(partitions_.size());
  for (const auto& [name, p] : partitions_)
    if (p->index) s.index_slots += static_cast<std::int64_t>(p->index->cur_element_count);
  return s;
}

std::int64_t CacheStore::tenant_entries(const std::string& tenant) const {
  std::unique_lock lock(mu_);
  auto t = tenants_.find(tenant);
  return t == tenants_.end() ? 0 : t->second.entries;
}

}  // namespace tg::cache
