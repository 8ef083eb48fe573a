#include "core/config.h"

namespace tg {

std::string HostPort::to_string() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

const ModelConfig* Config::find_model(const std::string& alias) const {
  for (const auto& m : models)
    if (m.alias == alias) return &m;
  return nullptr;
}

const TenantConfig* Config::find_tenant(const std::string& id) const {
  for (const auto& t : tenants)
    if (t.id == id) return &t;
  return nullptr;
}

}  // namespace tg
