// LivePool: sched::Pool at the edge, for the running gateway. One per
// deployment, shared by every worker thread (one mutex around the pure core).
// A request that must wait parks its coroutine on a timer on its own worker;
// whoever frees capacity (any thread) dispatches the next requests in the
// core's order and wakes them by posting to their workers. Waiting ends in
// one of three ways: admitted (a Ticket, which frees the capacity when it is
// destroyed on any path), shed at the queue deadline (503 queue_timeout with
// Retry-After), or the client left (terminal cancellation: the request leaves
// the queue, nothing is held).
//
// Expected output (the pool's token budget and the lane): a per-tenant moving
// average of what its requests really produced on this deployment, times 2 / 4
// for reasoning_effort medium / high (a reasoning model without an effort
// counts as medium), never above max_tokens; before the tenant has history,
// max_tokens (or scheduling.default_output_tokens, with the same factors).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "core/config.h"
#include "core/request_identity.h"
#include "core/error.h"
#include "sched/pool.h"

namespace tg::sched {

class LivePool;

// Capacity held by one admitted request; released by the destructor.
class Ticket {
 public:
  Ticket() = default;
  Ticket(LivePool* pool, std::uint64_t id) : pool_(pool), id_(id) {}
  Ticket(Ticket&& o) noexcept : pool_(std::exchange(o.pool_, nullptr)), id_(o.id_), charged_(o.charged_) {}
  Ticket& operator=(Ticket&& o) noexcept;
  ~Ticket() { release(); }
  explicit operator bool() const { return pool_ != nullptr; }
  // Output tokens streamed so far by this request (VTC charging); cumulative.
  void output_so_far(std::int64_t tokens);
  // Done: `completion_tokens` is what it produced (refines the prediction).
  void release(std::int64_t completion_tokens = -1);

 private:
  LivePool* pool_ = nullptr;
  std::uint64_t id_ = 0;
  std::int64_t charged_ = 0;
};

struct AdmissionAsk {
  RequestIdentity who;  // fair shares are by who.tenant, then who.user
  std::int64_t prompt_tokens = 0;
  std::optional<std::uint32_t> max_output_tokens;  // per choice
  std::string reasoning_effort;  // "", minimal, low, medium, high
  bool reasoning_model = false;  // the model is configured `reasoning: true`
  Priority priority = Priority::kInteractive;
  std::int64_t choices = 1;  // completions generated (n, best_of): the expected output is per choice times this
};

class LivePool {
 public:
  LivePool(std::string deployment, const PoolSettings& settings, const SchedulingConfig& sched,
           const std::vector<TenantConfig>& tenants);

  // Admission: at once while there is room, else in fair order; a 503
  // queue_timeout at the priority's deadline. Throws system_error
  // (operation_aborted) when the caller's cancellation slot fires.
  // While it waits, `keepalive` (when given) is awaited at once and then
  // every `every`: a
  // stream that has begun keeps its client informed (the Anthropic door's
  // ping). A keepalive that throws (the client left) withdraws the request
  // and the exception propagates.
  struct Keepalive {
    std::chrono::milliseconds every{1000};
    std::function<boost::asio::awaitable<void>()> send;
  };
  boost::asio::awaitable<Expected<Ticket>> acquire(const AdmissionAsk& ask, const Keepalive* keepalive = nullptr);

  std::int64_t expected_output(const AdmissionAsk& ask);
  struct Snapshot {
    PoolStats pool;
    struct Tenant {
      std::size_t depth = 0;
      std::uint64_t admitted = 0, waited = 0, shed = 0;
      double wait_s = 0;
    };
    std::map<std::string, Tenant> tenants;
  };
  Snapshot snapshot() const;
  const std::string& deployment() const { return deployment_; }
  // Shutdown, after the workers have stopped: wakes nobody from now on.
  void close();

 private:
  friend class Ticket;
  struct Waiter {
    explicit Waiter(const boost::asio::any_io_executor& ex) : wake(ex) {}
    boost::asio::steady_timer wake;
    enum class State { kWaiting, kAdmitted, kShed } state = State::kWaiting;
  };
  struct TenantMetrics {
    std::uint64_t admitted = 0, queued = 0, shed = 0;
    double wait_s = 0;
  };
  double now() const;
  void release(std::uint64_t id, std::int64_t completion_tokens);
  void charge(std::uint64_t id, std::int64_t tokens);
  // REQUIRES mu_: hands out `ids` (admitted) and wakes their waiters.
  void wake_admitted(const std::vector<std::uint64_t>& ids, std::uint64_t self);
  void wake_shed(const std::vector<std::uint64_t>& ids);
  void wake(std::uint64_t id, Waiter::State state);  // REQUIRES mu_: hands the waiter its verdict

  const std::string deployment_;
  const SchedulingConfig sched_;
  const std::chrono::steady_clock::time_point epoch_ = std::chrono::steady_clock::now();
  mutable std::mutex mu_;
  Pool core_;
  std::uint64_t next_id_ = 1;
  bool closed_ = false;
  std::unordered_map<std::uint64_t, std::shared_ptr<Waiter>> waiters_;
  struct Info {
    std::string tenant;
    double arrived = 0;
    std::int64_t choices = 1;
  };
  std::unordered_map<std::uint64_t, Info> info_;
  std::map<std::string, TenantMetrics> metrics_;
  std::unordered_map<std::string, double> avg_output_;  // per tenant, exponential moving average
};

// Prometheus text for every pool, one metric family at a time (queue depth,
// waits and timeouts per tenant; in-flight requests and tokens per deployment).
std::string render_pool_metrics(const std::map<std::string, std::unique_ptr<LivePool>>& pools);

}  // namespace tg::sched
