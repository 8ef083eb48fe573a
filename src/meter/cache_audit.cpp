#include "meter/cache_audit.h"

#include <libpq-fe.h>
#include <sqlite3.h>

#include <stdexcept>

namespace tg::meter {
namespace {

// One statement for both stores: $N placeholders (SQLite reads them as named parameters).
constexpr const char* kSql =
    "SELECT request_id, ts_ms, tenant, \"user\", event, entry, partition, scope, origin_request_id, expires_ms, "
    "similarity, threshold, detail FROM cache_audit "
    "WHERE ($1 = '' OR entry = $1) AND ($2 = '' OR tenant = $2) AND ($3 = '' OR \"user\" = $3) "
    "AND ($4 = '' OR event = $4) ORDER BY ts_ms, request_id LIMIT ";

template <class Text>
CacheAuditRow decode(Text col) {
  CacheAuditRow r;
  r.request_id = col(0);
  r.ts_ms = std::stoll(col(1));
  r.tenant = col(2);
  r.user = col(3);
  r.audit.event = col(4);
  r.audit.entry = col(5);
  r.audit.partition = col(6);
  r.audit.scope = col(7);
  r.audit.origin_request_id = col(8);
  r.audit.expires_ms = std::stoll(col(9));
  r.audit.similarity = std::stod(col(10));
  r.audit.threshold = std::stod(col(11));
  r.audit.guards = col(12);
  return r;
}

std::vector<CacheAuditRow> from_sqlite(const std::string& path, const CacheAuditFilter& f) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close_v2(db);
    throw std::runtime_error("cannot open ledger " + path + ": " + msg);
  }
  const std::string sql = kSql + std::to_string(f.limit);
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
    std::string msg = sqlite3_errmsg(db);
    sqlite3_close_v2(db);
    // A ledger written before the cache existed has no audit table: nothing to report.
    if (msg.find("no such table") != std::string::npos) return {};
    throw std::runtime_error("ledger " + path + ": " + msg);
  }
  const std::string* params[] = {&f.entry, &f.tenant, &f.user, &f.event};
  for (int i = 0; i < 4; ++i) {
    const std::string name = "$" + std::to_string(i + 1);
    sqlite3_bind_text(st, sqlite3_bind_parameter_index(st, name.c_str()), params[i]->c_str(), -1, SQLITE_TRANSIENT);
  }
  std::vector<CacheAuditRow> rows;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW)
    rows.push_back(decode([&](int c) {
      auto* t = sqlite3_column_text(st, c);
      return std::string(t ? reinterpret_cast<const char*>(t) : "0");
    }));
  std::string err = rc == SQLITE_DONE ? "" : sqlite3_errmsg(db);
  sqlite3_finalize(st);
  sqlite3_close_v2(db);
  if (!err.empty()) throw std::runtime_error("ledger " + path + ": " + err);
  return rows;
}

std::vector<CacheAuditRow> from_postgres(const std::string& conninfo, const CacheAuditFilter& f) {
  PGconn* conn = PQconnectdb(conninfo.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string msg = PQerrorMessage(conn);
    PQfinish(conn);
    throw std::runtime_error("cannot connect to the PostgreSQL ledger: " + msg);
  }
  const std::string sql = kSql + std::to_string(f.limit);
  const char* params[] = {f.entry.c_str(), f.tenant.c_str(), f.user.c_str(), f.event.c_str()};
  PGresult* res = PQexecParams(conn, sql.c_str(), 4, nullptr, params, nullptr, nullptr, 0);
  if (PQresultStatus(res) != PGRES_TUPLES_OK) {
    std::string msg = PQresultErrorMessage(res);
    PQclear(res);
    PQfinish(conn);
    throw std::runtime_error("PostgreSQL ledger: " + msg);
  }
  std::vector<CacheAuditRow> rows;
  for (int i = 0; i < PQntuples(res); ++i) rows.push_back(decode([&](int c) { return std::string(PQgetvalue(res, i, c)); }));
  PQclear(res);
  PQfinish(conn);
  return rows;
}

}  // namespace

std::vector<CacheAuditRow> query_cache_audit(const LedgerSource& src, const CacheAuditFilter& f) {
  return src.postgres_conninfo.empty() ? from_sqlite(src.sqlite_path, f) : from_postgres(src.postgres_conninfo, f);
}

}  // namespace tg::meter
