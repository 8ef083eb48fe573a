// The response cache's audit trail, as stored with the ledger (table
// cache_audit, SQLite or PostgreSQL): who created an entry, which requests
// it served, what a user was served, and every purge.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ledger/ledger.h"
#include "ledger/usage_query.h"

namespace tg::ledger {

struct CacheAuditRow {
  std::string request_id;
  std::int64_t ts_ms = 0;
  std::string tenant, user;
  CacheAudit audit;
};

// Every filter is optional (empty: any); at most `limit` rows, oldest first.
struct CacheAuditFilter {
  std::string entry, tenant, user, event;
  int limit = 1000;
};

// Throws std::runtime_error on database errors.
std::vector<CacheAuditRow> query_cache_audit(const LedgerSource& src, const CacheAuditFilter& f);

}  // namespace tg::ledger
