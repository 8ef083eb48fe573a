#include "server/gateway.h"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <list>
#include <map>
#include <thread>

#include "identity/keyring.h"
#include "limits/limit_store.h"
#include "store/redis_limit_store.h"
#include "ledger/usage_query.h"
#include "server/access_log.h"
#include "server/metrics.h"
#include "server/request_path.h"
#include "server/session.h"
#include "sim/sim_provider.h"
#include "upstream/anthropic_provider.h"
#include "upstream/openai_provider.h"
#include "upstream/router.h"

namespace tg::server {
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

// Reads the rest of a connection's life on its worker; owns the Session.
// `cancel` is bound to this coroutine's cancellation slot: the session emits
// it when its client disconnects mid-request.
net::awaitable<void> serve_connection(tcp::socket socket, const SessionDeps& deps, std::list<Session*>& registry,
                                      std::shared_ptr<net::cancellation_signal> cancel) {
  try {
    Session session(std::move(socket), deps, registry, *cancel);
    co_await session.run();
  } catch (const std::exception& e) {
    spdlog::error("connection ended by an unexpected error: {}", e.what());
  }
}

}  // namespace

// Member order is destruction order reversed: sessions that unwind while the
// io_context is destroyed still find their registry; the router (upstream
// sockets) goes before the io_context it was built on.
struct Worker {
  std::list<Session*> sessions;
  // One thread runs it; reactor locking is off (every socket op is issued from
  // that thread), scheduler locking stays on (drain posts from the main thread).
  net::io_context ioc{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  io::DeadlineSweeper deadlines{ioc.get_executor()};
  std::unique_ptr<upstream::Router> router;
  std::unique_ptr<store::RedisLimitStore> redis_limits;
  std::unique_ptr<limits::RefusalBudget> refusals;
  std::unique_ptr<RequestPath> path;  // this worker's request path (its stages)
  std::unique_ptr<SessionDeps> session_deps;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::thread thread;
};

struct Gateway::Impl {
  Config config;
  identity::KeyRing keys;
  Metrics metrics;
  AccessLog access_log;
  std::atomic<bool> draining{false};
  std::map<std::string, std::unique_ptr<net::ssl::context>> tls_by_ca;  // shared, read-only after setup
  meter::BudgetBook budgets;
  net::thread_pool admin_pool{1};  // admin API queries and webhooks, never on a worker
  net::thread_pool count_pool{1};  // large prompts' token counts, never on a worker
  Webhook webhook{admin_pool.get_executor()};
  std::unique_ptr<ledger::LedgerWriter> ledger;  // outlives the workers (declared before them)
  std::unique_ptr<limits::LimitStore> limit_store;  // in-process; with Redis, this process's share for outages
  std::unique_ptr<store::SharedPolicy> redis_policy;
  store::RedisLimitStats redis_stats;
  std::function<std::optional<Config>()> reload;
  // Before the workers: requests unwinding with a worker still release their
  // pool tickets and engine slots (run() closes both first, so neither posts
  // to a worker that is gone).
  std::map<std::string, std::unique_ptr<sim::EngineHost>> engines;  // shared sim engines, by deployment id
  std::map<std::string, std::unique_ptr<sched::LivePool>> pools;     // fair admission, by deployment id
  std::unique_ptr<cache::CacheStore> cache;  // the response cache, when configured
  std::unique_ptr<store::CacheReplica> cache_replica;  // its fleet mode
  std::vector<std::unique_ptr<Worker>> workers;

  explicit Impl(Config c)
      : config(std::move(c)),
        keys(config),
        access_log(config.server.access_log),
        budgets(config.budgets),
        limit_store(limits::in_process_limit_store(local_limits(config),
                                                   limits::TrackingBounds::of(config.limits.tracking))) {
    if (!config.limits.redis.host.empty()) redis_policy = std::make_unique<store::SharedPolicy>(config);
    const ledger::LedgerSource src{config.metering.ledger_sqlite, config.metering.ledger_postgres};
    if (!src.postgres_conninfo.empty())
      ledger = std::make_unique<ledger::LedgerWriter>(ledger::open_postgres_ledger(src.postgres_conninfo),
                                                     config.metering.journal_path());
    else if (src.sqlite_path != "off")
      ledger = std::make_unique<ledger::LedgerWriter>(ledger::open_sqlite_ledger(src.sqlite_path),
                                                     config.metering.journal_path());
    // Budgets continue from what the ledger says was spent this month
    // (after the journal replay above, so a killed process's spend counts).
    if (ledger && budgets.size()) ledger::preload_budgets(budgets, src, std::chrono::system_clock::now());
  }

  // The in-process store's config: the limits themselves, or with Redis this
  // process's share of them (used only while Redis is unreachable).
  static Config local_limits(const Config& c) {
    const RedisLimitsConfig& r = c.limits.redis;
    return r.host.empty() ? c : store::local_share_config(c, r.fleet_size, r.runs_local_share);
  }

  net::ssl::context* tls_for(const DeploymentConfig& d) {
    if (d.scheme != "https") return nullptr;
    auto& slot = tls_by_ca[d.tls_ca_file];
    if (!slot) slot = upstream::make_tls_client_context(d.tls_ca_file);
    return slot.get();
  }

  net::awaitable<void> accept_loop(Worker& w) {
    for (;;) {
      auto [ec, socket] = co_await w.acceptor->async_accept(net::as_tuple(net::use_awaitable));
      if (ec) {
        if (ec == net::error::operation_aborted || !w.acceptor->is_open()) co_return;
        spdlog::warn("accept failed: {}", ec.message());
        continue;
      }
      auto cancel = std::make_shared<net::cancellation_signal>();
      auto slot = cancel->slot();
      net::co_spawn(w.ioc, serve_connection(std::move(socket), *w.session_deps, w.sessions, std::move(cancel)),
                    net::bind_cancellation_slot(slot, net::detached));
    }
  }
};

Gateway::Gateway(Config config, std::function<std::optional<Config>()> reload)
    : impl_(std::make_unique<Impl>(std::move(config))) {
  impl_->reload = std::move(reload);
}
Gateway::~Gateway() = default;

int Gateway::run() {
  Impl& g = *impl_;
  const ServerConfig& sc = g.config.server;
  unsigned n = sc.threads ? sc.threads : std::max(1u, std::thread::hardware_concurrency());
  if (g.config.cache.enabled) {
    const CacheConfig& cc = g.config.cache;
    cache::StoreLimits limits;  // (vector size: the embedder's, per partition)
    limits.ttl_s = cc.ttl_s;
    limits.max_entries_per_tenant = cc.max_entries_per_tenant;
    limits.max_bytes_per_tenant = cc.max_bytes_per_tenant;
    limits.max_partitions_per_tenant = cc.max_partitions_per_tenant;
    limits.max_bytes_total = cc.max_bytes_total;
    limits.flat_max_vectors = static_cast<std::uint32_t>(cc.flat_max_vectors);
    g.cache = std::make_unique<cache::CacheStore>(limits);
    if (!cc.redis_host.empty()) {
      g.cache_replica = std::make_unique<store::CacheReplica>(*g.cache, cc.redis_host, cc.redis_port, cc.redis_prefix, cc.ttl_s);
      if (!g.cache_replica->wait_loaded(2000))
        spdlog::warn("cache: redis {}:{} not reachable yet; the replica loads when it is", cc.redis_host, cc.redis_port);
    }
  }
  for (const ModelConfig& m : g.config.models)
    for (const DeploymentConfig& d : m.deployments) {
      std::optional<sim::EngineProfile> engine;
      if (d.provider == ProviderKind::kSim) engine = sim::engine_profile(d.sim);
      if (engine) g.engines[d.id] = std::make_unique<sim::EngineHost>(*engine);
      if (!d.pool.enabled) continue;
      PoolSettings ps = d.pool;
      if (engine && !ps.max_seqs) ps.max_seqs = engine->max_num_seqs;  // the engine's own capacity by default
      if (engine && !ps.inflight_tokens) ps.inflight_tokens = engine->kv_capacity_tokens;
      g.pools[d.id] = std::make_unique<sched::LivePool>(d.id, ps, g.config.scheduling, g.config.tenants);
    }

  // Resolve + bind. Port 0 picks a free port once; every worker then shares it.
  tcp::endpoint ep(net::ip::make_address(sc.listen.host), sc.listen.port);
  if (ep.port() != 0) {
    // SO_REUSEPORT would let a second gateway share a port another process
    // already serves, silently splitting its traffic: bind once without it
    // first, so "address in use" is reported as it should be.
    net::io_context probe_ioc;
    tcp::acceptor probe(probe_ioc);
    probe.open(ep.protocol());
    probe.set_option(tcp::acceptor::reuse_address(true));
    boost::system::error_code ec;
    probe.bind(ep, ec);
    if (ec) throw std::runtime_error(fmt::format("cannot listen on {}: {}", sc.listen.to_string(), ec.message()));
  }
  for (unsigned i = 0; i < n; ++i) {
    auto w = std::make_unique<Worker>();
    w->acceptor = std::make_unique<tcp::acceptor>(w->ioc);
    w->acceptor->open(ep.protocol());
    w->acceptor->set_option(tcp::acceptor::reuse_address(true));
    int one = 1;
    ::setsockopt(w->acceptor->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    boost::system::error_code ec;
    w->acceptor->bind(ep, ec);
    if (ec) throw std::runtime_error(fmt::format("cannot listen on {}: {}", sc.listen.to_string(), ec.message()));
    w->acceptor->listen(net::socket_base::max_listen_connections);
    if (i == 0) ep = w->acceptor->local_endpoint();
    net::io_context& ioc = w->ioc;
    io::DeadlineSweeper& wdeadlines = w->deadlines;
    w->router = std::make_unique<upstream::Router>(g.config, [&](const DeploymentConfig& d)
                                                                  -> std::unique_ptr<upstream::Provider> {
      if (d.provider == ProviderKind::kSim) {
        auto e = g.engines.find(d.id);
        return std::make_unique<sim::SimProvider>(d, e == g.engines.end() ? nullptr : e->second.get());
      }
      if (d.provider == ProviderKind::kAnthropic)
        return std::make_unique<upstream::AnthropicProvider>(ioc.get_executor(), d, g.tls_for(d), wdeadlines);
      return std::make_unique<upstream::OpenAIProvider>(ioc.get_executor(), d, g.tls_for(d), wdeadlines);
    });
    if (sc.refusal_burst > 0)
      w->refusals = std::make_unique<limits::RefusalBudget>(
          limits::RefusalBudgetSettings{sc.refusal_burst, sc.refusal_per_s, 4096});
    if (g.redis_policy)
      w->redis_limits = std::make_unique<store::RedisLimitStore>(w->ioc.get_executor(), g.config.limits, w->deadlines,
                                                                 *g.redis_policy, *g.limit_store, g.redis_stats);
    w->path = std::make_unique<RequestPath>(PathDeps{
        g.config, g.keys, *w->router, g.metrics, g.access_log, g.draining, g.ledger.get(), g.budgets, g.webhook,
        *g.limit_store, w->redis_limits.get(), w->refusals.get(), &g.pools, g.cache.get(), g.cache_replica.get(),
        g.admin_pool.get_executor(), g.count_pool.get_executor(), Clock::system()});
    w->session_deps = std::make_unique<SessionDeps>(
        SessionDeps{g.config.server, g.metrics.stats, w->deadlines, g.draining, *w->path});
    g.workers.push_back(std::move(w));
  }
  // With limits in Redis, one worker follows the fleet's admin overrides.
  if (!g.workers.empty() && g.workers[0]->redis_limits)
    net::co_spawn(g.workers[0]->ioc, g.workers[0]->redis_limits->follow_policy(g.draining), net::detached);
  for (auto& w : g.workers) {
    Worker* wp = w.get();
    net::co_spawn(w->ioc, g.accept_loop(*wp), net::detached);
    w->deadlines.start();
    w->thread = std::thread([wp] {
      auto guard = net::make_work_guard(wp->ioc);
      wp->ioc.run();
    });
  }
  spdlog::info("tenantgate listening on {}:{} ({} worker threads, config {}, {} tenants, {} keys, {} models, limits {})",
               ep.address().to_string(), ep.port(), n, g.config.source, g.config.tenants.size(), g.keys.size(),
               g.config.models.size(),
               g.redis_policy ? fmt::format("in redis {}:{}", g.config.limits.redis.host, g.config.limits.redis.port)
                              : std::string("in-process"));

  // Wait for a stop signal on this thread.
  net::io_context main_ioc;
  net::signal_set signals(main_ioc, SIGTERM, SIGINT, SIGHUP);
  int signal_number = 0;
  std::function<void(const boost::system::error_code&, int)> on_signal = [&](const boost::system::error_code& ec,
                                                                             int s) {
    if (ec) return;
    if (s != SIGHUP) {
      signal_number = s;
      return;
    }
    if (!g.reload) {
      spdlog::warn("SIGHUP: nothing to reload");
    } else if (auto next = g.reload()) {
      g.limit_store->reload(Impl::local_limits(*next));
      if (g.redis_policy) {
        std::lock_guard lock(g.redis_policy->mu);
        g.redis_policy->load(*next);
      }
      spdlog::info("SIGHUP: limits reloaded from {} (other changes take effect on restart)", next->source);
    } else {
      spdlog::error("SIGHUP: the config is invalid (see above); the running limits are unchanged");
    }
    signals.async_wait(on_signal);
  };
  signals.async_wait(on_signal);
  main_ioc.run();

  // Drain.
  spdlog::info("received signal {}: draining (up to {} ms)", signal_number, sc.drain_timeout.count());
  g.draining.store(true);
  for (auto& w : g.workers) {
    net::post(w->ioc, [wp = w.get()] {
      boost::system::error_code ec;
      wp->acceptor->close(ec);
      std::vector<Session*> snapshot(wp->sessions.begin(), wp->sessions.end());
      for (Session* s : snapshot) s->close_if_idle();
    });
  }
  const auto deadline = std::chrono::steady_clock::now() + sc.drain_timeout;
  while (g.metrics.stats.requests_in_flight.load() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::int64_t left = g.metrics.stats.requests_in_flight.load();
  if (left > 0) spdlog::warn("drain deadline reached with {} requests in flight; closing them", left);
  for (auto& w : g.workers) {
    net::post(w->ioc, [wp = w.get()] {
      std::vector<Session*> snapshot(wp->sessions.begin(), wp->sessions.end());
      for (Session* s : snapshot) s->force_close();
    });
  }
  // Let closed sessions unwind (they write their access-log lines), then stop.
  std::this_thread::sleep_for(std::chrono::milliseconds(left > 0 ? 100 : 10));
  for (auto& w : g.workers) w->ioc.stop();
  for (auto& w : g.workers) w->thread.join();
  for (auto& [id, e] : g.engines) e->stop();
  for (auto& [id, p] : g.pools) p->close();
  g.access_log.flush();
  if (g.ledger) g.ledger->flush();
  spdlog::info("drained; exiting");
  return 0;
}

}  // namespace tg::server
