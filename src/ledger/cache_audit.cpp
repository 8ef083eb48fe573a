#include "ledger/cache_audit.h"

#include <stdexcept>

namespace tg::ledger {
namespace {

// One statement for both stores ($N placeholders).
constexpr const char* kSql =
    "SELECT request_id, ts_ms, tenant, \"user\", event, entry, partition, scope, origin_request_id, expires_ms, "
    "similarity, threshold, detail FROM cache_audit "
    "WHERE ($1 = '' OR entry = $1) AND ($2 = '' OR tenant = $2) AND ($3 = '' OR \"user\" = $3) "
    "AND ($4 = '' OR event = $4) ORDER BY ts_ms, request_id LIMIT ";

template <class Text>
CacheAuditRow decode(Text col) {
  CacheAuditRow r;
  r.request_id = col(0);
  auto num = [&](int c) { const std::string v = col(c); return v.empty() ? 0ll : std::stoll(v); };
  auto real = [&](int c) { const std::string v = col(c); return v.empty() ? 0.0 : std::stod(v); };
  r.ts_ms = num(1);
  r.tenant = col(2);
  r.user = col(3);
  r.audit.event = col(4);
  r.audit.entry = col(5);
  r.audit.partition = col(6);
  r.audit.scope = col(7);
  r.audit.origin_request_id = col(8);
  r.audit.expires_ms = num(9);
  r.audit.similarity = real(10);
  r.audit.threshold = real(11);
  r.audit.guards = col(12);
  return r;
}

}  // namespace

std::vector<CacheAuditRow> query_cache_audit(const LedgerSource& src, const CacheAuditFilter& f) {
  std::vector<CacheAuditRow> rows;
  try {
    read_ledger(src, kSql + std::to_string(f.limit), {f.entry, f.tenant, f.user, f.event},
                [&](const LedgerCell& cell) { rows.push_back(decode(cell)); });
  } catch (const std::runtime_error& e) {
    // A SQLite ledger written before the cache existed has no audit table: nothing to report.
    if (std::string_view(e.what()).find("no such table") != std::string_view::npos) return {};
    throw;
  }
  return rows;
}

}  // namespace tg::ledger
