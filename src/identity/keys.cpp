#include "identity/keys.h"

#include <openssl/rand.h>
#include <openssl/sha.h>

#include <stdexcept>

namespace tg::identity {

Sha256 sha256(std::string_view data) {
  Sha256 out{};
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data());
  return out;
}

std::string to_hex(const Sha256& h) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s(64, '0');
  for (std::size_t i = 0; i < h.size(); ++i) {
    s[2 * i] = kHex[h[i] >> 4];
    s[2 * i + 1] = kHex[h[i] & 15];
  }
  return s;
}

std::string generate_key() {
  static constexpr char kAlphabet[] =
      "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  std::string key = "tg-";
  // Rejection sampling keeps every character uniform over 62 symbols.
  while (key.size() < 3 + 43) {
    unsigned char buf[64];
    if (RAND_bytes(buf, sizeof buf) != 1) throw std::runtime_error("OpenSSL RAND_bytes failed");
    for (unsigned char b : buf) {
      if (b >= 248) continue;  // 248 = 4 * 62
      key.push_back(kAlphabet[b % 62]);
      if (key.size() == 3 + 43) break;
    }
  }
  return key;
}

}  // namespace tg::identity
