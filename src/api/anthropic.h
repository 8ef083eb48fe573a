// The Anthropic Messages API door: POST /v1/messages translated to the
// gateway's internal OpenAI chat request, and the OpenAI-shaped answer (a
// chat.completion body, or the stream of chat.completion.chunk payloads)
// translated back to Anthropic's `message` object or its event stream.
// Pure functions and one per-request stream translator; no I/O, no clock.
// The functions are thread-safe; a MessagesStreamWriter is not (one per
// request). Client errors are 400 invalid_request_error with `param` naming
// the field and a message in Anthropic's style ("<field>: <problem>").
//
// What the door accepts, and what it does with fields it cannot translate:
//  - Translated: model, messages (text, image, tool_use, tool_result blocks),
//    system, max_tokens, stop_sequences, temperature, top_p, top_k, stream,
//    tools (custom tools only), tool_choice (incl. disable_parallel_tool_use
//    -> parallel_tool_calls:false), metadata.user_id (-> `user`).
//  - Validated, then dropped (hints that do not change the answer's shape):
//    `cache_control` on blocks, system blocks and tools (upstreams cache
//    prefixes on their own), `citations` on text blocks, `service_tier`,
//    `thinking` (the answer simply carries no thinking blocks), and
//    `thinking` / `redacted_thinking` blocks in assistant turns (signed by
//    another model, never fed to this one).
//  - Refused with 400 naming the field: `container`, `mcp_servers`,
//    `context_management`, Anthropic-hosted tools (a `tools[i].type` other
//    than "custom"), block types other than the four above (document,
//    search_result, server_tool_use, ...), image sources other than base64
//    and url.
//  - Unknown fields anywhere in the shapes above: 400 "<field>: Extra inputs
//    are not permitted", as Anthropic answers.
//  - Bounds (every count a client controls): messages <= 10000, content
//    blocks over the whole request <= 20000, stop_sequences <= 16 of 1..256
//    bytes each with a non-whitespace character, tools <= 128 with names
//    matching [a-zA-Z0-9_-]{1,64}, tool_use ids <= 256 bytes, image urls
//    <= 8192 bytes, metadata.user_id <= 256 bytes, max_tokens 1..10000000,
//    temperature and top_p in [0, 1], top_k in [0, 1000000] (0 = off, not
//    forwarded). JSON nesting is bounded by the parser (depth 32); string
//    sizes by the body limit the server enforces before parsing.
//  - tool_result blocks become `role: tool` messages placed before the rest
//    of the user turn (OpenAI requires them right after the assistant's
//    tool_calls); `is_error: true` prefixes their text with "Error: " so the
//    model knows the call failed; images inside a tool_result move to the
//    user message that follows (OpenAI tool messages carry text only).
//  - A final assistant message (prefill) is forwarded as the last message.
#pragma once

#include <boost/json/storage_ptr.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/request.h"
#include "api/usage.h"
#include "core/error.h"

namespace tg::api {

// What the reply translation needs besides the internal request.
struct MessagesRequest {
  // endpoint kChatCompletions; body is the equivalent OpenAI chat request;
  // model, stream, max_output_tokens, choices (1) and user (metadata.user_id)
  // set; client_wants_usage false (the door reports usage in its own shape).
  ParsedRequest parsed;
  std::vector<std::string> stop_sequences;  // as the client sent them, to name the one that matched
};

// REQUIRES: `body` is the raw request body; `storage` (default: the heap)
// outlives the result. `count_tokens_only` (POST /v1/messages/count_tokens)
// makes max_tokens optional. Every OpenAI-side check of parse_request()
// applies to the translated body too.
Expected<MessagesRequest> parse_messages_request(std::string_view body, bool count_tokens_only,
                                                 boost::json::storage_ptr storage = {});

// An OpenAI finish_reason as an Anthropic stop_reason: stop -> end_turn, or
// stop_sequence when `matched_stop` (the client's stop string the upstream
// matched; vLLM reports it as the choice's `stop_reason`, llama-server's
// chat endpoint does not report it) is not empty; length -> max_tokens;
// tool_calls and function_call -> tool_use; content_filter -> refusal.
// Anything else (including an empty reason) is mapped to end_turn with
// known = false, for the caller to log. `anthropic` points to static text.
// The answer translations below also report tool_use for "stop" when the
// answer holds tool_use blocks (vLLM finishes a forced tool call with
// "stop"; clients run tools only on tool_use).
struct StopReason {
  std::string_view anthropic;
  bool known = true;
};
StopReason stop_reason_from_finish(std::string_view openai_finish_reason, std::string_view matched_stop);

// Anthropic usage from OpenAI usage: prompt_tokens counts cached and written
// tokens too, Anthropic's input_tokens does not.
boost::json::object anthropic_usage(const Usage& u);

// An OpenAI chat.completion body (choice 0) as an Anthropic `message` object.
// Text (and a refusal's text) becomes one text block, each tool call a
// tool_use block whose `input` is the parsed arguments; arguments that are
// empty, not JSON or not a JSON object give `input: {}`. `stop_sequence` is
// the matched stop string only when it is one of `stop_sequences`. Usage
// absent from the body counts as zero. Sets `*unknown_finish` (when given)
// to the upstream's finish_reason (printable, "(none)" when absent) when it
// has no Anthropic equivalent, and leaves it untouched otherwise. A body
// that is not a JSON object gives a message with no content.
std::string message_from_completion(std::string_view openai_body, std::string_view model_alias,
                                    const std::vector<std::string>& stop_sequences,
                                    const std::string& message_id, std::string* unknown_finish);

// Translates one upstream stream (OpenAI chat.completion.chunk payloads, the
// `data:` of each event, "[DONE]" included or not) into Anthropic's event
// stream. Each method returns complete SSE events ("event: <type>\ndata:
// <json>\n\n", zero or more) to write in order. Call start() first, then
// on_chunk() per payload (ping() whenever a keep-alive is due), then finish()
// once, or error_event() instead when the stream fails. Payloads that are not
// JSON objects are ignored; only choice index 0 is read (the door always asks
// for one choice). Content blocks are numbered from 0; a text block and each
// tool call are one block each, and a new block closes the previous one.
// Holds only the current block's state: O(1) memory whatever the upstream
// sends.
class MessagesStreamWriter {
 public:
  MessagesStreamWriter(std::string message_id, std::string model_alias, std::vector<std::string> stop_sequences);
  MessagesStreamWriter(const MessagesStreamWriter&) = delete;
  MessagesStreamWriter& operator=(const MessagesStreamWriter&) = delete;

  // message_start: the message with no content, usage.input_tokens =
  // `input_tokens` (the gateway's count) and output_tokens 0.
  std::string start(std::uint64_t input_tokens);
  std::string ping() const;
  std::string on_chunk(std::string_view openai_chunk_json);
  // Closes the open block, then message_delta (stop_reason, stop_sequence,
  // usage: output_tokens, plus input and cache counts when the upstream sent
  // its usage chunk) and message_stop. Without a usage chunk, output_tokens
  // is `fallback_output_tokens` (the caller's count of the streamed text).
  // Empty when called twice.
  std::string finish(std::uint64_t fallback_output_tokens = 0);
  // An `error` event in Anthropic's shape (see anthropic_error_body()).
  static std::string error_event(const ApiError& e);

  // After finish(): whether the upstream's finish_reason had no Anthropic
  // equivalent (or never came), and what it was.
  bool saw_unknown_finish() const { return unknown_finish_; }
  const std::string& finish_reason() const { return finish_reason_; }
  const std::optional<Usage>& usage() const { return usage_; }

 private:
  enum class Block { kNone, kText, kToolUse };
  void open_block(std::string& out, Block kind, std::string_view tool_id, std::string_view tool_name);
  void close_block(std::string& out);

  std::string id_, model_;
  std::vector<std::string> stop_sequences_;
  Block open_ = Block::kNone;
  std::int64_t next_index_ = 0;       // the index the next content block gets
  std::int64_t tool_index_ = -1;      // OpenAI tool_calls[].index of the open or last tool_use block
  std::string finish_reason_;         // as the upstream sent it (bounded)
  std::string matched_stop_;          // the choice's stop_reason when it is one of stop_sequences_
  std::optional<Usage> usage_;
  bool saw_tool_use_ = false;
  bool finished_ = false, unknown_finish_ = false;
};

// Anthropic's error body {"type":"error","error":{"type","message"}}: the
// type follows the status anthropic_status() returns (400 and any other
// unlisted 4xx invalid_request_error, 401 authentication_error, 403
// permission_error, 404 not_found_error, 413 request_too_large, 429
// rate_limit_error, 529 overloaded_error, any other 5xx api_error). The
// message is the gateway's own (it names the field), made printable and
// bounded as error_body() does.
std::string anthropic_error_body(const ApiError& e);

// The HTTP status to answer with: the error's own status, except that a
// capacity refusal (503 queue_timeout, or any 529) becomes 529, which
// Anthropic clients treat as "overloaded, retry later". Other 5xx statuses
// (500, 502 upstream failure, 503 limits store down, 504 upstream timeout)
// are kept; Anthropic clients retry every 5xx.
int anthropic_status(const ApiError& e);

}  // namespace tg::api
