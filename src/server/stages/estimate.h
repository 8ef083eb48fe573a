// estimate: what a request may cost before it runs: the prompt's tokens,
// counted exactly with the model's tokenizer (on the counting thread when
// the body is large, so an I/O worker never spends long on one request),
// plus the most it may generate (per choice, times the choices), in tokens
// and micro-dollars. Counting stops where the answer is known to be a
// refusal: past the model's context window (400 context_length_exceeded
// here) or past the path's smallest tokens-per-minute ceiling less the
// output (admit refuses it: tokens_exceed_limit). Per worker.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "api/request.h"
#include "core/config.h"
#include "core/error.h"
#include "core/request_identity.h"
#include "limits/limit_store.h"
#include "meter/budget.h"
#include "meter/tokenizer.h"

namespace tg::server::stages {

// A request without max_tokens is reserved as if it may produce this many
// tokens; settlement charges what it actually produced.
constexpr std::uint64_t kDefaultOutputEstimate = 1024;

struct Estimated {
  std::uint64_t prompt_tokens = 0;  // exact, or (when counting stopped) some number above the limit
  meter::Spend spend;               // prompt + the most it may generate
};

// The tokenizer of a model (its `encoding`, or the metering default).
const meter::Tokenizer& tokenizer_for(const Config& config, const ModelConfig& m);

class Estimate {
 public:
  // `limits`: the store whose ceilings apply (in process, or Redis).
  // `count_executor` may be empty: then every body is counted in place.
  Estimate(const Config& config, limits::LimitStore& limits, boost::asio::any_io_executor count_executor)
      : config_(config), limits_(limits), count_executor_(std::move(count_executor)) {}

  boost::asio::awaitable<Expected<Estimated>> run(const ModelConfig& m, const api::ParsedRequest& r,
                                                  const RequestIdentity& who, std::size_t body_bytes) const;

  // The prompt's tokens as the upstream will count them; stops past `limit`.
  std::uint64_t count_prompt(const ModelConfig& m, const api::ParsedRequest& r, std::uint64_t limit) const;

 private:
  const Config& config_;
  limits::LimitStore& limits_;
  boost::asio::any_io_executor count_executor_;
};

}  // namespace tg::server::stages
