// The foundation's engine model behind the `sim` provider: a fixed prefill
// rate and a fixed per-token decode time, no batching effects. Pure and
// deterministic. The continuous-batching simulator (issue: fair admission)
// replaces this behind the same SimProvider.
#pragma once

#include <chrono>
#include <cstdint>

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


}  // namespace tg::sim
