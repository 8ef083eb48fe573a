#include "ledger/ledger.h"

#include <unistd.h>

#include <spdlog/spdlog.h>

#include "ledger/ledger_journal.h"

namespace tg::ledger {
namespace {
// A journal is rotated (not emptied) when it grows past this while rows are
// still pending: the old file is dropped once everything in it is stored.
constexpr std::uint64_t kRotateBytes = 64ull << 20;
}  // namespace

LedgerWriter::LedgerWriter(std::unique_ptr<LedgerSink> sink, std::string journal_path, std::size_t capacity,
                           std::chrono::milliseconds max_delay)
    : sink_(std::move(sink)), capacity_(capacity), max_delay_(max_delay), journal_path_(std::move(journal_path)) {
  if (!journal_path_.empty()) {
    // A rotated journal left by a killed process holds the oldest rows.
    const std::string rotated = journal_path_ + ".1";
    std::vector<LedgerRow> rows;
    if (::access(rotated.c_str(), F_OK) == 0) {
      LedgerJournal old(rotated);
      rows = old.take_leftovers();
    }
    journal_ = std::make_unique<LedgerJournal>(journal_path_);
    auto tail = journal_->take_leftovers();
    rows.insert(rows.end(), std::make_move_iterator(tail.begin()), std::make_move_iterator(tail.end()));
    if (!rows.empty()) {
      store(rows);  // idempotent: rows the dead process had stored are skipped
      replayed_ = rows.size();
      spdlog::info("ledger: replayed {} rows from the journal {}", rows.size(), journal_path_);
    }
    journal_->truncate();
    ::unlink(rotated.c_str());
  }
  thread_ = std::thread([this] { run(); });
}

LedgerWriter::~LedgerWriter() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  has_rows_.notify_all();
  thread_.join();
  if (journal_ && written_ == submitted_) journal_->truncate();
}

void LedgerWriter::submit(LedgerRow row) {
  std::string frame = journal_ ? encode_row(row) : std::string();
  std::unique_lock lock(mu_);
  has_space_.wait(lock, [&] { return queue_.size() < capacity_; });
  if (journal_) {
    try {
      journal_->append(frame);
    } catch (const std::exception& e) {
      ++failures_;  // the row still goes to the store; only kill -9 durability is weakened
      spdlog::error("{}", e.what());
    }
  }
  queue_.push_back(std::move(row));
  ++submitted_;
  if (queue_.size() == 1) has_rows_.notify_one();
}

void LedgerWriter::flush() {
  std::unique_lock lock(mu_);
  const std::uint64_t target = submitted_;
  has_rows_.notify_one();
  drained_.wait(lock, [&] { return written_ >= target || stop_; });
}

std::uint64_t LedgerWriter::written() const {
  std::lock_guard lock(mu_);
  return written_;
}

std::uint64_t LedgerWriter::failures() const {
  std::lock_guard lock(mu_);
  return failures_;
}

// Retries until stored: rows are never dropped (idempotent inserts make a
// retry of a batch that did commit harmless).
void LedgerWriter::store(const std::vector<LedgerRow>& batch) {
  for (int attempt = 0;; ++attempt) {
    try {
      sink_->write(batch);
      return;
    } catch (const std::exception& e) {
      {
        std::lock_guard lock(mu_);
        ++failures_;
      }
      spdlog::error("ledger write of {} rows failed (attempt {}): {}", batch.size(), attempt + 1, e.what());
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(1000, 10 << std::min(attempt, 6))));
    }
  }
}

// Called with mu_ held, after written_ advanced.
void LedgerWriter::after_store() {
  if (!journal_) return;
  const std::string rotated = journal_path_ + ".1";
  if (has_rotated_ && written_ >= rotated_mark_) {
    ::unlink(rotated.c_str());
    has_rotated_ = false;
  }
  try {
    if (written_ == submitted_) {
      journal_->truncate();
    } else if (journal_->bytes() > kRotateBytes && !has_rotated_) {
      if (::rename(journal_path_.c_str(), rotated.c_str()) != 0) throw std::runtime_error("rename failed");
      journal_.reset();
      journal_ = std::make_unique<LedgerJournal>(journal_path_);
      rotated_mark_ = submitted_;
      has_rotated_ = true;
    }
  } catch (const std::exception& e) {
    ++failures_;
    spdlog::error("ledger journal {}: {}", journal_path_, e.what());
  }
}

void LedgerWriter::run() {
  constexpr std::size_t kMaxBatch = 1024;
  std::vector<LedgerRow> batch;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      has_rows_.wait(lock, [&] { return !queue_.empty() || stop_; });
      if (queue_.empty() && stop_) return;
      // Let a batch gather for up to max_delay unless it is already large.
      if (queue_.size() < kMaxBatch && !stop_)
        has_rows_.wait_for(lock, max_delay_, [&] { return queue_.size() >= kMaxBatch || stop_; });
      while (!queue_.empty() && batch.size() < kMaxBatch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    has_space_.notify_all();
    store(batch);
    {
      std::lock_guard lock(mu_);
      written_ += batch.size();
      after_store();
    }
    drained_.notify_all();
    batch.clear();
  }
}

}  // namespace tg::ledger
