// settle: the last stage of every request, answered or not, run exactly
// once and before the answer's last bytes are written (so a client that has
// its whole answer also has its ledger row in the journal, whatever happens
// to the process next). It records the request's metrics (labels bounded by
// the configuration) and access log line, charges a refusal to its source,
// releases its pool ticket with what it produced, settles its limits and
// budgets at the actual spend (soft-threshold alerts to their webhooks), and
// submits its ledger row. Usage is the upstream's when it reported one,
// otherwise the gateway's own count. Per worker.
#pragma once

#include "core/clock.h"
#include "core/config.h"
#include "meter/budget.h"
#include "ledger/ledger.h"
#include "server/access_log.h"
#include "server/exchange.h"
#include "server/metrics.h"
#include "server/stages/authenticate.h"
#include "server/webhook.h"

namespace tg::server::stages {

class Settle {
 public:
  // `ledger` null: the ledger is off.
  Settle(const Config& config, Metrics& metrics, AccessLog& access_log, const Authenticate& authenticate,
         ledger::LedgerWriter* ledger, meter::BudgetBook& budgets, Webhook& webhook, const Clock& clock)
      : config_(config), metrics_(metrics), access_log_(access_log), authenticate_(authenticate), ledger_(ledger),
        budgets_(budgets), webhook_(webhook), clock_(clock) {}

  // Does nothing when `x` is settled already.
  void run(Exchange& x) const;

  // The ledger row of `x` (a request with a valid key).
  ledger::LedgerRow ledger_row(const Exchange& x) const;

 private:
  const Config& config_;
  Metrics& metrics_;
  AccessLog& access_log_;
  const Authenticate& authenticate_;
  ledger::LedgerWriter* ledger_;
  meter::BudgetBook& budgets_;
  Webhook& webhook_;
  const Clock& clock_;
};

}  // namespace tg::server::stages
