// RequestIdentity: who a request is for and what it asks for, as every core
// records it (limits, budgets, fair admission, the ledger, the access log).
// Filled in by the request path's authenticate, identify and route stages,
// then read-only: cores take it whole instead of copying fields one by one.
// A plain value; every string is bounded by the stage that set it (ids:
// 1-128 characters of A-Z a-z 0-9 . _ : @ / -, model: 256 printable).
#pragma once

#include <string>

namespace tg {

struct RequestIdentity {
  std::string request_id;                 // the gateway's own (x-request-id)
  std::string org, tenant, user, key_id;  // user may be empty (a tenant key acting as the application)
  std::string run_id;     // X-TG-Run; empty: not part of an agent run
  std::string parent_id;  // X-TG-Parent: the request in the run that spawned this one
  std::string feature;    // X-TG-Feature: a cost attribution tag
  std::string model;      // the alias the client asked for
  std::string deployment; // the deployment that serves it; empty until routed, or when the cache answered
  std::string door;       // the front door: "openai" or "anthropic"
};

}  // namespace tg
