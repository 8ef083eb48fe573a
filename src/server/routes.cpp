#include "server/routes.h"

#include <fmt/format.h>

namespace tg::server {

std::string_view door_name(Door d) { return d == Door::kAnthropic ? "anthropic" : "openai"; }

Door door_of(std::string_view path) {
  return path == "/v1/messages" || path.starts_with("/v1/messages/") ? Door::kAnthropic : Door::kOpenAI;
}

namespace {

struct Entry {
  std::string_view path;  // exact, or a prefix when it ends in '/'
  RouteKind kind;
  std::string_view methods;  // "GET", "POST", "GET, PUT", ...
  std::string_view name;
  Door door = Door::kOpenAI;
  api::Endpoint endpoint = api::Endpoint::kChatCompletions;
};

// Longest match first where paths nest (/v1/messages/count_tokens before /v1/messages).
constexpr Entry kRoutes[] = {
    {"/healthz", RouteKind::kHealth, "GET", ""},
    {"/readyz", RouteKind::kReady, "GET", ""},
    {"/metrics", RouteKind::kMetrics, "GET", ""},
    {"/v1/chat/completions", RouteKind::kInference, "POST", "chat.completions", Door::kOpenAI,
     api::Endpoint::kChatCompletions},
    {"/v1/completions", RouteKind::kInference, "POST", "completions", Door::kOpenAI, api::Endpoint::kCompletions},
    {"/v1/embeddings", RouteKind::kInference, "POST", "embeddings", Door::kOpenAI, api::Endpoint::kEmbeddings},
    {"/v1/messages/count_tokens", RouteKind::kCountTokens, "POST", "messages.count_tokens", Door::kAnthropic},
    {"/v1/messages", RouteKind::kInference, "POST", "messages", Door::kAnthropic, api::Endpoint::kChatCompletions},
    {"/v1/models", RouteKind::kModels, "GET", "models"},
    {"/v1/models/", RouteKind::kModels, "GET", "models"},
    {"/admin/limits/", RouteKind::kAdminLimits, "GET, PUT", "admin.limits"},
    {"/admin/usage", RouteKind::kAdminUsage, "GET", "admin.usage"},
    {"/admin/cache", RouteKind::kAdminCache, "GET, DELETE", "admin.cache"},
    {"/admin/cache/served", RouteKind::kAdminCache, "GET, DELETE", "admin.cache"},
    {"/admin/cache/entries/", RouteKind::kAdminCache, "GET, DELETE", "admin.cache"},
};

bool allows(std::string_view methods, std::string_view method) {
  for (std::size_t i = 0; i < methods.size();) {
    const std::size_t j = std::min(methods.find(", ", i), methods.size());
    if (methods.substr(i, j - i) == method) return true;
    i = j + 2;
  }
  return false;
}

}  // namespace

Expected<Route> route(std::string_view method, std::string_view path) {
  for (const Entry& e : kRoutes) {
    const bool prefix = e.path.ends_with('/');
    if (prefix ? !path.starts_with(e.path) : path != e.path) continue;
    if (!allows(e.methods, method))
      return ApiError{405, "invalid_request_error", "method_not_allowed",
                      fmt::format("{} is not allowed on {}; use {}.", method, path, e.methods), std::string(e.methods)};
    return Route{e.kind, e.door, e.endpoint, e.name, prefix ? path.substr(e.path.size()) : std::string_view()};
  }
  return not_found(fmt::format("Unknown request URL: {} {}. Please check the URL for typos; tenantgate serves "
                               "/v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models and (Anthropic) "
                               "/v1/messages.",
                               method, path),
                   "unknown_url");
}

}  // namespace tg::server
