// CacheReplica: the response cache's fleet mode. Entries live in Redis (one
// hash per entry, `<prefix>:e:{<tenant>}:<entry>`, expiring with the entry),
// and every change is appended to the stream `<prefix>:log`. Each gateway's
// CacheStore is a replica: at start it loads the entries in Redis, then it
// follows the stream (XREAD BLOCK) on its own thread, so every node's exact
// maps and HNSW indexes hold the fleet's entries and lookups stay local.
// Writes and purges go to Redis from a writer thread, never from a worker;
// a put that cannot reach Redis is dropped (counted), a purge is retried
// until Redis takes it. Plain synchronous hiredis on those two threads.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cache/store.h"

namespace tg::store {

struct CacheReplicaStats {
  std::atomic<bool> up{false};
  std::atomic<std::uint64_t> puts{0}, dropped{0}, applied{0}, loaded{0};
};

class CacheReplica {
 public:
  CacheReplica(cache::CacheStore& store, std::string host, std::uint16_t port, std::string prefix, double ttl_s);
  ~CacheReplica();
  CacheReplica(const CacheReplica&) = delete;
  CacheReplica& operator=(const CacheReplica&) = delete;

  // After a local insert: the entry for the other nodes.
  void put(const cache::Entry& e);
  // After a local purge: the same purge on every node.
  void purge_entry(const std::string& ref);
  void purge_user(const std::string& tenant, const std::string& user);
  void purge_tenant(const std::string& tenant);

  const CacheReplicaStats& stats() const { return stats_; }
  // Waits until the follower has loaded what Redis held at start (or `ms` passed).
  bool wait_loaded(int ms);

 private:
  struct Op {
    std::vector<std::string> argv;  // commands sent in order (MULTI/EXEC around them)
    bool must_deliver = false;      // purges: retried until Redis takes them
  };
  void enqueue(Op op);
  void writer();
  void follower();

  cache::CacheStore& store_;
  const std::string host_, prefix_, node_;
  const std::uint16_t port_;
  const double ttl_s_;
  CacheReplicaStats stats_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Op> queue_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> loaded_{false};
  std::thread writer_, follower_;
};

}  // namespace tg::store
