// Token usage as OpenAI reports it, read out of a response object or a
// streamed chunk.
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tg::api {

struct Usage {
  std::uint64_t prompt_tokens = 0;
  std::uint64_t completion_tokens = 0;
  std::uint64_t cached_tokens = 0;  // prompt_tokens_details.cached_tokens
};

// nullopt when `usage` is absent or null.
std::optional<Usage> usage_of(const boost::json::object& response);

boost::json::object usage_json(const Usage& u);

// Usage of a whole JSON response body; nullopt when absent or not JSON.
// Parses into a stack arena: no heap allocation for ordinary bodies.
std::optional<Usage> usage_of_body(std::string_view body);

// One data payload of an upstream chat/completions stream, as the relay
// must pass it on. The gateway always asks upstreams for usage; a client
// that did not ask must not see it (neither the usage-only final chunk nor
// "usage": null fields).
enum class ChunkVerdict { kForward, kDrop, kRewritten };
// `generated` collects the text the chunk adds (delta content or text), so a
// stream cut short without usage can still be counted.
ChunkVerdict inspect_stream_chunk(std::string_view data, bool client_wants_usage, std::string& rewritten,
                                  std::optional<Usage>& usage, std::string& generated);

}  // namespace tg::api
