#include "cache/local_embedder.h"

#include <cctype>
#include <cmath>
#include <set>
#include <string>

namespace tg::cache {
namespace {

std::uint64_t fnv1a(std::string_view s, std::uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

bool stop_word(const std::string& w) {
  static const std::set<std::string> kStop = {
      "a", "an", "the", "is", "are", "was", "were", "be", "been", "being", "am", "do", "does", "did", "i", "you",
      "he", "she", "it", "we", "they", "me", "my", "your", "our", "their", "his", "her", "its", "to", "of", "in",
      "on", "at", "for", "with", "by", "from", "as", "and", "or", "but", "if", "so", "that", "this", "these",
      "those", "there", "what", "which", "who", "whom", "how", "why", "when", "where", "can", "could", "should",
      "would", "will", "shall", "may", "might", "must", "have", "has", "had", "about", "into", "than", "then",
      "any", "some", "all", "most", "very", "just", "also", "get", "one", "it's", "i'm", "what's", "please"};
  return kStop.count(w) > 0;
}

// A light stemmer: enough that "tests"/"test", "testing"/"test" meet.
std::string stem(std::string w) {
  auto drop = [&](std::string_view suf, std::size_t keep) {
    if (w.size() >= suf.size() + keep && std::string_view(w).ends_with(suf)) {
      w.resize(w.size() - suf.size());
      return true;
    }
    return false;
  };
  drop("ing", 3) || drop("ed", 3) || drop("ies", 3) || drop("es", 4) || (w.size() > 3 && !w.ends_with("ss") && drop("s", 3));
  return w;
}

void add(std::vector<float>& v, std::string_view feature, std::uint64_t salt, float weight) {
  const std::uint64_t h = fnv1a(feature, salt);
  const std::size_t i = static_cast<std::size_t>(h % v.size());
  v[i] += (h >> 63) ? weight : -weight;
}

}  // namespace

std::vector<float> local_embedding(std::string_view text, std::uint32_t dims) {
  std::vector<float> v(dims, 0.0f);
  std::vector<std::string> ws;
  std::string cur;
  for (char ch : text) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || ch == '\'' || c >= 0x80) cur += static_cast<char>(std::tolower(c));
    else if (!cur.empty()) ws.push_back(std::move(cur)), cur.clear();
  }
  if (!cur.empty()) ws.push_back(std::move(cur));
  std::string prev;
  for (const auto& w : ws) {
    const bool stop = stop_word(w);
    const std::string s = stop ? w : stem(w);
    add(v, s, 1, stop ? 0.25f : 1.0f);
    if (!prev.empty()) add(v, prev + " " + s, 2, 0.5f);
    prev = s;
    if (stop || s.size() < 3) continue;
    const std::string padded = "<" + s + ">";
    const float share = 0.25f / static_cast<float>(padded.size() - 2);
    for (std::size_t i = 0; i + 3 <= padded.size(); ++i) add(v, std::string_view(padded).substr(i, 3), 3, share);
  }
  double norm = 0;
  for (float x : v) norm += static_cast<double>(x) * x;
  if (norm > 0) {
    const float inv = static_cast<float>(1.0 / std::sqrt(norm));
    for (float& x : v) x *= inv;
  }
  return v;
}

float cosine(const std::vector<float>& a, const std::vector<float>& b) {
  float dot = 0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) dot += a[i] * b[i];
  return dot;
}

}  // namespace tg::cache
