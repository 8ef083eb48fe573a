// The cache core: guards, partitions by construction, exact and semantic
// tiers (flat scan and HNSW), TTL, the per-tenant and store-wide bounds and
// the byte count behind them, purges; and the property that matters most: a
// lookup never returns another partition's entry.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "cache/guards.h"
#include "cache/local_embedder.h"
#include "cache/request_facts.h"
#include "cache/store.h"

namespace tg::cache {
namespace {

TEST(CacheGuards, EntitiesOfEveryKind) {
  const auto e = extract_entities(
      "Send the invoice for order AB-1234 ($1,250.00) to jane.doe@example.com or call +1 (415) 555-0100 "
      "before March 3rd, see https://example.com/x. Ask Priya about \"blue plan\".");
  for (const char* want : {"id:ab-1234", "num:$1250.00", "email:jane.doe@example.com", "phone:14155550100",
                           "date:march 3rd", "url:https://example.com/x", "name:priya", "quote:blue plan"})
    EXPECT_TRUE(e.count(want)) << want;
  EXPECT_FALSE(e.count("name:send")) << "a sentence's ordinary first word is not a name";
  EXPECT_FALSE(check_guards("Refund $5", "Refund €5").pass()) << "amounts keep their currency";
}

TEST(CacheGuards, AnyEntityDifferenceIsAMiss) {
  const auto v = check_guards("I can't log into my account, my email is jane@example.com",
                              "I can't log into my account, my email is bob@example.com");
  EXPECT_FALSE(v.pass());
  EXPECT_FALSE(v.entities_match);
  EXPECT_EQ(v.why, "entity email:bob@example.com on one side only");
  EXPECT_FALSE(check_guards("Refund order 88213", "Refund order 88214").pass());
  EXPECT_FALSE(check_guards("between 5 and 6", "between 6 and 6").pass()) << "a multiset, not a set";
  EXPECT_FALSE(check_guards("Jane needs a refund", "Bob needs a refund").pass());
  EXPECT_TRUE(check_guards("What is the capital of France?", "what's the capital of France").pass());
}

TEST(CacheGuards, PersonalDataIsWhatIdentifiesSomeone) {
  for (const char* yes : {"my email is jane@example.com", "call +1 415 555 0100", "account AB-12345 is locked",
                          "My name is Priya and I need help", "Please tell Mr. Smith", "I met with Jane Doe yesterday"})
    EXPECT_TRUE(has_personal_data(yes)) << yes;
  for (const char* no : {"What are the shipping costs to Canada?", "How do I install Python on Windows?",
                         "Long answers are fine.", "The capital of France is Paris."})
    EXPECT_FALSE(has_personal_data(no)) << no;
}

TEST(CacheGuards, NegationAndReversalAreMisses) {
  EXPECT_FALSE(check_guards("Should I take ibuprofen?", "Should I not take ibuprofen?").polarity_match);
  EXPECT_FALSE(check_guards("How do I increase the dose?", "How do I decrease the dose?").polarity_match);
  EXPECT_FALSE(check_guards("How to enable 2FA", "How to disable 2FA").pass());
  EXPECT_TRUE(check_guards("Why can't I log in?", "Why can I not log in?").polarity_match) << "both negated";
}

TEST(CacheEmbedder, SimilarTextsAreCloseAndVectorsAreNormalised) {
  const auto a = local_embedding("How do I reset my password?");
  const auto b = local_embedding("how can I reset my password");
  const auto c = local_embedding("Best pizza places in Naples");
  EXPECT_NEAR(cosine(a, a), 1.0f, 1e-5);
  EXPECT_GT(cosine(a, b), 0.8f);
  EXPECT_LT(cosine(a, c), 0.2f);
}

api::ParsedRequest parse(const std::string& body) {
  auto r = api::parse_request(api::Endpoint::kChatCompletions, body);
  EXPECT_TRUE(r.ok()) << body;
  return std::move(*r);
}

TEST(CacheKeys, PartitionsSeparateWhatMustNeverMeet) {
  const std::string chat = R"({"model":"m","messages":[{"role":"user","content":"hi"}]})";
  const Key alice = make_key(parse(chat), "acme", "alice", false, {});
  EXPECT_NE(alice.partition, make_key(parse(chat), "acme", "bob", false, {}).partition) << "users";
  EXPECT_NE(alice.partition, make_key(parse(chat), "globex", "alice", false, {}).partition) << "tenants";
  EXPECT_EQ(make_key(parse(chat), "acme", "alice", true, {}).partition,
            make_key(parse(chat), "acme", "bob", true, {}).partition) << "tenant scope is shared inside the tenant";
  for (const char* other : {
           R"({"model":"m","messages":[{"role":"system","content":"be terse"},{"role":"user","content":"hi"}]})",
           R"({"model":"m2","messages":[{"role":"user","content":"hi"}]})",
           R"({"model":"m","temperature":0.2,"messages":[{"role":"user","content":"hi"}]})",
           R"({"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]})",
           R"({"model":"m","response_format":{"type":"json_object"},"messages":[{"role":"user","content":"hi"}]})",
           R"({"model":"m","tools":[{"type":"function","function":{"name":"f"}}],"messages":[{"role":"user","content":"hi"}]})",
           R"({"model":"m","messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":"hi"}]})"})
    EXPECT_NE(alice.partition, make_key(parse(other), "acme", "alice", false, {}).partition) << other;
  EXPECT_EQ(alice.prompt, "hi");
  // A public namespace is one partition for every tenant and user, apart from theirs.
  const Key pub = make_key(parse(chat), "acme", "alice", false, {}, "faq");
  EXPECT_EQ(pub.partition, make_key(parse(chat), "globex", "carol", false, {}, "faq").partition);
  EXPECT_NE(pub.partition, alice.partition);
  EXPECT_NE(pub.partition, make_key(parse(chat), "acme", "alice", false, {}, "other").partition);
  EXPECT_EQ(pub.scope, "public:faq");
}

TEST(CacheKeys, ARequestWithoutAUserIsScopedToItsKey) {
  const RequestFacts f = request_facts(parse(R"({"model":"m","messages":[{"role":"user","content":"hi"}]})"), {});
  const Key svc_a = key_in(f, "acme", "", false, {}, "svc-a");
  EXPECT_EQ(svc_a.scope, "key:svc-a");
  EXPECT_NE(svc_a.partition, key_in(f, "acme", "", false, {}, "svc-b").partition) << "two tenant-level keys";
  // A user literally named like a key scope is still a user scope: no collision.
  EXPECT_NE(svc_a.partition, key_in(f, "acme", "key:svc-a", false, {}, "svc-x").partition);
  EXPECT_NE(svc_a.partition, key_in(f, "acme", "", false, {}, "").partition);
}

TEST(CacheKeys, TheExactDigestIgnoresKeyOrderWhitespaceAndTransportFields) {
  const Key a = make_key(parse(R"({"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0})"), "t", "u", false, {});
  const Key b = make_key(parse(R"({ "temperature": 0, "stream": true, "user": "x",
      "messages": [ {"content": "hi", "role": "user"} ], "model": "m" })"), "t", "u", false, {});
  EXPECT_EQ(a.exact, b.exact);
  EXPECT_EQ(a.partition, b.partition);
}

TEST(CacheKeys, OnlyCompleteTextAnswersAreStored) {
  const auto ok = read_answer(R"({"choices":[{"index":0,"message":{"role":"assistant","content":"Hi Jane","refusal":null,"tool_calls":[]},"finish_reason":"stop"}]})");
  EXPECT_TRUE(ok.storable);
  EXPECT_EQ(ok.text, "Hi Jane\n");
  for (const char* no : {
           R"({"choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"refund","arguments":"{}"}}]},"finish_reason":"tool_calls"}]})",
           R"({"choices":[{"index":0,"message":{"role":"assistant","content":"x","function_call":{"name":"f"}},"finish_reason":"function_call"}]})",
           R"({"choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"I can't"},"finish_reason":"stop"}]})",
           R"({"choices":[{"index":0,"message":{"role":"assistant","content":"cut"},"finish_reason":null}]})",
           R"({"choices":[]})", "not json"})
    EXPECT_FALSE(read_answer(no).storable) << no;
}

TEST(CacheKeys, CacheControlAndTemperatureDecide) {
  const auto r = parse(R"({"model":"m","messages":[{"role":"user","content":"hi"}]})");
  EXPECT_EQ(decide(r, "", {}).mode, Mode::kLookup);
  EXPECT_EQ(decide(r, "no-cache", {}).mode, Mode::kRefresh);
  EXPECT_EQ(decide(r, "No-Store", {}).mode, Mode::kBypass);
  const auto hot = parse(R"({"model":"m","temperature":1.5,"messages":[{"role":"user","content":"hi"}]})");
  EXPECT_EQ(decide(hot, "", {}).mode, Mode::kBypass);
  EXPECT_EQ(decide(hot, "", {}).why, "temperature 1.5 is above the cache's ceiling 1");
}

Key key(const std::string& partition, const std::string& exact, const std::string& prompt, const std::string& tenant = "t",
        const std::string& user = "u") {
  Key k{partition, exact, tenant, user, "user:" + user, prompt, local_embedding(prompt)};
  return k;
}

TEST(CacheStore, ExactThenSemanticHitsWithGuardsAndThreshold) {
  CacheStore s({});
  const auto id = s.insert(key("p", "e1", "How do I reset my password?"), "{\"answer\":1}", "req_1", 0);
  auto exact = s.lookup(key("p", "e1", "How do I reset my password?"), 0.9f, 1);
  ASSERT_TRUE(exact.hit);
  EXPECT_TRUE(exact.hit->exact);
  EXPECT_EQ(exact.hit->entry_id, id);
  EXPECT_EQ(exact.hit->origin_request_id, "req_1");
  auto sem = s.lookup(key("p", "e2", "how can I reset my password"), 0.8f, 1);
  ASSERT_TRUE(sem.hit);
  EXPECT_FALSE(sem.hit->exact);
  EXPECT_GT(sem.hit->similarity, 0.8f);
  EXPECT_FALSE(s.lookup(key("p", "e2", "how can I reset my password"), 0.999f, 1).hit) << "under the threshold";
  // Guards: close, but another account.
  s.insert(key("p", "e3", "Reset the password for jane@example.com"), "{}", "req_2", 0);
  auto guarded = s.lookup(key("p", "e4", "Reset the password for bob@example.com"), 0.5f, 1);
  EXPECT_FALSE(guarded.hit);
  ASSERT_TRUE(guarded.near_miss);
  EXPECT_FALSE(guarded.near_miss->guards.entities_match);
  EXPECT_EQ(s.entry(id)->hits, 2u);
}

TEST(CacheStore, TheVerificationStepTurnsAwayLooselyRelatedPrompts) {
  CacheStore s({});
  Key stored = key("p", "e1", "How do I reset my password?");
  stored.embedding = std::vector<float>(512, 0.0f);
  stored.embedding[0] = 1;  // an upstream embedder that rates these two as the same
  s.insert(stored, "{}", "r1", 0);
  Key probe = key("p", "e2", "Where can I buy cheap shoes?");
  probe.embedding = stored.embedding;
  EXPECT_TRUE(s.lookup(probe, 0.9f, 1).hit) << "the vectors alone";
  auto verified = s.lookup(probe, 0.9f, 1, 0.5f);
  EXPECT_FALSE(verified.hit);
  ASSERT_TRUE(verified.near_miss);
  EXPECT_TRUE(verified.near_miss->guards.why.starts_with("verification: lexical similarity")) << verified.near_miss->guards.why;
}

TEST(CacheStore, EntriesExpireAndTenantsAreBoundedByLru) {
  StoreLimits l;
  l.ttl_s = 10;
  l.max_entries_per_tenant = 3;
  CacheStore s(l);
  for (int i = 0; i < 3; ++i) s.insert(key("p", "e" + std::to_string(i), "q" + std::to_string(i)), "{}", "r" + std::to_string(i), 0);
  ASSERT_TRUE(s.lookup(key("p", "e0", "q0"), 0.9f, 1).hit);  // e0 is now the most recent
  s.insert(key("p", "e3", "q3"), "{}", "r3", 2);               // evicts e1, the least recently used
  EXPECT_EQ(s.tenant_entries("t"), 3);
  EXPECT_FALSE(s.lookup(key("p", "e1", "q1"), 0.99f, 3).hit);
  EXPECT_TRUE(s.lookup(key("p", "e0", "q0"), 0.99f, 3).hit);
  EXPECT_FALSE(s.lookup(key("p", "e3", "q3"), 0.99f, 12.5).hit) << "expired";
  s.insert(key("p", "x", "other tenant's", "t2"), "{}", "r4", 0);
  EXPECT_EQ(s.tenant_entries("t2"), 1) << "limits are per tenant";
}

TEST(CacheStore, ChurnDoesNotGrowThePartitionIndexForever) {
  StoreLimits l;
  l.max_entries_per_tenant = 50;
  l.flat_max_vectors = 16;  // 50 vectors: an HNSW index
  CacheStore s(l);
  for (int i = 0; i < 5000; ++i) s.insert(key("p", "e" + std::to_string(i), "question number " + std::to_string(i)), "{}", "r" + std::to_string(i), 0);
  EXPECT_EQ(s.tenant_entries("t"), 50);
  ASSERT_EQ(s.stats().indexed_partitions, 1);
  EXPECT_GE(s.stats().index_slots, 50);
  EXPECT_LE(s.stats().index_slots, 2 * 50 + 65) << "deleted vectors are dropped by rebuilds";
  // The newest entries are still found through the (rebuilt) index.
  auto r = s.lookup(key("p", "none", "question number 4999"), 0.99f, 1);
  ASSERT_TRUE(r.hit);
  EXPECT_EQ(s.entry(r.hit->entry_id)->origin_request_id, "r4999");
}

TEST(CacheStore, WorkersSearchWriteAndPurgeConcurrently) {
  // Two searchers, a writer and a purger on one store: every hit is from the
  // searcher's own partition and the store stays consistent.
  StoreLimits l;
  l.max_entries_per_tenant = 300;
  CacheStore s(l);
  std::atomic<bool> stop{false};
  std::atomic<int> hits{0}, wrong{0};
  auto searcher = [&](std::string user) {
    for (int i = 0; !stop; ++i) {
      Key k = key("p-" + user, "none", "question number " + std::to_string(i % 200), "t", user);
      if (auto r = s.lookup(k, 0.9f, 1); r.hit) {
        ++hits;
        // (the hit names its origin request, "<user><n>": no second lookup, which could race a purge)
        if (!r.hit->origin_request_id.starts_with(user)) ++wrong;
      }
    }
  };
  std::thread a(searcher, "alice"), b(searcher, "bob");
  std::thread writer([&] {
    for (int i = 0; i < 3000; ++i)
      for (const char* u : {"alice", "bob"})
        s.insert(key(std::string("p-") + u, "e" + std::to_string(i), "question number " + std::to_string(i % 200), "t", u),
                 "{}", std::string(u) + std::to_string(i), 0);
  });
  std::thread purger([&] {
    for (int i = 0; i < 50; ++i) {
      s.purge_user("t", i % 2 ? "alice" : "bob");
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  writer.join();
  purger.join();
  stop = true;
  a.join();
  b.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(hits.load(), 0);
  EXPECT_LE(s.tenant_entries("t"), 300);
}

TEST(CacheStore, PurgesByTenantUserAndEntry) {
  CacheStore s({});
  s.insert(key("pa", "1", "a", "t", "alice"), "{}", "r1", 0);
  s.insert(key("pb", "2", "b", "t", "bob"), "{}", "r2", 0);
  s.insert(key("pb", "3", "c", "t", "bob"), "{}", "r3", 0);
  s.insert(key("pc", "4", "d", "t2", "carol"), "{}", "r4", 0);
  EXPECT_EQ(s.entry("ce_r3")->key.user, "bob");
  EXPECT_TRUE(s.purge_entry(std::string("ce_r3")));
  EXPECT_FALSE(s.purge_entry(std::string("ce_r3")));
  EXPECT_EQ(s.purge_user("t", "bob"), 1u);
  EXPECT_EQ(s.purge_tenant("t"), 1u);
  EXPECT_EQ(s.stats().entries, 1);
  EXPECT_EQ(s.stats().partitions, 1);
}

TEST(CacheStore, ALookupNeverReturnsAnotherPartitionsEntry) {
  // 40 users asking near-identical questions: every hit comes from the asker's
  // own partition, and a question its asker stored before always hits.
  CacheStore s({});
  std::mt19937 rng(7);
  const char* qs[] = {"How do I reset my password?", "how can I reset my password", "Reset my password please",
                      "What is my account balance?", "what's my account balance"};
  std::map<std::uint64_t, std::string> owner;
  std::set<std::pair<std::string, std::string>> stored;  // (user, question)
  int hits = 0, misses_of_others_questions = 0;
  for (int i = 0; i < 400; ++i) {
    const std::string user = "u" + std::to_string(rng() % 40), q = qs[rng() % 5];
    Key k = make_key(parse(R"({"model":"m","messages":[{"role":"user","content":")" + q + R"("}]})"), "t", user, false, {});
    k.embedding = local_embedding(k.prompt);
    auto r = s.lookup(k, 0.7f, i);
    if (stored.count({user, q})) {
      ASSERT_TRUE(r.hit) << user << " asked '" << q << "' before";
      EXPECT_TRUE(r.hit->exact);
    }
    if (r.hit) {
      ++hits;
      EXPECT_EQ(owner.at(r.hit->entry_id), user);
    } else {
      misses_of_others_questions += std::any_of(stored.begin(), stored.end(), [&](const auto& uq) { return uq.second == q; });
      owner[s.insert(k, "{}", "r" + std::to_string(i), i)] = user;
      stored.insert({user, q});
    }
  }
  EXPECT_GT(hits, 100);
  EXPECT_GT(misses_of_others_questions, 20) << "the same question stored by another user is not this user's hit";
  // Afterwards, directly: every question hits exactly in its asker's
  // partition, with the asker's own entry, and never in a partition that
  // stored nothing, the same text notwithstanding.
  ASSERT_FALSE(stored.empty());
  for (const auto& [user, q] : stored) {
    const std::string body = R"({"model":"m","messages":[{"role":"user","content":")" + q + R"("}]})";
    for (const std::string asker : {user, std::string("u-stranger")}) {
      Key k = make_key(parse(body), "t", asker, false, {});
      k.embedding = local_embedding(k.prompt);
      auto r = s.lookup(k, 0.7f, 400);
      if (asker == user) {
        ASSERT_TRUE(r.hit) << user << " stored '" << q << "'";
        EXPECT_TRUE(r.hit->exact);
        EXPECT_EQ(owner.at(r.hit->entry_id), user);
      } else {
        EXPECT_FALSE(r.hit) << "'" << q << "' stored by " << user << " reached a user who stored nothing";
      }
    }
  }
}

// A partition minted per request (another seed, max_tokens, system prompt...)
// costs what it holds: no index for a single entry, and its own cost counted.
TEST(CacheStore, TenThousandSingleEntryPartitionsStayWithinTheTenantsBytes) {
  CacheStore s({});
  for (int i = 0; i < 10'000; ++i)
    s.insert(key("p" + std::to_string(i), "e", "question number " + std::to_string(i)), "{\"answer\":\"...\"}",
             "r" + std::to_string(i), 0);
  const StoreStats st = s.stats();
  EXPECT_EQ(st.partitions, 10'000);
  EXPECT_EQ(st.flat_partitions, 10'000);
  EXPECT_EQ(st.indexed_partitions, 0);
  EXPECT_EQ(st.index_bytes, 0);
  EXPECT_LE(st.bytes, StoreLimits{}.max_bytes_per_tenant);
  // An entry with a 256-dim vector and a short prompt and answer, in its own partition: 2 to 4 KiB
  // (bench/cache_bench: 2.7 KiB counted, 2.9 KiB of RSS with real digests and answers).
  EXPECT_GT(st.bytes, 10'000 * 2048);
  EXPECT_LT(st.bytes, 10'000 * 4096);
}

TEST(CacheStore, AnIndexIsChargedWhatHnswlibAllocates) {
  // An index per partition (what the store did for every partition): each
  // costs its 65,536 mutexes and more, so the tenant's bytes bound evicts.
  StoreLimits l;
  l.flat_max_vectors = 0;
  CacheStore s(l);
  for (int i = 0; i < 100; ++i) s.insert(key("p" + std::to_string(i), "e", "question " + std::to_string(i)), "{}", "r" + std::to_string(i), 0);
  const StoreStats st = s.stats();
  EXPECT_EQ(st.indexed_partitions, st.partitions);
  EXPECT_GE(st.index_bytes, st.indexed_partitions * 65'536 * static_cast<std::int64_t>(sizeof(std::mutex)));
  EXPECT_LE(st.bytes, l.max_bytes_per_tenant);
  EXPECT_LT(st.partitions, 30) << "64 MiB holds about 24 indexed partitions";
  EXPECT_GT(st.partitions, 15);
  EXPECT_TRUE(s.lookup(key("p99", "e", "question 99"), 0.9f, 1).hit) << "the newest stays";
  EXPECT_FALSE(s.lookup(key("p0", "e", "question 0"), 0.9f, 1).hit) << "the oldest went";
}

// The best candidate (served, or the near miss) of a lookup: (entry id, similarity).
std::pair<std::uint64_t, float> best(CacheStore& s, const Key& k) {
  const auto r = s.lookup(k, 0.999f, 1);  // distinct prompts: nothing reaches it, the best is the near miss
  if (r.hit) return {r.hit->entry_id, r.hit->similarity};
  return r.near_miss ? std::pair{r.near_miss->entry_id, r.near_miss->similarity} : std::pair{std::uint64_t{0}, 0.0f};
}

TEST(CacheStore, APartitionSwitchesToHnswAboveTheFlatBoundAndBackWellBelow) {
  StoreLimits indexed_above_32;
  indexed_above_32.flat_max_vectors = 32;
  StoreLimits always_flat;
  always_flat.flat_max_vectors = 1'000'000;
  CacheStore s(indexed_above_32), flat(always_flat);
  const char* topics[] = {"password", "invoice", "shipping", "refund", "team", "export", "latency", "backup", "region"};
  const char* verbs[] = {"change", "find", "cancel", "download", "explain"};
  std::vector<Key> probes;
  auto insert = [&](int i) {
    const Key k = key("p", "e" + std::to_string(i),
                      std::string("how do I ") + verbs[i % 5] + " the " + topics[i % 9] + " of item " + std::to_string(i));
    s.insert(k, "{}", "r" + std::to_string(i), 0);
    flat.insert(k, "{}", "r" + std::to_string(i), 0);
  };
  for (int i = 0; i < 32; ++i) insert(i);
  for (int i = 0; i < 40; ++i)
    probes.push_back(key("p", "none", std::string("please ") + verbs[(i * 7) % 5] + " my " + topics[i % 9] + " now"));
  EXPECT_EQ(s.stats().indexed_partitions, 0) << "32 vectors: flat";
  std::vector<std::pair<std::uint64_t, float>> flat_best;
  for (const Key& p : probes) flat_best.push_back(best(s, p));

  insert(32);  // the 33rd vector: an index
  ASSERT_EQ(s.stats().indexed_partitions, 1);
  EXPECT_GT(s.stats().index_bytes, 65'536 * static_cast<std::int64_t>(sizeof(std::mutex)));
  EXPECT_EQ(s.stats().index_slots, 33);
  for (std::size_t i = 0; i < probes.size(); ++i) {
    const auto want = best(flat, probes[i]);
    EXPECT_EQ(best(s, probes[i]), want) << "probe " << i;
    if (flat_best[i].first != want.first) {
      EXPECT_EQ(want.first, 33u) << "only the new entry may be nearer";
    }
  }

  // Shrinking: the index stays down to 17 vectors (hysteresis), is freed at 16.
  for (int i = 0; i < 16; ++i) {
    EXPECT_TRUE(s.purge_entry("ce_r" + std::to_string(i)));
    flat.purge_entry("ce_r" + std::to_string(i));
  }
  EXPECT_EQ(s.stats().indexed_partitions, 1) << "17 vectors";
  EXPECT_TRUE(s.purge_entry(std::string("ce_r16")));
  flat.purge_entry(std::string("ce_r16"));
  const StoreStats st = s.stats();
  EXPECT_EQ(st.indexed_partitions, 0);
  EXPECT_EQ(st.index_bytes, 0);
  EXPECT_EQ(st.index_slots, 0);
  EXPECT_EQ(st.bytes, flat.stats().bytes) << "both hold the same 16 entries in a flat partition";
  for (std::size_t i = 0; i < probes.size(); ++i) EXPECT_EQ(best(s, probes[i]), best(flat, probes[i])) << "probe " << i;
  // A flat partition keeps each entry's vector (the replica writes it).
  EXPECT_EQ(s.entry(std::string("ce_r20"))->key.embedding, local_embedding(s.entry(std::string("ce_r20"))->key.prompt));
}

TEST(CacheStore, PartitionsPerTenantAreBoundedByLru) {
  StoreLimits l;
  l.max_partitions_per_tenant = 5;
  CacheStore s(l);
  s.insert(key("big", "e0", "the first question"), "{}", "r0", 0);
  s.insert(key("big", "e1", "the second question"), "{}", "r1", 0);
  for (int i = 1; i < 8; ++i) s.insert(key("p" + std::to_string(i), "e", "question " + std::to_string(i)), "{}", "q" + std::to_string(i), 0);
  s.insert(key("other", "e", "another tenant's", "t2"), "{}", "o", 0);
  // 8 partitions for t: its least recently used entries went, the two of "big" first (freeing it), then p1 and p2.
  EXPECT_EQ(s.stats().partitions, 5 + 1);
  EXPECT_EQ(s.tenant_entries("t"), 5);
  EXPECT_FALSE(s.entry(std::string("ce_r0")));
  EXPECT_FALSE(s.entry(std::string("ce_r1")));
  EXPECT_FALSE(s.entry(std::string("ce_q1")));
  EXPECT_FALSE(s.entry(std::string("ce_q2")));
  for (int i = 3; i < 8; ++i) EXPECT_TRUE(s.entry("ce_q" + std::to_string(i))) << i;
  EXPECT_EQ(s.tenant_entries("t2"), 1) << "per tenant";
  // More entries in a partition it has are not another partition.
  s.insert(key("p7", "e2", "question 7 again"), "{}", "q7b", 0);
  EXPECT_EQ(s.tenant_entries("t"), 6);
}

TEST(CacheStore, TheStoreWideBoundEvictsTheLargestTenantsLeastRecentlyUsedEntry) {
  StoreLimits l;
  l.max_bytes_total = 200'000;
  CacheStore s(l);
  const std::string answer(10'000, 'x');
  s.insert(key("ps", "s0", "small tenant question 0", "small"), answer, "s0", 0);
  s.insert(key("ps", "s1", "small tenant question 1", "small"), answer, "s1", 0);
  for (int i = 0; i < 30; ++i) s.insert(key("pb", "b" + std::to_string(i), "big question " + std::to_string(i), "big"), answer, "b" + std::to_string(i), 0);
  EXPECT_LE(s.stats().bytes, l.max_bytes_total);
  EXPECT_EQ(s.tenant_entries("small"), 2) << "the largest tenant pays";
  const std::int64_t big = s.tenant_entries("big");
  EXPECT_GT(big, 5);
  EXPECT_LT(big, 30);
  EXPECT_TRUE(s.entry(std::string("ce_b29")));
  EXPECT_FALSE(s.entry(std::string("ce_b0")));
  // The small tenant's insert at the bound evicts the big tenant's least recently used entry, not its own.
  s.insert(key("ps", "s2", "small tenant question 2", "small"), answer, "s2", 0);
  EXPECT_EQ(s.tenant_entries("small"), 3);
  EXPECT_LT(s.tenant_entries("big"), big);
  EXPECT_LE(s.stats().bytes, l.max_bytes_total);
}

TEST(CacheStore, TheByteCountReturnsToZeroWhenEverythingIsPurged) {
  StoreLimits l;
  l.flat_max_vectors = 8;
  l.max_entries_per_tenant = 100;
  CacheStore s(l);
  EXPECT_EQ(s.stats().bytes, 0);
  for (int i = 0; i < 300; ++i) {
    const std::string tenant = i % 3 ? "t" : "t2", user = "u" + std::to_string(i % 4);
    s.insert(key("p" + std::to_string(i % 7), "e" + std::to_string(i), "question number " + std::to_string(i), tenant, user),
             std::string(i % 50, 'a'), "r" + std::to_string(i), 0, i % 5 ? -1 : 10);
  }
  // A public partition shared by both tenants: created by t2, taken over by t when t2's entries go.
  s.insert(key("pub", "a", "shared question a", "t2"), "{}", "pub-a", 0);
  s.insert(key("pub", "b", "shared question b", "t"), "{}", "pub-b", 0);
  Key no_vector = key("novec", "x", "no embedding");
  no_vector.embedding.clear();
  s.insert(no_vector, "{}", "nv", 0);
  Key other_size = key("p1", "y", "another embedder's vector");
  other_size.embedding.resize(64);
  s.insert(other_size, "{}", "os", 0);
  EXPECT_GT(s.stats().indexed_partitions, 0);
  EXPECT_GT(s.stats().flat_partitions, 0);
  (void)s.lookup(key("p1", "e1", "question number 1"), 0.9f, 20);  // drops what expired
  EXPECT_GT(s.purge_tenant("t2"), 0u);
  EXPECT_TRUE(s.lookup(key("pub", "b", "shared question b"), 0.9f, 1).hit) << "t's entry in the shared partition stays";
  EXPECT_GT(s.purge_user("t", "u1"), 0u);
  EXPECT_GT(s.purge_tenant("t"), 0u);
  const StoreStats st = s.stats();
  EXPECT_EQ(st.entries, 0);
  EXPECT_EQ(st.partitions, 0);
  EXPECT_EQ(st.bytes, 0);
  EXPECT_EQ(st.index_bytes, 0);
  EXPECT_EQ(st.index_slots, 0);
  EXPECT_EQ(st.indexed_partitions, 0);
}

}  // namespace
}  // namespace tg::cache
