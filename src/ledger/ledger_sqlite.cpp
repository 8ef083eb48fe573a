#include <sqlite3.h>

#include <map>
#include <stdexcept>
#include <tuple>

#include "ledger/ledger.h"

namespace tg::ledger {
namespace {

constexpr const char* kSchema = R"(
CREATE TABLE IF NOT EXISTS ledger (
  request_id TEXT PRIMARY KEY,
  ts_ms INTEGER NOT NULL,
  org TEXT NOT NULL, tenant TEXT NOT NULL, user TEXT NOT NULL, key_id TEXT NOT NULL,
  run_id TEXT NOT NULL, feature TEXT NOT NULL,
  model TEXT NOT NULL, deployment TEXT NOT NULL, endpoint TEXT NOT NULL, stream INTEGER NOT NULL,
  prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL,
  usage_source TEXT NOT NULL, cost_micros INTEGER NOT NULL, cache_status TEXT NOT NULL,
  status INTEGER NOT NULL, error_code TEXT NOT NULL, ttft_us INTEGER NOT NULL, latency_us INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ledger_tenant_ts ON ledger (tenant, ts_ms);
-- Hourly rollup, maintained in the same transaction as the rows it sums, so
-- usage queries read thousands of rows instead of millions.
CREATE TABLE IF NOT EXISTS usage_hourly (
  hour_ms INTEGER NOT NULL, org TEXT NOT NULL, tenant TEXT NOT NULL, user TEXT NOT NULL, key_id TEXT NOT NULL,
  feature TEXT NOT NULL, model TEXT NOT NULL, deployment TEXT NOT NULL,
  requests INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
  cached_tokens INTEGER NOT NULL, cost_micros INTEGER NOT NULL,
  PRIMARY KEY (tenant, hour_ms, user, key_id, feature, model, deployment, org)
) WITHOUT ROWID;
-- The response cache's audit trail: every write, hit and purge.
CREATE TABLE IF NOT EXISTS cache_audit (
  request_id TEXT NOT NULL, event TEXT NOT NULL, ts_ms INTEGER NOT NULL,
  entry TEXT NOT NULL, partition TEXT NOT NULL, tenant TEXT NOT NULL, user TEXT NOT NULL, scope TEXT NOT NULL,
  origin_request_id TEXT NOT NULL, expires_ms INTEGER NOT NULL, similarity REAL NOT NULL, threshold REAL NOT NULL,
  detail TEXT NOT NULL,
  PRIMARY KEY (request_id, event)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cache_audit_entry ON cache_audit (entry, ts_ms);
CREATE INDEX IF NOT EXISTS cache_audit_user ON cache_audit (tenant, user, ts_ms);
)";

struct RollupKey {
  std::int64_t hour_ms;
  std::string org, tenant, user, key_id, feature, model, deployment;
  auto tie() const { return std::tie(hour_ms, org, tenant, user, key_id, feature, model, deployment); }
  bool operator<(const RollupKey& o) const { return tie() < o.tie(); }
};
struct RollupSum {
  std::int64_t requests = 0, prompt = 0, completion = 0, cached = 0, cost = 0;
};

class SqliteLedger final : public LedgerSink {
 public:
  explicit SqliteLedger(const std::string& path) : path_(path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        nullptr) != SQLITE_OK)
      fail("open");
    exec("PRAGMA journal_mode=WAL;");
    exec("PRAGMA synchronous=NORMAL;");  // WAL + NORMAL: a process crash loses no committed batch
    exec("PRAGMA busy_timeout=5000;");
    exec(kSchema);
    if (sqlite3_prepare_v3(db_,
                           "INSERT OR IGNORE INTO ledger VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", -1,
                           SQLITE_PREPARE_PERSISTENT, &insert_, nullptr) != SQLITE_OK)
      fail("prepare insert");
    if (sqlite3_prepare_v3(db_,
                           "INSERT INTO usage_hourly VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO UPDATE SET "
                           "requests = requests + excluded.requests, prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
                           "completion_tokens = completion_tokens + excluded.completion_tokens, "
                           "cached_tokens = cached_tokens + excluded.cached_tokens, "
                           "cost_micros = cost_micros + excluded.cost_micros",
                           -1, SQLITE_PREPARE_PERSISTENT, &rollup_, nullptr) != SQLITE_OK)
      fail("prepare rollup");
    if (sqlite3_prepare_v3(db_, "INSERT OR IGNORE INTO cache_audit VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", -1,
                           SQLITE_PREPARE_PERSISTENT, &audit_, nullptr) != SQLITE_OK)
      fail("prepare cache audit");
  }
  ~SqliteLedger() override {
    sqlite3_finalize(audit_);
    sqlite3_finalize(rollup_);
    sqlite3_finalize(insert_);
    sqlite3_close_v2(db_);
  }

  void write(const std::vector<LedgerRow>& rows) override {
    exec("BEGIN IMMEDIATE;");
    try {
      std::map<RollupKey, RollupSum> sums;
      for (const auto& r : rows) {
        if (!r.cache.event.empty()) audit(r);
        if (r.audit_only) continue;
        int i = 0;
        auto text = [&](const std::string& s) { sqlite3_bind_text(insert_, ++i, s.data(), static_cast<int>(s.size()), SQLITE_STATIC); };
        auto num = [&](std::int64_t v) { sqlite3_bind_int64(insert_, ++i, v); };
        text(r.who.request_id);
        num(r.ts_ms);
        text(r.who.org), text(r.who.tenant), text(r.who.user), text(r.who.key_id), text(r.who.run_id), text(r.who.feature);
        text(r.who.model), text(r.who.deployment), text(r.endpoint), num(r.stream ? 1 : 0);
        num(static_cast<std::int64_t>(r.prompt_tokens)), num(static_cast<std::int64_t>(r.completion_tokens));
        num(static_cast<std::int64_t>(r.cached_tokens));
        text(r.usage_source), num(r.cost_micros), text(r.cache_status), num(r.status), text(r.error_code);
        num(r.ttft_us), num(r.latency_us);
        int rc = sqlite3_step(insert_);
        sqlite3_reset(insert_);
        if (rc != SQLITE_DONE) fail("insert");
        if (sqlite3_changes(db_) == 0) continue;  // already stored: counted already
        RollupSum& s = sums[RollupKey{r.ts_ms / 3'600'000 * 3'600'000, r.who.org, r.who.tenant, r.who.user, r.who.key_id, r.who.feature,
                                      r.who.model, r.who.deployment}];
        s.requests += 1;
        s.prompt += static_cast<std::int64_t>(r.prompt_tokens);
        s.completion += static_cast<std::int64_t>(r.completion_tokens);
        s.cached += static_cast<std::int64_t>(r.cached_tokens);
        s.cost += r.cost_micros;
      }
      for (const auto& [k, s] : sums) {
        int i = 0;
        auto text = [&](const std::string& v) { sqlite3_bind_text(rollup_, ++i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC); };
        auto num = [&](std::int64_t v) { sqlite3_bind_int64(rollup_, ++i, v); };
        num(k.hour_ms), text(k.org), text(k.tenant), text(k.user), text(k.key_id), text(k.feature), text(k.model),
            text(k.deployment);
        num(s.requests), num(s.prompt), num(s.completion), num(s.cached), num(s.cost);
        int rc = sqlite3_step(rollup_);
        sqlite3_reset(rollup_);
        if (rc != SQLITE_DONE) fail("rollup");
      }
      exec("COMMIT;");
    } catch (...) {
      sqlite3_exec(db_, "ROLLBACK;", nullptr, nullptr, nullptr);
      throw;
    }
  }

 private:
  void audit(const LedgerRow& r) {
    int i = 0;
    auto text = [&](const std::string& s) { sqlite3_bind_text(audit_, ++i, s.data(), static_cast<int>(s.size()), SQLITE_STATIC); };
    auto num = [&](std::int64_t v) { sqlite3_bind_int64(audit_, ++i, v); };
    auto real = [&](double v) { sqlite3_bind_double(audit_, ++i, v); };
    const CacheAudit& c = r.cache;
    text(r.who.request_id), text(c.event), num(r.ts_ms), text(c.entry), text(c.partition), text(r.who.tenant), text(r.who.user);
    text(c.scope), text(c.origin_request_id), num(c.expires_ms), real(c.similarity), real(c.threshold), text(c.guards);
    int rc = sqlite3_step(audit_);
    sqlite3_reset(audit_);
    if (rc != SQLITE_DONE) fail("cache audit insert");
  }

  void exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "unknown error";
      sqlite3_free(err);
      throw std::runtime_error("SQLite ledger " + path_ + ": " + msg);
    }
  }
  [[noreturn]] void fail(const char* what) {
    throw std::runtime_error("SQLite ledger " + path_ + ": " + what + ": " + (db_ ? sqlite3_errmsg(db_) : "?"));
  }
  std::string path_;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* insert_ = nullptr;
  sqlite3_stmt* rollup_ = nullptr;
  sqlite3_stmt* audit_ = nullptr;
};

}  // namespace

std::unique_ptr<LedgerSink> open_sqlite_ledger(const std::string& path) { return std::make_unique<SqliteLedger>(path); }

}  // namespace tg::ledger
