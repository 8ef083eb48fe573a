// The fleet ledger: the same rows and hourly rollup as the SQLite ledger, in
// PostgreSQL, so every gateway process of a fleet writes one shared ledger.
// Inserts are idempotent by request id (ON CONFLICT DO NOTHING) and the
// rollup counts only rows that were actually inserted, in the same
// transaction. A broken connection is re-established on the next write.
#include <libpq-fe.h>

#include <array>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <tuple>

#include "ledger/ledger.h"

namespace tg::ledger {
namespace {

constexpr const char* kSchema = R"(
CREATE TABLE IF NOT EXISTS ledger (
  request_id TEXT PRIMARY KEY, ts_ms BIGINT NOT NULL,
  org TEXT NOT NULL, tenant TEXT NOT NULL, "user" TEXT NOT NULL, key_id TEXT NOT NULL,
  run_id TEXT NOT NULL, feature TEXT NOT NULL, model TEXT NOT NULL, deployment TEXT NOT NULL,
  endpoint TEXT NOT NULL, stream BOOLEAN NOT NULL,
  prompt_tokens BIGINT NOT NULL, completion_tokens BIGINT NOT NULL, cached_tokens BIGINT NOT NULL,
  usage_source TEXT NOT NULL, cost_micros BIGINT NOT NULL, cache_status TEXT NOT NULL,
  status INTEGER NOT NULL, error_code TEXT NOT NULL, ttft_us BIGINT NOT NULL, latency_us BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS ledger_tenant_ts ON ledger (tenant, ts_ms);
CREATE TABLE IF NOT EXISTS usage_hourly (
  hour_ms BIGINT NOT NULL, org TEXT NOT NULL, tenant TEXT NOT NULL, "user" TEXT NOT NULL, key_id TEXT NOT NULL,
  feature TEXT NOT NULL, model TEXT NOT NULL, deployment TEXT NOT NULL,
  requests BIGINT NOT NULL, prompt_tokens BIGINT NOT NULL, completion_tokens BIGINT NOT NULL,
  cached_tokens BIGINT NOT NULL, cost_micros BIGINT NOT NULL,
  PRIMARY KEY (tenant, hour_ms, "user", key_id, feature, model, deployment, org));
CREATE TABLE IF NOT EXISTS cache_audit (
  request_id TEXT NOT NULL, event TEXT NOT NULL, ts_ms BIGINT NOT NULL,
  entry TEXT NOT NULL, partition TEXT NOT NULL, tenant TEXT NOT NULL, "user" TEXT NOT NULL, scope TEXT NOT NULL,
  origin_request_id TEXT NOT NULL, expires_ms BIGINT NOT NULL, similarity DOUBLE PRECISION NOT NULL,
  threshold DOUBLE PRECISION NOT NULL, detail TEXT NOT NULL,
  PRIMARY KEY (request_id, event));
CREATE INDEX IF NOT EXISTS cache_audit_entry ON cache_audit (entry, ts_ms);
CREATE INDEX IF NOT EXISTS cache_audit_user ON cache_audit (tenant, "user", ts_ms);
)";

constexpr const char* kAudit =
    "INSERT INTO cache_audit VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13) ON CONFLICT DO NOTHING";

constexpr const char* kInsert =
    "INSERT INTO ledger VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22) "
    "ON CONFLICT (request_id) DO NOTHING";
constexpr const char* kRollup =
    "INSERT INTO usage_hourly VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13) "
    "ON CONFLICT (tenant, hour_ms, \"user\", key_id, feature, model, deployment, org) DO UPDATE SET "
    "requests = usage_hourly.requests + EXCLUDED.requests, "
    "prompt_tokens = usage_hourly.prompt_tokens + EXCLUDED.prompt_tokens, "
    "completion_tokens = usage_hourly.completion_tokens + EXCLUDED.completion_tokens, "
    "cached_tokens = usage_hourly.cached_tokens + EXCLUDED.cached_tokens, "
    "cost_micros = usage_hourly.cost_micros + EXCLUDED.cost_micros";

class PostgresLedger final : public LedgerSink {
 public:
  explicit PostgresLedger(std::string conninfo) : conninfo_(std::move(conninfo)) { connect(); }
  ~PostgresLedger() override {
    if (conn_) PQfinish(conn_);
  }

  void write(const std::vector<LedgerRow>& rows) override {
    if (!conn_ || PQstatus(conn_) != CONNECTION_OK) connect();
    exec("BEGIN");
    try {
      std::map<std::tuple<std::int64_t, std::string, std::string, std::string, std::string, std::string, std::string,
                          std::string>,
               std::array<std::int64_t, 5>>
          sums;
      for (const auto& r : rows) {
        if (!r.cache.event.empty()) audit(r);
        if (r.audit_only) continue;
        const bool inserted = run("tg_insert", "insert",
                                  {r.who.request_id, std::to_string(r.ts_ms), r.who.org, r.who.tenant, r.who.user, r.who.key_id, r.who.run_id,
                                   r.who.feature, r.who.model, r.who.deployment, r.endpoint, r.stream ? "true" : "false",
                                   std::to_string(r.prompt_tokens), std::to_string(r.completion_tokens),
                                   std::to_string(r.cached_tokens), r.usage_source, std::to_string(r.cost_micros),
                                   r.cache_status, std::to_string(r.status), r.error_code, std::to_string(r.ttft_us),
                                   std::to_string(r.latency_us)}) == 1;
        if (!inserted) continue;  // already stored: counted already
        auto& s = sums[{r.ts_ms / 3'600'000 * 3'600'000, r.who.org, r.who.tenant, r.who.user, r.who.key_id, r.who.feature, r.who.model,
                        r.who.deployment}];
        s[0] += 1;
        s[1] += static_cast<std::int64_t>(r.prompt_tokens);
        s[2] += static_cast<std::int64_t>(r.completion_tokens);
        s[3] += static_cast<std::int64_t>(r.cached_tokens);
        s[4] += r.cost_micros;
      }
      for (const auto& [k, s] : sums) {
        run("tg_rollup", "rollup",
            {std::to_string(std::get<0>(k)), std::get<1>(k), std::get<2>(k), std::get<3>(k), std::get<4>(k),
             std::get<5>(k), std::get<6>(k), std::get<7>(k), std::to_string(s[0]), std::to_string(s[1]),
             std::to_string(s[2]), std::to_string(s[3]), std::to_string(s[4])});
      }
      exec("COMMIT");
    } catch (...) {
      PGresult* res = PQexec(conn_, "ROLLBACK");
      PQclear(res);
      throw;
    }
  }

 private:
  // Runs a prepared statement; the rows it changed. Throws naming `what`.
  int run(const char* statement, const char* what, const std::vector<std::string>& values) {
    std::vector<const char*> p;
    for (const auto& v : values) p.push_back(v.c_str());
    PGresult* res = PQexecPrepared(conn_, statement, static_cast<int>(p.size()), p.data(), nullptr, nullptr, 0);
    const bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    const int changed = ok ? std::atoi(PQcmdTuples(res)) : 0;
    std::string err = ok ? "" : PQresultErrorMessage(res);
    PQclear(res);
    if (!ok) throw std::runtime_error(std::string("PostgreSQL ledger ") + what + ": " + err);
    return changed;
  }

  void audit(const LedgerRow& r) {
    const CacheAudit& c = r.cache;
    run("tg_audit", "cache audit",
        {r.who.request_id, c.event, std::to_string(r.ts_ms), c.entry, c.partition, r.who.tenant, r.who.user, c.scope,
         c.origin_request_id, std::to_string(c.expires_ms), std::to_string(c.similarity), std::to_string(c.threshold),
         c.guards});
  }

  void connect() {
    if (conn_) PQfinish(conn_);
    conn_ = PQconnectdb(conninfo_.c_str());
    if (PQstatus(conn_) != CONNECTION_OK)
      throw std::runtime_error(std::string("PostgreSQL ledger: cannot connect: ") + PQerrorMessage(conn_));
    exec("SET client_min_messages = warning");
    exec(kSchema);
    prepare("tg_insert", kInsert, 22);
    prepare("tg_rollup", kRollup, 13);
    prepare("tg_audit", kAudit, 13);
  }
  void prepare(const char* name, const char* sql, int n) {
    PGresult* res = PQprepare(conn_, name, sql, n, nullptr);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    std::string err = ok ? "" : PQresultErrorMessage(res);
    PQclear(res);
    if (!ok) throw std::runtime_error("PostgreSQL ledger: prepare " + std::string(name) + ": " + err);
  }
  void exec(const char* sql) {
    PGresult* res = PQexec(conn_, sql);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    std::string err = ok ? "" : PQresultErrorMessage(res);
    PQclear(res);
    if (!ok) throw std::runtime_error("PostgreSQL ledger: " + err);
  }

  std::string conninfo_;
  PGconn* conn_ = nullptr;
};

}  // namespace

std::unique_ptr<LedgerSink> open_postgres_ledger(const std::string& conninfo) {
  return std::make_unique<PostgresLedger>(conninfo);
}

}  // namespace tg::ledger
