// FairQueue: the order in which waiting requests enter a saturated engine
// pool. `fcfs` is arrival order. `fair` is weighted virtual token counters
// (VTC, Sheng et al., "Fairness in Serving Large Language Models", OSDI 2024):
// each tenant's counter is charged w_p per input token when its request is
// dispatched and w_q per output token as tokens stream, divided by the
// tenant's weight; the next request comes from the waiting tenant with the
// lowest counter, and inside it from the user with the lowest counter. A
// tenant (or user) that starts waiting again is lifted to the lowest counter
// among those already waiting, so idle time is not banked as credit.
//
// Pure: no clock, no I/O, no threads. The live gateway and the offline
// replay use the same class. Not thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>

namespace tg::sched {

enum class Policy { kFcfs, kFair };

struct QueuedRequest {
  std::uint64_t id = 0;
  std::string tenant, user;
  std::int64_t prompt_tokens = 0;
  std::int64_t expected_output = 0;  // for the pool's in-flight token budget
};

struct VtcWeights {
  double input = 1.0;   // w_p
  double output = 2.0;  // w_q (the paper's setting)
};

class FairQueue {
 public:
  explicit FairQueue(Policy policy, VtcWeights w = {}) : policy_(policy), w_(w) {}
  void set_tenant_weight(const std::string& tenant, double weight) { tenant_weight_[tenant] = weight; }

  void push(QueuedRequest r);
  // The request that should go next, without removing it; null when none.
  const QueuedRequest* peek();
  // Removes the request the last peek() returned and charges its input tokens.
  QueuedRequest pop();
  // Takes a waiting request out of the queue (it gave up or moved to another
  // queue), uncharged; false when it is not waiting here.
  bool remove(std::uint64_t id, const std::string& tenant, const std::string& user);
  // Charges output tokens streamed by a dispatched request of tenant/user.
  void charge_output(const std::string& tenant, const std::string& user, std::int64_t tokens);
  // Charges input tokens of a request dispatched from another queue.
  void charge_input(const std::string& tenant, const std::string& user, std::int64_t tokens);

  bool empty() const { return size_ == 0; }
  std::size_t size() const { return size_; }
  std::size_t waiting(const std::string& tenant) const;
  double counter(const std::string& tenant) const;

 private:
  struct User {
    double counter = 0;
    std::deque<QueuedRequest> queue;
  };
  struct Tenant {
    double counter = 0;
    std::map<std::string, User> users;
    std::size_t waiting = 0;
  };
  double weight(const std::string& tenant) const;
  Tenant* pick_tenant();
  static User* pick_user(Tenant& t);

  Policy policy_;
  VtcWeights w_;
  std::unordered_map<std::string, double> tenant_weight_;
  std::map<std::string, Tenant> tenants_;
  std::deque<QueuedRequest> fcfs_;
  std::unordered_map<std::string, std::size_t> fcfs_waiting_;  // per tenant
  std::size_t size_ = 0;
  // What the last peek() chose.
  Tenant* peeked_tenant_ = nullptr;
  User* peeked_user_ = nullptr;
};

}  // namespace tg::sched
