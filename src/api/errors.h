// OpenAI's error body: {"error":{"message","type","param","code"}}.
#pragma once

#include <string>

#include "core/error.h"

namespace tg::api {

std::string error_body(const ApiError& e);

// If `body` is already an OpenAI-shaped error object, returns it unchanged as
// an ApiError with `status`; otherwise wraps it as an upstream_error that says
// which deployment answered what.
ApiError error_from_upstream(int status, const std::string& body, const std::string& deployment);

}  // namespace tg::api
