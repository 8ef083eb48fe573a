// Tokenizer throughput (a benchmark: prints numbers, never fails).
//   build/bench/tokenizer_bench
// Mixed English prose, code, and a 1 MB string without spaces (the
// O(n log n) merge path), for both built-in encodings.
#include <benchmark/benchmark.h>

#include <string>

#include "meter/tokenizer.h"

namespace {

std::string english(std::size_t bytes) {
  static const char* kWords[] = {"the", "gateway", "admits", "each", "request", "fairly", "while", "tenants",
                                 "share", "capacity,", "and", "budgets", "are", "enforced.", "It", "counts",
                                 "tokens", "exactly", "as", "OpenAI", "bills", "them;", "nothing", "is", "guessed."};
  std::string s;
  unsigned x = 1;
  while (s.size() < bytes) {
    x = x * 1103515245 + 12345;
    s += kWords[(x >> 16) % (sizeof kWords / sizeof *kWords)];
    s += (x >> 8) % 17 == 0 ? "\n" : " ";
  }
  return s;
}

std::string code(std::size_t bytes) {
  std::string s;
  while (s.size() < bytes)
    s += "for (std::size_t i = 0; i < n; ++i) {\n    total += weights[i] * values[i]; // accumulate\n}\n";
  return s;
}

void run(benchmark::State& state, tg::meter::Encoding e, const std::string& text) {
  const auto& tok = tg::meter::Tokenizer::builtin(e);
  std::size_t tokens = 0;
  for (auto _ : state) {
    tokens = tok.count(text);
    benchmark::DoNotOptimize(tokens);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
  state.counters["tokens"] = static_cast<double>(tokens);
}

const std::string kEnglish = english(1 << 20);
const std::string kCode = code(1 << 20);
const std::string kNoSpaces(1 << 20, 'a');
const std::string kNoSpacesMixed = [] {
  std::string s;
  unsigned x = 7;
  while (s.size() < (1u << 20)) {
    x = x * 1103515245 + 12345;
    s += static_cast<char>('a' + (x >> 16) % 26);
  }
  return s;
}();

}  // namespace

BENCHMARK_CAPTURE(run, cl100k_english_1MB, tg::meter::Encoding::kCl100kBase, kEnglish)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(run, o200k_english_1MB, tg::meter::Encoding::kO200kBase, kEnglish)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(run, cl100k_code_1MB, tg::meter::Encoding::kCl100kBase, kCode)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(run, cl100k_1MB_one_letter, tg::meter::Encoding::kCl100kBase, kNoSpaces)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(run, cl100k_1MB_random_letters, tg::meter::Encoding::kCl100kBase, kNoSpacesMixed)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(run, o200k_1MB_random_letters, tg::meter::Encoding::kO200kBase, kNoSpacesMixed)->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
