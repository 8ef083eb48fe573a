// Prices and cost arithmetic in integer micro-dollars: no floating point
// anywhere between the config file and the ledger, so sums never drift.
// Pure; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "core/config.h"

namespace tg::meter {

// USD per 1M tokens, held as micro-dollars per 1M tokens.
struct Price {
  std::int64_t input_per_1m = 0;
  std::int64_t output_per_1m = 0;
  std::int64_t cached_input_per_1m = 0;  // prompt tokens read from a prompt cache (part of prompt_tokens)
  std::int64_t cache_write_per_1m = 0;   // prompt tokens written to a prompt cache (part of prompt_tokens)
};

// The cost of one request in micro-dollars, rounded half up once per request.
// `prompt_tokens` counts every prompt token, OpenAI's way: the cache reads
// (`cached_tokens`) and cache writes (`cache_creation_tokens`) are parts of
// it, priced at cached_input_per_1m and cache_write_per_1m; the rest of the
// prompt at input_per_1m.
// REQUIRES: cached_tokens + cache_creation_tokens <= prompt_tokens (clamped
// otherwise: reads first, then writes, never a negative remainder).
std::int64_t cost_micros(const Price& p, std::uint64_t prompt_tokens, std::uint64_t completion_tokens,
                         std::uint64_t cached_tokens, std::uint64_t cache_creation_tokens = 0);

// A model's configured prices.
inline Price price_of(const PriceConfig& p) {
  return {p.input_per_1m, p.output_per_1m, p.cached_input_per_1m, p.cache_write_per_1m};
}

}  // namespace tg::meter
