// Router maps a model alias to one of its deployments, for one worker
// thread. Deployments are chosen by smooth weighted round-robin (nginx's
// algorithm: deterministic, and spreads a weight-3:1 pair as a a b a, not
// a a a b). Tenants with an allow-list only see their listed aliases.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "upstream/provider.h"

namespace tg::upstream {

class Router {
 public:
  using ProviderFactory = std::function<std::unique_ptr<Provider>(const DeploymentConfig&)>;
  Router(const Config& config, const ProviderFactory& make);
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // 404 model_not_found when the alias is unknown or not allowed for `tenant`
  // (the two are indistinguishable to the caller on purpose).
  Expected<Provider*> route(const std::string& alias, const TenantConfig* tenant);

  static bool allowed(const TenantConfig* tenant, const std::string& alias);

 private:
  struct Member {
    std::unique_ptr<Provider> provider;
    std::int64_t weight = 1;
    std::int64_t current = 0;
  };
  std::unordered_map<std::string, std::vector<Member>> by_alias_;
};

}  // namespace tg::upstream
