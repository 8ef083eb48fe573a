#include "api/usage.h"

namespace tg::api {
namespace json = boost::json;

namespace {
std::uint64_t count(const json::object& o, const char* key) {
  auto it = o.find(key);
  if (it == o.end()) return 0;
  if (it->value().is_uint64()) return it->value().get_uint64();
  if (it->value().is_int64() && it->value().get_int64() > 0) return static_cast<std::uint64_t>(it->value().get_int64());
  return 0;
}
}  // namespace

std::optional<Usage> usage_of(const json::object& response) {
  auto it = response.find("usage");
  if (it == response.end() || !it->value().is_object()) return std::nullopt;
  const auto& u = it->value().get_object();
  Usage out;
  out.prompt_tokens = count(u, "prompt_tokens");
  out.completion_tokens = count(u, "completion_tokens");
  if (auto d = u.find("prompt_tokens_details"); d != u.end() && d->value().is_object())
    out.cached_tokens = count(d->value().get_object(), "cached_tokens");
  return out;
}

json::object usage_json(const Usage& u) {
  json::object o;
  o["prompt_tokens"] = u.prompt_tokens;
  o["completion_tokens"] = u.completion_tokens;
  o["total_tokens"] = u.prompt_tokens + u.completion_tokens;
  if (u.cached_tokens) o["prompt_tokens_details"] = json::object{{"cached_tokens", u.cached_tokens}};
  return o;
}

}  // namespace tg::api
