#include "cache/guards.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <memory>
#include <stdexcept>
#include <vector>

namespace tg::cache {
namespace {

struct Pattern {
  const char* kind;
  pcre2_code* code = nullptr;
};

// Each kind's pattern (PCRE2, UTF-8). Order matters only for reading.
const std::vector<Pattern>& patterns() {
  static const std::vector<Pattern> all = [] {
    const std::pair<const char*, const char*> src[] = {
        {"email", R"re([A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,})re"},
        {"url", R"re((?:https?://|www\.)[^\s<>"']+)re"},
        {"date", R"re(\b\d{4}-\d{1,2}-\d{1,2}\b|\b\d{1,2}/\d{1,2}/\d{2,4}\b)re"
                 R"re(|\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?\s+\d{1,2}(?:st|nd|rd|th)?(?:,?\s+\d{4})?\b)re"
                 R"re(|\b\d{1,2}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*(?:\s+\d{4})?\b)re"
                 R"re(|\b(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|today|tomorrow|yesterday)\b)re"},
        {"phone", R"re((?<![\w.])\+?\d[\d ().-]{7,}\d(?![\w.]))re"},
        {"id", R"re(\b(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9][A-Za-z0-9_-]{3,}\b)re"},
        {"num", R"re([$€£¥]?\d+(?:[.,]\d+)*%?)re"},
        {"quote", R"re("([^"]{1,200})"|“([^”]{1,200})”|(?<![\w])'([^']{2,200})'(?![\w]))re"},
    };
    std::vector<Pattern> out;
    for (const auto& [kind, re] : src) {
      int err = 0;
      PCRE2_SIZE off = 0;
      pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(re), PCRE2_ZERO_TERMINATED,
                                       PCRE2_UTF | PCRE2_CASELESS, &err, &off, nullptr);
      if (!code) throw std::logic_error(std::string("cache guard pattern does not compile: ") + kind);
      pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
      out.push_back({kind, code});
    }
    return out;
  }();
  return all;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

void add_matches(const Pattern& p, std::string_view text, std::multiset<std::string>& out) {
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
      pcre2_match_data_create_from_pattern(p.code, nullptr), &pcre2_match_data_free);
  PCRE2_SIZE start = 0;
  const std::string_view kind(p.kind);
  while (start <= text.size()) {
    int rc = pcre2_match(p.code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), start, 0, md.get(), nullptr);
    if (rc < 0) break;
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    std::size_t b = ov[0], e = ov[1];
    // Quotes: the text inside (whichever alternative matched).
    for (int g = 1; kind == "quote" && g < rc; ++g)
      if (ov[2 * g] != PCRE2_UNSET) {
        b = ov[2 * g];
        e = ov[2 * g + 1];
        break;
      }
    std::string v = lower(text.substr(b, e - b));
    if (kind == "url" || kind == "email")
      while (!v.empty() && std::string_view(".,;:!?)").find(v.back()) != std::string_view::npos) v.pop_back();
    if (kind == "phone" || kind == "num") {
      std::string digits;
      // An amount keeps its currency: $5 is not 5 EUR.
      if (kind == "num")
        for (std::size_t c = 0; c < v.size() && !std::isdigit(static_cast<unsigned char>(v[c])); ++c) digits += v[c];
      for (char c : v)
        if (std::isdigit(static_cast<unsigned char>(c)) || (kind == "num" && (c == '.' || c == '%'))) digits += c;
      if (kind == "num") {
        // 1,000 and 1000 are the same amount; a trailing period ends a sentence.
        while (!digits.empty() && digits.back() == '.') digits.pop_back();
      }
      v = digits;
    }
    if (!v.empty()) out.insert(std::string(kind) + ":" + v);
    start = ov[1] > ov[0] ? ov[1] : ov[1] + 1;
  }
}

// Words that start a question or a sentence, capitalised for that reason only.
bool ordinary_capital(const std::string& w) {
  static const std::set<std::string> kWords = {
      "a", "an", "the", "i", "i'm", "i've", "i'd", "i'll", "what", "whats", "what's", "how", "why", "when", "where",
      "which", "who", "whom", "whose", "is", "are", "was", "were", "do", "does", "did", "can", "could", "should",
      "would", "will", "shall", "may", "might", "must", "if", "in", "on", "at", "for", "to", "of", "and", "or", "but",
      "my", "your", "our", "their", "his", "her", "its", "it", "this", "that", "these", "those", "there", "here",
      "please", "hi", "hello", "hey", "thanks", "thank", "yes", "no", "not", "ok", "okay", "so", "as", "be", "has",
      "have", "had", "am", "we", "you", "he", "she", "they", "me", "us", "them", "tell", "give", "explain", "list",
      "write", "show", "find", "help", "make", "let", "any", "all", "some", "best", "good", "new", "describe",
      "define", "calculate", "compute", "compare", "summarize", "summarise", "translate", "name", "give", "create",
      "generate", "suggest", "recommend", "convert", "check", "fix", "get", "need", "want", "like", "one", "two",
      "after", "before", "since", "because", "while", "with", "without", "from", "by", "about", "also", "just",
      "now", "then", "than", "other", "another", "each", "every", "most", "many", "much", "more", "less", "few",
      "first", "last", "next", "such", "same", "different", "why's", "how's", "where's", "who's", "there's",
      "isn't", "aren't", "don't", "doesn't", "can't", "won't", "shouldn't", "wouldn't", "couldn't", "didn't",
      "send", "ask", "call", "see", "book", "buy", "use", "try", "add", "remove", "update", "delete", "set",
      "change", "reset", "open", "close", "start", "stop", "read", "look", "note", "remember", "consider"};
  return kWords.count(w) > 0;
}

// Capitalised words are names unless they are ordinary sentence openers
// ("What", "How", "Explain"...); all-capital words (acronyms) too. Short
// abbreviations ("ex.", "e.g.", "Mr.") do not end a sentence.
void add_names(std::string_view text, std::multiset<std::string>& out) {
  struct Word {
    std::string_view w;
    bool sentence_start;
  };
  std::vector<Word> ws;
  bool sentence_start = true;
  std::size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (std::isalpha(c)) {
      std::size_t j = i;
      while (j < text.size() && (std::isalnum(static_cast<unsigned char>(text[j])) || text[j] == '\'')) ++j;
      ws.push_back({text.substr(i, j - i), sentence_start});
      sentence_start = false;
      i = j;
      continue;
    }
    static const std::set<std::string> kAbbrev = {"ex", "eg", "e", "g", "i", "ie", "vs", "mr", "mrs", "ms", "dr", "st", "etc", "u", "s", "jr", "sr", "inc", "co"};
    if ((c == '.' && !(ws.size() && kAbbrev.count(lower(ws.back().w)))) || c == '!' || c == '?' || c == '\n' ||
        c == ':' || c == '"')
      sentence_start = true;
    ++i;
  }
  for (std::size_t k = 0; k < ws.size(); ++k) {
    const std::string_view w = ws[k].w;
    if (!std::isupper(static_cast<unsigned char>(w[0]))) continue;
    const std::string lw = lower(w);
    if (ordinary_capital(lw)) continue;
    // A sentence's first word counts too unless it is an ordinary opener:
    // "Jane needs a refund" / "Bob needs a refund" must not meet (a differing
    // first word costs a miss at worst).
    out.insert("name:" + lw);
  }
}

std::vector<std::string> words(std::string_view text) {
  std::vector<std::string> out;
  std::string cur;
  for (char ch : text) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || ch == '\'') cur += static_cast<char>(std::tolower(c));
    else if (!cur.empty()) out.push_back(std::move(cur)), cur.clear();
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

int negations(const std::vector<std::string>& ws) {
  static const std::set<std::string> kNeg = {"not", "no", "never", "none", "nobody", "nothing", "neither", "nor",
                                             "without", "cannot", "cant", "dont", "doesnt", "didnt", "isnt",
                                             "arent", "wasnt", "werent", "shouldnt", "wouldnt", "couldnt", "wont",
                                             "mustnt", "hasnt", "havent", "hadnt", "avoid"};
  int n = 0;
  for (const auto& w : ws) n += kNeg.count(w) || (w.size() > 3 && w.ends_with("n't")) ? 1 : 0;
  return n;
}

// Antonym stems: a word matches a stem of 5+ letters by prefix, a shorter one exactly.
constexpr std::array<std::pair<const char*, const char*>, 40> kAntonyms = {{
    {"increas", "decreas"}, {"enabl", "disabl"}, {"add", "remove"}, {"allow", "deny"}, {"buy", "sell"},
    {"open", "close"}, {"start", "stop"}, {"includ", "exclud"}, {"more", "less"}, {"up", "down"},
    {"before", "after"}, {"accept", "reject"}, {"lock", "unlock"}, {"maximum", "minimum"}, {"max", "min"},
    {"higher", "lower"}, {"raise", "lower"}, {"best", "worst"}, {"win", "lose"}, {"gain", "loss"},
    {"true", "false"}, {"right", "wrong"}, {"legal", "illegal"}, {"safe", "unsafe"}, {"possible", "impossible"},
    {"like", "dislike"}, {"agree", "disagree"}, {"connect", "disconnect"}, {"encrypt", "decrypt"},
    {"upload", "download"}, {"import", "export"}, {"push", "pull"}, {"fast", "slow"}, {"hot", "cold"},
    {"advantag", "disadvantag"}, {"pros", "cons"}, {"benefit", "risk"}, {"subscrib", "unsubscrib"},
    {"install", "uninstall"}, {"login", "logout"},
}};

bool has_stem(const std::vector<std::string>& ws, std::string_view stem) {
  for (const auto& w : ws)
    if (stem.size() >= 5 ? std::string_view(w).starts_with(stem) : w == stem) return true;
  return false;
}

}  // namespace

std::multiset<std::string> extract_entities(std::string_view text) {
  std::multiset<std::string> out;
  for (const Pattern& p : patterns()) add_matches(p, text, out);
  add_names(text, out);
  return out;
}

bool has_personal_data(std::string_view text) {
  for (const auto& e : extract_entities(text))
    if (e.starts_with("email:") || e.starts_with("phone:") || e.starts_with("id:")) return true;
  // A person's name: introduced as one ("my name is", "I'm", "Mr."...), or a
  // first and last name (two capitalised words inside a sentence). A single
  // capitalised word ("Canada", "Python") is not taken for one.
  static const pcre2_code* person = [] {
    int err = 0;
    PCRE2_SIZE off = 0;
    const char* re =
        R"re((?i:\bmy name is|\bi am|\bi'm|\bthis is|\bcall me|\bdear|\bmr\.?|\bmrs\.?|\bms\.?|\bdr\.?)\s+[A-Z][a-z]+)re"
        R"re(|(?<=[a-z,;] )[A-Z][a-z]+ [A-Z][a-z]+\b)re";
    pcre2_code* c = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(re), PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err, &off, nullptr);
    if (!c) throw std::logic_error("cache personal-name pattern does not compile");
    pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);
    return c;
  }();
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
      pcre2_match_data_create_from_pattern(person, nullptr), &pcre2_match_data_free);
  return pcre2_match(person, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), 0, 0, md.get(), nullptr) >= 0;
}

GuardFacts guard_facts(std::string_view prompt) {
  GuardFacts f;
  f.entities = extract_entities(prompt);
  const auto ws = words(prompt);
  f.negated = negations(ws) % 2 == 1;
  for (std::size_t i = 0; i < kAntonyms.size(); ++i) {
    if (has_stem(ws, kAntonyms[i].first)) f.stems_a |= 1ull << i;
    if (has_stem(ws, kAntonyms[i].second)) f.stems_b |= 1ull << i;
  }
  return f;
}

GuardVerdict check_guards(const GuardFacts& a, const GuardFacts& b) {
  GuardVerdict v;
  if (a.entities != b.entities) {
    v.entities_match = false;
    std::vector<std::string> diff;
    std::set_symmetric_difference(a.entities.begin(), a.entities.end(), b.entities.begin(), b.entities.end(),
                                  std::back_inserter(diff));
    v.why = "entity " + diff.front() + " on one side only";
  }
  if (a.negated != b.negated) {
    v.polarity_match = false;
    if (v.why.empty()) v.why = "negated on one side only";
  }
  // A pair reversed: one side holds only its first stem, the other only its second.
  const std::uint64_t a_only_x = a.stems_a & ~a.stems_b, a_only_y = a.stems_b & ~a.stems_a;
  const std::uint64_t b_only_x = b.stems_a & ~b.stems_b, b_only_y = b.stems_b & ~b.stems_a;
  if (const std::uint64_t rev = (a_only_x & b_only_y) | (a_only_y & b_only_x)) {
    v.polarity_match = false;
    const auto i = static_cast<std::size_t>(__builtin_ctzll(rev));
    if (v.why.empty()) v.why = std::string("reversed: ") + kAntonyms[i].first + "/" + kAntonyms[i].second;
  }
  return v;
}

GuardVerdict check_guards(std::string_view cached_prompt, std::string_view new_prompt) {
  return check_guards(guard_facts(cached_prompt), guard_facts(new_prompt));
}

}  // namespace tg::cache
