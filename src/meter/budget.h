// BudgetBook: spend limits per tenant, user, key or feature tag, per UTC day
// or month, in micro-dollars or tokens. Admission reserves a request's
// estimate at every budget that applies, atomically; settlement replaces the
// reservation with the actual amount. So concurrent requests can overshoot a
// hard limit by at most one request's estimate per gateway process, never
// more. Crossing the soft threshold is reported once per budget and period.
// Pure policy: time comes in as an argument. Thread-safe (one mutex).
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "core/request_identity.h"

namespace tg::meter {

using SysTime = std::chrono::system_clock::time_point;

// Budgets apply by the request's tenant, user, key and feature tag.
using BudgetSubject = RequestIdentity;

struct Spend {
  std::int64_t micros = 0;
  std::int64_t tokens = 0;
};

// What a request holds between admission and settlement.
struct BudgetHold {
  std::vector<std::size_t> budgets;  // indexes into the book
  std::vector<std::int64_t> periods;  // the period each reservation was made in
  Spend reserved;
};

struct SoftAlert {
  std::string scope;  // e.g. "tenant 'acme' daily"
  std::int64_t spent = 0, limit = 0;
  std::string unit;   // "usd_micros" | "tokens"
  std::string webhook;  // the budget's webhook URL, empty when none
  std::int64_t resets_at_ms = 0;
};

class BudgetBook {
 public:
  explicit BudgetBook(std::vector<BudgetConfig> budgets);
  BudgetBook(const BudgetBook&) = delete;
  BudgetBook& operator=(const BudgetBook&) = delete;

  // Reserves `estimate` at every budget that applies to `who`. On any hard
  // limit it would pass, reserves nothing and returns 429 budget_exceeded
  // naming the scope, the limit and when it resets (Retry-After).
  Expected<BudgetHold> reserve(const BudgetSubject& who, Spend estimate, SysTime now);

  // Replaces the hold with the actual spend. Returns the soft thresholds this
  // crossed (each at most once per budget and period).
  std::vector<SoftAlert> settle(const BudgetHold& hold, Spend actual, SysTime now);

  // Adds spend that happened before this process started (from the ledger).
  void preload(const BudgetSubject& who, Spend spent, SysTime when, SysTime now);

  std::size_t size() const { return budgets_.size(); }

  // Start of the period containing `t` (UTC midnight, or the 1st of the month).
  static std::int64_t period_start(BudgetPeriod p, SysTime t);
  static std::int64_t period_end(BudgetPeriod p, SysTime t);

 private:
  struct State {
    std::int64_t period = -1;  // period_start of the counters below
    std::int64_t spent = 0, reserved = 0;
    bool alerted = false;
  };
  bool applies(const BudgetConfig& b, const BudgetSubject& who) const;
  State& roll(std::size_t i, SysTime now);
  std::string scope_name(const BudgetConfig& b) const;

  std::vector<BudgetConfig> budgets_;
  std::vector<State> state_;
  std::mutex mu_;
};

}  // namespace tg::meter
