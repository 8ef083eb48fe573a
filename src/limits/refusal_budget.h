// RefusalBudget: what refused requests may cost the gateway before their
// source is refused unread. A refusal charges its source (the key it came
// with, or the client address when it had no valid key) in units of work:
// one for a request refused before admission, plus one for every 64 KiB of
// body the gateway read, parsed or tokenized for it. A source holds `burst`
// units, refilled at `per_s` a second; while it is empty its requests get a
// 429 too_many_refusals before their body is parsed or counted.
//
// Bounded: at most `max_sources` sources are remembered; the one charged
// least recently is forgotten first (forgetting only ever gives a source
// back a full budget, which it would have had anyway after burst/per_s
// seconds). Pure: time is passed in. Not thread-safe: one per worker thread
// (a source's budget is per worker, so a gateway of N workers allows N times
// the rate; docs/security.md).
#pragma once

#include <cstdint>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>

namespace tg::limits {

struct RefusalBudgetSettings {
  double burst = 200;  // units a source may spend at once; 0: refusals are never limited
  double per_s = 5;    // units refilled a second
  std::size_t max_sources = 4096;
};

class RefusalBudget {
 public:
  explicit RefusalBudget(RefusalBudgetSettings s) : s_(s) {}
  RefusalBudget(const RefusalBudget&) = delete;
  RefusalBudget& operator=(const RefusalBudget&) = delete;

  // The units one refusal costs: `before_admission` adds one, each 64 KiB of
  // `body_bytes` adds one (fractionally).
  static double cost(bool before_admission, std::size_t body_bytes);

  // Seconds until `source` may be served again (rounded up); 0 while it has budget.
  int blocked_for_s(std::string_view source, double now_s);
  void charge(std::string_view source, double units, double now_s);

  std::size_t tracked() const { return by_source_.size(); }
  bool enabled() const { return s_.burst > 0; }

 private:
  struct Source {
    double level = 0, t = 0;  // units left at time t
    std::list<std::string>::iterator lru;
  };
  void refill(Source& src, double now_s) const;

  RefusalBudgetSettings s_;
  std::list<std::string> lru_;  // front: charged most recently
  std::unordered_map<std::string_view, Source> by_source_;  // keys view the list's strings
};

}  // namespace tg::limits
