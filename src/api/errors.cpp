#include "api/errors.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include "core/text.h"

namespace tg::api {
namespace json = boost::json;

namespace {
constexpr std::size_t kMaxMessageBytes = 2048, kMaxFieldBytes = 128;
}  // namespace

std::string error_body(const ApiError& e) {
  json::object err;
  // Messages quote what the client (or an upstream) sent: every string is
  // made valid UTF-8 without control bytes, and bounded, before it is echoed.
  err["message"] = printable(e.message, kMaxMessageBytes);
  err["type"] = printable(e.type, kMaxFieldBytes);
  err["param"] = e.param.empty() ? json::value(nullptr) : json::value(printable(e.param, kMaxFieldBytes));
  err["code"] = e.code.empty() ? json::value(nullptr) : json::value(printable(e.code, kMaxFieldBytes));
  json::object root;
  root["error"] = std::move(err);
  return json::serialize(root);
}

ApiError error_from_upstream(int status, const std::string& body, const std::string& deployment) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (!ec && v.is_object()) {
    const auto& o = v.get_object();
    auto it = o.find("error");
    if (it != o.end() && it->value().is_object()) {
      const auto& e = it->value().get_object();
      auto str = [&](const char* k) -> std::string {
        auto f = e.find(k);
        if (f == e.end()) return {};
        if (f->value().is_string()) return std::string(f->value().get_string());
        if (f->value().is_null()) return {};
        return json::serialize(f->value());
      };
      ApiError out;
      out.status = status;
      out.message = str("message");
      out.type = str("type");
      out.code = str("code");
      out.param = str("param");
      if (out.type.empty()) out.type = status >= 500 ? "upstream_error" : "invalid_request_error";
      if (out.message.empty()) out.message = fmt::format("upstream '{}' returned HTTP {}", deployment, status);
      return out;
    }
  }
  std::string snippet = body.substr(0, 200);
  int mapped = status >= 500 ? 502 : status;
  return upstream_error(mapped,
                        fmt::format("upstream '{}' returned HTTP {}: {}", deployment, status,
                                    snippet.empty() ? "(empty body)" : snippet),
                        "upstream_http_error");
}

}  // namespace tg::api
