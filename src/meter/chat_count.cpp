#include "meter/chat_count.h"

namespace tg::meter {

std::uint64_t count_chat_tokens(const Tokenizer& tok, const std::vector<ChatTurn>& turns) {
  constexpr std::uint64_t kPerMessage = 3, kPerName = 1, kReplyPriming = 3;
  std::uint64_t n = kReplyPriming;
  for (const auto& t : turns) {
    // Every role OpenAI defines is one token in both encodings.
    const bool known_role = t.role == "system" || t.role == "user" || t.role == "assistant" || t.role == "tool" ||
                            t.role == "developer" || t.role == "function";
    n += kPerMessage + (known_role ? 1 : tok.count(t.role)) + tok.count(t.content);
    if (!t.name.empty()) n += kPerName + tok.count(t.name);
  }
  return n;
}

}  // namespace tg::meter
