// Tokenizer: byte-level BPE compatible with OpenAI's tiktoken encodings
// cl100k_base and o200k_base, for counting tokens exactly as OpenAI bills
// them. Text is split by the encoding's pre-tokenizer pattern (PCRE2, UTF +
// Unicode properties, JIT), then each piece is merged by rank. Long pieces
// (a megabyte without spaces) merge in O(n log n), never O(n^2).
//
// Thread-safe after construction: encode()/count() keep per-call state only
// (PCRE2 match data is per thread). Ordinary encoding: the text of special
// tokens such as "<|endoftext|>" is counted as plain text, as tiktoken's
// encode_ordinary does.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tg::meter {

enum class Encoding { kCl100kBase, kO200kBase };

std::string_view encoding_name(Encoding e);
std::optional<Encoding> encoding_from_name(std::string_view name);
// OpenAI's published model families: gpt-4o, gpt-4.1, gpt-5, o1/o3/o4 use
// o200k_base; gpt-4, gpt-3.5-turbo and text-embedding-3/ada-002 use
// cl100k_base. nullopt for anything else (never a guess).
std::optional<Encoding> encoding_for_model(std::string_view model);

class Tokenizer {
 public:
  // Builds from a rank file's text ("<base64 bytes> <rank>" per line).
  // Throws std::invalid_argument naming the line when the file is malformed.
  Tokenizer(Encoding e, std::string_view rank_file);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // The built-in encodings, from the rank files compiled into the binary
  // (third_party/tiktoken-vocab). Built once, on first use.
  static const Tokenizer& builtin(Encoding e);

  // REQUIRES: `text` is valid UTF-8 (see is_valid_utf8); invalid input
  // throws std::invalid_argument.
  std::vector<std::uint32_t> encode(std::string_view text) const;
  // The number of tokens of `text`, or, once the count passes `limit`, some
  // number above `limit` (counting stops there: refusing a prompt that can
  // never be admitted costs about `limit` tokens of work, not the prompt's).
  std::size_t count(std::string_view text, std::size_t limit = std::numeric_limits<std::size_t>::max()) const;

  Encoding encoding() const { return encoding_; }
  std::size_t vocabulary_size() const;

 private:
  bool encode_until(std::string_view text, std::size_t limit, std::vector<std::uint32_t>& out) const;
  struct Impl;
  Encoding encoding_;
  std::unique_ptr<Impl> impl_;
};

bool is_valid_utf8(std::string_view s);

}  // namespace tg::meter
