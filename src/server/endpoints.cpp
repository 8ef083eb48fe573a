#include "server/endpoints.h"

#include <boost/json.hpp>
#include <fmt/format.h>

#include "sim/sim_provider.h"
#include "upstream/router.h"

namespace tg::server {
namespace json = boost::json;

Plain Endpoints::ready() const {
  if (draining_.load()) return {503, R"({"status":"draining"})"};
  return {200, R"({"status":"ready"})"};
}

Plain Endpoints::metrics() const {
  std::string extra = fmt::format(
      "# HELP tg_sim_cancelled_streams_total Sim streams cut short because the client went away\n"
      "# TYPE tg_sim_cancelled_streams_total counter\ntg_sim_cancelled_streams_total {}\n",
      sim::SimProvider::cancelled_streams.load());
  if (pools_) extra += sched::render_pool_metrics(*pools_);
  if (redis_limits_)
    extra += fmt::format(
        "# HELP tg_limit_store_up 1 while the shared (Redis) limit store answers\n# TYPE tg_limit_store_up gauge\n"
        "tg_limit_store_up {}\n# HELP tg_limit_store_fallbacks_total Requests decided without the shared limit "
        "store (local share or fail closed)\n# TYPE tg_limit_store_fallbacks_total counter\n"
        "tg_limit_store_fallbacks_total {}\n",
        redis_limits_->stats().up.load() ? 1 : 0, redis_limits_->stats().fallbacks.load());
  return {200, metrics_.render(extra), "text/plain; version=0.0.4; charset=utf-8"};
}

Expected<Plain> Endpoints::models(const TenantConfig* t, std::string_view id) const {
  auto model_json = [](const ModelConfig& m) {
    json::object o;
    o["id"] = m.alias;
    o["object"] = "model";
    o["created"] = 1735689600;  // fixed: aliases have no creation time of their own
    o["owned_by"] = m.owned_by;
    return o;
  };
  if (!id.empty()) {
    const ModelConfig* m = config_.find_model(std::string(id));
    if (!m || !upstream::Router::allowed(t, m->alias))
      return not_found(fmt::format("The model '{}' does not exist or you do not have access to it.", id),
                       "model_not_found", "model");
    return Plain{200, json::serialize(model_json(*m))};
  }
  json::array data;
  for (const auto& m : config_.models)
    if (upstream::Router::allowed(t, m.alias)) data.push_back(model_json(m));
  json::object list;
  list["object"] = "list";
  list["data"] = std::move(data);
  return Plain{200, json::serialize(list)};
}

}  // namespace tg::server
