// `engine: fixed`, the contention-free engine model of the `sim` provider: a
// fixed prefill rate and a fixed per-token decode time, no batching effects
// (for overhead benchmarks and tests that need exact timing). Pure and
// deterministic. The other engines (llama3-8b-h100, ...) are the
// continuous-batching BatchEngine run by an EngineHost (sim/engine_host.h),
// behind the same SimProvider.
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
