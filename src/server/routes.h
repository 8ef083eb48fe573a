// Routes: every URL the gateway serves, matched in one place. route() maps
// a method and path (no query) to what serves it, or to the 404/405 refusal
// naming what is served there. Pure; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "api/request.h"
#include "core/error.h"

namespace tg::server {

// The API shape a client speaks: its request and answer bodies, error shape,
// stream events. The internal request is OpenAI's in both.
enum class Door { kOpenAI, kAnthropic };
std::string_view door_name(Door d);  // "openai", "anthropic"

enum class RouteKind {
  kHealth,       // GET /healthz
  kReady,        // GET /readyz
  kMetrics,      // GET /metrics
  kModels,       // GET /v1/models, /v1/models/{id}
  kInference,    // POST /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/messages
  kCountTokens,  // POST /v1/messages/count_tokens
  kAdminLimits,  // GET, PUT /admin/limits/{scope}
  kAdminUsage,   // GET /admin/usage
  kAdminCache,   // GET, DELETE /admin/cache, /admin/cache/served, /admin/cache/entries/{id}
};

struct Route {
  RouteKind kind = RouteKind::kHealth;
  Door door = Door::kOpenAI;
  api::Endpoint endpoint = api::Endpoint::kChatCompletions;  // kInference only
  std::string_view name;  // the endpoint label: "chat.completions", "messages", "models", "admin.cache", ...
  std::string_view rest;  // kModels: the model id ("" for the list); kAdminLimits: the scope (undecoded)
};

// The route for `method` on `path`, or the error to answer (404 unknown_url
// in the door's terms, 405 method_not_allowed with the allowed methods in
// `param`). `path` outlives the result (rest views it).
Expected<Route> route(std::string_view method, std::string_view path);

// The door a path belongs to, for answers decided before routing (framing,
// sizes, the refusal budget): Anthropic's paths get Anthropic's error shape.
Door door_of(std::string_view path);

}  // namespace tg::server
