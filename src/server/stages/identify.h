// identify: who the request is for and how it is attributed, from the key,
// the X-TG-* headers and the body's end user: fills RequestIdentity (all but
// the deployment, which route sets) and the priority. In two steps: the
// headers before the body is parsed (a refusal costs no parse), the end user
// once the body's claim is known. The end user is the
// key's own user, else X-TG-User, else the body's `user` (OpenAI) or
// `metadata.user_id` (Anthropic); a user-bound key cannot speak for anyone
// else (403 user_mismatch), and every id is 1-128 characters of
// A-Z a-z 0-9 . _ : @ / - (400 naming the header or field). The upstream is
// sent the attributed user, never a claim it overrode. Pure.
#pragma once

#include <optional>

#include "core/error.h"
#include "core/request_identity.h"
#include "identity/keyring.h"
#include "server/handler.h"
#include "server/stages/parse.h"

namespace tg::server::stages {

struct Identified {
  bool batch = false;  // X-TG-Priority: batch
};

// Fills `who`'s key, run, parent and feature (request_id and door already
// set) from `p` and `head`; checks the X-TG-User claim.
Expected<Identified> identify(const identity::Principal& p, const Request& head, RequestIdentity& who);

// Fills `who`'s end user and model from `parsed`, whose body's user is
// rewritten to the attributed one.
std::optional<ApiError> identify_user(const identity::Principal& p, const Request& head, Parsed& parsed,
                                      RequestIdentity& who);

}  // namespace tg::server::stages
