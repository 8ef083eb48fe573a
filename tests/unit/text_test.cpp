#include <gtest/gtest.h>

#include "core/text.h"

namespace tg {
namespace {

TEST(Printable, KeepsValidTextAndEscapesInvalidBytesAndControls) {
  EXPECT_EQ(printable("alice"), "alice");
  EXPECT_EQ(printable("caf\xc3\xa9 \xe2\x82\xac"), "caf\xc3\xa9 \xe2\x82\xac");
  EXPECT_EQ(printable("a\xff" "b"), "a\\xFFb");
  EXPECT_EQ(printable(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(printable("a\nb\x1b\x7f"), "a\\x0Ab\\x1B\\x7F");
  EXPECT_EQ(printable("\xed\xa0\x80"), "\\xED\\xA0\\x80");  // a UTF-16 surrogate is not UTF-8
  EXPECT_EQ(printable("\xc0\xaf"), "\\xC0\\xAF");          // overlong
  EXPECT_EQ(printable("\xc2\x85"), "\\xC2\\x85");          // C1 control (NEL)
  EXPECT_EQ(printable("\xe2\x82"), "\\xE2\\x82");          // truncated sequence
}

TEST(Printable, CutsOnACharacterBoundaryAndSaysHowLongItWas) {
  EXPECT_EQ(printable(std::string(100, 'x'), 10), std::string(10, 'x') + "…(100 bytes)");
  // "€" is 3 bytes: 4 of them do not fit in 10, the 4th is left out whole
  const std::string euros = "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac";
  EXPECT_EQ(printable(euros, 10), "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac…(12 bytes)");
  EXPECT_EQ(printable(std::string(64, 'y'), 64), std::string(64, 'y'));
}

}  // namespace
}  // namespace tg
