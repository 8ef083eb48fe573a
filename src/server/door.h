// The door's dialect: how an answer the gateway holds in OpenAI's shape (an
// error, a completion body, a stream of chunk payloads) is written in the
// shape of the API the client called. The OpenAI door writes it as is
// (stripping the usage chunk a client did not ask for); the Anthropic door
// translates it (api/anthropic.h): Messages bodies, the message_start ..
// message_stop event sequence, errors as {"type":"error",...} with their
// types and 529 for overload. One Dialect per request; not thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/anthropic.h"
#include "api/usage.h"
#include "core/error.h"
#include "server/routes.h"

namespace tg::server {

struct ErrorAnswer {
  int status = 0;
  std::string body;
  std::string headers;  // Retry-After, Allow, the error's own lines
};

// `e` as the door answers it.
ErrorAnswer error_answer(Door door, const ApiError& e);

class Dialect {
 public:
  // `model`: the alias the client asked for; `stop_sequences`: the Anthropic
  // request's (for stop_reason stop_sequence).
  Dialect(Door door, std::string request_id, std::string model, std::vector<std::string> stop_sequences,
          bool client_wants_usage);

  Door door() const { return door_; }
  // The Anthropic door to an upstream that speaks Messages: bodies and
  // events pass as they are (the upstream's message_start .. message_stop).
  void pass_through() { passthrough_ = true; }
  bool passthrough() const { return passthrough_; }
  // Passed-through stream data: its usage (message_start, message_delta).
  void learn_usage(std::string_view data, std::optional<api::Usage>& usage) const;
  // Passed-through whole body: its usage.
  static std::optional<api::Usage> messages_usage(std::string_view body);
  // Opens the stream while the request waits in the queue (message_start of
  // its own when passed through: the upstream's is then dropped).
  std::string open_for_wait(std::uint64_t input_tokens);
  // The stream's head and opening bytes are out (stream_open() ran).
  bool opened() const { return opened_; }
  bool client_wants_usage() const { return client_wants_usage_; }

  // A whole OpenAI completion body in the door's shape.
  std::string answer_body(std::string_view openai_body);

  // A stream: the bytes after the head; per upstream data payload (with the
  // verdict of api::inspect_stream_chunk and its rewrite), what to write;
  // the bytes before the stream ends, once the upstream is done; a failure
  // in-band; a keep-alive while waiting. `output_tokens` is the best count
  // of what was generated (the upstream's usage, or the gateway's count).
  std::string stream_open(std::uint64_t input_tokens);
  void stream_event(std::string_view data, api::ChunkVerdict verdict, std::string_view rewritten, std::string& out);
  std::string stream_close(std::uint64_t output_tokens);
  std::string stream_error(const ApiError& e);
  std::string ping();

 private:
  void note_unknown_finish(const std::string& reason);
  Door door_;
  std::string request_id_, model_;
  std::vector<std::string> stops_;
  bool client_wants_usage_;
  bool opened_ = false;
  bool passthrough_ = false;
  bool own_start_ = false;  // passed through, but opened by open_for_wait()
  std::optional<api::MessagesStreamWriter> writer_;
};

}  // namespace tg::server
