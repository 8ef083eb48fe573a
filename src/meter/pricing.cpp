#include "meter/pricing.h"

namespace tg::meter {

std::int64_t cost_micros(const Price& p, std::uint64_t prompt, std::uint64_t completion, std::uint64_t cached,
                         std::uint64_t created) {
  if (cached > prompt) cached = prompt;
  if (created > prompt - cached) created = prompt - cached;
  using u128 = unsigned __int128;
  auto at = [](std::uint64_t tokens, std::int64_t per_1m) {
    return static_cast<u128>(tokens) * static_cast<std::uint64_t>(per_1m);
  };
  // Tokens x micro-dollars-per-million: exact in 128 bits, one rounding.
  u128 num = at(prompt - cached - created, p.input_per_1m) + at(cached, p.cached_input_per_1m) +
             at(created, p.cache_write_per_1m) + at(completion, p.output_per_1m);
  return static_cast<std::int64_t>((num + 500'000) / 1'000'000);
}

}  // namespace tg::meter
