// The ledger's write-ahead journal and the writer's replay of it.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "ledger/ledger.h"
#include "ledger/ledger_journal.h"

namespace tg::ledger {
namespace {

namespace fs = std::filesystem;

LedgerRow row(int i) {
  LedgerRow r;
  r.ts_ms = 1'780'000'000'000 + i;
  r.who.request_id = "req-" + std::to_string(i);
  r.who.org = "demo";
  r.who.tenant = "acme";
  r.who.user = "alice";
  r.who.key_id = "acme-alice";
  r.who.run_id = i % 2 ? "run-1" : "";
  r.who.feature = "search";
  r.who.model = "chat";
  r.who.deployment = "chat-sim";
  r.endpoint = "chat.completions";
  r.stream = i % 3 == 0;
  r.prompt_tokens = 10 + i;
  r.completion_tokens = 7;
  r.cached_tokens = 1;
  r.usage_source = "upstream";
  r.cost_micros = 123 + i;
  r.status = 200;
  r.error_code = i % 5 ? "" : "client_closed_request";
  r.ttft_us = i % 4 ? 900 : -1;
  r.latency_us = 4200;
  return r;
}

struct TempDir {
  fs::path dir = fs::temp_directory_path() / ("tg-ledger-" + std::to_string(::getpid()) + "-" +
                                              ::testing::UnitTest::GetInstance()->current_test_info()->name());
  TempDir() { fs::create_directories(dir); }
  ~TempDir() { fs::remove_all(dir); }
};

std::int64_t count_rows(const fs::path& db, const char* where = "1") {
  sqlite3* h = nullptr;
  sqlite3_open(db.c_str(), &h);
  sqlite3_stmt* st = nullptr;
  std::string q = std::string("SELECT COUNT(*), COUNT(DISTINCT request_id) FROM ledger WHERE ") + where;
  sqlite3_prepare_v2(h, q.c_str(), -1, &st, nullptr);
  sqlite3_step(st);
  std::int64_t n = sqlite3_column_int64(st, 0), distinct = sqlite3_column_int64(st, 1);
  sqlite3_finalize(st);
  sqlite3_close(h);
  EXPECT_EQ(n, distinct) << "a request id stored twice";
  return n;
}

TEST(LedgerJournal, RoundTripsEveryField) {
  std::string bytes;
  for (int i = 0; i < 20; ++i) bytes += encode_row(row(i));
  auto rows = decode_rows(bytes);
  ASSERT_EQ(rows.size(), 20u);
  for (int i = 0; i < 20; ++i) {
    const LedgerRow want = row(i), &got = rows[i];
    EXPECT_EQ(got.ts_ms, want.ts_ms);
    EXPECT_EQ(got.who.request_id, want.who.request_id);
    EXPECT_EQ(got.who.run_id, want.who.run_id);
    EXPECT_EQ(got.stream, want.stream);
    EXPECT_EQ(got.prompt_tokens, want.prompt_tokens);
    EXPECT_EQ(got.cost_micros, want.cost_micros);
    EXPECT_EQ(got.error_code, want.error_code);
    EXPECT_EQ(got.ttft_us, want.ttft_us);
    EXPECT_EQ(got.latency_us, want.latency_us);
    EXPECT_EQ(got.usage_source, want.usage_source);
  }
}

TEST(LedgerJournal, IgnoresATornOrCorruptTail) {
  std::string bytes = encode_row(row(1)) + encode_row(row(2));
  const std::string third = encode_row(row(3));
  for (std::size_t cut = 0; cut < third.size(); ++cut)
    EXPECT_EQ(decode_rows(bytes + third.substr(0, cut)).size(), 2u) << "cut at " << cut;
  std::string corrupt = bytes + third;
  corrupt[corrupt.size() - 3] ^= 0x40;
  EXPECT_EQ(decode_rows(corrupt).size(), 2u);
}

TEST(LedgerJournal, TwoProcessesCannotShareOne) {
  TempDir t;
  LedgerJournal a((t.dir / "j").string());
  // flock is per open file description: a second open in this process conflicts like another process would.
  EXPECT_THROW(LedgerJournal((t.dir / "j").string()), std::runtime_error);
}

// What a kill -9 leaves: rows appended to the journal but never stored. The
// next writer stores them before taking new rows, once each.
TEST(LedgerWriter, ReplaysWhatAKilledProcessLeftInTheJournal) {
  TempDir t;
  const fs::path db = t.dir / "ledger.db", journal = t.dir / "ledger.db.tg-journal";
  {
    LedgerWriter w(open_sqlite_ledger(db.string()), journal.string());
    for (int i = 0; i < 10; ++i) w.submit(row(i));
    w.flush();
  }
  EXPECT_EQ(fs::file_size(journal), 0u) << "a clean stop leaves an empty journal";
  {
    // Simulate the dead process: rows 5..14 in the journal (5..9 were already
    // stored, 10..14 never were), plus a torn half row.
    std::ofstream out(journal, std::ios::binary);
    for (int i = 5; i < 15; ++i) out << encode_row(row(i));
    out << encode_row(row(99)).substr(0, 17);
  }
  LedgerWriter w(open_sqlite_ledger(db.string()), journal.string());
  EXPECT_EQ(w.replayed(), 10u);
  EXPECT_EQ(count_rows(db), 15);
  EXPECT_EQ(count_rows(db, "request_id = 'req-99'"), 0);
  EXPECT_EQ(fs::file_size(journal), 0u);
  w.submit(row(15));
  w.flush();
  EXPECT_EQ(count_rows(db), 16);
}

TEST(LedgerWriter, ARotatedJournalIsReplayedToo) {
  TempDir t;
  const fs::path db = t.dir / "ledger.db", journal = t.dir / "j";
  {
    std::ofstream old(journal.string() + ".1", std::ios::binary);
    for (int i = 0; i < 3; ++i) old << encode_row(row(i));
    std::ofstream cur(journal, std::ios::binary);
    for (int i = 3; i < 5; ++i) cur << encode_row(row(i));
  }
  LedgerWriter w(open_sqlite_ledger(db.string()), journal.string());
  EXPECT_EQ(w.replayed(), 5u);
  EXPECT_EQ(count_rows(db), 5);
  EXPECT_FALSE(fs::exists(journal.string() + ".1"));
}

}  // namespace
}  // namespace tg::ledger
