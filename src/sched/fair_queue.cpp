#include "sched/fair_queue.h"

#include <algorithm>
#include <limits>

namespace tg::sched {

double FairQueue::weight(const std::string& tenant) const {
  auto it = tenant_weight_.find(tenant);
  return it == tenant_weight_.end() || it->second <= 0 ? 1.0 : it->second;
}

void FairQueue::push(QueuedRequest r) {
  ++size_;
  if (policy_ == Policy::kFcfs) {
    ++fcfs_waiting_[r.tenant];
    fcfs_.push_back(std::move(r));
    return;
  }
  Tenant& t = tenants_[r.tenant];
  if (t.waiting == 0) {
    // Lift to the lowest counter among tenants already waiting.
    double low = std::numeric_limits<double>::infinity();
    for (const auto& [name, other] : tenants_)
      if (other.waiting > 0 && other.counter < low) low = other.counter;
    if (low != std::numeric_limits<double>::infinity() && t.counter < low) t.counter = low;
  }
  User& u = t.users[r.user];
  if (u.queue.empty()) {
    double low = std::numeric_limits<double>::infinity();
    for (const auto& [name, other] : t.users)
      if (!other.queue.empty() && other.counter < low) low = other.counter;
    if (low != std::numeric_limits<double>::infinity() && u.counter < low) u.counter = low;
  }
  u.queue.push_back(std::move(r));
  ++t.waiting;
}

FairQueue::User* FairQueue::pick_user(Tenant& t) {
  User* best = nullptr;
  for (auto& [name, u] : t.users)
    if (!u.queue.empty() && (!best || u.counter < best->counter)) best = &u;
  return best;
}

FairQueue::Tenant* FairQueue::pick_tenant() {
  Tenant* best = nullptr;
  for (auto& [name, t] : tenants_)
    if (t.waiting > 0 && (!best || t.counter < best->counter)) best = &t;
  return best;
}

const QueuedRequest* FairQueue::peek() {
  peeked_tenant_ = nullptr;
  peeked_user_ = nullptr;
  if (size_ == 0) return nullptr;
  if (policy_ == Policy::kFcfs) return &fcfs_.front();
  peeked_tenant_ = pick_tenant();
  peeked_user_ = pick_user(*peeked_tenant_);
  return &peeked_user_->queue.front();
}

QueuedRequest FairQueue::pop() {
  --size_;
  QueuedRequest r;
  if (policy_ == Policy::kFcfs) {
    r = std::move(fcfs_.front());
    fcfs_.pop_front();
    --fcfs_waiting_[r.tenant];
  } else {
    Tenant* t = peeked_tenant_ ? peeked_tenant_ : pick_tenant();
    User* u = peeked_user_ ? peeked_user_ : pick_user(*t);
    r = std::move(u->queue.front());
    u->queue.pop_front();
    --t->waiting;
    t->counter += w_.input * static_cast<double>(r.prompt_tokens) / weight(r.tenant);
    u->counter += w_.input * static_cast<double>(r.prompt_tokens);
  }
  peeked_tenant_ = nullptr;
  peeked_user_ = nullptr;
  return r;
}

bool FairQueue::remove(std::uint64_t id, const std::string& tenant, const std::string& user) {
  peeked_tenant_ = nullptr;
  peeked_user_ = nullptr;
  if (policy_ == Policy::kFcfs) {
    auto it = std::find_if(fcfs_.begin(), fcfs_.end(), [&](const QueuedRequest& q) { return q.id == id; });
    if (it == fcfs_.end()) return false;
    fcfs_.erase(it);
    --fcfs_waiting_[tenant];
  } else {
    auto t = tenants_.find(tenant);
    if (t == tenants_.end()) return false;
    auto u = t->second.users.find(user);
    if (u == t->second.users.end()) return false;
    auto& q = u->second.queue;
    auto it = std::find_if(q.begin(), q.end(), [&](const QueuedRequest& r) { return r.id == id; });
    if (it == q.end()) return false;
    q.erase(it);
    --t->second.waiting;
  }
  --size_;
  return true;
}

void FairQueue::charge_output(const std::string& tenant, const std::string& user, std::int64_t tokens) {
  if (policy_ == Policy::kFcfs) return;
  Tenant& t = tenants_[tenant];
  t.counter += w_.output * static_cast<double>(tokens) / weight(tenant);
  t.users[user].counter += w_.output * static_cast<double>(tokens);
}

void FairQueue::charge_input(const std::string& tenant, const std::string& user, std::int64_t tokens) {
  if (policy_ == Policy::kFcfs) return;
  Tenant& t = tenants_[tenant];
  t.counter += w_.input * static_cast<double>(tokens) / weight(tenant);
  t.users[user].counter += w_.input * static_cast<double>(tokens);
}

std::size_t FairQueue::waiting(const std::string& tenant) const {
  if (policy_ == Policy::kFcfs) {
    auto it = fcfs_waiting_.find(tenant);
    return it == fcfs_waiting_.end() ? 0 : it->second;
  }
  auto it = tenants_.find(tenant);
  return it == tenants_.end() ? 0 : it->second.waiting;
}

double FairQueue::counter(const std::string& tenant) const {
  auto it = tenants_.find(tenant);
  return it == tenants_.end() ? 0 : it->second.counter;
}

}  // namespace tg::sched
