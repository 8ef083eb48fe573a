#include "meter/chat_count.h"

namespace tg::meter {

std::uint64_t count_chat_tokens(const Tokenizer& tok, const std::vector<ChatTurn>& turns) {
  constexpr std::uint64_t kPerMessage = 3, kPerName = 1, kReplyPriming = 3;
  std::uint64_t n = kReplyPriming;
  for (const auto& t : turns) {
    n += kPerMessage + tok.count(t.role) + tok.count(t.content);
    if (!t.name.empty()) n += kPerName + tok.count(t.name);
  }
  return n;
}

}  // namespace tg::meter
