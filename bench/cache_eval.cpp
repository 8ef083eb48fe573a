// cache_eval: false hits of the semantic cache on public data, at a range of
// similarity thresholds, plain cosine against cosine + guards.
//  1. Quora Question Pairs (the subset GPTCache publishes; ../shared/data):
//     each pair is a lookup of `b` against a cache holding `a`; a hit is
//     right when the pair is labelled the same question. Precision = right
//     hits / hits; hit rate = hits / pairs; recall = right hits / same pairs.
//  2. Entity-swapped pairs generated from the same questions (a number, a
//     capitalised name, an email or a date changed) plus negated ones: every
//     hit there is a false hit (the wrong user's answer).
// Usage: cache_eval [--pairs FILE] [--limit N]. Prints tables; never fails.
#include <boost/json.hpp>
#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <regex>
#include <string>
#include <vector>

#include "cache/guards.h"
#include "cache/local_embedder.h"

namespace json = boost::json;
using namespace tg::cache;

struct Pair {
  std::string a, b;
  bool same = false;
};

// A copy of `q` with one entity changed, or "" when it has none we can swap.
std::string swap_entity(const std::string& q, std::size_t salt) {
  static const std::regex num(R"(\b\d+\b)");
  std::smatch m;
  if (std::regex_search(q, m, num)) {
    const long v = std::stol(m.str().substr(0, 9));
    return m.prefix().str() + std::to_string(v + 1 + static_cast<long>(salt % 7)) + m.suffix().str();
  }
  static const char* kNames[] = {"Jane", "Bob", "Priya", "Chen", "Maria", "Omar", "Lena", "Kofi"};
  // A proper noun inside a sentence (after a lower-case word), not a sentence's first word.
  static const std::regex name(R"(([a-z,] )([A-Z][a-z]{2,})\b)");
  if (std::regex_search(q, m, name)) {
    std::string repl = kNames[salt % 8];
    if (repl == m.str(2)) repl = kNames[(salt + 1) % 8];
    return m.prefix().str() + m.str(1) + repl + m.suffix().str();
  }
  return "";
}

std::string negate(const std::string& q) {
  static const std::regex aux(R"(\b(should|can|do|does|is|are|will|would|could) (I|you|we|they|it|he|she)\b)",
                              std::regex::icase);
  std::smatch m;
  if (!std::regex_search(q, m, aux)) return "";
  return m.prefix().str() + m.str(1) + " " + m.str(2) + " not" + m.suffix().str();
}

int main(int argc, char** argv) {
  std::string path = "../shared/data/qqp_pairs.jsonl";
  std::size_t limit = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k == "--pairs") path = argv[i + 1];
    else if (k == "--limit") limit = std::stoul(argv[i + 1]);
  }
  std::ifstream in(path);
  if (!in) {
    std::cerr << "cache_eval: cannot read " << path << " (--pairs FILE)\n";
    return 2;
  }
  std::vector<Pair> pairs;
  for (std::string line; std::getline(in, line) && (!limit || pairs.size() < limit);) {
    auto v = json::parse(line).as_object();
    pairs.push_back({std::string(v.at("a").as_string()), std::string(v.at("b").as_string()), v.at("same").as_int64() == 1});
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<float> cos(pairs.size());
  std::vector<char> guard_ok(pairs.size());
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    cos[i] = cosine(local_embedding(pairs[i].a), local_embedding(pairs[i].b));
    guard_ok[i] = check_guards(pairs[i].a, pairs[i].b).pass();
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::size_t same = 0;
  for (const auto& p : pairs) same += p.same;
  fmt::print("QQP: {} pairs ({} the same question, {} near-duplicates that are not), local embedder (512 dims)\n"
             "  {:.1f} us per pair for two embeddings and the guards\n\n",
             pairs.size(), same, pairs.size() - same, 1e6 * secs / static_cast<double>(pairs.size()));
  fmt::print("{:>9} | {:>26} | {:>26}\n", "", "plain cosine", "cosine + guards");
  fmt::print("{:>9} | {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8}\n", "threshold", "precis.", "hit rate", "recall",
             "precis.", "hit rate", "recall");
  for (double t : {0.60, 0.70, 0.75, 0.80, 0.85, 0.90, 0.95}) {
    std::size_t h = 0, hr = 0, g = 0, gr = 0;
    for (std::size_t i = 0; i < pairs.size(); ++i) {
      if (cos[i] < t) continue;
      ++h;
      hr += pairs[i].same;
      if (guard_ok[i]) {
        ++g;
        gr += pairs[i].same;
      }
    }
    auto pc = [](std::size_t a, std::size_t b) { return b ? 100.0 * static_cast<double>(a) / static_cast<double>(b) : 100.0; };
    fmt::print("{:>9.2f} | {:>7.1f}% {:>7.2f}% {:>7.2f}% | {:>7.1f}% {:>7.2f}% {:>7.2f}%\n", t, pc(hr, h),
               pc(h, pairs.size()), pc(hr, same), pc(gr, g), pc(g, pairs.size()), pc(gr, same));
  }

  // Entity swaps and negations: every hit is a false hit.
  std::vector<std::pair<std::string, std::string>> swapped, negated;
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    if (auto s = swap_entity(pairs[i].a, i); !s.empty() && s != pairs[i].a) swapped.emplace_back(pairs[i].a, s);
    if (auto n = negate(pairs[i].a); !n.empty()) negated.emplace_back(pairs[i].a, n);
  }
  const std::string emails[][2] = {
      {"I can't log into my account, my email is jane.doe@example.com. Please send a reset link.",
       "I can't log into my account, my email is bob.smith@example.com. Please send a reset link."},
      {"Refund order 88213 to card ending 4242", "Refund order 88213 to card ending 4343"},
      {"What is the balance of account DE44-5001-0517?", "What is the balance of account DE44-5001-0518?"},
      {"Book a table for 2 on March 3rd", "Book a table for 2 on March 4th"},
  };
  for (const auto& e : emails) swapped.emplace_back(e[0], e[1]);
  fmt::print("\nFalse hits on generated pairs that must never hit ({} entity swaps, {} negations):\n", swapped.size(),
             negated.size());
  fmt::print("{:>9} | {:>14} {:>14} | {:>14} {:>14}\n", "threshold", "swaps, plain", "swaps, guarded", "neg., plain",
             "neg., guarded");
  std::vector<float> sc, nc;
  std::vector<char> sg, ng;
  int shown = 0;
  for (const auto& [a, b] : swapped) {
    sc.push_back(cosine(local_embedding(a), local_embedding(b)));
    sg.push_back(check_guards(a, b).pass());
    if (std::getenv("TG_EVAL_SHOW") && sg.back() && sc.back() >= 0.85 && shown++ < 15)
      fmt::print("  passes: '{}' / '{}'\n", a, b);
  }
  for (const auto& [a, b] : negated) {
    nc.push_back(cosine(local_embedding(a), local_embedding(b)));
    ng.push_back(check_guards(a, b).pass());
  }
  for (double t : {0.70, 0.80, 0.85, 0.90, 0.95}) {
    std::size_t sp = 0, sgd = 0, np = 0, ngd = 0;
    for (std::size_t i = 0; i < sc.size(); ++i)
      if (sc[i] >= t) ++sp, sgd += sg[i];
    for (std::size_t i = 0; i < nc.size(); ++i)
      if (nc[i] >= t) ++np, ngd += ng[i];
    auto pc = [](std::size_t a, std::size_t b) { return b ? 100.0 * static_cast<double>(a) / static_cast<double>(b) : 0.0; };
    fmt::print("{:>9.2f} | {:>13.2f}% {:>13.2f}% | {:>13.2f}% {:>13.2f}%\n", t, pc(sp, sc.size()), pc(sgd, sc.size()),
               pc(np, nc.size()), pc(ngd, nc.size()));
  }
  return 0;
}
