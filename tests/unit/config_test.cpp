#include <gtest/gtest.h>

#include "core/config_load.h"

namespace tg {
namespace {

EnvLookup env_with(std::map<std::string, std::string> vars) {
  return [vars](const std::string& k) -> std::optional<std::string> {
    auto it = vars.find(k);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

const char* kGood = R"(
server: { listen: "127.0.0.1:9000", threads: 3, max_body_bytes: 2048 }
orgs: [{ id: o }]
models:
  - alias: gpt
    deployments:
      - { id: d1, provider: openai, model: gpt-4o-mini, base_url: "https://api.example.com/v1/", api_key_env: K, weight: 3 }
      - { id: d2, provider: sim }
tenants:
  - id: t
    org: o
    users: [u1, { id: u2 }]
    models: [gpt]
    keys:
      - { id: k1, user: u1, sha256: 0000000000000000000000000000000000000000000000000000000000000001 }
      - { id: k2, sha256: 0000000000000000000000000000000000000000000000000000000000000002 }
)";

std::vector<std::string> problems(const std::string& yaml, EnvLookup env = env_with({})) {
  auto r = load_config(yaml, "t.yaml", env);
  if (auto* p = std::get_if<ConfigProblems>(&r)) return p->problems;
  return {};
}

bool has(const std::vector<std::string>& ps, const std::string& needle) {
  for (const auto& p : ps)
    if (p.find(needle) != std::string::npos) return true;
  return false;
}

TEST(Config, LoadsAValidFile) {
  auto r = load_config(kGood, "t.yaml", env_with({{"K", "sk-1"}}));
  ASSERT_TRUE(std::holds_alternative<Config>(r)) << std::get<ConfigProblems>(r).joined();
  const Config& c = std::get<Config>(r);
  EXPECT_EQ(c.server.listen.port, 9000);
  EXPECT_EQ(c.server.threads, 3u);
  EXPECT_EQ(c.server.max_body_bytes, 2048u);
  ASSERT_EQ(c.models.size(), 1u);
  const auto& d1 = c.models[0].deployments[0];
  EXPECT_EQ(d1.scheme, "https");
  EXPECT_EQ(d1.host, "api.example.com");
  EXPECT_EQ(d1.port, 443);
  EXPECT_EQ(d1.base_path, "/v1");
  EXPECT_EQ(d1.api_key, "sk-1");
  EXPECT_EQ(d1.weight, 3u);
  EXPECT_EQ(c.models[0].deployments[1].model, "gpt");  // defaults to the alias
  ASSERT_EQ(c.tenants[0].users.size(), 2u);
  EXPECT_EQ(c.tenants[0].users[1].id, "u2");
  EXPECT_EQ(c.tenants[0].keys[0].sha256[31], 1);
  EXPECT_TRUE(c.tenants[0].keys[1].user.empty());
}

TEST(Config, EmbeddedDefaultIsValid) {
  auto r = load_config(embedded_default_config(), "<embedded default>", env_with({}));
  ASSERT_TRUE(std::holds_alternative<Config>(r)) << std::get<ConfigProblems>(r).joined();
  const Config& c = std::get<Config>(r);
  EXPECT_EQ(c.tenants.size(), 2u);
  for (const auto& t : c.tenants) EXPECT_EQ(t.users.size(), 2u);
  EXPECT_EQ(c.server.listen.to_string(), "127.0.0.1:8080");
}

TEST(Config, NamesFileLinePathAndReason) {
  std::string y = kGood;
  y.replace(y.find("user: u1"), 8, "user: bob");
  auto ps = problems(y, env_with({{"K", "x"}}));
  ASSERT_EQ(ps.size(), 1u);
  EXPECT_EQ(ps[0], "t.yaml:15: tenants[0].keys[0].user: unknown user 'bob' (tenant 't' has: u1, u2)");
}

TEST(Config, ReportsEveryProblemAtOnce) {
  std::string y = R"(
server: { listen: "nohost", threads: -1, header_timeout_ms: soon }
orgs: [{ id: o }, { id: o }]
models:
  - alias: m
    deployments:
      - { id: d, provider: carrier-pigeon }
      - { id: d, provider: openai, base_url: "ftp://x/v1" }
tenants:
  - { id: t, org: nope, keys: [{ id: k, sha256: abc }], models: [zzz], colour: blue }
)";
  auto ps = problems(y);
  EXPECT_TRUE(has(ps, "server.listen: 'nohost' is not HOST:PORT")) << ps.size();
  EXPECT_TRUE(has(ps, "server.threads: -1 is out of range [0, 256]"));
  EXPECT_TRUE(has(ps, "server.header_timeout_ms: must be an integer"));
  EXPECT_TRUE(has(ps, "orgs[1].id: duplicate org id 'o'"));
  EXPECT_TRUE(has(ps, "models[0].deployments[0].provider: unknown provider 'carrier-pigeon'"));
  EXPECT_TRUE(has(ps, "models[0].deployments[1].id: duplicate deployment id 'd'"));
  EXPECT_TRUE(has(ps, "models[0].deployments[1].base_url: scheme 'ftp' is not http or https"));
  EXPECT_TRUE(has(ps, "models[0].deployments[1].model: is required for provider 'openai'"));
  EXPECT_TRUE(has(ps, "tenants[0].org: unknown org 'nope'"));
  EXPECT_TRUE(has(ps, "tenants[0].keys[0].sha256: must be 64 hex chars"));
  EXPECT_TRUE(has(ps, "tenants[0].models[0]: unknown model alias 'zzz'"));
  EXPECT_TRUE(has(ps, "tenants[0].colour: unknown field"));
}

TEST(Config, MissingEnvironmentVariableIsAnError) {
  auto ps = problems(kGood);
  ASSERT_EQ(ps.size(), 1u);
  EXPECT_NE(ps[0].find("models[0].deployments[0].api_key_env: environment variable 'K' is not set"), std::string::npos);
}

TEST(Config, DuplicateKeysAndTenantsAreRejected) {
  std::string y = kGood;
  y.replace(y.find("0000000000000000000000000000000000000000000000000000000000000002"), 64,
            "0000000000000000000000000000000000000000000000000000000000000001");
  auto ps = problems(y, env_with({{"K", "x"}}));
  EXPECT_TRUE(has(ps, "tenants[0].keys[1].sha256: the same key is configured twice"));
}

TEST(Config, SyntaxErrorsCarryTheLine) {
  auto ps = problems("orgs: [\n  - {\n");
  ASSERT_EQ(ps.size(), 1u);
  EXPECT_NE(ps[0].find("t.yaml:"), std::string::npos);
  EXPECT_NE(ps[0].find("YAML syntax error"), std::string::npos);
}

TEST(HostPort, Parses) {
  std::string why;
  EXPECT_EQ(parse_host_port("0.0.0.0:80", &why)->host, "0.0.0.0");
  EXPECT_EQ(parse_host_port("[::1]:8080", &why)->host, "::1");
  EXPECT_EQ(parse_host_port(":9", &why)->host, "127.0.0.1");
  EXPECT_EQ(parse_host_port("127.0.0.1:0", &why)->port, 0);
  EXPECT_FALSE(parse_host_port("host:99999", &why));
  EXPECT_FALSE(parse_host_port("host:", &why));
  EXPECT_FALSE(parse_host_port("[::1]8080", &why));
  EXPECT_EQ(HostPort({"::1", 5}).to_string(), "[::1]:5");
}

}  // namespace
}  // namespace tg
