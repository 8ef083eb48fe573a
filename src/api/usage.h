// Token usage as OpenAI reports it, read out of a response object or a
// streamed chunk.
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <optional>

namespace tg::api {

struct Usage {
  std::uint64_t prompt_tokens = 0;
  std::uint64_t completion_tokens = 0;
  std::uint64_t cached_tokens = 0;  // prompt_tokens_details.cached_tokens
};

// nullopt when `usage` is absent or null.
std::optional<Usage> usage_of(const boost::json::object& response);

boost::json::object usage_json(const Usage& u);

}  // namespace tg::api
