// Limit-store benchmark (prints numbers, never fails):
//   build/bench/limits_bench
// Admission checks per second on one core through the in-process store for a
// 5-level path (global → org → tenant → user → key) plus model and
// deployment, with limits at every level, admit + settle each time (what one
// request costs the store). Users rotate over 1,000 per tenant, 20 tenants.
#include <chrono>
#include <cstdio>
#include <string>
#include <variant>
#include <vector>

#include "core/config_load.h"
#include "limits/limit_store.h"

int main() {
  std::string yaml = R"(
limits:
  global: { requests_per_min: 1000000000, tokens_per_min: 1000000000 }
orgs: [{ id: demo, limits: { requests_per_min: 1000000000, tokens_per_min: 1000000000 } }]
models:
  - alias: chat
    limits: { requests_per_min: 1000000000 }
    deployments: [{ id: chat-a, provider: sim, limits: { concurrency: 1000000 } }]
tenants:
)";
  for (int t = 0; t < 20; ++t)
    yaml += "  - { id: t" + std::to_string(t) +
            ", org: demo, limits: { requests_per_min: 1000000000, tokens_per_min: 1000000000, concurrency: 100000 }, "
            "user_limits: { requests_per_min: 1000000000, tokens_per_min: 1000000000 } }\n";
  auto r = tg::load_config(yaml, "bench", [](const std::string&) { return std::optional<std::string>(); });
  if (auto* p = std::get_if<tg::ConfigProblems>(&r)) {
    std::fprintf(stderr, "%s", p->joined().c_str());
    return 1;
  }
  auto store = tg::limits::in_process_limit_store(std::get<tg::Config>(r));
  std::vector<std::string> tenants, users, keys;
  for (int t = 0; t < 20; ++t) tenants.push_back("t" + std::to_string(t));
  for (int u = 0; u < 1000; ++u) users.push_back("user" + std::to_string(u));
  for (int u = 0; u < 1000; ++u) keys.push_back("key" + std::to_string(u));

  using clock = std::chrono::steady_clock;
  tg::limits::Micros now = 1'000'000;  // virtual time, shared by every run
  auto run = [&](std::size_t n, bool with_run, std::size_t n_users) {
    std::size_t refused = 0;
    std::string req_id, run_id;
    auto start = clock::now();
    for (std::size_t i = 0; i < n; ++i) {
      tg::limits::Ask a;
      a.org = "demo";
      a.tenant = tenants[i % 20];
      a.user = users[(i / 20) % n_users];
      a.key = keys[(i / 20) % n_users];
      a.model = "chat";
      a.deployment = "chat-a";
      a.tokens = 1200;
      if (with_run) {
        run_id = tenants[i % 20] + "-" + users[(i / 20) % n_users];  // one run per user
        a.run_id = run_id;
        req_id = "req" + std::to_string(i);
        a.request_id = req_id;
      }
      now += 100;  // 10,000 requests a second of virtual time: under every limit, every bucket refills each check
      auto adm = store->admit(a, now);
      if (!adm) {
        if (!refused) std::printf("first refusal: %s\n", adm.error().message.c_str());
        ++refused;
        continue;
      }
      adm->settle(900, 0, now);
    }
    double s = std::chrono::duration<double>(clock::now() - start).count();
    std::printf("%-30s %5zu users x 20 tenants: %10.0f checks/s  (%4.0f ns each, %zu refused)\n",
                with_run ? "7 scopes + agent run" : "7 scopes", n_users, static_cast<double>(n) / s,
                s * 1e9 / static_cast<double>(n), refused);
  };
  run(200'000, false, 1000);  // warm-up: creates every node
  // A hot set (the caches hold every scope) and 20,000 distinct users.
  run(2'000'000, false, 10);
  run(2'000'000, false, 1000);
  run(1'000'000, true, 10);
  run(1'000'000, true, 1000);
  return 0;
}
