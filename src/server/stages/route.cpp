#include "server/stages/route.h"

namespace tg::server::stages {

Expected<Routed> Routing::run(const std::string& model, const TenantConfig* tenant) const {
  auto provider = router_.route(model, tenant);
  if (!provider) return provider.error();
  return Routed{*provider, config_.find_model(model)};
}

}  // namespace tg::server::stages
