// The ledger: exactly one LedgerRow per request that reached the gateway with
// a valid key. LedgerSink is where rows are stored (SQLite embedded;
// PostgreSQL for fleets). LedgerWriter takes rows off the request path: a
// bounded queue drained by one thread in batches, one transaction each.
// Rows are keyed by request id and inserted idempotently, so a batch replayed
// after a failure is never stored twice.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/request_identity.h"

namespace tg::ledger {

// What the response cache did for a request, for its audit trail (stored
// with the ledger, in the cache_audit table). `event` empty: nothing.
struct CacheAudit {
  std::string event;              // write | hit | purge
  std::string entry;              // the entry ("ce_<origin request id>"); purge: "" when by tenant/user
  std::string partition, scope;   // scope: user:<id> | tenant
  std::string origin_request_id;  // the request whose answer the entry holds
  std::int64_t expires_ms = 0;
  double similarity = 0, threshold = 0;  // hit: 1 for exact hits
  std::string guards;             // hit: the guard verdicts; purge: what was purged and how many
};

struct LedgerRow {
  std::int64_t ts_ms = 0;  // request start, Unix milliseconds (UTC)
  RequestIdentity who;  // request id, org, tenant, user, key, run, feature, model, deployment (parent_id and door unstored)
  std::string endpoint;  // "chat.completions", ..., "messages" (the Anthropic door)
  bool stream = false;
  std::uint64_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
  std::string usage_source;  // "upstream" (the upstream's usage) or "gateway" (our own count)
  std::int64_t cost_micros = 0;
  std::string cache_status = "none";
  int status = 0;
  std::string error_code;
  std::int64_t ttft_us = -1;  // -1: no token was sent
  std::int64_t latency_us = 0;
  CacheAudit cache;
  bool audit_only = false;  // an admin action (a purge): its cache_audit row only, no ledger row
};

class LedgerSink {
 public:
  virtual ~LedgerSink() = default;
  // Stores every row of `rows` atomically, ignoring rows whose request id is
  // already stored. Throws std::runtime_error on failure (nothing stored).
  virtual void write(const std::vector<LedgerRow>& rows) = 0;
};

// Opens (creating if needed) a SQLite ledger in WAL mode. Throws
// std::runtime_error naming the path when it cannot.
std::unique_ptr<LedgerSink> open_sqlite_ledger(const std::string& path);

// Connects to a PostgreSQL ledger (libpq conninfo, e.g. "host=127.0.0.1
// port=5432 dbname=tenantgate user=tenantgate") and creates its tables if
// needed. Throws std::runtime_error when it cannot connect.
std::unique_ptr<LedgerSink> open_postgres_ledger(const std::string& conninfo);

class LedgerJournal;

class LedgerWriter {
 public:
  // `capacity` bounds the queue: submit() blocks when it is full
  // (back-pressure; rows are never dropped). With a `journal_path`, every
  // submitted row is first appended to that write-ahead journal, and rows a
  // killed process left there are stored before the constructor returns.
  LedgerWriter(std::unique_ptr<LedgerSink> sink, std::string journal_path = {}, std::size_t capacity = 65536,
               std::chrono::milliseconds max_delay = std::chrono::milliseconds(20));
  ~LedgerWriter();  // flushes everything queued
  LedgerWriter(const LedgerWriter&) = delete;
  LedgerWriter& operator=(const LedgerWriter&) = delete;

  void submit(LedgerRow row);
  void flush();  // returns once every row submitted before the call is stored
  std::uint64_t written() const;
  std::uint64_t failures() const;
  std::uint64_t replayed() const { return replayed_; }  // rows recovered from the journal at start

 private:
  void run();
  void store(const std::vector<LedgerRow>& batch);
  void after_store();  // empties or rotates the journal once what it holds is stored
  std::unique_ptr<LedgerSink> sink_;
  const std::size_t capacity_;
  const std::chrono::milliseconds max_delay_;
  mutable std::mutex mu_;
  std::condition_variable has_rows_, has_space_, drained_;
  std::deque<LedgerRow> queue_;
  std::uint64_t submitted_ = 0, written_ = 0, failures_ = 0, replayed_ = 0;
  std::unique_ptr<LedgerJournal> journal_;
  std::string journal_path_;
  std::uint64_t rotated_mark_ = 0;  // rows before this index live in the rotated journal (".1")
  bool has_rotated_ = false;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace tg::ledger
