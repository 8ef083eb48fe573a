#include <gtest/gtest.h>

#include <fmt/format.h>

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
  y += R"(  - id: t
    org: o
    keys:
      - { id: k1, sha256: 0000000000000000000000000000000000000000000000000000000000000003 }
)";
  auto ps = problems(y, env_with({{"K", "x"}}));
  EXPECT_EQ(ps, (std::vector<std::string>{
                    "t.yaml:16: tenants[0].keys[1].sha256: the same key is configured twice",
                    "t.yaml:17: tenants[1].id: duplicate tenant id 't'",
                    "t.yaml:20: tenants[1].keys[0].id: duplicate key id 'k1' (ids are gateway-wide)",
                }));
}

// yaml-cpp keeps both pairs of a repeated key and lookups see the first, so
// without the check the second value would be ignored without a word.
TEST(Config, RepeatedYamlKeysAreRejectedAtEveryDepthWithLineAndColumn) {
  std::string y = kGood;
  y.replace(y.find("users: [u1"), 0, "limits: { requests_per_min: 10, requests_per_min: 1000 }\n    ");
  y.replace(y.find("{ id: k2,"), 9, "{ id: k2, id: k3,");
  y.replace(y.find("{ id: d2, provider: sim }"), 25, "{ id: d2, provider: sim, sim: { engine: fixed, engine: fixed } }");
  y += "server: { threads: 4 }\n";
  auto ps = problems(y, env_with({{"K", "x"}}));
  EXPECT_EQ(ps, (std::vector<std::string>{
                    "t.yaml:8:56: models[0].deployments[1].sim.engine: duplicate key 'engine' (first at line 8, "
                    "column 41); YAML would silently keep only one of them: remove or merge the other",
                    "t.yaml:12:37: tenants[0].limits.requests_per_min: duplicate key 'requests_per_min' (first at "
                    "line 12, column 15); YAML would silently keep only one of them: remove or merge the other",
                    "t.yaml:17:19: tenants[0].keys[1].id: duplicate key 'id' (first at line 17, column 11); YAML "
                    "would silently keep only one of them: remove or merge the other",
                    "t.yaml:18:1: server: duplicate key 'server' (first at line 2, column 1); YAML would silently "
                    "keep only one of them: remove or merge the other",
                }));
}

// A YAML list of `n` aliases of the anchor `name`: many entries from few bytes.
std::string aliases(const std::string& name, std::size_t n) {
  std::string s = "[";
  for (std::size_t i = 0; i < n; ++i) s += (i ? ",*" : "*") + name;
  return s + "]";
}

TEST(Config, FileOverTheSizeLimitIsRefusedBeforeParsing) {
  std::string y = "orgs: [{ id: o }]\nmodels: [{ alias: m, deployments: [{ id: d, provider: sim }] }]\ntenants:\n";
  for (std::size_t i = 0; y.size() <= config_bounds::kMaxFileBytes; ++i)
    y += fmt::format("  - {{ id: tenant-{}, org: o, models: [m], limits: {{ requests_per_min: 600 }} }}\n", i);
  auto ps = problems(y);
  ASSERT_EQ(ps.size(), 1u);
  EXPECT_EQ(ps[0], fmt::format("t.yaml: the file is {} bytes (4.0 MiB), over the limit of 4194304 bytes (4 MiB) "
                               "for a config file, as parsing YAML takes up to 250 bytes of memory per byte; "
                               "split the tenants across several gateway instances, each with its own config "
                               "file, or share repeated limits with YAML anchors (&name) and aliases (*name)",
                               y.size()));
}

TEST(Config, ListsOverTheirBoundsAreRefusedBeforeAnythingIsBuilt) {
  using namespace config_bounds;
  std::string top = "x: [&o { id: o }, &m { alias: m }, &t { id: t }, &b { scope: tenant }]\norgs: " +
                    aliases("o", kMaxOrgs + 1) + "\nmodels: " + aliases("m", kMaxModels + 1) + "\ntenants: " +
                    aliases("t", kMaxTenants + 1) + "\nbudgets: " + aliases("b", kMaxBudgets + 1) + "\n";
  EXPECT_EQ(problems(top), (std::vector<std::string>{
                               "t.yaml:2: orgs: 100001 entries, over the limit of 100000 orgs per config; use fewer "
                               "orgs, or split the tenants across several gateway instances, each with its own "
                               "config file",
                               "t.yaml:4: tenants: 100001 entries, over the limit of 100000 tenants per config; "
                               "split the tenants across several gateway instances, each with its own config file",
                               "t.yaml:3: models: 1001 entries, over the limit of 1000 models per config; use fewer "
                               "models",
                               "t.yaml:5: budgets: 100001 entries, over the limit of 100000 budgets per config; use "
                               "fewer budgets (one of scope tenant covers all of its users and keys)",
                           }));

  std::string users;  // exactly the bound: accepted
  for (std::size_t i = 0; i < kMaxUsersPerTenant; ++i) users += fmt::format("{}u{}", i ? "," : "", i);
  std::string y = "orgs: [{ id: o }]\nx: [&k { id: k }, &d { id: d, provider: sim }]\nmodels:\n"
                  "  - { alias: a, deployments: " + aliases("d", kMaxDeployments / 2) + " }\n"
                  "  - { alias: b, deployments: " + aliases("d", kMaxDeployments / 2 + 1) + " }\n"
                  "tenants:\n  - { id: t0, org: o, users: [" + users + "] }\n"
                  "  - { id: t1, org: o, users: [" + users + ",one-more] }\n"
                  "  - { id: t2, org: o, keys: " + aliases("k", kMaxKeysPerTenant + 1) + " }\n";
  EXPECT_EQ(problems(y), (std::vector<std::string>{
                             "t.yaml:8: tenants[1].users: 10001 entries, over the limit of 10000 users per tenant; "
                             "use fewer users, or split this tenant into several tenants",
                             "t.yaml:9: tenants[2].keys: 10001 entries, over the limit of 10000 keys per tenant; use "
                             "fewer keys, or split this tenant into several tenants",
                             "t.yaml:5: models[1].deployments: brings the deployments to 1001, over the limit of "
                             "1000 per config (over all models); use fewer deployments",
                         }));
}

TEST(Config, AliasesAreSharedNotExpandedAndBombsAreRefused) {
  // An anchor reused by every tenant loads, and is checked for repeated keys once.
  std::string y = kGood;
  y.replace(y.find("users: [u1"), 0, "limits: &std { requests_per_min: 60 }\n    ");
  y += "  - { id: t2, org: o, limits: *std }\n";
  auto r = load_config(y, "t.yaml", env_with({{"K", "x"}}));
  ASSERT_TRUE(std::holds_alternative<Config>(r)) << std::get<ConfigProblems>(r).joined();
  EXPECT_EQ(std::get<Config>(r).tenants[1].limits.requests_per_min.ceil, 60);

  // The classic bomb, each anchor ten aliases of the one before (10^8 nodes
  // from 600 bytes), was refused before too (its items are lists where users
  // go); the walk now stops where the anchors pass the bound, before tenants.
  std::string bomb = "orgs: [{ id: o }]\nx:\n  - &u0 [u0, u1, u2, u3, u4, u5, u6, u7, u8, u9]\n";
  for (int i = 1; i < 8; ++i) bomb += fmt::format("  - &u{} {}\n", i, aliases(fmt::format("u{}", i - 1), 10));
  bomb += "models: []\ntenants: [{ id: t, org: o, users: *u7 }]\n";
  EXPECT_EQ(problems(bomb), (std::vector<std::string>{
                                "t.yaml:9: x[6][6]: here the config passes 8000000 YAML nodes with its "
                                "aliases (*name) expanded, the most a config may hold; an alias repeats all of its "
                                "anchor's contents: repeat smaller anchors, or fewer times",
                            }));

  // A flat list shared by many tenants is the bomb that was not refused: these
  // 100 KB took the loader 34 s and 700 MB to build 8 million users.
  std::string users;
  for (int i = 0; i < 10'000; ++i) users += fmt::format("{}u{}", i ? "," : "", i);
  std::string flat = "orgs: [{ id: o }]\nmodels: []\nx: &u [" + users + "]\ntenants:\n";
  for (int i = 0; i < 800; ++i) flat += fmt::format("  - {{ id: t{}, org: o, users: *u }}\n", i);
  EXPECT_EQ(problems(flat), (std::vector<std::string>{
                                "t.yaml:803: tenants[798].users: here the config passes 8000000 YAML nodes with its "
                                "aliases (*name) expanded, the most a config may hold; an alias repeats all of its "
                                "anchor's contents: repeat smaller anchors, or fewer times",
                            }));

  EXPECT_EQ(problems("orgs: &o [{ id: o, limits: *o }]\n"),
            (std::vector<std::string>{"t.yaml:1: orgs[0].limits: is an alias of a node that contains it (anchored "
                                      "at line 1); a config cannot contain itself"}));
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
