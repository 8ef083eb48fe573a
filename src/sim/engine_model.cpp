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

std::uint64_t count_sim_tokens(std::string_view s) {
  std::uint64_t n = 0;
  std::size_t i = 0;
  auto alpha = [](unsigned char c) { return std::isalpha(c) || c >= 0x80; };
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == ' ' && i + 1 < s.size() && alpha(static_cast<unsigned char>(s[i + 1]))) ++i, c = s[i];
    if (alpha(c)) {
      while (i < s.size() && alpha(static_cast<unsigned char>(s[i]))) ++i;
    } else if (std::isdigit(c)) {
      std::size_t k = 0;
      while (i < s.size() && k < 3 && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++k;
    } else if (std::isspace(c)) {
      while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    } else {
      ++i;
    }
    ++n;
  }
  return n;
}

}  // namespace tg::sim
