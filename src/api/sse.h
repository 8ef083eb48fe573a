// Server-sent events (text/event-stream), as OpenAI-compatible streams use it.
// SseParser is an incremental parser: bytes go in as they arrive, complete
// events come out; it holds at most one partial event. Not thread-safe.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace tg::api {

struct SseEvent {
  std::string event;  // the `event:` field, empty when absent
  std::string data;   // `data:` lines joined by '\n'
};

class SseParser {
 public:
  // `max_event_bytes` bounds memory for a misbehaving upstream.
  explicit SseParser(std::size_t max_event_bytes = 8u << 20) : max_(max_event_bytes) {}

  // Feeds bytes; calls `on_event` for each complete event (blank-line
  // terminated). Returns false once an event exceeds max_event_bytes.
  bool feed(std::string_view bytes, const std::function<void(SseEvent&)>& on_event);

 private:
  void line(std::string_view l, const std::function<void(SseEvent&)>& on_event);
  std::string partial_;  // an unterminated line
  SseEvent cur_;
  bool has_data_ = false;
  bool skip_lf_ = false;  // the previous chunk ended in '\r'
  std::size_t max_;
};

// Appends "data: <payload>\n\n" (multi-line payloads become several data lines).
void append_sse_data(std::string& out, std::string_view payload);

}  // namespace tg::api
