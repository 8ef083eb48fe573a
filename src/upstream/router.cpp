#include "upstream/router.h"

#include <algorithm>
#include <fmt/format.h>

namespace tg::upstream {

Router::Router(const Config& config, const ProviderFactory& make) {
  for (const auto& m : config.models) {
    auto& members = by_alias_[m.alias];
    for (const auto& d : m.deployments) members.push_back(Member{make(d), d.weight, 0});
  }
}

bool Router::allowed(const TenantConfig* tenant, const std::string& alias) {
  if (!tenant || tenant->models.empty()) return true;
  return std::find(tenant->models.begin(), tenant->models.end(), alias) != tenant->models.end();
}

Expected<Provider*> Router::route(const std::string& alias, const TenantConfig* tenant) {
  auto it = by_alias_.find(alias);
  if (it == by_alias_.end() || it->second.empty() || !allowed(tenant, alias)) {
    return not_found(fmt::format("The model '{}' does not exist or you do not have access to it. "
                                 "GET /v1/models lists the models your key can use.", alias),
                     "model_not_found", "model");
  }
  auto& members = it->second;
  if (members.size() == 1) return members.front().provider.get();
  std::int64_t total = 0;
  Member* best = nullptr;
  for (auto& m : members) {
    m.current += m.weight;
    total += m.weight;
    if (!best || m.current > best->current) best = &m;
  }
  best->current -= total;
  return best->provider.get();
}

}  // namespace tg::upstream
