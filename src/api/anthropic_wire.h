// Translation between OpenAI chat completions (the gateway's own language)
// and Anthropic's Messages API, in the upstream direction: an OpenAI request
// becomes an Anthropic request, and Anthropic's answer (a message, an event
// stream, or an error) becomes the OpenAI answer the client asked for. Used
// by upstream::AnthropicProvider; the rest of the gateway never sees Anthropic
// shapes.
//
// Pure functions and one small per-stream state machine: no I/O, no clock
// (the caller passes `created`), no logging (unknown stop reasons are handed
// back for the caller to log). Free functions are thread-safe;
// MessageStreamTranslator is one per stream, not thread-safe.
//
// Decisions:
//  - stop_reason -> finish_reason: end_turn, stop_sequence -> stop;
//    max_tokens -> length; tool_use -> tool_calls; refusal -> content_filter;
//    pause_turn (a server tool paused a long turn; the client continues it by
//    sending the turn back) -> stop, the answer is whole as far as an OpenAI
//    client can act on it; model_context_window_exceeded -> length; anything
//    else -> stop, reported as unknown.
//  - thinking and redacted_thinking blocks are dropped: OpenAI's chat shape
//    has no field for them, and their text is not the answer.
//  - Usage: Anthropic's input_tokens excludes cache reads and writes; OpenAI's
//    prompt_tokens includes them. prompt_tokens = input_tokens +
//    cache_read_input_tokens + cache_creation_input_tokens; cached_tokens =
//    cache_read_input_tokens; cache_creation_tokens =
//    cache_creation_input_tokens.
//  - Request fields with no Anthropic counterpart that only tune sampling or
//    storage (seed, frequency/presence_penalty, logit_bias, store, metadata,
//    service_tier, stream_options, reasoning_effort, message `name`s, image
//    `detail`) are dropped; those that change what the client gets back are
//    refused with 400 naming the field: n > 1, logprobs, top_logprobs,
//    response_format other than text, audio, legacy functions/function_call.
//  - temperature and top_p are passed through (Anthropic's temperature range is
//    0-1: a higher one gets the upstream's own 400).
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "api/request.h"
#include "api/usage.h"
#include "core/error.h"

namespace tg::api::anthropic {

// finish_reason for a stop_reason; `known` is false for a value this code
// does not know (then "stop").
struct FinishReason {
  std::string_view finish_reason;
  bool known = true;
};
FinishReason finish_reason_of(std::string_view stop_reason);

// api::Usage of an Anthropic `usage` object (absent fields count 0).
Usage usage_of_message_usage(const boost::json::object& usage);

// The Messages request body for a chat completions request.
// REQUIRES: req is a validated chat completions request (parse_request).
// `default_max_tokens` is used when the client set neither max_tokens nor
// max_completion_tokens (Anthropic requires it). Returns 400
// invalid_request_error naming the field for what cannot be translated.
Expected<std::string> messages_request(const ParsedRequest& req, const std::string& upstream_model,
                                       std::uint32_t default_max_tokens);

// The OpenAI chat.completion body for an Anthropic message body. `id` and
// `model` come from the message; `created` from the caller. Sets
// `unknown_stop_reason` when the stop reason was not known. Returns 502
// upstream_bad_response when the body is not an Anthropic message.
Expected<std::string> chat_completion(std::string_view message_body, std::int64_t created,
                                      std::string* unknown_stop_reason = nullptr);

// An Anthropic error reply as OpenAI's error shape
// {"error":{"message","type","param","code"}}: type mapped to OpenAI's
// (invalid_request_error, authentication_error, permission_error,
// not_found_error -> invalid_request_error, rate_limit_error,
// overloaded_error and api_error -> server_error), code the Anthropic error
// type, message Anthropic's. Status 529 (overloaded) becomes 503, the status
// an OpenAI client and the gateway treat as "temporarily unavailable, retry";
// other statuses are kept. A body that is not Anthropic's error shape is kept
// as it is (the gateway's error mapping quotes it).
struct TranslatedError {
  int status = 0;
  std::string body;
};
TranslatedError openai_error(int status, std::string_view anthropic_body);

// An OpenAI error object for an Anthropic `error` event or body object
// {"type":..,"message":..}: {"error":{...}} serialized.
std::string openai_error_payload(const boost::json::object& anthropic_error);

// Translates one Anthropic message stream (message_start, content_block_*,
// message_delta, message_stop, ping, error) into OpenAI chat.completion.chunk
// data payloads, in order, ending with the usage-only chunk and "[DONE]" on
// message_stop. An `error` event (or a malformed event) ends the stream with
// one OpenAI error payload {"error":{...}} and no "[DONE]", as OpenAI's own
// streams end on a failure; a stream that ends before message_stop gets the
// same from finish(). After the end, further events are ignored. Memory: the
// ids of the message and its tool calls, and one small record per content
// block (at most kMaxBlocks, else the stream ends in an error).
class MessageStreamTranslator {
 public:
  static constexpr std::size_t kMaxBlocks = 4096;
  explicit MessageStreamTranslator(std::int64_t created) : created_(created) {}

  // One SSE event: its `event:` name (when empty, the payload's "type"
  // decides) and its data. Appends the payloads it yields to `out`.
  void feed(std::string_view event, std::string_view data, std::vector<std::string>& out);
  // The upstream's stream ended; appends an error payload when it ended
  // before message_stop or an error.
  void finish(std::vector<std::string>& out);

  bool ended() const { return ended_; }
  const Usage& usage() const { return usage_; }
  // Set when message_delta carried a stop_reason this code does not know.
  const std::string& unknown_stop_reason() const { return unknown_stop_; }

 private:
  enum class Block : std::uint8_t { kIgnored, kText, kTool };
  struct BlockState {
    Block kind = Block::kIgnored;
    std::int64_t tool_index = -1;  // OpenAI tool_calls index
  };
  boost::json::object chunk() const;
  void emit_delta(boost::json::object delta, std::vector<std::string>& out) const;
  void end_with_error(std::string_view type, std::string message, std::vector<std::string>& out);
  void read_usage(const boost::json::object& usage);

  std::int64_t created_;
  std::string id_, model_;
  std::vector<BlockState> blocks_;
  std::int64_t tools_ = 0;
  Usage usage_;
  std::uint64_t input_ = 0, cache_read_ = 0, cache_write_ = 0;
  std::string unknown_stop_;
  bool started_ = false, finished_ = false, ended_ = false;
};

}  // namespace tg::api::anthropic
