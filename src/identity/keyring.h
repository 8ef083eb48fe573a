// KeyRing resolves a presented virtual key to the Principal it stands for.
// Built once from a Config; immutable and thread-safe afterwards. Lookup
// hashes the presented key and compares hashes only, so the ring never holds
// a secret.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/config.h"
#include "core/error.h"

namespace tg::identity {

// Who is asking: the org/tenant/user/key path every limit, ledger row and
// cache partition is keyed on.
struct Principal {
  std::string org;
  std::string tenant;
  std::string user;     // the key's user; empty for a tenant-level key
  std::string key_id;
  bool user_bound = false;  // the key itself names the user
  const TenantConfig* tenant_config = nullptr;
};

// The credentials of an `Authorization: Bearer <token>` header: the scheme
// is matched case-insensitively (RFC 9110 §11.1), then one or more spaces,
// then the token without surrounding spaces. nullopt when the header has
// another scheme or no token; an empty header gives an empty token.
std::optional<std::string_view> bearer_token(std::string_view authorization);

class KeyRing {
 public:
  explicit KeyRing(const Config& config);
  KeyRing(const KeyRing&) = delete;
  KeyRing& operator=(const KeyRing&) = delete;

  // `authorization` is the Authorization header ("Bearer <key>"), `api_key`
  // the x-api-key header (Anthropic clients); either may be empty.
  // Returns the key's principal (owned by the ring, valid for its lifetime),
  // or 401 authentication_error when no key is presented or it is unknown.
  Expected<const Principal*> authenticate(std::string_view authorization, std::string_view api_key) const;

  std::size_t size() const { return by_hash_.size(); }

 private:
  struct HashOf {
    std::size_t operator()(const Sha256& h) const noexcept {
      std::size_t v;
      static_assert(sizeof v <= sizeof h);
      __builtin_memcpy(&v, h.data(), sizeof v);
      return v;
    }
  };
  std::unordered_map<Sha256, Principal, HashOf> by_hash_;
};

}  // namespace tg::identity
