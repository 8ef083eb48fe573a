#include "server/stages/settle.h"

#include <boost/json.hpp>
#include <spdlog/spdlog.h>

#include "core/text.h"
#include "meter/pricing.h"
#include "server/stages/estimate.h"

namespace tg::server::stages {
namespace json = boost::json;

ledger::LedgerRow Settle::ledger_row(const Exchange& x) const {
  ledger::LedgerRow r;
  const auto elapsed = std::chrono::steady_clock::now() - x.start;
  r.ts_ms = clock_.wall_ms() - std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count();
  r.who = x.who;
  r.endpoint = x.endpoint;
  r.stream = x.stream;
  if (x.usage) {
    r.prompt_tokens = x.usage->prompt_tokens;
    r.completion_tokens = x.usage->completion_tokens;
    r.cached_tokens = x.usage->cached_tokens;
    r.usage_source = "upstream";
  } else if (x.model_config) {
    r.prompt_tokens = x.upstream_status || x.client_gone ? x.prompt_tokens_est : 0;  // nothing reached an engine otherwise
    r.completion_tokens = x.generated.empty() ? 0 : tokenizer_for(config_, *x.model_config).count(x.generated);
    r.usage_source = "gateway";
  } else {
    r.usage_source = "gateway";
  }
  if (x.cache.status == "hit") r.usage_source = "cache";  // served from the cache: nothing reached an engine
  if (!x.cache.status.empty()) r.cache_status = x.cache.status;
  r.cache = x.cache.audit;
  if (x.model_config) {
    // Prompt-cache reads and writes at their own prices, the rest of the prompt at the input price.
    r.cost_micros = meter::cost_micros(meter::price_of(x.model_config->price), r.prompt_tokens, r.completion_tokens,
                                       r.cached_tokens, x.usage ? x.usage->cache_creation_tokens : 0);
  }
  r.status = x.status;
  r.error_code = printable(x.error_code, 64);  // an upstream's code may be anything
  r.ttft_us = x.ttft ? x.ttft->count() : -1;
  r.latency_us = std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count();
  return r;
}

void Settle::run(Exchange& x) const {
  if (x.settled) return;
  x.settled = true;
  static const std::string kNone, kUnknownModel = "_unknown";
  // Metric labels are bounded by the configuration: a tenant id, a configured
  // model alias, or one value for every model the configuration does not know.
  const std::string& tenant = x.principal ? x.principal->tenant : kNone;
  const ModelConfig* known = x.model_config            ? x.model_config
                             : x.who.model.empty()     ? nullptr
                                                       : config_.find_model(x.who.model);
  const std::string& model = known ? known->alias : x.who.model.empty() ? kNone : kUnknownModel;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - x.start).count();
  metrics_.record_request(tenant, model, x.endpoint, x.status, secs);
  if (x.ttft) metrics_.record_ttft(tenant, model, std::chrono::duration<double>(*x.ttft).count());
  if (x.usage) metrics_.record_tokens(tenant, model, x.usage->prompt_tokens, x.usage->completion_tokens);
  access_log_.write(x);
  authenticate_.charge(x);
  x.pool_ticket.release(x.usage ? static_cast<std::int64_t>(x.usage->completion_tokens) : -1);
  if (!x.principal || (!ledger_ && !x.budget_hold && !x.admission.held())) return;
  ledger::LedgerRow row = ledger_row(x);
  const std::int64_t tokens = static_cast<std::int64_t>(row.prompt_tokens + row.completion_tokens);
  x.admission.settle(tokens, row.cost_micros, clock_.steady_us());
  if (x.budget_hold) {
    for (const auto& a : budgets_.settle(*x.budget_hold, {row.cost_micros, tokens}, clock_.wall())) {
      metrics_.stats.budget_soft_alerts_total.fetch_add(1);
      spdlog::warn("budget soft threshold crossed: {} at {} of {} {}", a.scope, a.spent, a.limit, a.unit);
      if (a.webhook.empty()) continue;
      json::object alert;
      alert["type"] = "budget.soft_threshold";
      alert["scope"] = a.scope;
      alert["spent"] = a.spent;
      alert["limit"] = a.limit;
      alert["unit"] = a.unit;
      alert["resets_at_ms"] = a.resets_at_ms;
      alert["request_id"] = x.who.request_id;
      webhook_.post(a.webhook, json::serialize(alert));
    }
  }
  if (ledger_) ledger_->submit(std::move(row));
}

}  // namespace tg::server::stages
