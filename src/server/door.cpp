#include "server/door.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "api/errors.h"
#include "api/anthropic_wire.h"
#include "api/sse.h"

#include <boost/json.hpp>

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
  if (passthrough_) {  // as the upstream sent it, but naming the model the client asked for
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(openai_body, ec);
    if (ec || !v.is_object()) return std::string(openai_body);
    if (auto* m = v.get_object().if_contains("model")) *m = model_;
    return boost::json::serialize(v);
  }
  std::string unknown;
  std::string body = api::message_from_completion(openai_body, model_, stops_, "msg_" + request_id_, &unknown);
  if (!unknown.empty()) note_unknown_finish(unknown);
  return body;
}

std::string Dialect::open_for_wait(std::uint64_t input_tokens) {
  if (!passthrough_) return stream_open(input_tokens);
  opened_ = true;
  own_start_ = true;
  writer_.emplace("msg_" + request_id_, model_, stops_);
  return writer_->start(input_tokens);
}

std::string Dialect::stream_open(std::uint64_t input_tokens) {
  opened_ = true;
  if (door_ == Door::kOpenAI || passthrough_) return {};
  writer_.emplace("msg_" + request_id_, model_, stops_);
  return writer_->start(input_tokens);
}

void Dialect::stream_event(std::string_view data, api::ChunkVerdict verdict, std::string_view rewritten,
                           std::string& out) {
  if (passthrough_) {  // Anthropic's own events, named by their type
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(data, ec);
    const boost::json::string* type = nullptr;
    if (!ec && v.is_object())
      if (const auto* t = v.get_object().if_contains("type"); t && t->is_string()) type = &t->get_string();
    if (!type) return;  // not an event of the Messages API: not passed on
    if (own_start_ && *type == "message_start") return;  // this stream's message_start went out already
    out += "event: ";
    out += std::string_view(*type);
    out += "\ndata: ";
    if (*type == "message_start") {  // naming the model the client asked for, not the upstream's
      auto* m = v.get_object().if_contains("message");
      if (auto* name = m && m->is_object() ? m->get_object().if_contains("model") : nullptr) *name = model_;
      out += boost::json::serialize(v);
    } else {
      out += data;
    }
    out += "\n\n";
    return;
  }
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
  if (door_ == Door::kOpenAI || passthrough_ || !writer_) return {};
  std::string out = writer_->finish(output_tokens);
  if (writer_->saw_unknown_finish()) note_unknown_finish(writer_->finish_reason());
  return out;
}

void Dialect::learn_usage(std::string_view data, std::optional<api::Usage>& usage) const {
  if (data.find("\"message_start\"") == std::string_view::npos && data.find("\"message_delta\"") == std::string_view::npos)
    return;
  boost::system::error_code ec;
  const boost::json::value v = boost::json::parse(data, ec);
  if (ec || !v.is_object()) return;
  const boost::json::object& o = v.get_object();
  const auto* type = o.if_contains("type");
  if (!type || !type->is_string()) return;
  if (type->get_string() == "message_start") {
    const auto* m = o.if_contains("message");
    const auto* u = m && m->is_object() ? m->get_object().if_contains("usage") : nullptr;
    if (u && u->is_object()) usage = api::anthropic::usage_of_message_usage(u->get_object());
  } else if (type->get_string() == "message_delta") {
    const auto* u = o.if_contains("usage");
    if (!u || !u->is_object()) return;
    const api::Usage d = api::anthropic::usage_of_message_usage(u->get_object());
    if (!usage) usage = d;
    else usage->completion_tokens = d.completion_tokens;  // cumulative
  }
}

std::optional<api::Usage> Dialect::messages_usage(std::string_view body) {
  boost::system::error_code ec;
  const boost::json::value v = boost::json::parse(body, ec);
  if (ec || !v.is_object()) return std::nullopt;
  const auto* u = v.get_object().if_contains("usage");
  if (!u || !u->is_object()) return std::nullopt;
  return api::anthropic::usage_of_message_usage(u->get_object());
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
