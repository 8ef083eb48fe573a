#include <gtest/gtest.h>

#include <string>

#include "meter/chat_count.h"
#include "meter/tokenizer.h"

namespace tg::meter {
namespace {

const Tokenizer& o200k() { return Tokenizer::builtin(Encoding::kO200kBase); }

std::string prose(std::size_t words) {
  std::string s;
  for (std::size_t i = 0; i < words; ++i) s += "word" + std::to_string(i % 1000) + (i % 17 ? " " : ". ");
  return s;
}

TEST(TokenizerCount, WithoutALimitItIsTheEncodingsLength) {
  const std::string text = prose(5000);
  EXPECT_EQ(o200k().count(text), o200k().encode(text).size());
  EXPECT_EQ(o200k().count(text, o200k().encode(text).size()), o200k().encode(text).size());  // the limit itself is not passed
}

TEST(TokenizerCount, StopsOncePastTheLimit) {
  const std::string text = prose(200000);
  const std::size_t full = o200k().count(text);
  const std::size_t capped = o200k().count(text, 1000);
  EXPECT_GT(capped, 1000u);
  EXPECT_LT(capped, full);
  // It stopped within one piece of the limit: the work done was about 1,000 tokens', not the text's.
  EXPECT_LT(capped, 1100u);
}

TEST(TokenizerCount, ALongPieceIsWeighedByItsLowerBoundBeforeMerging) {
  const std::string word(3'000'000, 'a');  // one pre-token piece: the merge's worst case
  // Its lower bound (3 MB / the longest token) passes 100 at once: the answer is limit + 1, which a
  // merge of the piece (about 375,000 tokens) could never give.
  EXPECT_EQ(o200k().count(word, 100), 101u);
  EXPECT_GT(o200k().count(word), 100000u);
}

TEST(ChatCount, StopsOncePastTheLimitAcrossMessages) {
  const std::string a = prose(3000), b = prose(3000);
  std::vector<ChatTurn> turns{{"user", "", a}, {"assistant", "", b}, {"user", "", a}};
  const std::uint64_t full = count_chat_tokens(o200k(), turns);
  EXPECT_EQ(count_chat_tokens(o200k(), turns, full), full);
  const std::uint64_t capped = count_chat_tokens(o200k(), turns, 500);
  EXPECT_GT(capped, 500u);
  EXPECT_LT(capped, full);
}

}  // namespace
}  // namespace tg::meter
