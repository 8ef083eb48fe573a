#include "server/stages/estimate.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>

#include "meter/chat_count.h"
#include "meter/pricing.h"

namespace tg::server::stages {
namespace net = boost::asio;

const meter::Tokenizer& tokenizer_for(const Config& config, const ModelConfig& m) {
  const std::string& name = m.encoding.empty() ? config.metering.default_encoding : m.encoding;
  return meter::Tokenizer::builtin(*meter::encoding_from_name(name));  // validated at config load
}

std::uint64_t Estimate::count_prompt(const ModelConfig& m, const api::ParsedRequest& r, std::uint64_t limit) const {
  const meter::Tokenizer& tok = tokenizer_for(config_, m);
  if (r.endpoint == api::Endpoint::kChatCompletions) {
    auto texts = api::message_texts(r);
    std::vector<meter::ChatTurn> turns;
    turns.reserve(texts.size());
    for (const auto& t : texts) turns.push_back({t.role, t.name, t.content});
    return meter::count_chat_tokens(tok, turns, limit);
  }
  return tok.count(api::prompt_text(r), static_cast<std::size_t>(std::min<std::uint64_t>(limit, SIZE_MAX)));
}

net::awaitable<Expected<Estimated>> Estimate::run(const ModelConfig& m, const api::ParsedRequest& r,
                                                  const RequestIdentity& who, std::size_t body_bytes) const {
  const std::uint64_t out = std::uint64_t{r.max_output_tokens.value_or(kDefaultOutputEstimate)} * r.choices;
  std::uint64_t limit = m.context_tokens ? m.context_tokens : std::numeric_limits<std::uint64_t>::max();
  if (const std::int64_t ceiling = limits_.token_ceiling(limits::Ask::of(who)); ceiling > 0)
    limit = std::min<std::uint64_t>(limit, static_cast<std::uint64_t>(ceiling) > out ? ceiling - out : 0);
  Estimated e;
  if (body_bytes > config_.server.offload_count_bytes && count_executor_) {
    auto work = [&]() -> net::awaitable<void> {
      e.prompt_tokens = count_prompt(m, r, limit);
      co_return;
    };
    co_await net::co_spawn(count_executor_, work, net::use_awaitable);
  } else {
    e.prompt_tokens = count_prompt(m, r, limit);
  }
  // Each choice is its own sequence: the window holds the prompt and one choice's output.
  const std::uint64_t per_choice = r.max_output_tokens.value_or(0);
  if (m.context_tokens && e.prompt_tokens + per_choice > m.context_tokens) {
    const std::string what = e.prompt_tokens > m.context_tokens
                                 ? fmt::format("more than {} tokens in the prompt", m.context_tokens)
                                 : fmt::format("{} tokens in the prompt and up to {} to generate", e.prompt_tokens,
                                               per_choice);
    co_return invalid_request(fmt::format("This model's maximum context length is {} tokens; the request has {}. "
                                          "Shorten the messages or lower max_tokens.",
                                          m.context_tokens, what),
                              "messages", "context_length_exceeded");
  }
  e.spend = {meter::cost_micros(meter::price_of(m.price), e.prompt_tokens, out, 0),
             static_cast<std::int64_t>(e.prompt_tokens + out)};
  co_return e;
}

}  // namespace tg::server::stages
