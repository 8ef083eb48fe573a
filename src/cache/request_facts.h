// What the cache makes of one request: whether it may be looked up and
// written at all, and its Key (partition, exact digest, the text to embed).
//
// Partition = SHA-256 of: tenant, visibility scope ("user:<id>" by default,
// "tenant" only when the tenant opts in), model alias, the system/developer
// messages, the tools/functions and tool choice, the response format, the
// sampling class (temperature and top_p to 0.05, seed, n, max tokens,
// logprobs, stop, penalties, logit bias, reasoning effort), the conversation before the embedded turns, and the
// context-access fingerprint (empty until multi-user context exists).
// Exact digest = SHA-256 of the canonical request body (keys sorted, no
// whitespace, transport-only fields dropped: stream, stream_options, user,
// metadata, store). Pure; thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "api/request.h"
#include "cache/store.h"

namespace tg::cache {

enum class Mode { kLookup, kRefresh, kBypass };  // refresh: skip the lookup, write the answer

struct Decision {
  Mode mode = Mode::kBypass;
  std::string why;  // for bypass: the reason (logged, never sent)
};

struct Policy {
  double max_temperature = 1.0;  // hotter requests are not cached (their answers are meant to vary)
  std::uint32_t prior_turns = 0;  // earlier turns embedded with the last user turn
};

// From the endpoint, the body and the Cache-Control request header.
Decision decide(const api::ParsedRequest& req, std::string_view cache_control, const Policy& policy);

// The key, without the embedding (the caller embeds key.prompt).
// What a request contributes whatever partition it goes to, computed once:
// a digest of everything in the partition key but tenant and scope, the exact
// digest, and the text to embed.
struct RequestFacts {
  std::string content, exact, prompt;
};
// `door`: empty for the OpenAI door; another door's name ("anthropic") puts
// its requests in partitions of their own.
RequestFacts request_facts(const api::ParsedRequest& req, const Policy& policy, std::string_view door = {});
// The key in one partition (the user's, the tenant's, or with
// `public_namespace` the operator-defined namespace's: no tenant, scope
// "public:<name>"); one hash. A private key of a request that names no user
// (a tenant-level key used without X-TG-User or `user`) is scoped to the key
// that sent it, "key:<key_id>": two services of a tenant never share one.
Key key_in(const RequestFacts& facts, const std::string& tenant, const std::string& user, bool tenant_scope,
           const std::string& public_namespace = {}, const std::string& key_id = {});
// request_facts then key_in.
Key make_key(const api::ParsedRequest& req, const std::string& tenant, const std::string& user, bool tenant_scope,
             const Policy& policy, const std::string& public_namespace = {});

// A completion body as the cache sees it: every choice's text (for the
// personal-data check), and whether it may be stored at all: only complete
// text answers (no tool or function calls, which may have side effects; no
// refusal; every choice finished).
struct Answer {
  std::string text;
  bool storable = false;
};

Answer read_answer(std::string_view body);

// A body's JSON with keys sorted and no whitespace (for digests).
std::string canonical_json(std::string_view json_text);

}  // namespace tg::cache
