#include "server/door.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "api/errors.h"
#include "api/sse.h"

namespace tg::server {

ErrorAnswer error_answer(Door door, const ApiError& e) {
  ErrorAnswer a;
  if (e.retry_after_s >= 0) a.headers += fmt::format("Retry-After: {}\r\n", e.retry_after_s);
  if (e.status == 405) a.headers += fmt::format("Allow: {}\r\n", e.param);
  a.headers += e.headers;
  if (door == Door::kAnthropic) {
    a.status = api::anthropic_status(e);
    a.body = api::anthropic_error_body(e);
  } else {
    a.status = e.status;
    a.body = api::error_body(e);
  }
  return a;
}

Dialect::Dialect(Door door, std::string request_id, std::string model, std::vector<std::string> stop_sequences,
                 bool client_wants_usage)
    : door_(door), request_id_(std::move(request_id)), model_(std::move(model)), stops_(std::move(stop_sequences)),
      client_wants_usage_(client_wants_usage) {}

void Dialect::note_unknown_finish(const std::string& reason) {
  // Bounded: a finish reason is an upstream's word, logged cut short.
  spdlog::warn("anthropic door: finish_reason '{}' has no stop_reason of its own: sent as end_turn (request {})",
               reason.substr(0, 64), request_id_);
}

std::string Dialect::answer_body(std::string_view openai_body) {
  if (door_ == Door::kOpenAI) return std::string(openai_body);
  std::string unknown;
  std::string body = api::message_from_completion(openai_body, model_, stops_, "msg_" + request_id_, &unknown);
  if (!unknown.empty()) note_unknown_finish(unknown);
  return body;
}

std::string Dialect::stream_open(std::uint64_t input_tokens) {
  opened_ = true;
  if (door_ == Door::kOpenAI) return {};
  writer_.emplace("msg_" + request_id_, model_, stops_);
  return writer_->start(input_tokens);
}

void Dialect::stream_event(std::string_view data, api::ChunkVerdict verdict, std::string_view rewritten,
                           std::string& out) {
  if (door_ == Door::kAnthropic) {
    if (data != "[DONE]" && writer_) out += writer_->on_chunk(data);
    return;
  }
  if (data == "[DONE]") return api::append_sse_data(out, data);
  switch (verdict) {
    case api::ChunkVerdict::kDrop: return;  // the usage chunk only the gateway asked for
    case api::ChunkVerdict::kRewritten: return api::append_sse_data(out, rewritten);
    case api::ChunkVerdict::kForward: return api::append_sse_data(out, data);
  }
}

std::string Dialect::stream_close(std::uint64_t output_tokens) {
  if (door_ == Door::kOpenAI || !writer_) return {};
  std::string out = writer_->finish(output_tokens);
  if (writer_->saw_unknown_finish()) note_unknown_finish(writer_->finish_reason());
  return out;
}

std::string Dialect::stream_error(const ApiError& e) {
  if (door_ == Door::kAnthropic) return api::MessagesStreamWriter::error_event(e);
  std::string ev;
  api::append_sse_data(ev, api::error_body(e));  // headers are gone: said in-band, as OpenAI streams do
  return ev;
}

std::string Dialect::ping() {
  if (door_ == Door::kAnthropic) return "event: ping\ndata: {\"type\": \"ping\"}\n\n";
  return ": ping\n\n";  // an SSE comment: OpenAI clients ignore it
}

}  // namespace tg::server
