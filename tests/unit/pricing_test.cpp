#include <gtest/gtest.h>

#include "core/config_load.h"
#include "meter/chat_count.h"
#include "meter/pricing.h"

namespace tg::meter {
namespace {

TEST(Pricing, ParsesUsdExactlyIntoMicros) {
  EXPECT_EQ(parse_usd_micros("0.15"), 150'000);
  EXPECT_EQ(parse_usd_micros("2.5"), 2'500'000);
  EXPECT_EQ(parse_usd_micros("10"), 10'000'000);
  EXPECT_EQ(parse_usd_micros("0.000001"), 1);
  EXPECT_EQ(parse_usd_micros("0"), 0);
  EXPECT_EQ(parse_usd_micros(".5"), 500'000);
  for (const char* bad : {"", ".", "1.2.3", "-1", "1e3", "0.0000001", "abc", "1,5", " 1"})
    EXPECT_FALSE(parse_usd_micros(bad)) << bad;
}

TEST(Pricing, CostIsIntegerAndRoundedOncePerRequest) {
  Price p{150'000, 600'000, 75'000};  // gpt-4o-mini-like: $0.15 / $0.60 / $0.075 per 1M
  // 1,000 prompt + 500 completion = 150 + 300 = 450 micro-dollars exactly.
  EXPECT_EQ(cost_micros(p, 1000, 500, 0), 450);
  // 400 of the prompt cached: 600*0.15 + 400*0.075 + 500*0.6 = 90 + 30 + 300.
  EXPECT_EQ(cost_micros(p, 1000, 500, 400), 420);
  // Sub-micro amounts round half up, once: 3 tokens * $0.15/1M = 0.45 -> 0; 4 -> 0.6 -> 1.
  EXPECT_EQ(cost_micros(p, 3, 0, 0), 0);
  EXPECT_EQ(cost_micros(p, 4, 0, 0), 1);
  // Cached tokens above the prompt are clamped, never negative.
  EXPECT_EQ(cost_micros(p, 10, 0, 50), cost_micros(p, 10, 0, 10));
  // No drift: a million 1-token requests sum to what one million-token request costs, +- rounding per request.
  std::int64_t sum = 0;
  for (int i = 0; i < 1'000'000; ++i) sum += cost_micros(p, 7, 0, 0);  // 1.05 -> 1 each
  EXPECT_EQ(sum, 1'000'000);
  EXPECT_EQ(cost_micros(p, 7'000'000, 0, 0), 1'050'000);
  // Huge counts do not overflow: 10^12 tokens at $1,000 per 1M.
  Price big{1'000'000'000, 0, 0};
  EXPECT_EQ(cost_micros(big, 1'000'000'000'000ULL, 0, 0), 1'000'000'000'000'000LL);
}

// Anthropic-style prompt caching (claude-sonnet-4-like: $3 input, $15 output,
// $0.30 cache read, $3.75 cache write per 1M). prompt_tokens includes the
// reads and the writes, as OpenAI-shaped usage does.
TEST(Pricing, CacheReadsAtTheCachedPriceAndWritesAtTheWritePrice) {
  Price p{3'000'000, 15'000'000, 300'000, 3'750'000};
  // 10,000 prompt tokens of which 9,000 read from the cache, 100 output:
  // 1,000*3 + 9,000*0.3 + 100*15 = 3,000 + 2,700 + 1,500 micro-dollars.
  EXPECT_EQ(cost_micros(p, 10'000, 100, 9'000, 0), 7'200);
  // Billing the reads as plain input (LiteLLM #11789) would cost 10x for them.
  EXPECT_EQ(cost_micros(p, 10'000, 100, 0, 0), 31'500);
  // 10,000 prompt tokens of which 8,000 written to the cache:
  // 2,000*3 + 8,000*3.75 + 100*15 = 6,000 + 30,000 + 1,500.
  EXPECT_EQ(cost_micros(p, 10'000, 100, 0, 8'000), 37'500);
  // Both: 1,000 plain, 4,000 read, 5,000 written.
  EXPECT_EQ(cost_micros(p, 10'000, 0, 4'000, 5'000), 3'000 + 1'200 + 18'750);
  // Reads and writes above the prompt are clamped (reads first): never a negative remainder.
  EXPECT_EQ(cost_micros(p, 10, 0, 8, 50), cost_micros(p, 10, 0, 8, 2));
  EXPECT_EQ(cost_micros(p, 10, 0, 50, 50), cost_micros(p, 10, 0, 10, 0));
  // Without the fifth argument nothing is a write: the OpenAI-compatible path is unchanged.
  EXPECT_EQ(cost_micros(p, 10'000, 100, 9'000), 7'200);
}

TEST(Pricing, CacheWritePriceDefaultsToTheInputPrice) {
  const char* yaml = R"(
orgs: [{ id: demo }]
tenants: [{ id: t, org: demo }]
models:
  - alias: a
    price: { input_per_1m: "3", output_per_1m: "15", cached_input_per_1m: "0.30" }
    deployments: [{ id: a1, provider: sim }]
  - alias: b
    price: { input_per_1m: "3", output_per_1m: "15", cached_input_per_1m: "0.30", cache_write_per_1m: "3.75" }
    deployments: [{ id: b1, provider: sim }]
)";
  auto r = load_config(yaml, "t.yaml", [](const std::string&) -> std::optional<std::string> { return std::nullopt; });
  ASSERT_TRUE(std::holds_alternative<Config>(r)) << std::get<ConfigProblems>(r).joined();
  const Config& c = std::get<Config>(r);
  EXPECT_EQ(c.models[0].price.cache_write_per_1m, 3'000'000);
  EXPECT_EQ(c.models[1].price.cache_write_per_1m, 3'750'000);
}

TEST(ChatCount, AddsOpenAIsFraming) {
  const auto& tok = Tokenizer::builtin(Encoding::kO200kBase);
  // Empty conversation: just the reply priming.
  EXPECT_EQ(count_chat_tokens(tok, {}), 3u);
  std::vector<ChatTurn> turns{{"system", "", "Be brief."}, {"user", "bob", "hello world"}};
  EXPECT_EQ(count_chat_tokens(tok, turns),
            3 + (3 + 1 + tok.count("Be brief.")) + (3 + 1 + tok.count("hello world") + 1 + tok.count("bob")));
}

}  // namespace
}  // namespace tg::meter
