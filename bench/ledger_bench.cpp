// Ledger benchmark (prints numbers, never fails):
//   build/bench/ledger_bench [rows=1000000]
// 1) sustained rows/s through LedgerWriter into a SQLite ledger (WAL);
// 2) `usage` queries over the result (the admin API and CLI path).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "ledger/ledger.h"
#include "ledger/usage_query.h"

int main(int argc, char** argv) {
  const std::size_t n = argc > 1 ? std::stoul(argv[1]) : 1'000'000;
  auto dir = std::filesystem::temp_directory_path() / ("tg-ledger-bench-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "ledger.db").string();
  using clock = std::chrono::steady_clock;
  const std::int64_t t0_ms = 1'795'000'000'000;  // Nov 2026
  // Writes n rows (one busy day: requests from 500 users of 20 tenants, each
  // user with its own key, over two features and two models) and returns
  // the seconds until all are stored.
  auto write_rows = [&](const std::string& db, const std::string& journal, std::size_t rows) {
    auto start = clock::now();
    tg::ledger::LedgerWriter w(tg::ledger::open_sqlite_ledger(db), journal);
    for (std::size_t i = 0; i < rows; ++i) {
      tg::ledger::LedgerRow r;
      r.ts_ms = t0_ms + static_cast<std::int64_t>(i) * 86'400'000 / static_cast<std::int64_t>(rows);
      char id[32];
      std::snprintf(id, sizeof id, "req_%020zu", i);
      r.who.request_id = id;
      r.who.org = "org-" + std::to_string(i % 3);
      const std::size_t user = (i * 7919) % 500;
      r.who.tenant = "tenant-" + std::to_string(user % 20);
      r.who.user = "user-" + std::to_string(user);
      r.who.key_id = "key-" + std::to_string(user);
      r.who.feature = i % 4 ? "chat" : "search";
      r.who.run_id = i % 10 ? "" : "run-" + std::to_string(i % 1000);
      r.who.model = i % 2 ? "gpt-4o-mini" : "gpt-4o";
      r.who.deployment = "openai-main";
      r.endpoint = "chat.completions";
      r.prompt_tokens = 100 + i % 900;
      r.completion_tokens = 10 + i % 300;
      r.usage_source = "upstream";
      r.cost_micros = static_cast<std::int64_t>(i % 5000);
      r.status = 200;
      r.latency_us = 1000;
      w.submit(std::move(r));
    }
    w.flush();
    return std::chrono::duration<double>(clock::now() - start).count();
  };
  {
    // The journal's cost, side by side on fresh files (one write(2) per row).
    const std::size_t m = std::min<std::size_t>(n, 200'000);
    double off = write_rows((dir / "nojournal.db").string(), "", m);
    double on = write_rows((dir / "journal.db").string(), (dir / "journal.db.tg-journal").string(), m);
    std::printf("ledger write, %zu rows: without journal %.0f rows/s, with journal %.0f rows/s (%.2fx)\n", m,
                static_cast<double>(m) / off, static_cast<double>(m) / on, off / on);
  }
  {
    double s = write_rows(path, path + ".tg-journal", n);
    std::printf("ledger write: %zu rows in %.2f s = %.0f rows/s sustained (one writer thread, batched WAL, journaled)\n",
                n, s, static_cast<double>(n) / s);
  }
  struct Case {
    const char* name;
    tg::ledger::UsageQuery q;
  };
  Case cases[] = {
      {"group_by=tenant", {{"tenant"}, "", {}, {}, ""}},
      {"group_by=tenant,user,feature,model", {{"tenant", "user", "feature", "model"}, "", {}, {}, ""}},
      {"group_by=tenant,model granularity=day", {{"tenant", "model"}, "day", {}, {}, ""}},
      {"tenant=tenant-7 group_by=user granularity=hour", {{"user"}, "hour", {}, {}, "tenant-7"}},
      {"group_by=tenant from/to six hours", {{"tenant"}, "", t0_ms / 3'600'000 * 3'600'000 + 3'600'000,
                                             t0_ms / 3'600'000 * 3'600'000 + 7 * 3'600'000, ""}},
      {"group_by=run (raw rows, no rollup)", {{"run"}, "", {}, {}, ""}},
  };
  for (auto& c : cases) {
    auto start = clock::now();
    auto rows = tg::ledger::query_usage({path, ""}, c.q);
    double ms = std::chrono::duration<double, std::milli>(clock::now() - start).count();
    std::printf("usage query over %zu rows, %-48s %8.1f ms (%zu result rows)\n", n, c.name, ms, rows.size());
  }
  std::filesystem::remove_all(dir);
  return 0;
}
