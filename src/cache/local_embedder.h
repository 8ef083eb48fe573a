// The built-in embedder: no model file, no network. Hashed features of the
// text (content-word stems weighted 1, stop words 0.25, word bigrams 0.5,
// character trigrams of content words 0.25 shared over the word), signed
// into `dims` buckets and L2-normalised, so cosine similarity is a dot
// product. It measures lexical overlap, not meaning: paraphrases that share
// few words score low (a miss, never a wrong answer), and prompts that share
// most words but differ in an entity or a negation score high, which is what
// the guards are for. For semantic recall in production, configure an
// OpenAI-compatible /v1/embeddings deployment instead. Pure; thread-safe.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace tg::cache {

std::vector<float> local_embedding(std::string_view text, std::uint32_t dims = 256);
float cosine(const std::vector<float>& a, const std::vector<float>& b);  // of two L2-normalised vectors

}  // namespace tg::cache
