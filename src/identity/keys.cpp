#include "identity/keys.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <stdexcept>

namespace tg::identity {

Sha256 sha256(std::string_view data) {
  // OpenSSL 3's one-shot SHA256() allocates a context per call; a reused
  // per-thread context and a fetched-once digest do not.
  struct Ctx {
    EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    ~Ctx() {
      EVP_MD_CTX_free(ctx);
      EVP_MD_free(md);
    }
  };
  thread_local Ctx c;
  Sha256 out{};
  unsigned int len = 0;
  if (!c.md || !c.ctx || EVP_DigestInit_ex(c.ctx, c.md, nullptr) != 1 ||
      EVP_DigestUpdate(c.ctx, data.data(), data.size()) != 1 || EVP_DigestFinal_ex(c.ctx, out.data(), &len) != 1)
    throw std::runtime_error("OpenSSL SHA-256 failed");
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
