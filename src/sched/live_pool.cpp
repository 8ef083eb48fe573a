#include "sched/live_pool.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace tg::sched {
namespace net = boost::asio;

Ticket& Ticket::operator=(Ticket&& o) noexcept {
  if (this != &o) {
    release();
    pool_ = std::exchange(o.pool_, nullptr);
    id_ = o.id_;
    charged_ = o.charged_;
  }
  return *this;
}

void Ticket::output_so_far(std::int64_t tokens) {
  if (!pool_ || tokens <= charged_) return;
  pool_->charge(id_, tokens - charged_);
  charged_ = tokens;
}

void Ticket::release(std::int64_t completion_tokens) {
  if (!pool_) return;
  if (completion_tokens > charged_) pool_->charge(id_, completion_tokens - charged_);
  std::exchange(pool_, nullptr)->release(id_, completion_tokens);
}

namespace {
PoolConfig core_config(const PoolSettings& s, const SchedulingConfig& sc) {
  PoolConfig c;
  c.policy = sc.fair ? Policy::kFair : Policy::kFcfs;
  c.max_seqs = s.max_seqs;
  c.inflight_tokens = s.inflight_tokens;
  c.long_tokens = s.long_tokens;
  c.long_share = s.long_share;
  c.short_idle_s = s.short_idle_s;
  c.batch_aging_s = sc.batch_aging_s;
  c.weights = {sc.input_weight, sc.output_weight};
  return c;
}
}  // namespace

LivePool::LivePool(std::string deployment, const PoolSettings& settings, const SchedulingConfig& sched,
                   const std::vector<TenantConfig>& tenants)
    : deployment_(std::move(deployment)), sched_(sched), core_(core_config(settings, sched)) {
  for (const auto& t : tenants) core_.set_tenant_weight(t.id, t.weight);
}

double LivePool::now() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_).count(); }

std::int64_t LivePool::expected_output(const AdmissionAsk& ask) {
  std::optional<double> avg;  // the tenant's output per choice
  {
    std::lock_guard lock(mu_);
    if (auto it = avg_output_.find(ask.who.tenant); it != avg_output_.end()) avg = it->second;
  }
  const std::int64_t choices = std::max<std::int64_t>(1, ask.choices);
  // Before any history, a request's max_tokens is the prediction (the safe
  // side for KV); after, the tenant's average, never above max_tokens. Both
  // per choice: n choices generate n times the output.
  if (!avg && ask.max_output_tokens) return std::max<std::int64_t>(1, *ask.max_output_tokens) * choices;
  const std::string_view effort = ask.reasoning_effort.empty() && ask.reasoning_model ? "medium" : ask.reasoning_effort;
  const double factor = effort == "high" ? 4 : effort == "medium" ? 2 : 1;
  auto predicted = static_cast<std::int64_t>(std::ceil(avg.value_or(static_cast<double>(sched_.default_output_tokens)) * factor));
  if (ask.max_output_tokens) predicted = std::min<std::int64_t>(predicted, *ask.max_output_tokens);
  return std::max<std::int64_t>(1, predicted) * choices;
}

void LivePool::wake_admitted(const std::vector<std::uint64_t>& ids, std::uint64_t self) {
  const double t = now();
  for (std::uint64_t id : ids) {
    if (auto in = info_.find(id); in != info_.end()) {
      TenantMetrics& m = metrics_[in->second.tenant];
      ++m.admitted;
      m.wait_s += t - in->second.arrived;
    }
    if (id != self) wake(id, Waiter::State::kAdmitted);
  }
}

void LivePool::wake(std::uint64_t id, Waiter::State state) {
  auto it = waiters_.find(id);
  if (it == waiters_.end()) return;
  std::shared_ptr<Waiter> w = std::move(it->second);
  waiters_.erase(it);
  w->state = state;
  if (!closed_) net::post(w->wake.get_executor(), [w] { w->wake.cancel(); });
}

void LivePool::wake_shed(const std::vector<std::uint64_t>& ids) {
  for (std::uint64_t id : ids) {
    if (auto in = info_.find(id); in != info_.end()) {
      ++metrics_[in->second.tenant].shed;
      info_.erase(in);
    }
    wake(id, Waiter::State::kShed);
  }
}

net::awaitable<Expected<Ticket>> LivePool::acquire(const AdmissionAsk& ask, const Keepalive* keepalive) {
  auto ex = co_await net::this_coro::executor;
  const std::int64_t expected = expected_output(ask);
  const auto timeout = ask.priority == Priority::kBatch ? sched_.batch_timeout : sched_.interactive_timeout;
  std::uint64_t id = 0;
  auto waiter = std::make_shared<Waiter>(ex);
  {
    std::lock_guard lock(mu_);
    id = next_id_++;
    const double t = now();
    core_.arrive({id, ask.who.tenant, ask.who.user, ask.prompt_tokens, expected, ask.priority,
                  t + std::chrono::duration<double>(timeout).count()},
                 t);
    info_[id] = {ask.who.tenant, t, std::max<std::int64_t>(1, ask.choices)};
    const auto ids = core_.dispatch(t);
    wake_admitted(ids, id);
    if (std::find(ids.begin(), ids.end(), id) != ids.end()) co_return Ticket(this, id);
    waiters_[id] = waiter;
    ++metrics_[ask.who.tenant].queued;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // A keepalive goes out as soon as the request has to wait, then every `every`.
  auto next_keepalive = keepalive ? std::chrono::steady_clock::now() : deadline;
  // Withdraws a request whose client left while it waited; true when it had
  // been admitted meanwhile (its ticket must hand the capacity back).
  auto withdraw = [&]() -> bool {
    std::lock_guard lock(mu_);
    if (waiter->state != Waiter::State::kWaiting) return waiter->state == Waiter::State::kAdmitted;
    core_.cancel(id);
    waiters_.erase(id);
    info_.erase(id);
    wake_admitted(core_.dispatch(now()), 0);  // its place may let others go
    return false;
  };
  for (;;) {
    bool waiting;
    {
      std::lock_guard lock(mu_);
      waiting = waiter->state == Waiter::State::kWaiting;
    }
    boost::system::error_code ec = net::error::operation_aborted;  // not waiting: woken already
    if (waiting) {  // (checked and armed without a suspension between: a wake is posted to this thread)
      waiter->wake.expires_at(std::min(deadline, next_keepalive));
      auto [e] = co_await waiter->wake.async_wait(net::as_tuple(net::use_awaitable));
      ec = e;
    }
    auto cs = co_await net::this_coro::cancellation_state;
    const bool client_left = cs.cancelled() != net::cancellation_type::none;
    if (client_left) {
      if (withdraw()) Ticket t(this, id);  // admitted just as the client left: handed back
      throw boost::system::system_error(net::error::operation_aborted);
    }
    bool keepalive_due = false;
    Waiter::State state;
    {
      std::lock_guard lock(mu_);
      if (waiter->state == Waiter::State::kWaiting && !ec) {
        if (keepalive && std::chrono::steady_clock::now() < deadline) keepalive_due = true;
        else wake_shed(core_.expire(now()));  // the deadline: it and any others past theirs
      }
      state = waiter->state;
    }
    if (state == Waiter::State::kAdmitted) co_return Ticket(this, id);
    if (keepalive_due) {
      try {
        co_await keepalive->send();
      } catch (...) {
        if (withdraw()) Ticket t(this, id);
        throw;
      }
      next_keepalive = std::chrono::steady_clock::now() + keepalive->every;
      continue;
    }
    if (state == Waiter::State::kShed) {
      const double secs = std::chrono::duration<double>(timeout).count();
      ApiError e{503, "server_error", "queue_timeout",
                 fmt::format("Deployment '{}' is saturated: the request waited {:.0f} s in its fair-share queue "
                             "(the {} queue deadline) without being admitted. Retry after the Retry-After delay, "
                             "or send it with a smaller prompt or max_tokens.",
                             deployment_, secs, ask.priority == Priority::kBatch ? "batch" : "interactive"),
                 {}};
      e.retry_after_s = std::max(1, static_cast<int>(std::ceil(secs / 10)));
      co_return e;
    }
  }
}

void LivePool::close() {
  std::lock_guard lock(mu_);
  closed_ = true;
  waiters_.clear();
}

void LivePool::charge(std::uint64_t id, std::int64_t tokens) {
  std::lock_guard lock(mu_);
  core_.charge_output(id, tokens);
}

void LivePool::release(std::uint64_t id, std::int64_t completion_tokens) {
  std::lock_guard lock(mu_);
  if (completion_tokens >= 0) {
    if (auto in = info_.find(id); in != info_.end()) {
      const double per_choice = static_cast<double>(completion_tokens) / static_cast<double>(in->second.choices);
      auto [it, fresh] = avg_output_.try_emplace(in->second.tenant, per_choice);
      if (!fresh) it->second = 0.9 * it->second + 0.1 * per_choice;
    }
  }
  info_.erase(id);
  core_.finish(id, now());
  wake_admitted(core_.dispatch(now()), 0);
}

LivePool::Snapshot LivePool::snapshot() const {
  std::lock_guard lock(mu_);
  Snapshot out;
  out.pool = core_.stats();
  for (const auto& [tenant, m] : metrics_)
    out.tenants[tenant] = {core_.waiting(tenant), m.admitted, m.queued, m.shed, m.wait_s};
  return out;
}

std::string render_pool_metrics(const std::map<std::string, std::unique_ptr<LivePool>>& pools) {
  std::map<std::string, LivePool::Snapshot> snaps;
  for (const auto& [id, p] : pools) snaps[id] = p->snapshot();
  std::string out;
  auto family = [&](const char* name, const char* type, const char* help, auto value) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    for (const auto& [id, s] : snaps) value(id, s);
  };
  auto per_pool = [&](const char* name, const char* help, auto field) {
    family(name, "gauge", help, [&](const std::string& id, const LivePool::Snapshot& s) {
      out += fmt::format("{}{{deployment=\"{}\"}} {}\n", name, id, field(s.pool));
    });
  };
  auto per_tenant = [&](const char* name, const char* type, const char* help, auto field) {
    family(name, type, help, [&](const std::string& id, const LivePool::Snapshot& s) {
      for (const auto& [tenant, t] : s.tenants)
        out += fmt::format("{}{{deployment=\"{}\",tenant=\"{}\"}} {}\n", name, id, tenant, field(t));
    });
  };
  using T = LivePool::Snapshot::Tenant;
  per_pool("tg_pool_inflight_requests", "Requests admitted to a deployment and not yet finished",
           [](const PoolStats& p) { return p.inflight_seqs; });
  per_pool("tg_pool_inflight_tokens", "Prompt + expected output of the requests admitted to a deployment",
           [](const PoolStats& p) { return p.inflight_tokens; });
  per_pool("tg_pool_long_inflight_tokens", "The same, for requests of the long lane",
           [](const PoolStats& p) { return p.long_inflight_tokens; });
  per_tenant("tg_queue_depth", "gauge", "Requests waiting for a saturated deployment", [](const T& t) { return t.depth; });
  per_tenant("tg_queue_admitted_total", "counter", "Requests admitted to a deployment's pool", [](const T& t) { return t.admitted; });
  per_tenant("tg_queue_waited_total", "counter", "Admissions that had to wait in the queue", [](const T& t) { return t.waited; });
  per_tenant("tg_queue_timeouts_total", "counter", "Requests shed at their queue deadline (503 queue_timeout)",
             [](const T& t) { return t.shed; });
  per_tenant("tg_queue_wait_seconds_total", "counter", "Seconds admitted requests spent waiting",
             [](const T& t) { return fmt::format("{:.6f}", t.wait_s); });
  return out;
}

}  // namespace tg::sched
