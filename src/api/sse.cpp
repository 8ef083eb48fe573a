#include "api/sse.h"

namespace tg::api {

bool SseParser::feed(std::string_view bytes, const std::function<void(SseEvent&)>& on_event) {
  std::size_t i = 0;
  if (skip_lf_ && !bytes.empty() && bytes[0] == '\n') i = 1;
  skip_lf_ = false;
  while (i < bytes.size()) {
    std::size_t j = bytes.find_first_of("\r\n", i);
    if (j == std::string_view::npos) {
      partial_.append(bytes.substr(i));
      break;
    }
    if (partial_.empty()) {
      line(bytes.substr(i, j - i), on_event);
    } else {
      partial_.append(bytes.substr(i, j - i));
      std::string l = std::move(partial_);
      partial_.clear();
      line(l, on_event);
    }
    if (bytes[j] == '\r') {
      if (j + 1 < bytes.size()) {
        if (bytes[j + 1] == '\n') ++j;
      } else {
        skip_lf_ = true;
      }
    }
    i = j + 1;
  }
  return partial_.size() + cur_.data.size() <= max_;
}

void SseParser::line(std::string_view l, const std::function<void(SseEvent&)>& on_event) {
  if (l.empty()) {  // dispatch
    if (has_data_) on_event(cur_);
    cur_ = SseEvent{};
    has_data_ = false;
    return;
  }
  if (l.front() == ':') return;  // comment / keep-alive
  std::string_view field = l, value;
  if (auto c = l.find(':'); c != std::string_view::npos) {
    field = l.substr(0, c);
    value = l.substr(c + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    if (has_data_) cur_.data.push_back('\n');
    cur_.data.append(value);
    has_data_ = true;
  } else if (field == "event") {
    cur_.event.assign(value);
  }
}

void append_sse_data(std::string& out, std::string_view payload) {
  std::size_t i = 0;
  for (;;) {
    std::size_t j = payload.find('\n', i);
    out.append("data: ");
    out.append(payload.substr(i, j == std::string_view::npos ? std::string_view::npos : j - i));
    out.push_back('\n');
    if (j == std::string_view::npos) break;
    i = j + 1;
  }
  out.push_back('\n');
}

}  // namespace tg::api
