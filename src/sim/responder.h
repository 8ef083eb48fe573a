// Responder writes the sim engine's replies in OpenAI's wire format: the same
// request always gets the same text (seeded by the prompt, model and choice
// index), with `usage` that matches what was produced. Pure; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "api/request.h"
#include "core/config.h"

namespace tg::sim {

struct Generation {
  std::vector<std::vector<std::string>> choices;  // tokens per choice (each a text piece)
  std::uint64_t prompt_tokens = 0;
  std::uint64_t completion_tokens = 0;  // summed over choices
  bool truncated = false;               // stopped by max_tokens: finish_reason "length"
};

class Responder {
 public:
  Responder(const SimProfile& profile, std::string model) : profile_(profile), model_(std::move(model)) {}

  Generation generate(const api::ParsedRequest& req) const;

  // Non-streamed body for chat.completions / completions.
  std::string completion_body(const api::ParsedRequest& req, const Generation& g,
                              const std::string& id, std::int64_t created) const;
  // Streamed chunks, in order, each one SSE data payload (without "[DONE]").
  // The usage chunk is always last and always present (include_usage is
  // forced on upstream; the relay strips it when the client did not ask).
  std::vector<std::string> stream_chunks(const api::ParsedRequest& req, const Generation& g,
                                         const std::string& id, std::int64_t created) const;
  std::string embeddings_body(const api::ParsedRequest& req) const;

  // The sim's deterministic embedding: hashed character trigrams and words,
  // L2-normalised, `dims` long.
  static std::vector<float> embed(const std::string& text, std::uint32_t dims);

  // The sim engine counts prompts with the real o200k_base tokenizer (chat
  // framing included), as an OpenAI engine would report them.
  static std::uint64_t count_prompt_tokens(const api::ParsedRequest& req);

 private:
  SimProfile profile_;
  std::string model_;
};

}  // namespace tg::sim
