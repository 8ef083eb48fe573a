// Token usage as OpenAI reports it, read out of a response object or a
// streamed chunk.
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <map>
#include <optional>
#include <vector>
#include <string>
#include <string_view>

namespace tg::api {

struct Usage {
  std::uint64_t prompt_tokens = 0;
  std::uint64_t completion_tokens = 0;
  std::uint64_t cached_tokens = 0;  // prompt_tokens_details.cached_tokens: read from a prompt cache
  // Written to the upstream's prompt cache (Anthropic's cache_creation_input_tokens), part of
  // prompt_tokens and priced apart; carried in OpenAI-shaped usage as
  // prompt_tokens_details.cache_creation_tokens.
  std::uint64_t cache_creation_tokens = 0;
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
// `capture`, when given, also records each choice's text and finish reason
// and whether any chunk carried tool calls (what the cache needs to store a
// streamed answer).
struct StreamCapture {
  std::map<std::int64_t, std::string> text;    // by choice index
  std::map<std::int64_t, std::string> finish;  // finish_reason by choice index
  bool tool_calls = false;                     // tool or function calls, or refusals: not cacheable as text
  std::string model;
};
ChunkVerdict inspect_stream_chunk(std::string_view data, bool client_wants_usage, std::string& rewritten,
                                  std::optional<Usage>& usage, std::string& generated,
                                  StreamCapture* capture = nullptr);

// A streamed answer as the non-streamed body an upstream would have sent
// (chat.completion or text_completion); empty when it is not complete text
// (tool calls, or a choice without a finish reason).
std::string completion_from_capture(const StreamCapture& c, bool chat, const std::optional<Usage>& usage,
                                    const std::string& id, std::int64_t created);

// A stored answer served again: the body with a fresh id and created time.
std::string restamp_completion(std::string_view body, const std::string& id, std::int64_t created);
// The same answer as stream chunks (data payloads, "[DONE]" excluded): per
// choice its role and whole text, then its finish reason; the usage chunk
// last when `include_usage`.
std::vector<std::string> chunks_from_completion(std::string_view body, bool chat, bool include_usage,
                                                const std::string& id, std::int64_t created);

}  // namespace tg::api
