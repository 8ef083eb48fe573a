// Client text made safe to echo: what a request sent (a path, a header, a
// model name) may be long, invalid UTF-8 or full of control bytes, and it
// goes into JSON error bodies, log lines and metric labels. printable()
// returns valid UTF-8 of bounded length that shows what was sent. Pure.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace tg {

// `s` with every byte that is not part of a valid UTF-8 sequence, and every
// control character (C0, DEL, C1), written as the four characters \xNN; cut
// at `max_bytes` of input on a character boundary, with "…(N bytes)" appended
// to say how long it really was.
std::string printable(std::string_view s, std::size_t max_bytes = 64);

// The length of the valid UTF-8 sequence starting at s[i] (1-4), or 0 when
// s[i] does not start one.
std::size_t utf8_sequence_length(std::string_view s, std::size_t i);

}  // namespace tg
