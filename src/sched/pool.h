// Pool: admission to one upstream deployment (an engine) whose capacity is a
// number of sequences and an in-flight token budget (prompt + expected output
// of every admitted request: a model of its KV cache). A request goes at once
// while the pool has room and nothing waits; otherwise it waits in a
// FairQueue and the pool dispatches in the queue's order as capacity frees.
//
// On top of the queue's order:
// - Priorities: interactive work goes strictly before batch work, but a batch
//   request that has waited `batch_aging_s` competes as interactive (aging),
//   so batch is never starved.
// - The long-request lane (fair policy only): a request predicted over
//   `long_tokens` (prompt + expected output) is long. Short and long requests
//   wait in separate queues, each ordered by VTC on its own service, so a
//   tenant's occasional long request is not judged by its short traffic (nor
//   held behind a tenant that floods the lane). Short work goes first, except
//   that one long request is always allowed in flight (long work is never
//   starved); long work may hold at most `long_share` of the token budget
//   while short work is present (waiting, running, or seen within the last
//   `short_idle_s`: a gap between two chats is not idleness, and long work
//   admitted into it would hold the pool for minutes), and the whole pool
//   when none is (work-conserving).
// - Queue deadlines: every waiting request carries one; expire(now) sheds the
//   requests past theirs.
//
// Pure: time is passed in (seconds on any monotonic clock), no I/O, no
// threads. The live gateway (sched::LivePool) and the offline replay
// (sim::replay) both drive this class. Not thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "sched/fair_queue.h"

namespace tg::sched {

enum class Priority { kInteractive, kBatch };

struct PoolConfig {
  Policy policy = Policy::kFair;
  std::int64_t max_seqs = 0;         // 0: no limit
  std::int64_t inflight_tokens = 0;  // 0: no limit
  std::int64_t long_tokens = 8192;   // a request predicted over this is long
  double long_share = 0.8;          // of inflight_tokens, while short work is present
  double short_idle_s = 10;         // short work absent this long: long work may fill the pool
  double batch_aging_s = 30;         // a batch request waiting this long competes as interactive
  VtcWeights weights{};
};

struct PoolRequest {
  std::uint64_t id = 0;
  std::string tenant, user;
  std::int64_t prompt_tokens = 0, expected_output = 0;
  Priority priority = Priority::kInteractive;
  double deadline_s = 0;  // shed when still waiting at this time; 0: none
};

struct PoolStats {
  std::int64_t inflight_seqs = 0, inflight_tokens = 0, long_inflight_tokens = 0;
  std::size_t waiting = 0;
};

class Pool {
 public:
  explicit Pool(PoolConfig c);
  void set_tenant_weight(const std::string& tenant, double w);

  // A request arrives at `now` and joins the queue; call dispatch() next.
  void arrive(const PoolRequest& r, double now);
  // The waiting requests that may go now, in order; each is admitted (it
  // holds capacity until finish()).
  std::vector<std::uint64_t> dispatch(double now);
  // An admitted request completed, failed or was abandoned: frees its capacity.
  void finish(std::uint64_t id, double now);
  // A waiting request gave up (its client left): true when it was waiting.
  bool cancel(std::uint64_t id);
  // Sheds the waiting requests whose deadline is at or before `now`.
  std::vector<std::uint64_t> expire(double now);
  // Output tokens streamed by an admitted request (VTC charging).
  void charge_output(std::uint64_t id, std::int64_t tokens);

  bool is_long(std::int64_t prompt_tokens, std::int64_t expected_output) const {
    return prompt_tokens + expected_output > c_.long_tokens;
  }
  PoolStats stats() const;
  std::size_t waiting(const std::string& tenant) const;
  const PoolConfig& config() const { return c_; }

 private:
  struct Entry {
    PoolRequest req;
    std::multimap<double, std::uint64_t>::iterator deadline;  // valid while waiting with a deadline
    bool has_deadline = false;
    double arrived_s = 0;
    bool long_request = false, admitted = false, promoted = false;
    std::int64_t need = 0;
  };
  // queues_[priority][class]: priority 0 interactive (and aged batch), 1 batch; class 0 short, 1 long.
  FairQueue& queue_of(const Entry& e) {
    return queues_[e.req.priority == Priority::kBatch && !e.promoted ? 1 : 0][e.long_request ? 1 : 0];
  }
  void age(double now);
  bool fits(const Entry& e) const;
  bool lane_allows(const Entry& e, double now) const;
  bool short_present(double now) const;
  FairQueue* next_queue(double now);
  void remove_waiting(Entry& e);

  PoolConfig c_;
  FairQueue queues_[2][2];
  std::unordered_map<std::uint64_t, Entry> entries_;
  std::deque<std::pair<double, std::uint64_t>> batch_order_;  // (arrival, id) of batch requests, oldest first
  std::multimap<double, std::uint64_t> deadlines_;             // (deadline, id) of waiting requests that have one
  void drop_deadline(Entry& e) {
    if (e.has_deadline) deadlines_.erase(e.deadline);
    e.has_deadline = false;
  }
  std::int64_t seqs_ = 0, tokens_ = 0, long_tokens_ = 0, long_inflight_ = 0, short_inflight_ = 0;
  double last_short_s_ = -1e300;  // when short work was last seen arriving or finishing
  std::unordered_map<std::string, std::size_t> waiting_;  // per tenant
  std::size_t waiting_total_ = 0;
};

}  // namespace tg::sched
