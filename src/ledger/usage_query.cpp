#include "ledger/usage_query.h"

#include "meter/budget.h"

#include <libpq-fe.h>
#include <sqlite3.h>

#include <chrono>
#include <fmt/format.h>
#include <map>
#include <stdexcept>

namespace tg::ledger {
namespace {

const std::map<std::string, std::string>& columns() {
  static const std::map<std::string, std::string> k{{"tenant", "tenant"}, {"user", "user"},
                                                    {"key", "key_id"},   {"feature", "feature"},
                                                    {"model", "model"},  {"deployment", "deployment"},
                                                    {"run", "run_id"},   {"org", "org"}};
  return k;
}

std::string iso(std::int64_t ms) {
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec);
}

}  // namespace

std::optional<std::string> validate(const UsageQuery& q) {
  for (const auto& g : q.group_by)
    if (!columns().count(g))
      return fmt::format("group_by: unknown field '{}' (use tenant, user, key, feature, model, deployment, run, org)", g);
  if (!q.granularity.empty() && q.granularity != "hour" && q.granularity != "day")
    return fmt::format("granularity: '{}' is not hour or day", q.granularity);
  if (q.from_ms && q.to_ms && *q.from_ms >= *q.to_ms) return "from must be before to";
  return std::nullopt;
}

namespace {

// One SQL text for both stores: "user" quoted (reserved in PostgreSQL), and
// $1..$3 parameters, which SQLite also binds by position.
struct UsageSql {
  std::string text;
  bool bucketed = false;
};

UsageSql usage_sql(const UsageQuery& q) {
  // The hourly rollup answers whenever the query needs no run id and its time
  // bounds fall on hours; otherwise the raw rows do.
  constexpr std::int64_t kHour = 3'600'000;
  bool rollup = (!q.from_ms || *q.from_ms % kHour == 0) && (!q.to_ms || *q.to_ms % kHour == 0);
  for (const auto& g : q.group_by) rollup = rollup && g != "run";
  std::string select, group;
  for (const auto& g : q.group_by) {
    std::string col = g == "user" ? "\"user\"" : columns().at(g);
    select += col + ", ";
    group += (group.empty() ? "" : ", ") + col;
  }
  std::int64_t bucket = q.granularity == "hour" ? 3'600'000 : q.granularity == "day" ? 86'400'000 : 0;
  const char* ts = rollup ? "hour_ms" : "ts_ms";
  if (bucket) {
    select += fmt::format("({1} / {0}) * {0} AS period, ", bucket, ts);
    group += std::string(group.empty() ? "" : ", ") + "period";
  }
  std::string sql = "SELECT " + select +
                    (rollup ? "SUM(requests), SUM(prompt_tokens), SUM(completion_tokens), SUM(cached_tokens), "
                              "SUM(cost_micros) FROM usage_hourly"
                            : "COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), SUM(cached_tokens), "
                              "SUM(cost_micros) FROM ledger") +
                    fmt::format(" WHERE {0} >= $1 AND {0} < $2", ts);
  if (!q.tenant.empty()) sql += " AND tenant = $3";
  if (!group.empty()) sql += " GROUP BY " + group + " ORDER BY " + group;
  return {sql, bucket != 0};
}

// One result row, in usage_sql's column order, from either store's accessors.
template <class Text, class Int>
UsageRow decode_row(const UsageQuery& q, bool bucketed, Text text, Int num) {
  UsageRow r;
  int c = 0;
  for (std::size_t g = 0; g < q.group_by.size(); ++g) r.groups.push_back(text(c++));
  if (bucketed) r.period_start_ms = num(c++);
  r.requests = static_cast<std::uint64_t>(num(c++));
  r.prompt_tokens = static_cast<std::uint64_t>(num(c++));
  r.completion_tokens = static_cast<std::uint64_t>(num(c++));
  r.cached_tokens = static_cast<std::uint64_t>(num(c++));
  r.cost_micros = num(c++);
  return r;
}

void read_sqlite(const std::string& path, const std::string& sql, const std::vector<std::string>& params,
                 const std::function<void(const LedgerCell&)>& row) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close_v2(db);
    throw std::runtime_error("cannot open ledger " + path + ": " + msg);
  }
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
    std::string msg = sqlite3_errmsg(db);
    sqlite3_close_v2(db);
    throw std::runtime_error("ledger " + path + ": " + msg);
  }
  for (std::size_t i = 0; i < params.size(); ++i) {
    const std::string name = "$" + std::to_string(i + 1);
    if (int at = sqlite3_bind_parameter_index(st, name.c_str()))
      sqlite3_bind_text(st, at, params[i].c_str(), -1, SQLITE_TRANSIENT);
  }
  int rc;
  const LedgerCell cell = [&](int c) {
    auto* t = sqlite3_column_text(st, c);
    return std::string(t ? reinterpret_cast<const char*>(t) : "");
  };
  try {
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) row(cell);
  } catch (...) {
    sqlite3_finalize(st);
    sqlite3_close_v2(db);
    throw;
  }
  std::string err = rc == SQLITE_DONE ? "" : sqlite3_errmsg(db);
  sqlite3_finalize(st);
  sqlite3_close_v2(db);
  if (!err.empty()) throw std::runtime_error("ledger " + path + ": " + err);
}

void read_postgres(const std::string& conninfo, const std::string& sql, const std::vector<std::string>& params,
                   const std::function<void(const LedgerCell&)>& row) {
  PGconn* conn = PQconnectdb(conninfo.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string msg = PQerrorMessage(conn);
    PQfinish(conn);
    throw std::runtime_error("cannot connect to the PostgreSQL ledger: " + msg);
  }
  std::vector<const char*> p;
  for (const auto& v : params) p.push_back(v.c_str());
  PGresult* res = PQexecParams(conn, sql.c_str(), static_cast<int>(p.size()), nullptr, p.data(), nullptr, nullptr, 0);
  if (PQresultStatus(res) != PGRES_TUPLES_OK) {
    std::string msg = PQresultErrorMessage(res);
    PQclear(res);
    PQfinish(conn);
    throw std::runtime_error("PostgreSQL ledger: " + msg);
  }
  for (int i = 0; i < PQntuples(res); ++i) {
    const LedgerCell cell = [&](int c) { return PQgetisnull(res, i, c) ? std::string() : std::string(PQgetvalue(res, i, c)); };
    row(cell);
  }
  PQclear(res);
  PQfinish(conn);
}

std::int64_t as_int(const std::string& s) { return s.empty() ? 0 : std::stoll(s); }

}  // namespace

void read_ledger(const LedgerSource& src, const std::string& sql, const std::vector<std::string>& params,
                 const std::function<void(const LedgerCell&)>& row) {
  if (src.postgres_conninfo.empty()) read_sqlite(src.sqlite_path, sql, params, row);
  else read_postgres(src.postgres_conninfo, sql, params, row);
}

std::vector<UsageRow> query_usage(const LedgerSource& src, const UsageQuery& q) {
  const UsageSql u = usage_sql(q);
  std::vector<std::string> params = {std::to_string(q.from_ms.value_or(std::numeric_limits<std::int64_t>::min())),
                                     std::to_string(q.to_ms.value_or(std::numeric_limits<std::int64_t>::max()))};
  if (!q.tenant.empty()) params.push_back(q.tenant);
  std::vector<UsageRow> rows;
  read_ledger(src, u.text, params, [&](const LedgerCell& cell) {
    auto r = decode_row(q, u.bucketed, cell, [&](int c) { return as_int(cell(c)); });
    if (r.requests) rows.push_back(std::move(r));
  });
  return rows;
}

void preload_budgets(meter::BudgetBook& book, const LedgerSource& src, std::chrono::system_clock::time_point now) {
  UsageQuery q;
  q.group_by = {"tenant", "user", "key", "feature"};
  q.granularity = "hour";
  q.from_ms = meter::BudgetBook::period_start(BudgetPeriod::kMonth, now);
  std::vector<UsageRow> rows;
  try {
    rows = query_usage(src, q);
  } catch (const std::exception&) {
    return;  // a new ledger: nothing spent yet
  }
  for (const auto& r : rows)
    book.preload({.tenant = r.groups[0], .user = r.groups[1], .key_id = r.groups[2], .feature = r.groups[3]},
                 {r.cost_micros, static_cast<std::int64_t>(r.prompt_tokens + r.completion_tokens)},
                 std::chrono::system_clock::time_point(std::chrono::milliseconds(r.period_start_ms)), now);
}

std::string format_micros_usd(std::int64_t m) {
  return fmt::format("{}{}.{:06}", m < 0 ? "-" : "", std::abs(m) / 1'000'000, std::abs(m) % 1'000'000);
}

namespace {
std::vector<std::vector<std::string>> cells(const UsageQuery& q, const std::vector<UsageRow>& rows) {
  std::vector<std::vector<std::string>> out;
  std::vector<std::string> head(q.group_by.begin(), q.group_by.end());
  if (!q.granularity.empty()) head.push_back("period");
  for (const char* h : {"requests", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd"}) head.push_back(h);
  out.push_back(std::move(head));
  for (const auto& r : rows) {
    std::vector<std::string> line(r.groups);
    if (!q.granularity.empty()) line.push_back(iso(r.period_start_ms));
    line.push_back(std::to_string(r.requests));
    line.push_back(std::to_string(r.prompt_tokens));
    line.push_back(std::to_string(r.completion_tokens));
    line.push_back(std::to_string(r.cached_tokens));
    line.push_back(format_micros_usd(r.cost_micros));
    out.push_back(std::move(line));
  }
  return out;
}
}  // namespace

std::string usage_csv(const UsageQuery& q, const std::vector<UsageRow>& rows) {
  std::string out;
  for (const auto& line : cells(q, rows)) {
    for (std::size_t i = 0; i < line.size(); ++i) {
      const std::string& v = line[i];
      bool quote = v.find_first_of(",\"\n") != std::string::npos;
      std::string esc;
      for (char c : v) esc += c == '"' ? std::string("\"\"") : std::string(1, c);
      out += (i ? "," : "") + (quote ? "\"" + esc + "\"" : v);
    }
    out += "\n";
  }
  return out;
}

std::string usage_table(const UsageQuery& q, const std::vector<UsageRow>& rows) {
  auto c = cells(q, rows);
  std::vector<std::size_t> w(c[0].size(), 0);
  for (const auto& line : c)
    for (std::size_t i = 0; i < line.size(); ++i) w[i] = std::max(w[i], line[i].size());
  std::string out;
  for (const auto& line : c) {
    for (std::size_t i = 0; i < line.size(); ++i)
      out += fmt::format("{}{:<{}}", i ? "  " : "", line[i], i + 1 == line.size() ? 0 : w[i]);
    out += "\n";
  }
  return out;
}

std::optional<std::int64_t> parse_time(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("0123456789") == std::string::npos && s.size() <= 15) return std::stoll(s);
  int y, mo, d, h = 0, mi = 0, se = 0;
  char z = 0;
  int n = std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c", &y, &mo, &d, &h, &mi, &se, &z);
  if (!(n == 3 && s.size() == 10) && !(n == 7 && z == 'Z')) return std::nullopt;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) return std::nullopt;
  using namespace std::chrono;
  auto ymd = year_month_day{year{y}, month{static_cast<unsigned>(mo)}, day{static_cast<unsigned>(d)}};
  if (!ymd.ok()) return std::nullopt;
  auto tp = sys_days{ymd} + hours{h} + minutes{mi} + seconds{se};
  return duration_cast<milliseconds>(tp.time_since_epoch()).count();
}

}  // namespace tg::ledger
