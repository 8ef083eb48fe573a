// The foundation's engine model behind the `sim` provider: a fixed prefill
// rate and a fixed per-token decode time, no batching effects. Pure and
// deterministic. The continuous-batching simulator (issue: fair admission)
// replaces this behind the same SimProvider.
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>

#include "core/config.h"

namespace tg::sim {

using Micros = std::chrono::microseconds;

class EngineModel {
 public:
  explicit EngineModel(const SimProfile& p) : p_(p) {}
  Micros time_to_first_token(std::uint64_t prompt_tokens) const;
  Micros inter_token() const;
  // Completion time of a request producing `output_tokens` tokens.
  Micros total(std::uint64_t prompt_tokens, std::uint64_t output_tokens) const;

 private:
  SimProfile p_;
};

// The sim engine's own tokenizer: a GPT-style pre-tokenization (a letter run
// with its leading space, up to 3 digits, one other symbol each) counted as
// one token per piece. It is the sim's definition of a token, reported
// consistently in `usage`; it is not cl100k/o200k.
std::uint64_t count_sim_tokens(std::string_view text);

}  // namespace tg::sim
