// The admin API (the admin key only, never a tenant key):
//   GET, PUT /admin/limits/{scope}       a scope's limits and usage; new limits, now
//   GET      /admin/usage                the ledger's usage, grouped (JSON, or CSV for Accept: text/csv)
//   GET      /admin/cache/entries/{id}   who created an entry, which requests it served, purges
//   GET      /admin/cache/served?tenant=T&user=U    the entries served to a user
//   DELETE   /admin/cache/entries/{id}   purge one entry
//   DELETE   /admin/cache?tenant=T[&user=U]   purge a tenant's or a user's entries
// Every purge is itself recorded in the audit trail. Ledger queries run on
// the admin thread, never on a worker. Per worker (its Redis limit store).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <functional>
#include <optional>
#include <string>

#include "cache/store.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/error.h"
#include "identity/keyring.h"
#include "limits/limit_store.h"
#include "ledger/ledger.h"
#include "store/cache_replica.h"
#include "store/redis_limit_store.h"

namespace tg::admin {

using Request = boost::beast::http::request<boost::beast::http::string_body>;

struct Reply {
  std::string content_type = "application/json";
  std::string body;
};

enum class Resource { kLimits, kUsage, kCache };

struct AdminDeps {
  const Config& config;
  const identity::KeyRing& keys;
  limits::LimitStore& limits;             // the in-process store
  store::RedisLimitStore* redis_limits;   // this worker's, when limits live in Redis
  ledger::LedgerWriter* ledger;            // null: the ledger is off
  cache::CacheStore* cache;               // null: the cache is off
  store::CacheReplica* cache_replica;     // fleet mode
  boost::asio::any_io_executor admin_executor;
  const Clock& clock;
};

class AdminApi {
 public:
  explicit AdminApi(AdminDeps deps) : d_(std::move(deps)) {}

  // Serves `req` on `path` (no query; `rest` is what follows the resource's
  // prefix: the scope of /admin/limits/{scope}). `request_id` names a purge's audit row.
  boost::asio::awaitable<Expected<Reply>> serve(Resource what, const Request& req, const std::string& path,
                                                std::string_view rest, const std::string& request_id) const;

  // The admin key, never a tenant key: 401 without it, 403 for a tenant key.
  std::optional<ApiError> check_admin_key(const Request& req) const;

 private:
  boost::asio::awaitable<Expected<Reply>> limits(const Request& req, std::string_view rest) const;
  boost::asio::awaitable<Expected<Reply>> usage(const Request& req) const;
  boost::asio::awaitable<Expected<Reply>> cache(const Request& req, const std::string& path,
                                                const std::string& request_id) const;
  // Runs `query` (a blocking ledger query) on the admin thread; the caller
  // resumes on its worker. Returns what it threw, or "".
  boost::asio::awaitable<std::string> on_admin_thread(const std::function<void()>& query) const;

  AdminDeps d_;
};

// The body of PUT /admin/limits/{scope}: the fields of a `limits:` block,
// each a number (the cap), {"rate": R, "ceil": C}, or null (no limit);
// absent fields are none. Every field null removes all of the scope's limits.
Expected<limits::LimitsUpdate> parse_scope_limits(std::string_view body);

}  // namespace tg::admin
