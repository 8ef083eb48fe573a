#include "core/ids.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <random>

namespace tg {
namespace {
constexpr char kAlphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";  // Crockford base32

std::uint64_t process_salt() {
  static const std::uint64_t salt = std::random_device{}() & 0xfffff;
  return salt;
}
}  // namespace

std::string new_request_id() {
  static std::atomic<std::uint64_t> counter{0};
  auto ms = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::system_clock::now().time_since_epoch()).count());
  std::uint64_t seq = counter.fetch_add(1, std::memory_order_relaxed);
  // 45 bits of milliseconds (~1100 years), then 20 bits of salt, then 35 of sequence.
  std::string id = "req_";
  id.resize(4 + 20);
  unsigned __int128 v = (static_cast<unsigned __int128>(ms & ((1ULL << 45) - 1)) << 55) |
                        (static_cast<unsigned __int128>(process_salt()) << 35) |
                        (seq & ((1ULL << 35) - 1));
  for (int i = 19; i >= 0; --i) {
    id[4 + i] = kAlphabet[static_cast<unsigned>(v & 31)];
    v >>= 5;
  }
  return id;
}

bool is_valid_external_id(std::string_view s) {
  if (s.empty() || s.size() > 128) return false;
  for (unsigned char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '@' || c == '/' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace tg
