#include "server/stages/identify.h"

#include <fmt/format.h>

#include "core/ids.h"

namespace tg::server::stages {

namespace {

// The end user: the key's own, else X-TG-User, else the body's claim.
Expected<std::string> resolve_user(const identity::Principal& p, std::string_view header, const std::string& body_user,
                                   const char* body_field) {
  struct Claim {
    std::string_view value;
    const char* param;
    const char* code;
    const char* what;
  };
  const Claim claims[] = {{header, "X-TG-User", "invalid_user_header", "X-TG-User header"},
                          {body_user, body_field, "invalid_user", body_field}};
  for (const Claim& c : claims) {
    if (c.value.empty()) continue;
    if (!is_valid_external_id(c.value))
      return invalid_request(fmt::format("Invalid {}: use 1-128 characters of A-Z a-z 0-9 . _ : @ / -.", c.what),
                             c.param, c.code);
    if (p.user_bound && c.value != p.user) {
      ApiError e = permission_error(fmt::format("This key belongs to user '{}' and cannot act as '{}' ({}). Use a "
                                                "tenant-level key to send requests for other users.",
                                                p.user, c.value, c.param),
                                    "user_mismatch");
      e.param = c.param;
      return e;
    }
  }
  if (p.user_bound) return p.user;
  return std::string(header.empty() ? std::string_view(body_user) : header);
}

}  // namespace

Expected<Identified> identify(const identity::Principal& p, const Request& head, RequestIdentity& who) {
  Identified out;
  who.org = p.org;
  who.tenant = p.tenant;
  who.key_id = p.key_id;
  static constexpr std::pair<const char*, const char*> kIdHeaders[] = {
      {"x-tg-run", "X-TG-Run"}, {"x-tg-parent", "X-TG-Parent"}, {"x-tg-feature", "X-TG-Feature"}};
  std::string* const outs[] = {&who.run_id, &who.parent_id, &who.feature};
  for (std::size_t i = 0; i < std::size(kIdHeaders); ++i) {
    const std::string_view v = head[kIdHeaders[i].first];
    if (v.empty()) continue;
    if (!is_valid_external_id(v))
      return invalid_request(fmt::format("Invalid {} header: use 1-128 characters of A-Z a-z 0-9 . _ : @ / -.",
                                         kIdHeaders[i].second),
                             kIdHeaders[i].second, "invalid_header");
    *outs[i] = std::string(v);
  }
  if (const std::string_view prio = head["x-tg-priority"]; !prio.empty()) {
    if (prio == "batch") out.batch = true;
    else if (prio != "interactive")
      return invalid_request(fmt::format("Invalid X-TG-Priority header '{}': use interactive (the default) or batch.",
                                         std::string(prio)),
                             "X-TG-Priority", "invalid_header");
  }
  if (!who.parent_id.empty() && who.run_id.empty())
    return invalid_request("X-TG-Parent links a call to its parent inside an agent run: send X-TG-Run with it "
                           "(the run id the parent was sent with).",
                           "X-TG-Parent", "parent_without_run");
  auto user = resolve_user(p, head["x-tg-user"], {}, "user");  // the header's claim alone, for now
  if (!user) return user.error();
  who.user = std::move(*user);
  return out;
}

std::optional<ApiError> identify_user(const identity::Principal& p, const Request& head, Parsed& parsed,
                                      RequestIdentity& who) {
  api::ParsedRequest& r = parsed.request;
  who.model = r.model;
  auto user = resolve_user(p, head["x-tg-user"], r.user, who.door == "anthropic" ? "metadata.user_id" : "user");
  if (!user) return user.error();
  who.user = std::move(*user);
  if (!r.user.empty() && r.user != who.user) r.body["user"] = who.user;
  return std::nullopt;
}

}  // namespace tg::server::stages
