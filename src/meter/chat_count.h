// Prompt tokens of a chat request as OpenAI counts them: each message costs
// its content and role (and name) plus 3 framing tokens (+1 with a name), and
// every reply is primed with 3 more (OpenAI's published counting recipe for
// gpt-3.5/4/4o-family models). Pure; thread-safe.
#pragma once

#include <cstdint>
#include <limits>
#include <string_view>
#include <vector>

#include "meter/tokenizer.h"

namespace tg::meter {

struct ChatTurn {
  std::string_view role;
  std::string_view name;     // empty when absent
  std::string_view content;  // the text parts, joined
};

// The exact count, or, once it passes `limit`, some number above `limit`
// (counting stops there; see Tokenizer::count).
std::uint64_t count_chat_tokens(const Tokenizer& tok, const std::vector<ChatTurn>& turns,
                                std::uint64_t limit = std::numeric_limits<std::uint64_t>::max());

}  // namespace tg::meter
