// parse: the request body in its door's terms, validated the way that API
// validates it (400 naming the field), as the gateway's internal request
// (an OpenAI chat completion, completion or embeddings request). The
// Anthropic door's Messages request is translated here (api/anthropic.h);
// everything after this stage sees one shape. Pure; thread-safe.
#pragma once

#include <boost/json/storage_ptr.hpp>
#include <string>
#include <vector>

#include "api/request.h"
#include "core/error.h"
#include "server/handler.h"
#include "server/routes.h"

namespace tg::server::stages {

struct Parsed {
  api::ParsedRequest request;
  std::vector<std::string> stop_sequences;  // the Anthropic door's, for its stop_reason
};

// `storage` (the session's arena) outlives the result. 415 unless the body
// is declared JSON. `count_only`: /v1/messages/count_tokens (no max_tokens).
Expected<Parsed> parse(const Request& req, const server::Route& route, boost::json::storage_ptr storage);

}  // namespace tg::server::stages
