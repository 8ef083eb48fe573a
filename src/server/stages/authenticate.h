// authenticate: the tenant key a request carries (Authorization: Bearer, or
// x-api-key as Anthropic's clients send it), looked up in the key ring, and
// the refusal budget (limits/refusal_budget.h): a key, or an address without
// a valid key, whose recent requests were refused too often is refused again
// on the head alone, before its body is read or parsed. Per worker.
#pragma once

#include <optional>
#include <string>

#include "core/clock.h"
#include "core/error.h"
#include "identity/keyring.h"
#include "limits/refusal_budget.h"
#include "server/exchange.h"
#include "server/handler.h"
#include "server/metrics.h"

namespace tg::server::stages {

class Authenticate {
 public:
  // `refusals` may be null (refusals not limited).
  Authenticate(const identity::KeyRing& keys, limits::RefusalBudget* refusals, GatewayStats& stats, const Clock& clock)
      : keys_(keys), refusals_(refusals), stats_(stats), clock_(clock) {}

  // The request's key: 401 naming what is missing or wrong.
  Expected<const identity::Principal*> run(const Request& head) const;

  // On the head of a /v1/ request: 429 too_many_refusals when its source
  // spent its refusal budget (sets x.principal when the key is valid).
  std::optional<ApiError> refused_unread(const Request& head, Exchange& x) const;

  // A 4xx answer charges its source: 1 unit refused before admission, plus
  // one per 64 KiB of body. A request refused unread costs nothing more, nor one
  // whose client left (499).
  void charge(const Exchange& x) const;

 private:
  static std::string source(const Exchange& x);
  const identity::KeyRing& keys_;
  limits::RefusalBudget* refusals_;
  GatewayStats& stats_;
  const Clock& clock_;
};

}  // namespace tg::server::stages
