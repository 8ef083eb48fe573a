#include "meter/ledger.h"

#include <spdlog/spdlog.h>

namespace tg::meter {

LedgerWriter::LedgerWriter(std::unique_ptr<LedgerSink> sink, std::size_t capacity, std::chrono::milliseconds max_delay)
    : sink_(std::move(sink)), capacity_(capacity), max_delay_(max_delay), thread_([this] { run(); }) {}

LedgerWriter::~LedgerWriter() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  has_rows_.notify_all();
  thread_.join();
}

void LedgerWriter::submit(LedgerRow row) {
  std::unique_lock lock(mu_);
  has_space_.wait(lock, [&] { return queue_.size() < capacity_; });
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
    // Retry until stored: rows are never dropped (idempotent inserts make a
    // retry of a batch that did commit harmless).
    for (int attempt = 0;; ++attempt) {
      try {
        sink_->write(batch);
        break;
      } catch (const std::exception& e) {
        {
          std::lock_guard lock(mu_);
          ++failures_;
        }
        spdlog::error("ledger write of {} rows failed (attempt {}): {}", batch.size(), attempt + 1, e.what());
        std::this_thread::sleep_for(std::chrono::milliseconds(std::min(1000, 10 << std::min(attempt, 6))));
      }
    }
    {
      std::lock_guard lock(mu_);
      written_ += batch.size();
    }
    drained_.notify_all();
    batch.clear();
  }
}

}  // namespace tg::meter
