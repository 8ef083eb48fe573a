#include "meter/chat_count.h"

namespace tg::meter {

std::uint64_t count_chat_tokens(const Tokenizer& tok, const std::vector<ChatTurn>& turns, std::uint64_t limit) {
  constexpr std::uint64_t kPerMessage = 3, kPerName = 1, kReplyPriming = 3;
  std::uint64_t n = kReplyPriming;
  // What is left of `limit` once `n` is counted (0 when passed: counting stops).
  auto left = [&] { return static_cast<std::size_t>(n >= limit ? 0 : limit - n); };
  for (const auto& t : turns) {
    if (n > limit) return n;
    // Every role OpenAI defines is one token in both encodings.
    const bool known_role = t.role == "system" || t.role == "user" || t.role == "assistant" || t.role == "tool" ||
                            t.role == "developer" || t.role == "function";
    n += kPerMessage + (known_role ? 1 : tok.count(t.role, left()));
    n += tok.count(t.content, left());
    if (!t.name.empty()) n += kPerName + tok.count(t.name, left());
  }
  return n;
}

}  // namespace tg::meter
