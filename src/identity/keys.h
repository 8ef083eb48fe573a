// Virtual keys. A key is "tg-" followed by 43 base62 characters (256 bits
// from OpenSSL's CSPRNG). Only its SHA-256 is ever stored or compared.
#pragma once

#include <string>
#include <string_view>

#include "core/config.h"

namespace tg::identity {

Sha256 sha256(std::string_view data);
std::string to_hex(const Sha256& h);

// A fresh random key. Throws std::runtime_error when the CSPRNG fails.
std::string generate_key();

}  // namespace tg::identity
