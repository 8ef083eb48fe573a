#include "sched/pool.h"

#include <algorithm>

namespace tg::sched {

Pool::Pool(PoolConfig c)
    : c_(c),
      queues_{{FairQueue(c.policy, c.weights), FairQueue(c.policy, c.weights)},
              {FairQueue(c.policy, c.weights), FairQueue(c.policy, c.weights)}} {}

void Pool::set_tenant_weight(const std::string& tenant, double w) {
  for (auto& row : queues_)
    for (auto& q : row) q.set_tenant_weight(tenant, w);
}

void Pool::arrive(const PoolRequest& r, double now) {
  Entry e;
  e.req = r;
  e.arrived_s = now;
  e.need = std::max<std::int64_t>(0, r.prompt_tokens) + std::max<std::int64_t>(0, r.expected_output);
  // The lane exists under the fair policy only: fcfs is plain arrival order.
  e.long_request = c_.policy == Policy::kFair && e.need > c_.long_tokens;
  auto [it, inserted] = entries_.emplace(r.id, std::move(e));
  if (!inserted) return;  // an id is admitted once
  Entry& en = it->second;
  queue_of(en).push({r.id, r.tenant, r.user, r.prompt_tokens, r.expected_output});
  if (r.priority == Priority::kBatch) batch_order_.emplace_back(now, r.id);
  if (r.deadline_s > 0) {
    en.deadline = deadlines_.emplace(r.deadline_s, r.id);
    en.has_deadline = true;
  }
  if (!en.long_request) last_short_s_ = now;
  ++waiting_[r.tenant];
  ++waiting_total_;
}

void Pool::age(double now) {
  while (!batch_order_.empty()) {
    const auto [arrived, id] = batch_order_.front();
    auto it = entries_.find(id);
    if (it == entries_.end() || it->second.admitted || it->second.promoted) {
      batch_order_.pop_front();
      continue;
    }
    if (arrived + c_.batch_aging_s > now) break;
    batch_order_.pop_front();
    Entry& e = it->second;
    queue_of(e).remove(id, e.req.tenant, e.req.user);
    e.promoted = true;
    queue_of(e).push({id, e.req.tenant, e.req.user, e.req.prompt_tokens, e.req.expected_output});
  }
}

bool Pool::fits(const Entry& e) const {
  if (seqs_ == 0) return true;  // an empty pool always takes one, however large
  if (c_.max_seqs > 0 && seqs_ >= c_.max_seqs) return false;
  return c_.inflight_tokens <= 0 || tokens_ + e.need <= c_.inflight_tokens;
}

bool Pool::short_present(double now) const {
  return short_inflight_ > 0 || !queues_[0][0].empty() || !queues_[1][0].empty() ||
         now - last_short_s_ < c_.short_idle_s;
}

bool Pool::lane_allows(const Entry& e, double now) const {
  if (!e.long_request || long_inflight_ == 0 || c_.inflight_tokens <= 0 || !short_present(now)) return true;
  return static_cast<double>(long_tokens_ + e.need) <= c_.long_share * static_cast<double>(c_.inflight_tokens);
}

// Strict priority; inside a priority: one long request always in flight,
// then short work, then long work within the lane.
FairQueue* Pool::next_queue(double now) {
  for (auto& row : queues_) {
    FairQueue& shrt = row[0];
    FairQueue& lng = row[1];
    if (!lng.empty() && long_inflight_ == 0) return &lng;
    if (!shrt.empty()) return &shrt;
    if (!lng.empty() && lane_allows(entries_.at(lng.peek()->id), now)) return &lng;
  }
  return nullptr;
}

std::vector<std::uint64_t> Pool::dispatch(double now) {
  age(now);
  std::vector<std::uint64_t> out;
  while (FairQueue* q = next_queue(now)) {
    Entry& e = entries_.at(q->peek()->id);
    if (!fits(e)) break;  // the head holds its place until capacity frees
    q->pop();
    // The request's input is service on its class, whichever priority it waited in.
    const int cls = e.long_request ? 1 : 0;
    for (auto& row : queues_)
      if (&row[cls] != q) row[cls].charge_input(e.req.tenant, e.req.user, e.req.prompt_tokens);
    e.admitted = true;
    drop_deadline(e);
    ++seqs_;
    tokens_ += e.need;
    if (e.long_request) {
      long_tokens_ += e.need;
      ++long_inflight_;
    } else {
      ++short_inflight_;
    }
    --waiting_[e.req.tenant];
    --waiting_total_;
    out.push_back(e.req.id);
  }
  return out;
}

void Pool::finish(std::uint64_t id, double now) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  Entry& e = it->second;
  if (!e.long_request) last_short_s_ = now;
  if (!e.admitted) {
    remove_waiting(e);
  } else {
    --seqs_;
    tokens_ -= e.need;
    if (e.long_request) {
      long_tokens_ -= e.need;
      --long_inflight_;
    } else {
      --short_inflight_;
    }
  }
  entries_.erase(it);
}

void Pool::remove_waiting(Entry& e) {
  drop_deadline(e);
  queue_of(e).remove(e.req.id, e.req.tenant, e.req.user);
  --waiting_[e.req.tenant];
  --waiting_total_;
}

bool Pool::cancel(std::uint64_t id) {
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second.admitted) return false;
  remove_waiting(it->second);
  entries_.erase(it);
  return true;
}

std::vector<std::uint64_t> Pool::expire(double now) {
  // Deadline order: only waiting requests are in deadlines_.
  std::vector<std::uint64_t> out;
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    const std::uint64_t id = deadlines_.begin()->second;
    if (!cancel(id)) deadlines_.erase(deadlines_.begin());  // (cancel() drops it otherwise)
    else out.push_back(id);
  }
  std::sort(out.begin(), out.end());
  return out;
}

void Pool::charge_output(std::uint64_t id, std::int64_t tokens) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  const Entry& e = it->second;
  for (auto& row : queues_) row[e.long_request ? 1 : 0].charge_output(e.req.tenant, e.req.user, tokens);
}

PoolStats Pool::stats() const { return {seqs_, tokens_, long_tokens_, waiting_total_}; }

std::size_t Pool::waiting(const std::string& tenant) const {
  auto it = waiting_.find(tenant);
  return it == waiting_.end() ? 0 : it->second;
}

}  // namespace tg::sched
