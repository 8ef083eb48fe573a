#include "server/stages/authenticate.h"

#include <boost/beast/http/field.hpp>
#include <fmt/format.h>

namespace tg::server::stages {
namespace http = boost::beast::http;

Expected<const identity::Principal*> Authenticate::run(const Request& head) const {
  return keys_.authenticate(head[http::field::authorization], head["x-api-key"]);
}

std::string Authenticate::source(const Exchange& x) {
  return x.principal ? "key:" + x.principal->key_id : "ip:" + x.client_ip;
}

std::optional<ApiError> Authenticate::refused_unread(const Request& head, Exchange& x) const {
  if (!refusals_ || !x.path.starts_with("/v1/")) return std::nullopt;
  if (auto principal = run(head)) x.principal = *principal;
  const int wait_s = refusals_->blocked_for_s(source(x), clock_.steady_s());
  if (!wait_s) return std::nullopt;
  stats_.refusal_budget_rejections_total.fetch_add(1);
  ApiError e{429, "rate_limit_error", "too_many_refusals",
             fmt::format("Too many refused requests from {} recently (their parsing and counting has a cost too): "
                         "requests from it are refused unread for {} s. Fix what the earlier errors name, then retry.",
                         x.principal ? fmt::format("key '{}'", x.principal->key_id) : std::string("this address"),
                         wait_s),
             {}};
  e.retry_after_s = wait_s;
  return e;
}

void Authenticate::charge(const Exchange& x) const {
  // A client that left (499) was not refused.
  if (!refusals_ || x.status < 400 || x.status >= 499 || x.error_code == "too_many_refusals") return;
  refusals_->charge(source(x), limits::RefusalBudget::cost(!x.reached_admission, x.body_bytes), clock_.steady_s());
}

}  // namespace tg::server::stages
