// OpenAI request bodies: parse, validate, and rewrite for an upstream.
// parse_request() checks exactly what OpenAI's API checks before any work is
// done, and names the offending field in `param`; fields it does not know are
// kept and forwarded (providers add fields faster than gateways do).
// Pure functions over owned values; thread-safe.
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <boost/json/storage_ptr.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace tg::api {

enum class Endpoint { kChatCompletions, kCompletions, kEmbeddings };

std::string_view endpoint_name(Endpoint e);  // "chat.completions", ...
std::string_view endpoint_path(Endpoint e);  // "/chat/completions", appended to a base URL

struct ParsedRequest {
  Endpoint endpoint = Endpoint::kChatCompletions;
  boost::json::object body;  // the client's request, forwarded with `model` rewritten
  std::string model;         // the alias the client asked for
  bool stream = false;
  bool client_wants_usage = false;  // stream_options.include_usage, as the client sent it
  std::optional<std::uint32_t> max_output_tokens;  // max_completion_tokens or max_tokens, per choice
  // Completions the upstream generates for this request: `n` (chat and
  // completions), or `best_of` when larger (completions generate best_of and
  // return n). Every output estimate is per choice times this.
  std::uint32_t choices = 1;
  std::string user;          // the body's `user` field (end-user id), may be empty
  bool embeddings_base64 = false;  // encoding_format == "base64"
  std::optional<std::uint32_t> dimensions;  // embeddings only
};

// REQUIRES: `body` is the raw request body; `storage` (default: the heap)
// outlives the result. Returns 400 invalid_request_error naming the field
// (param) on any malformed or out-of-range input.
Expected<ParsedRequest> parse_request(Endpoint endpoint, std::string_view body,
                                      boost::json::storage_ptr storage = {});

// The JSON to send upstream: `model` set to the deployment's model name and,
// for streams, stream_options.include_usage forced on so the gateway always
// learns the real usage (the relay strips that chunk again when the client
// did not ask for it).
std::string upstream_body(const ParsedRequest& req, const std::string& upstream_model);

// The text a request feeds the model, for token estimation and the simulator:
// message contents (text parts) joined by newlines, or the completion prompt,
// or the embedding inputs.
std::string prompt_text(const ParsedRequest& req);

// A chat message's role, name and text (its text parts joined), for token
// counting. The views point into `req`.
struct MessageText {
  std::string_view role;
  std::string_view name;
  std::string content;
};
std::vector<MessageText> message_texts(const ParsedRequest& req);

// True when `v` is a W3C Trace Context traceparent (version-traceid-
// parentid-flags in lowercase hex, ids not all zero, version not ff; a later
// version may append "-..." fields). The gateway forwards only valid ones:
// an invalid header is dropped, as the specification says a receiver does.
bool is_valid_traceparent(std::string_view v);

// What a JSON value is, for error messages: "a string", "an array", "null", ...
const char* json_kind_name(const boost::json::value& v);

// 400 invalid_type: "Invalid type for '<param>': expected <want>, but got <kind>."
ApiError type_error(const std::string& param, const char* want, const boost::json::value& got);

// Number of embedding inputs (1 for a plain string).
std::size_t embedding_input_count(const ParsedRequest& req);
std::string embedding_input_text(const ParsedRequest& req, std::size_t i);

}  // namespace tg::api
