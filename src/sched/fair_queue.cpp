#include "sched/fair_queue.h"

#include <limits>

namespace tg::sched {

double FairQueue::weight(const std::string& tenant) const {
  auto it = tenant_weight_.find(tenant);
  return it == tenant_weight_.end() || it->second <= 0 ? 1.0 : it->second;
}

void FairQueue::push(QueuedRequest r) {
  ++size_;
  if (policy_ == Policy::kFcfs) {
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

FairQueue::Tenant* FairQueue::pick_tenant() {
  Tenant* best = nullptr;
  for (auto& [name, t] : tenants_)
    if (t.waiting > 0 && (!best || t.counter < best->counter)) best = &t;
  return best;
}

FairQueue::User* FairQueue::pick_user(Tenant& t) {
  User* best = nullptr;
  for (auto& [name, u] : t.users)
    if (!u.queue.empty() && (!best || u.counter < best->counter)) best = &u;
  return best;
}

const QueuedRequest* FairQueue::peek() {
  if (size_ == 0) return nullptr;
  if (policy_ == Policy::kFcfs) return &fcfs_.front();
  Tenant* t = pick_tenant();
  return &pick_user(*t)->queue.front();
}

QueuedRequest FairQueue::pop() {
  --size_;
  if (policy_ == Policy::kFcfs) {
    QueuedRequest r = std::move(fcfs_.front());
    fcfs_.pop_front();
    return r;
  }
  Tenant* t = pick_tenant();
  User* u = pick_user(*t);
  QueuedRequest r = std::move(u->queue.front());
  u->queue.pop_front();
  --t->waiting;
  const double charge = w_.input * static_cast<double>(r.prompt_tokens) / weight(r.tenant);
  t->counter += charge;
  u->counter += w_.input * static_cast<double>(r.prompt_tokens);
  return r;
}

void FairQueue::charge_output(const std::string& tenant, const std::string& user, std::int64_t tokens) {
  if (policy_ == Policy::kFcfs) return;
  Tenant& t = tenants_[tenant];
  t.counter += w_.output * static_cast<double>(tokens) / weight(tenant);
  t.users[user].counter += w_.output * static_cast<double>(tokens);
}

std::size_t FairQueue::waiting(const std::string& tenant) const {
  if (policy_ == Policy::kFcfs) {
    std::size_t n = 0;
    for (const auto& r : fcfs_) n += r.tenant == tenant;
    return n;
  }
  auto it = tenants_.find(tenant);
  return it == tenants_.end() ? 0 : it->second.waiting;
}

double FairQueue::counter(const std::string& tenant) const {
  auto it = tenants_.find(tenant);
  return it == tenants_.end() ? 0 : it->second.counter;
}

}  // namespace tg::sched
