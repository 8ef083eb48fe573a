#include "limits/refusal_budget.h"

#include <algorithm>
#include <cmath>

namespace tg::limits {

double RefusalBudget::cost(bool before_admission, std::size_t body_bytes) {
  return (before_admission ? 1.0 : 0.0) + static_cast<double>(body_bytes) / 65536.0;
}

void RefusalBudget::refill(Source& src, double now_s) const {
  if (now_s > src.t) {
    src.level = std::min(s_.burst, src.level + (now_s - src.t) * s_.per_s);
    src.t = now_s;
  }
}

int RefusalBudget::blocked_for_s(std::string_view source, double now_s) {
  if (!enabled()) return 0;
  auto it = by_source_.find(source);
  if (it == by_source_.end()) return 0;
  Source& src = it->second;
  refill(src, now_s);
  if (src.level > 0) return 0;
  if (s_.per_s <= 0) return 3600;
  return std::max(1, static_cast<int>(std::ceil((1.0 - src.level) / s_.per_s)));
}

void RefusalBudget::charge(std::string_view source, double units, double now_s) {
  if (!enabled() || units <= 0) return;
  auto it = by_source_.find(source);
  if (it == by_source_.end()) {
    if (by_source_.size() >= s_.max_sources) {
      by_source_.erase(std::string_view(lru_.back()));
      lru_.pop_back();
    }
    lru_.emplace_front(source);
    it = by_source_.emplace(std::string_view(lru_.front()), Source{s_.burst, now_s, lru_.begin()}).first;
  } else {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
  }
  Source& src = it->second;
  refill(src, now_s);
  src.level -= units;
}

}  // namespace tg::limits
