#include "identity/keyring.h"

#include "identity/keys.h"

namespace tg::identity {

KeyRing::KeyRing(const Config& config) {
  for (const auto& t : config.tenants) {
    for (const auto& k : t.keys) {
      Principal p;
      p.org = t.org;
      p.tenant = t.id;
      p.user = k.user;
      p.user_bound = !k.user.empty();
      p.key_id = k.id;
      p.tenant_config = &t;
      by_hash_.emplace(k.sha256, std::move(p));
    }
  }
}

std::optional<std::string_view> bearer_token(std::string_view authorization) {
  if (authorization.empty()) return authorization;
  constexpr std::string_view kBearer = "bearer";
  if (authorization.size() <= kBearer.size() || authorization[kBearer.size()] != ' ' ||
      !std::equal(kBearer.begin(), kBearer.end(), authorization.begin(),
                  [](char a, char b) { return std::tolower(static_cast<unsigned char>(b)) == a; }))
    return std::nullopt;
  std::string_view token = authorization.substr(kBearer.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
  if (token.empty()) return std::nullopt;
  return token;
}

Expected<const Principal*> KeyRing::authenticate(std::string_view authorization,
                                          std::string_view api_key) const {
  std::string_view key = api_key;
  if (!authorization.empty()) {
    auto token = bearer_token(authorization);
    if (!token)
      return authentication_error(
          "The Authorization header must be 'Bearer <key>'. Pass your tenantgate virtual key "
          "(it starts with 'tg-') as the API key.",
          "invalid_authorization_header");
    key = *token;
  }
  if (key.empty()) {
    return authentication_error(
        "You didn't provide an API key. Send your tenantgate virtual key as "
        "'Authorization: Bearer <key>'.",
        "missing_api_key");
  }
  auto it = by_hash_.find(sha256(key));
  if (it == by_hash_.end()) {
    // Never echo the whole key: a prefix is enough to spot a mix-up.
    std::string shown(key.substr(0, std::min<std::size_t>(6, key.size())));
    return authentication_error("Incorrect API key provided: " + shown +
                                "****. Ask your platform team for a tenantgate key.");
  }
  return &it->second;
}

}  // namespace tg::identity
