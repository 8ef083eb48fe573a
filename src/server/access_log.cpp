#include "server/access_log.h"

#include <spdlog/async.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <boost/json/serialize.hpp>
#include <chrono>
#include <fmt/chrono.h>

#include "core/text.h"

namespace tg::server {
namespace json = boost::json;

AccessLog::AccessLog(const std::string& target) {
  if (target == "off") return;
  if (!spdlog::thread_pool()) spdlog::init_thread_pool(16384, 1);
  spdlog::sink_ptr sink;
  if (target == "stdout") sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
  else if (target == "stderr") sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  else sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(target, false);
  log_ = std::make_shared<spdlog::async_logger>("access", sink, spdlog::thread_pool(),
                                                spdlog::async_overflow_policy::block);
  log_->set_pattern("%v");
  log_->flush_on(spdlog::level::info);
}

AccessLog::~AccessLog() { flush(); }

void AccessLog::flush() {
  if (log_) log_->flush();
}

std::string access_log_line(const Exchange& x) {
  json::object o;
  auto now = std::chrono::system_clock::now();
  o["ts"] = fmt::format("{:%Y-%m-%dT%H:%M:%S}Z", std::chrono::floor<std::chrono::milliseconds>(now));
  o["request_id"] = x.who.request_id;
  // Client text is bounded and made printable (see core/text.h): a line is
  // never longer than a few KB, whatever was sent.
  o["method"] = printable(x.method, 32);
  o["path"] = printable(x.path, 256);
  o["status"] = x.status;
  o["client"] = x.client_ip;
  if (x.principal) {
    o["org"] = x.principal->org;
    o["tenant"] = x.principal->tenant;
    o["user"] = printable(x.who.user, 128);
    o["key_id"] = x.principal->key_id;
  }
  if (!x.endpoint.empty()) o["endpoint"] = x.endpoint;
  if (!x.who.model.empty()) o["model"] = printable(x.who.model, 256);
  if (!x.who.deployment.empty()) o["deployment"] = x.who.deployment;
  if (!x.endpoint.empty()) o["stream"] = x.stream;
  if (x.usage) {
    o["prompt_tokens"] = x.usage->prompt_tokens;
    o["completion_tokens"] = x.usage->completion_tokens;
  }
  if (x.upstream_status) o["upstream_status"] = x.upstream_status;
  if (!x.error_code.empty()) o["error_code"] = printable(x.error_code, 64);
  if (x.client_gone) o["client_gone"] = true;
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - x.start);
  o["duration_us"] = us.count();
  if (x.ttft) o["ttft_us"] = x.ttft->count();
  o["bytes_out"] = x.bytes_out;
  return json::serialize(o);
}

void AccessLog::write(const Exchange& x) {
  if (!log_) return;
  log_->info(access_log_line(x));
}

}  // namespace tg::server
