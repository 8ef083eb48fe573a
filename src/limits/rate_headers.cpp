#include <fmt/format.h>

#include "limits/limit_store.h"

namespace tg::limits {

std::string openai_duration(Micros us) {
  if (us <= 0) return "0s";
  if (us < 1'000'000) return fmt::format("{}ms", (us + 999) / 1000);
  const std::int64_t ms = (us + 999) / 1000;
  const std::int64_t minutes = ms / 60'000, rest_ms = ms % 60'000;
  std::string secs = rest_ms % 1000 ? fmt::format("{}", static_cast<double>(rest_ms) / 1000.0)
                                    : fmt::format("{}", rest_ms / 1000);
  return minutes ? fmt::format("{}m{}s", minutes, secs) : secs + "s";
}

std::string rate_limit_headers(const Quota& q) {
  std::string out, policy, state;
  for (auto [h, dim] : {std::pair{&q.requests, "requests"}, std::pair{&q.tokens, "tokens"}}) {
    if (!h->limit) continue;
    out += fmt::format("x-ratelimit-limit-{0}: {1}\r\nx-ratelimit-remaining-{0}: {2}\r\nx-ratelimit-reset-{0}: {3}\r\n",
                       dim, h->limit, h->remaining, openai_duration(h->reset_us));
    if (!policy.empty()) policy += ", ";
    policy += fmt::format("\"{}\";q={};w=60", dim, h->limit);
    if (!state.empty()) state += ", ";
    state += fmt::format("\"{}\";r={};t={}", dim, h->remaining, (h->reset_us + 999'999) / 1'000'000);
  }
  if (!policy.empty()) out += fmt::format("RateLimit-Policy: {}\r\nRateLimit: {}\r\n", policy, state);
  return out;
}

}  // namespace tg::limits
