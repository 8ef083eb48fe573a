#include "server/stages/admit.h"

#include <random>

namespace tg::server::stages {
namespace net = boost::asio;

namespace {
// Retry-After gets 0..10% (at least 0..1 s) added, so clients refused together
// do not all come back in the same second.
int retry_jitter_s(int retry_after_s) {
  thread_local std::minstd_rand rng(std::random_device{}());
  return std::uniform_int_distribution<int>(0, std::max(1, retry_after_s / 10))(rng);
}
}  // namespace

net::awaitable<Expected<Admitted>> Admit::run(const RequestIdentity& who, const meter::Spend& estimate) const {
  const limits::Ask ask = limits::Ask::of(who, estimate.tokens, estimate.micros);
  // (no conditional expression around the co_await: GCC 12 mishandles its temporaries)
  Expected<limits::Admission> admitted = ApiError{};
  if (redis_) admitted = co_await redis_->admit_async(ask);
  else admitted = local_.admit(ask, clock_.steady_us());
  if (!admitted) {
    ApiError e = admitted.error();
    metrics_.record_limit_rejection(who.tenant, e.code);
    if (e.retry_after_s > 0) e.retry_after_s += retry_jitter_s(e.retry_after_s);
    co_return e;
  }
  Admitted out;
  out.admission = std::move(*admitted);
  out.headers = limits::rate_limit_headers(out.admission.quota());
  if (budgets_.size()) {
    auto hold = budgets_.reserve(who, estimate, clock_.wall());
    if (!hold) {
      metrics_.stats.budget_rejections_total.fetch_add(1);
      // Nothing will run: release the limits' reservation charging no tokens (its destructor would
      // charge the whole estimate). The request itself still counts against requests per minute.
      out.admission.settle(0, 0, clock_.steady_us());
      co_return hold.error();
    }
    out.budget_hold = std::move(*hold);
  }
  co_return out;
}

}  // namespace tg::server::stages
