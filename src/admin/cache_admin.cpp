#include "admin/admin_api.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <fmt/format.h>

#include <cmath>
#include <spdlog/spdlog.h>

#include "core/ids.h"
#include "ledger/cache_audit.h"

namespace tg::admin {
namespace net = boost::asio;
namespace json = boost::json;
namespace http = boost::beast::http;

namespace {

constexpr std::string_view kEntries = "/admin/cache/entries/";

json::object audit_json(const ledger::CacheAuditRow& r) {
  json::object o;
  o["request_id"] = r.request_id;
  o["ts_ms"] = r.ts_ms;
  o["tenant"] = r.tenant;
  o["user"] = r.user;
  o["entry"] = r.audit.entry;
  if (r.audit.event == "write") {
    o["partition"] = r.audit.partition;
    o["scope"] = r.audit.scope;
    o["expires_ms"] = r.audit.expires_ms;
  } else if (r.audit.event == "hit") {
    o["partition"] = r.audit.partition;
    o["scope"] = r.audit.scope;
    o["created_by_request"] = r.audit.origin_request_id;
    o["similarity"] = std::round(r.audit.similarity * 1e4) / 1e4;
    o["threshold"] = std::round(r.audit.threshold * 1e4) / 1e4;
    o["guards"] = r.audit.guards;
  } else {
    o["detail"] = r.audit.guards;
  }
  return o;
}

}  // namespace

net::awaitable<Expected<Reply>> AdminApi::cache(const Request& req, const std::string& path,
                                                const std::string& request_id) const {
  std::optional<ApiError> err;
  if (!d_.cache)
    err = not_found("The response cache is off (no `cache:` section in the config).", "cache_disabled");
  std::string tenant, user, entry;
  auto target = boost::urls::parse_origin_form(req.target());
  if (!err && !target) err = invalid_request("Malformed query string.", {}, "invalid_query");
  if (!err) {
    for (const auto& param : target->params()) {
      const std::string k(param.key), v(param.value);
      if (k == "tenant") tenant = v;
      else if (k == "user") user = v;
      else err = invalid_request(fmt::format("Unknown parameter '{}' (tenant, user).", k), k, "unknown_parameter");
    }
    if (path.starts_with(kEntries)) entry = path.substr(kEntries.size());
  }
  const bool del = req.method() == http::verb::delete_;
  if (!err && path == "/admin/cache/served" && del)
    err = ApiError{405, "invalid_request_error", "method_not_allowed", "DELETE is not allowed on /admin/cache/served; use GET.", "GET"};
  if (!err && path == "/admin/cache" && !del)
    err = ApiError{405, "invalid_request_error", "method_not_allowed",
                   "GET is not allowed on /admin/cache; use DELETE ?tenant=T[&user=U] to purge, or GET "
                   "/admin/cache/entries/{entry} and /admin/cache/served?tenant=T&user=U to audit.", "DELETE"};
  if (!err && (path == "/admin/cache" || path == "/admin/cache/served") && tenant.empty())
    err = invalid_request("Name the tenant: ?tenant=T (and &user=U for one user).", "tenant", "missing_parameter");
  if (!err && path == "/admin/cache/served" && user.empty())
    err = invalid_request("Name the user: ?tenant=T&user=U.", "user", "missing_parameter");
  if (!err && path.starts_with(kEntries) && entry.empty())
    err = invalid_request("Name the entry: /admin/cache/entries/{entry} (e.g. ce_req_...).", "entry", "missing_parameter");
  if (err) co_return *err;

  if (del) {
    if (!entry.empty())
      if (auto e = d_.cache->entry(entry)) {  // the purge's audit row names the entry's owner
        tenant = e->key.tenant;
        user = e->key.user;
      }
    std::size_t n = 0;
    if (!entry.empty()) n = d_.cache->purge_entry(entry) ? 1 : 0;
    else if (!user.empty()) n = d_.cache->purge_user(tenant, user);
    else n = d_.cache->purge_tenant(tenant);
    // Fleet mode: the same purge in Redis and on every other node.
    if (d_.cache_replica) {
      if (!entry.empty() && n) d_.cache_replica->purge_entry(entry);
      else if (entry.empty() && !user.empty()) d_.cache_replica->purge_user(tenant, user);
      else if (entry.empty()) d_.cache_replica->purge_tenant(tenant);
    }
    if (!entry.empty() && n == 0) {
      co_return not_found(fmt::format("No live cache entry '{}' (purged or expired already?).", entry), "entry_not_found", "entry");
    }
    const std::string what = !entry.empty() ? "entry " + entry : !user.empty() ? fmt::format("user {}/{}", tenant, user)
                                                                                : "tenant " + tenant;
    spdlog::info("admin: cache purge of {}: {} entries", what, n);
    // The purge is part of the audit trail (a row of its own, no ledger row).
    if (d_.ledger) {
      ledger::LedgerRow row;
      row.ts_ms = d_.clock.wall_ms();
      row.who.request_id = request_id;
      row.who.tenant = tenant;
      row.who.user = user;
      row.audit_only = true;
      row.cache.event = "purge";
      row.cache.entry = entry;
      row.cache.guards = fmt::format("{}: {} entries", what, n);
      d_.ledger->submit(std::move(row));
    }
    json::object out;
    out["purged"] = n;
    out["audited"] = d_.ledger != nullptr;
    co_return Reply{"application/json", json::serialize(out)};
  }

  if (!d_.ledger) {
    co_return not_found("The ledger is off (metering.ledger_sqlite: off): the cache's audit trail lives there.",
                                 "ledger_disabled");
  }
  d_.ledger->flush();  // what this process audited so far is queryable
  ledger::CacheAuditFilter f;
  f.entry = entry;
  if (entry.empty()) {
    f.tenant = tenant;
    f.user = user;
    f.event = "hit";
  }
  std::vector<ledger::CacheAuditRow> rows;
  const std::function<void()> query = [&] {
    rows = ledger::query_cache_audit({d_.config.metering.ledger_sqlite, d_.config.metering.ledger_postgres}, f);
  };
  const std::string failure = co_await on_admin_thread(query);
  if (!failure.empty()) {
    co_return server_error("Cache audit query failed: " + failure, "ledger_error");
  }
  json::object out;
  if (!entry.empty()) {
    out["entry"] = entry;
    const auto live = d_.cache->entry(entry);
    out["live"] = live.has_value();
    if (live) out["hits"] = live->hits;
    json::value created = nullptr;
    json::array served, purges;
    for (const auto& r : rows) {
      if (r.audit.event == "write") created = audit_json(r);
      else if (r.audit.event == "hit") served.push_back(audit_json(r));
      else purges.push_back(audit_json(r));
    }
    if (created.is_null() && served.empty() && !live) {
      co_return not_found(fmt::format("No cache entry '{}' in the audit trail.", entry), "entry_not_found", "entry");
    }
    out["created_by"] = std::move(created);
    out["served"] = std::move(served);
    out["purges"] = std::move(purges);
  } else {
    json::array data;
    for (const auto& r : rows) data.push_back(audit_json(r));
    out["object"] = "list";
    out["tenant"] = tenant;
    out["user"] = user;
    out["data"] = std::move(data);
  }
  co_return Reply{"application/json", json::serialize(out)};
}

}  // namespace tg::admin
