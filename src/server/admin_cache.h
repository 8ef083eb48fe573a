// The cache's admin API (admin key only):
//   GET    /admin/cache/entries/{entry}           who created it, which requests it served, purges
//   GET    /admin/cache/served?tenant=T&user=U    the entries served to a user
//   DELETE /admin/cache/entries/{entry}           purge one entry
//   DELETE /admin/cache?tenant=T[&user=U]         purge a tenant's or a user's entries
// Every purge is itself recorded in the audit trail. Queries run on the admin
// thread, never on a worker.
#pragma once

#include <boost/asio/awaitable.hpp>

#include "server/exchange.h"
#include "server/session.h"
#include "server/worker_context.h"

namespace tg::server {

bool is_admin_cache_path(const std::string& path);
boost::asio::awaitable<void> serve_admin_cache(Session& s, WorkerContext& ctx, Request& req, Exchange& x);

}  // namespace tg::server
