// Usage and spend over the ledger: requests, tokens and cost grouped by any of
// tenant, user, key, feature, model, deployment and run, optionally per hour
// or day (UTC), within [from, to). Shared by the admin API, the budget
// preload and the `tenantgate usage` CLI. Reads the SQLite or the PostgreSQL
// ledger with the same SQL.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace tg::meter { class BudgetBook; }

namespace tg::ledger {

struct UsageQuery {
  std::vector<std::string> group_by;  // tenant, user, key, feature, model, deployment, run
  std::string granularity;            // "", "hour" or "day"
  std::optional<std::int64_t> from_ms, to_ms;
  std::string tenant;  // restrict to one tenant when non-empty
};

struct UsageRow {
  std::vector<std::string> groups;  // in group_by order
  std::int64_t period_start_ms = 0;  // when granularity is set
  std::uint64_t requests = 0, prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
  std::int64_t cost_micros = 0;
};

// Returns an error message (which field, what is allowed) for a bad query.
std::optional<std::string> validate(const UsageQuery& q);

// Where the ledger is: a SQLite file, or PostgreSQL when conninfo is set.
struct LedgerSource {
  std::string sqlite_path;
  std::string postgres_conninfo;
};

// Runs one read-only statement with $1..$n text parameters against the
// ledger (the same SQL for both stores) and hands each row to `row`; a cell
// reads "" for NULL. Throws std::runtime_error on database errors.
using LedgerCell = std::function<std::string(int column)>;
void read_ledger(const LedgerSource& src, const std::string& sql, const std::vector<std::string>& params,
                 const std::function<void(const LedgerCell&)>& row);

// REQUIRES: validate(q) passed. Throws std::runtime_error on database errors.
std::vector<UsageRow> query_usage(const LedgerSource& src, const UsageQuery& q);

// Renders rows as CSV (header line first) or as an aligned text table.
std::string usage_csv(const UsageQuery& q, const std::vector<UsageRow>& rows);
std::string usage_table(const UsageQuery& q, const std::vector<UsageRow>& rows);

// Feeds this month's spend from the ledger's hourly rollup into `book`, so a
// restart does not reset budgets. A missing or empty ledger adds nothing.
void preload_budgets(meter::BudgetBook& book, const LedgerSource& src, std::chrono::system_clock::time_point now);

// "2026-11-27", "2026-11-27T10:00:00Z" or Unix milliseconds -> Unix ms (UTC).
std::optional<std::int64_t> parse_time(const std::string& s);
std::string format_micros_usd(std::int64_t micros);  // 1234567 -> "1.234567"

}  // namespace tg::ledger
