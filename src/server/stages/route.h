// route: the deployment that serves the model the client asked for
// (upstream::Router: the tenant's allowed models, weighted choice among a
// model's deployments). 404 model_not_found for a model that does not exist
// or that the tenant may not use: the two are indistinguishable. Per worker.
#pragma once

#include "core/config.h"
#include "core/error.h"
#include "upstream/router.h"

namespace tg::server::stages {

struct Routed {
  upstream::Provider* provider = nullptr;
  const ModelConfig* model = nullptr;
};

class Routing {
 public:
  Routing(upstream::Router& router, const Config& config) : router_(router), config_(config) {}
  Expected<Routed> run(const std::string& model, const TenantConfig* tenant) const;

 private:
  upstream::Router& router_;
  const Config& config_;
};

}  // namespace tg::server::stages
