// The fleet's limit store: every gateway process checks and reserves a
// request's limits in one Redis round trip (the admit script), and settles it
// with a second one after the response, off the request's path. One instance
// per worker thread (it owns that worker's Redis connections); the policy
// (which limits apply) is shared by the process.
//
// When Redis cannot be reached, each limit class does what the config says:
// `local_share` admits against this process's share of every limit (limit /
// fleet_size) in a local store until Redis answers again; `fail_closed`
// refuses with 503 limits_unavailable. It never falls back to full limits.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <atomic>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "core/config.h"
#include "limits/limit_store.h"
#include "limits/policy.h"
#include "limits/redis_script.h"
#include "store/redis_client.h"

namespace tg::store {

// The policy every worker's store reads, guarded for the admin API and reloads.
struct SharedPolicy {
  explicit SharedPolicy(const Config& c) : policy(c) { load_keys(c); }
  void load(const Config& c) {
    policy.load(c);
    load_keys(c);
  }
  void load_keys(const Config& c) {
    key_tenant.clear();
    for (const auto& t : c.tenants)
      for (const auto& k : t.keys) key_tenant[k.id] = t.id;
  }
  std::mutex mu;
  limits::LimitPolicy policy;
  // The fleet's admin overrides (PUT /admin/limits) last applied from Redis;
  // -1: apply them all again (after a config reload).
  std::atomic<std::int64_t> applied_version{-1};
  std::unordered_map<std::string, std::string> key_tenant;  // key id → its tenant (for key tags)
};

// What a process counts about its Redis store (shared by its workers).
struct RedisLimitStats {
  std::atomic<std::int64_t> fallbacks{0};  // requests decided without Redis
  std::atomic<bool> up{true};
};

class RedisLimitStore final : public limits::LimitStore {
 public:
  // `local` enforces this process's share of every limit while Redis is
  // unreachable; it is shared by the process's workers.
  RedisLimitStore(boost::asio::any_io_executor ex, const LimitsConfig& cfg, io::DeadlineSweeper& deadlines,
                  SharedPolicy& policy, limits::LimitStore& local, RedisLimitStats& stats);

  boost::asio::awaitable<Expected<limits::Admission>> admit_async(const limits::Ask& ask);
  boost::asio::awaitable<Expected<std::string>> report_async(std::string_view scope);
  // PUT /admin/limits for the whole fleet: stored in Redis (a hash of
  // overrides and a version), applied here, and by every other gateway within
  // a second (follow_policy). Refused when Redis is unreachable.
  boost::asio::awaitable<Expected<std::string>> set_limits_async(std::string_view scope,
                                                                 const limits::LimitsUpdate& update);
  // Runs on one worker per process: polls the overrides' version every second
  // and applies the overrides when it changed. Returns when `stop` is set.
  boost::asio::awaitable<void> follow_policy(const std::atomic<bool>& stop);
  const RedisLimitStats& stats() const { return stats_; }

  // The synchronous interface is for the in-process store; this one is async.
  Expected<limits::Admission> admit(const limits::Ask&, limits::Micros) override;
  Expected<std::string> report(std::string_view scope, limits::Micros now) override;
  Expected<std::string> set_limits(std::string_view scope, const limits::LimitsUpdate& update,
                                   limits::Micros now) override;
  void reload(const Config& config) override;
  std::int64_t token_ceiling(const limits::Ask& ask) override;

 protected:
  void settle(void* hold, std::int64_t tokens, std::int64_t cost_micros, limits::Micros now) override;
  limits::Micros now_for_release() const override { return 0; }

 private:
  boost::asio::any_io_executor ex_;
  const LimitsConfig& cfg_;
  std::unique_ptr<RedisCaller> client_;  // one primary, or a Cluster
  void undo(std::vector<limits::RedisPath> parts);  // takes back admitted parts of a refused split path
  void send_settle(limits::RedisScriptCall call);   // the settle script, off the request's path
  SharedPolicy& policy_;
  limits::LimitStore& local_;
  RedisLimitStats& stats_;
  limits::RedisOptions opts_;
  std::string admit_sha_, settle_sha_;
};

// A copy of `c` whose limits are each this process's share of the fleet's:
// every rate, ceil and concurrency divided by fleet_size (at least 1), and run
// limits too when `runs` is true.
Config local_share_config(const Config& c, std::int64_t fleet_size, bool runs);

}  // namespace tg::store
