#include "sim/engine_model.h"

#include <cmath>

namespace tg::sim {

Micros EngineModel::time_to_first_token(std::uint64_t prompt_tokens) const {
  double us = p_.ttft_base_ms * 1000.0 + static_cast<double>(prompt_tokens) * 1e6 / p_.prefill_tokens_per_s;
  return Micros(static_cast<std::int64_t>(std::llround(us)));
}

Micros EngineModel::inter_token() const {
  return Micros(static_cast<std::int64_t>(std::llround(p_.decode_ms_per_token * 1000.0)));
}

Micros EngineModel::total(std::uint64_t prompt_tokens, std::uint64_t output_tokens) const {
  if (output_tokens == 0) return time_to_first_token(prompt_tokens);
  return time_to_first_token(prompt_tokens) + inter_token() * static_cast<std::int64_t>(output_tokens - 1);
}

}  // namespace tg::sim
