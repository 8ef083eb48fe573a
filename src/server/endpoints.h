// The endpoints that answer without going upstream: /healthz, /readyz,
// /metrics (the gateway's metrics and every component's) and /v1/models
// (the models a tenant may use, in OpenAI's list shape). Per worker.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>

#include "core/config.h"
#include "core/error.h"
#include "identity/keyring.h"
#include "sched/live_pool.h"
#include "server/metrics.h"
#include "store/redis_limit_store.h"

namespace tg::server {

struct Plain {
  int status = 200;
  std::string body;
  const char* content_type = "application/json";
};

class Endpoints {
 public:
  using Pools = std::map<std::string, std::unique_ptr<sched::LivePool>>;
  Endpoints(const Config& config, const Metrics& metrics, const std::atomic<bool>& draining, const Pools* pools,
            store::RedisLimitStore* redis_limits)
      : config_(config), metrics_(metrics), draining_(draining), pools_(pools), redis_limits_(redis_limits) {}

  Plain health() const { return {200, R"({"status":"ok"})"}; }
  Plain ready() const;
  Plain metrics() const;
  // `id` empty: the list. 404 model_not_found for a model the tenant may not use.
  Expected<Plain> models(const TenantConfig* tenant, std::string_view id) const;

 private:
  const Config& config_;
  const Metrics& metrics_;
  const std::atomic<bool>& draining_;
  const Pools* pools_;
  store::RedisLimitStore* redis_limits_;
};

}  // namespace tg::server
