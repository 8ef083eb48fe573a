#include "meter/budget.h"

#include <fmt/format.h>

namespace tg::meter {
namespace {
using namespace std::chrono;

std::int64_t ms(sys_days d) { return duration_cast<milliseconds>(d.time_since_epoch()).count(); }

std::string when(std::int64_t ms_utc) {
  auto d = floor<days>(sys_time<milliseconds>(milliseconds(ms_utc)));
  year_month_day ymd(d);
  return fmt::format("{:04}-{:02}-{:02}T00:00:00Z", static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                     static_cast<unsigned>(ymd.day()));
}
}  // namespace

std::int64_t BudgetBook::period_start(BudgetPeriod p, SysTime t) {
  auto d = floor<days>(t);
  if (p == BudgetPeriod::kDay) return ms(d);
  year_month_day ymd(d);
  return ms(sys_days(ymd.year() / ymd.month() / 1));
}

std::int64_t BudgetBook::period_end(BudgetPeriod p, SysTime t) {
  auto d = floor<days>(t);
  if (p == BudgetPeriod::kDay) return ms(d + days(1));
  year_month_day ymd(d);
  return ms(sys_days((ymd.year() / ymd.month() / 1) + months(1)));
}

BudgetBook::BudgetBook(std::vector<BudgetConfig> budgets) : budgets_(std::move(budgets)), state_(budgets_.size()) {}

bool BudgetBook::applies(const BudgetConfig& b, const BudgetSubject& w) const {
  switch (b.scope) {
    case BudgetScope::kTenant: return b.tenant == w.tenant;
    case BudgetScope::kUser: return b.tenant == w.tenant && b.user == w.user;
    case BudgetScope::kKey: return b.key == w.key_id;
    case BudgetScope::kFeature: return b.tenant == w.tenant && b.feature == w.feature;
  }
  return false;
}

std::string BudgetBook::scope_name(const BudgetConfig& b) const {
  const char* per = b.period == BudgetPeriod::kDay ? "daily" : "monthly";
  switch (b.scope) {
    case BudgetScope::kTenant: return fmt::format("tenant '{}' {}", b.tenant, per);
    case BudgetScope::kUser: return fmt::format("user '{}' of tenant '{}' {}", b.user, b.tenant, per);
    case BudgetScope::kKey: return fmt::format("key '{}' {}", b.key, per);
    case BudgetScope::kFeature: return fmt::format("feature '{}' of tenant '{}' {}", b.feature, b.tenant, per);
  }
  return "?";
}

BudgetBook::State& BudgetBook::roll(std::size_t i, SysTime now) {
  State& s = state_[i];
  std::int64_t p = period_start(budgets_[i].period, now);
  if (s.period != p) {  // a new day or month: spend starts again; holds from the old period are dropped at settle
    s = State{};
    s.period = p;
  }
  return s;
}

Expected<BudgetHold> BudgetBook::reserve(const BudgetSubject& who, Spend est, SysTime now) {
  std::lock_guard lock(mu_);
  BudgetHold hold;
  for (std::size_t i = 0; i < budgets_.size(); ++i) {
    const BudgetConfig& b = budgets_[i];
    if (!applies(b, who)) continue;
    State& s = roll(i, now);
    const std::int64_t want = b.in_tokens ? est.tokens : est.micros;
    if (s.spent + s.reserved + want > b.limit) {
      std::int64_t reset_ms = period_end(b.period, now);
      auto now_ms = duration_cast<milliseconds>(now.time_since_epoch()).count();
      ApiError e{429, "rate_limit_error", "budget_exceeded",
                 b.in_tokens
                     ? fmt::format("{} budget of {} tokens is exhausted ({} used, {} in flight, this request needs up "
                                   "to {}); it resets at {}.", scope_name(b), b.limit, s.spent, s.reserved, want,
                                   when(reset_ms))
                     : fmt::format("{} budget of ${} is exhausted (${} spent, ${} in flight, this request may cost up "
                                   "to ${}); it resets at {}.", scope_name(b), fmt::format("{}.{:06}", b.limit / 1000000, b.limit % 1000000),
                                   fmt::format("{}.{:06}", s.spent / 1000000, s.spent % 1000000),
                                   fmt::format("{}.{:06}", s.reserved / 1000000, s.reserved % 1000000),
                                   fmt::format("{}.{:06}", want / 1000000, want % 1000000), when(reset_ms)),
                 {}};
      e.retry_after_s = static_cast<int>(std::min<std::int64_t>((reset_ms - now_ms + 999) / 1000, 31 * 86400));
      return e;  // nothing was reserved yet: holds are taken only after every check passes
    }
    hold.budgets.push_back(i);
    hold.periods.push_back(s.period);
  }
  for (std::size_t k = 0; k < hold.budgets.size(); ++k) {
    const BudgetConfig& b = budgets_[hold.budgets[k]];
    state_[hold.budgets[k]].reserved += b.in_tokens ? est.tokens : est.micros;
  }
  hold.reserved = est;
  return hold;
}

std::vector<SoftAlert> BudgetBook::settle(const BudgetHold& hold, Spend actual, SysTime now) {
  std::vector<SoftAlert> alerts;
  std::lock_guard lock(mu_);
  for (std::size_t k = 0; k < hold.budgets.size(); ++k) {
    const std::size_t i = hold.budgets[k];
    const BudgetConfig& b = budgets_[i];
    State& s = roll(i, now);
    if (s.period == hold.periods[k]) s.reserved -= b.in_tokens ? hold.reserved.tokens : hold.reserved.micros;
    if (s.reserved < 0) s.reserved = 0;
    s.spent += b.in_tokens ? actual.tokens : actual.micros;
    if (!s.alerted && s.spent * 100 >= b.limit * b.soft_percent) {
      s.alerted = true;
      alerts.push_back({scope_name(b), s.spent, b.limit, b.in_tokens ? "tokens" : "usd_micros", b.webhook,
                        period_end(b.period, now)});
    }
  }
  return alerts;
}

void BudgetBook::preload(const BudgetSubject& who, Spend spent, SysTime when_spent, SysTime now) {
  std::lock_guard lock(mu_);
  for (std::size_t i = 0; i < budgets_.size(); ++i) {
    const BudgetConfig& b = budgets_[i];
    if (!applies(b, who)) continue;
    State& s = roll(i, now);
    if (period_start(b.period, when_spent) != s.period) continue;
    s.spent += b.in_tokens ? spent.tokens : spent.micros;
    if (s.spent * 100 >= b.limit * b.soft_percent) s.alerted = true;  // alerted before the restart
  }
}

}  // namespace tg::meter
