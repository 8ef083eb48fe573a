// AccessLog writes one JSON line per request, off the request's thread
// (spdlog's async logger with a bounded queue that blocks rather than drops).
// Thread-safe.
#pragma once

#include <memory>
#include <string>

#include "server/exchange.h"

namespace spdlog { class logger; }

namespace tg::server {

class AccessLog {
 public:
  // `target`: "stdout", "stderr", "off" or a file path (appended to).
  explicit AccessLog(const std::string& target);
  ~AccessLog();
  void write(const Exchange& x);
  void flush();

 private:
  std::shared_ptr<spdlog::logger> log_;
};

std::string access_log_line(const Exchange& x);

}  // namespace tg::server
