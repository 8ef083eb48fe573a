#include "meter/pricing.h"

namespace tg::meter {

std::int64_t cost_micros(const Price& p, std::uint64_t prompt, std::uint64_t completion, std::uint64_t cached) {
  if (cached > prompt) cached = prompt;
  // Tokens x micro-dollars-per-million: exact in 128 bits, one rounding.
  unsigned __int128 num = static_cast<unsigned __int128>(prompt - cached) * static_cast<std::uint64_t>(p.input_per_1m) +
                          static_cast<unsigned __int128>(cached) * static_cast<std::uint64_t>(p.cached_input_per_1m) +
                          static_cast<unsigned __int128>(completion) * static_cast<std::uint64_t>(p.output_per_1m);
  return static_cast<std::int64_t>((num + 500'000) / 1'000'000);
}

}  // namespace tg::meter
