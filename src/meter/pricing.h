// Prices and cost arithmetic in integer micro-dollars: no floating point
// anywhere between the config file and the ledger, so sums never drift.
// Pure; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace tg::meter {

// USD per 1M tokens, held as micro-dollars per 1M tokens.
struct Price {
  std::int64_t input_per_1m = 0;
  std::int64_t output_per_1m = 0;
  std::int64_t cached_input_per_1m = 0;  // cached prompt tokens (part of prompt_tokens)
};

// The cost of one request in micro-dollars, rounded half up once per request.
// REQUIRES: cached_tokens <= prompt_tokens (clamped otherwise).
std::int64_t cost_micros(const Price& p, std::uint64_t prompt_tokens, std::uint64_t completion_tokens,
                         std::uint64_t cached_tokens);

}  // namespace tg::meter
