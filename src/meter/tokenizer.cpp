#include "meter/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <limits>
#include <mutex>
#include <queue>
#include <stdexcept>
#include <string>
#include <unordered_map>

extern "C" {
extern const char tg_vocab_cl100k_begin[], tg_vocab_cl100k_end[];
extern const char tg_vocab_o200k_begin[], tg_vocab_o200k_end[];
}

namespace tg::meter {
namespace {

constexpr std::uint32_t kNoRank = std::numeric_limits<std::uint32_t>::max();

// The encodings' pre-tokenizer patterns, as published with tiktoken (the
// `pat_str` of each encoding). Compatibility requires them verbatim.
constexpr const char* kCl100kPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kO200kPattern =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
    R"(|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
    R"(|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

int b64(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

bool decode_base64(std::string_view in, std::string& out) {
  std::uint32_t acc = 0;
  int bits = 0;
  for (char ch : in) {
    if (ch == '=') break;
    int v = b64(static_cast<unsigned char>(ch));
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return true;
}

}  // namespace

struct Tokenizer::Impl {
  std::string bytes;  // every token's bytes, back to back; the map's keys view into it
  std::unordered_map<std::string_view, std::uint32_t> ranks;
  pcre2_code* code = nullptr;
  bool jit = false;
  std::size_t longest = 1;  // bytes of the longest token: a piece of n bytes is at least n / longest tokens

  ~Impl() {
    if (code) pcre2_code_free(code);
  }

  std::uint32_t rank(std::string_view s) const {
    auto it = ranks.find(s);
    return it == ranks.end() ? kNoRank : it->second;
  }

  void merge_small(std::string_view piece, std::vector<std::uint32_t>& out) const;
  void merge_large(std::string_view piece, std::vector<std::uint32_t>& out) const;
};

std::string_view encoding_name(Encoding e) {
  return e == Encoding::kCl100kBase ? "cl100k_base" : "o200k_base";
}

std::optional<Encoding> encoding_from_name(std::string_view name) {
  if (name == "cl100k_base") return Encoding::kCl100kBase;
  if (name == "o200k_base") return Encoding::kO200kBase;
  return std::nullopt;
}

std::optional<Encoding> encoding_for_model(std::string_view m) {
  auto starts = [&](std::string_view p) { return m.substr(0, p.size()) == p; };
  for (std::string_view p : {"gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o", "gpt-oss"})
    if (starts(p)) return Encoding::kO200kBase;
  for (std::string_view p : {"gpt-4", "gpt-3.5-turbo", "gpt-35-turbo", "text-embedding-3", "text-embedding-ada-002"})
    if (starts(p)) return Encoding::kCl100kBase;
  return std::nullopt;
}

Tokenizer::Tokenizer(Encoding e, std::string_view rank_file) : encoding_(e), impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.bytes.reserve(rank_file.size());
  std::vector<std::pair<std::size_t, std::size_t>> spans;  // (offset, length) into bytes
  std::vector<std::uint32_t> ranks;
  std::size_t line_no = 0, pos = 0;
  while (pos < rank_file.size()) {
    std::size_t eol = rank_file.find('\n', pos);
    if (eol == std::string_view::npos) eol = rank_file.size();
    std::string_view line = rank_file.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    std::size_t sp = line.find(' ');
    std::uint32_t r = 0;
    bool ok = sp != std::string_view::npos && sp + 1 < line.size();
    for (std::size_t i = ok ? sp + 1 : line.size(); ok && i < line.size(); ++i) {
      if (line[i] < '0' || line[i] > '9') ok = false;
      else r = r * 10 + static_cast<std::uint32_t>(line[i] - '0');
    }
    std::size_t before = m.bytes.size();
    if (!ok || !decode_base64(line.substr(0, sp), m.bytes) || m.bytes.size() == before)
      throw std::invalid_argument("rank file line " + std::to_string(line_no) + ": expected '<base64> <rank>'");
    spans.emplace_back(before, m.bytes.size() - before);
    ranks.push_back(r);
  }
  m.ranks.reserve(spans.size());
  for (std::size_t i = 0; i < spans.size(); ++i) {
    m.ranks.emplace(std::string_view(m.bytes).substr(spans[i].first, spans[i].second), ranks[i]);
    m.longest = std::max(m.longest, spans[i].second);
  }
  for (int b = 0; b < 256; ++b) {
    char c = static_cast<char>(b);
    if (!m.ranks.count(std::string_view(&c, 1)))
      throw std::invalid_argument("rank file lacks the single byte " + std::to_string(b));
  }
  int err = 0;
  PCRE2_SIZE off = 0;
  const char* pattern = e == Encoding::kCl100kBase ? kCl100kPattern : kO200kPattern;
  m.code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                         &err, &off, nullptr);
  if (!m.code) throw std::logic_error("pre-tokenizer pattern does not compile");
  m.jit = pcre2_jit_compile(m.code, PCRE2_JIT_COMPLETE) == 0;  // else the interpreter
}

Tokenizer::~Tokenizer() = default;

std::size_t Tokenizer::vocabulary_size() const { return impl_->ranks.size(); }

const Tokenizer& Tokenizer::builtin(Encoding e) {
  static std::once_flag once[2];
  static std::unique_ptr<Tokenizer> tok[2];
  int i = e == Encoding::kCl100kBase ? 0 : 1;
  std::call_once(once[i], [&] {
    std::string_view file = i == 0 ? std::string_view(tg_vocab_cl100k_begin, tg_vocab_cl100k_end - tg_vocab_cl100k_begin)
                                   : std::string_view(tg_vocab_o200k_begin, tg_vocab_o200k_end - tg_vocab_o200k_begin);
    tok[i] = std::make_unique<Tokenizer>(e, file);
  });
  return *tok[i];
}

// tiktoken's merge: repeatedly join the adjacent pair whose bytes have the
// lowest rank (the leftmost on ties). O(n^2) but fastest for short pieces.
void Tokenizer::Impl::merge_small(std::string_view piece, std::vector<std::uint32_t>& out) const {
  const std::size_t n = piece.size();
  // parts[i] = (start, rank of merging part i with part i+1)
  std::array<std::pair<std::uint32_t, std::uint32_t>, 130> buf;
  std::size_t count = 0;
  for (std::size_t i = 0; i + 1 < n; ++i) buf[count++] = {static_cast<std::uint32_t>(i), rank(piece.substr(i, 2))};
  buf[count++] = {static_cast<std::uint32_t>(n - 1), kNoRank};
  buf[count++] = {static_cast<std::uint32_t>(n), kNoRank};
  auto pair_rank = [&](std::size_t i) -> std::uint32_t {
    if (i + 3 < count) return rank(piece.substr(buf[i].first, buf[i + 3].first - buf[i].first));
    return kNoRank;
  };
  for (;;) {
    std::uint32_t best = kNoRank;
    std::size_t at = 0;
    for (std::size_t i = 0; i + 1 < count; ++i)
      if (buf[i].second < best) best = buf[i].second, at = i;
    if (best == kNoRank) break;
    if (at > 0) buf[at - 1].second = pair_rank(at - 1);
    buf[at].second = pair_rank(at);
    for (std::size_t k = at + 1; k + 1 < count; ++k) buf[k] = buf[k + 1];
    --count;
  }
  for (std::size_t i = 0; i + 1 < count; ++i)
    out.push_back(rank(piece.substr(buf[i].first, buf[i + 1].first - buf[i].first)));
}

// The same merge order with a heap and a linked list: O(n log n), for long
// pieces (a minified file, a base64 blob, a megabyte of one letter).
void Tokenizer::Impl::merge_large(std::string_view piece, std::vector<std::uint32_t>& out) const {
  const std::size_t n = piece.size();
  std::vector<std::uint32_t> next(n), prev(n), version(n, 0);
  std::vector<char> alive(n, 1);
  for (std::size_t i = 0; i < n; ++i) {
    next[i] = static_cast<std::uint32_t>(i + 1);  // n marks the end
    prev[i] = static_cast<std::uint32_t>(i == 0 ? n : i - 1);
  }
  auto end_of = [&](std::uint32_t i) -> std::uint32_t { return next[i]; };  // part i spans [i, next[i])
  auto pair_rank = [&](std::uint32_t i) -> std::uint32_t {
    std::uint32_t j = next[i];
    if (j >= n) return kNoRank;
    return rank(piece.substr(i, end_of(j) - i));
  };
  struct Entry {
    std::uint32_t rank, start, version;
    bool operator>(const Entry& o) const { return rank != o.rank ? rank > o.rank : start > o.start; }
  };
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
  for (std::uint32_t i = 0; i + 1 < n; ++i) {
    std::uint32_t r = pair_rank(i);
    if (r != kNoRank) heap.push({r, i, 0});
  }
  while (!heap.empty()) {
    Entry e = heap.top();
    heap.pop();
    if (!alive[e.start] || version[e.start] != e.version) continue;
    std::uint32_t i = e.start, j = next[i];
    // merge j into i
    alive[j] = 0;
    next[i] = next[j];
    if (next[j] < n) prev[next[j]] = i;
    ++version[i];
    std::uint32_t r = pair_rank(i);
    if (r != kNoRank) heap.push({r, i, version[i]});
    if (prev[i] < n) {
      std::uint32_t p = prev[i];
      ++version[p];
      std::uint32_t pr = pair_rank(p);
      if (pr != kNoRank) heap.push({pr, p, version[p]});
    }
  }
  for (std::uint32_t i = 0; i < n; i = next[i]) out.push_back(rank(piece.substr(i, next[i] - i)));
}

// Encodes `text` piece by piece into `out`, stopping once `out` holds more
// than `limit` tokens (or would: a long piece is first weighed by its lower
// bound, n bytes / the longest token). Returns false when it stopped early.
bool Tokenizer::encode_until(std::string_view text, std::size_t limit, std::vector<std::uint32_t>& out) const {
  if (!is_valid_utf8(text)) throw std::invalid_argument("text is not valid UTF-8");
  // Match data is per thread and reused (two ovector slots are all we read);
  // the JIT entry point skips the interpreter's per-call checks.
  struct MatchData {
    pcre2_match_data* md = pcre2_match_data_create(2, nullptr);
    ~MatchData() { pcre2_match_data_free(md); }
  };
  thread_local MatchData tls;
  pcre2_match_data* md = tls.md;
  auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  PCRE2_SIZE offset = 0;
  while (offset < text.size()) {
    if (out.size() > limit) return false;
    int rc = impl_->jit ? pcre2_jit_match(impl_->code, subject, text.size(), offset, 0, md, nullptr)
                        : pcre2_match(impl_->code, subject, text.size(), offset, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc < 0) break;  // the patterns match every character; nothing is left over
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    PCRE2_SIZE start = ov[0], end = ov[1];
    if (end <= start) {  // never for these patterns; guard against a loop
      ++offset;
      continue;
    }
    std::string_view piece = text.substr(start, end - start);
    std::uint32_t whole = impl_->rank(piece);
    if (whole != kNoRank) out.push_back(whole);
    else if (piece.size() <= 128) impl_->merge_small(piece, out);
    else if (out.size() + (piece.size() + impl_->longest - 1) / impl_->longest > limit) return false;
    else impl_->merge_large(piece, out);
    offset = end;
  }
  return out.size() <= limit;
}

std::vector<std::uint32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<std::uint32_t> out;
  out.reserve(text.size() / 3 + 1);
  encode_until(text, std::numeric_limits<std::size_t>::max(), out);
  return out;
}

std::size_t Tokenizer::count(std::string_view text, std::size_t limit) const {
  thread_local std::vector<std::uint32_t> ids;  // reused: counting keeps no ids
  ids.clear();
  const bool whole = encode_until(text, limit, ids);
  const std::size_t n = whole ? ids.size() : std::max(ids.size(), limit + 1);
  if (ids.capacity() > (1u << 20)) std::vector<std::uint32_t>().swap(ids);  // a huge prompt's buffer is not kept
  return n;
}

bool is_valid_utf8(std::string_view s) {
  std::size_t i = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  while (i < s.size()) {
    unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    std::uint32_t cp;
    if ((c & 0xe0) == 0xc0) len = 2, cp = c & 0x1f;
    else if ((c & 0xf0) == 0xe0) len = 3, cp = c & 0x0f;
    else if ((c & 0xf8) == 0xf0) len = 4, cp = c & 0x07;
    else return false;
    if (i + len > s.size()) return false;
    for (std::size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += len;
  }
  return true;
}

}  // namespace tg::meter
