#include <sqlite3.h>

#include <stdexcept>

#include "meter/ledger.h"

namespace tg::meter {
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
)";

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
  }
  ~SqliteLedger() override {
    sqlite3_finalize(insert_);
    sqlite3_close_v2(db_);
  }

  void write(const std::vector<LedgerRow>& rows) override {
    exec("BEGIN IMMEDIATE;");
    try {
      for (const auto& r : rows) {
        int i = 0;
        auto text = [&](const std::string& s) { sqlite3_bind_text(insert_, ++i, s.data(), static_cast<int>(s.size()), SQLITE_STATIC); };
        auto num = [&](std::int64_t v) { sqlite3_bind_int64(insert_, ++i, v); };
        text(r.request_id);
        num(r.ts_ms);
        text(r.org), text(r.tenant), text(r.user), text(r.key_id), text(r.run_id), text(r.feature);
        text(r.model), text(r.deployment), text(r.endpoint), num(r.stream ? 1 : 0);
        num(static_cast<std::int64_t>(r.prompt_tokens)), num(static_cast<std::int64_t>(r.completion_tokens));
        num(static_cast<std::int64_t>(r.cached_tokens));
        text(r.usage_source), num(r.cost_micros), text(r.cache_status), num(r.status), text(r.error_code);
        num(r.ttft_us), num(r.latency_us);
        int rc = sqlite3_step(insert_);
        sqlite3_reset(insert_);
        if (rc != SQLITE_DONE) fail("insert");
      }
      exec("COMMIT;");
    } catch (...) {
      sqlite3_exec(db_, "ROLLBACK;", nullptr, nullptr, nullptr);
      throw;
    }
  }

 private:
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
};

}  // namespace

std::unique_ptr<LedgerSink> open_sqlite_ledger(const std::string& path) { return std::make_unique<SqliteLedger>(path); }

}  // namespace tg::meter
