#include "server/stages/parse.h"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/field.hpp>
#include <fmt/format.h>

#include "api/anthropic.h"

namespace tg::server::stages {
namespace http = boost::beast::http;

namespace {
bool is_json_content_type(std::string_view ct) {
  std::string_view base = ct.substr(0, ct.find(';'));
  while (!base.empty() && base.back() == ' ') base.remove_suffix(1);
  return boost::beast::iequals(base, "application/json");
}
}  // namespace

Expected<Parsed> parse(const Request& req, const server::Route& route, boost::json::storage_ptr storage) {
  if (!is_json_content_type(req[http::field::content_type]))
    return ApiError{415, "invalid_request_error", "unsupported_media_type",
                    fmt::format("Content-Type must be application/json, got '{}'. Send the request body "
                                "as JSON with 'Content-Type: application/json'.",
                                std::string(req[http::field::content_type])),
                    {}};
  if (route.door == Door::kAnthropic) {
    auto m = api::parse_messages_request(req.body(), route.kind == RouteKind::kCountTokens, std::move(storage));
    if (!m) return m.error();
    return Parsed{std::move(m->parsed), std::move(m->stop_sequences)};
  }
  auto p = api::parse_request(route.endpoint, req.body(), std::move(storage));
  if (!p) return p.error();
  return Parsed{std::move(*p), {}};
}

}  // namespace tg::server::stages
