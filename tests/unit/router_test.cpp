#include <gtest/gtest.h>

#include <map>

#include "core/config_load.h"
#include "upstream/router.h"

namespace tg::upstream {
namespace {

class FakeProvider final : public Provider {
 public:
  explicit FakeProvider(const DeploymentConfig& d) : d_(d) {}
  boost::asio::awaitable<UpstreamReply> send(const UpstreamRequest&, StreamSink&) override { co_return UpstreamReply{}; }
  const DeploymentConfig& deployment() const override { return d_; }

 private:
  const DeploymentConfig& d_;
};

Config load(const char* yaml) {
  auto r = load_config(yaml, "t", [](const std::string&) { return std::nullopt; });
  return std::get<Config>(std::move(r));
}

TEST(Router, SpreadsByWeightSmoothly) {
  Config c = load(R"(
orgs: [{id: o}]
models:
  - alias: m
    deployments: [{id: a, provider: sim, weight: 3}, {id: b, provider: sim, weight: 1}]
tenants: [{id: t, org: o}]
)");
  Router r(c, [](const DeploymentConfig& d) { return std::make_unique<FakeProvider>(d); });
  std::string seq;
  for (int i = 0; i < 8; ++i) seq += r.route("m", nullptr).value()->deployment().id;
  EXPECT_EQ(seq, "aabaaaba");  // a a b a, repeated: never a a a b
  std::map<std::string, int> n;
  for (int i = 0; i < 4000; ++i) ++n[r.route("m", nullptr).value()->deployment().id];
  EXPECT_EQ(n["a"], 3000);
  EXPECT_EQ(n["b"], 1000);
}

TEST(Router, UnknownAndDisallowedModelsLookTheSame) {
  Config c = load(R"(
orgs: [{id: o}]
models:
  - {alias: m, deployments: [{id: a, provider: sim}]}
  - {alias: secret, deployments: [{id: s, provider: sim}]}
tenants: [{id: t, org: o, models: [m]}]
)");
  Router r(c, [](const DeploymentConfig& d) { return std::make_unique<FakeProvider>(d); });
  const TenantConfig* t = &c.tenants[0];
  EXPECT_TRUE(r.route("m", t).ok());
  auto hidden = r.route("secret", t);
  auto missing = r.route("nope", t);
  ASSERT_FALSE(hidden.ok());
  EXPECT_EQ(hidden.error().status, 404);
  EXPECT_EQ(hidden.error().code, "model_not_found");
  EXPECT_EQ(missing.error().code, hidden.error().code);
  EXPECT_TRUE(r.route("secret", nullptr).ok());
}

}  // namespace
}  // namespace tg::upstream
