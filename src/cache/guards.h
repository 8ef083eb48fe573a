// Guards against false semantic-cache hits. Two prompts that embed close
// together may still ask different things: "reset the password for
// jane@example.com" and "... for bob@example.com", "should I increase the
// dose" and "should I decrease the dose". A semantic hit is served only when
// both guards pass:
// - entity guard: the entities of both prompts (emails, URLs, phone numbers,
//   numbers and amounts, dates, IDs/account numbers, quoted strings,
//   capitalised names) are the same set;
// - polarity guard: neither prompt is the other's negation or reversal
//   (negation words on one side only, or an antonym pair such as
//   increase/decrease across the two).
// Pure and thread-safe (the compiled patterns are shared, matching data is
// per call).
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <string_view>

namespace tg::cache {

// Normalised entities (a multiset: "5 and 6" is not "6 and 6"), each prefixed with its kind: "email:jane@example.com",
// "num:42", "date:2026-11-26", "name:jane", "quote:...", "url:...", "id:ab-1234".
std::multiset<std::string> extract_entities(std::string_view text);

struct GuardVerdict {
  bool entities_match = true;
  bool polarity_match = true;
  std::string why;  // the first difference found, for the audit trail ("" when both pass)
  bool pass() const { return entities_match && polarity_match; }
};

// Personal data in a text: an email, phone number or ID/account number (as the
// entity guard sees them), or a person's name (introduced as one, "my name is
// Jane", "Mr. Smith", or a first and last name inside a sentence). Such
// prompts and answers are never shared beyond their user. A single capitalised
// word (a place, a product) is not taken for a name here; the entity guard
// still tells such words apart when matching.
bool has_personal_data(std::string_view text);

GuardVerdict check_guards(std::string_view cached_prompt, std::string_view new_prompt);

// What the guards need of one prompt, computed once (an entry keeps its own):
// its entities, its negation parity and which antonym stems it holds.
struct GuardFacts {
  std::multiset<std::string> entities;
  bool negated = false;
  std::uint64_t stems_a = 0, stems_b = 0;  // bit i: the prompt holds the first / second stem of antonym pair i
};
GuardFacts guard_facts(std::string_view prompt);
GuardVerdict check_guards(const GuardFacts& cached, const GuardFacts& fresh);

}  // namespace tg::cache
