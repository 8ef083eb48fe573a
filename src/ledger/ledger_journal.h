// The ledger's write-ahead journal: every row is appended to a local file
// (one write(2), no fsync) when its request settles, before the batch writer
// stores it. A kill -9 cannot lose what write(2) already handed to the kernel,
// so on the next start the rows the writer never stored are replayed from the
// journal (the sinks insert idempotently by request id, so a replayed row that
// had been stored is not stored twice). Power loss is out of scope: that needs
// fsync per request, which no gateway pays.
//
// Frames are [u32 length][u32 FNV-1a of payload][payload]; a torn tail (a
// write cut short by the kill) fails its length or checksum and is ignored.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ledger/ledger.h"

namespace tg::ledger {

std::string encode_row(const LedgerRow& row);
// Decodes every whole frame of `bytes`; stops at the first torn or corrupt one.
std::vector<LedgerRow> decode_rows(std::string_view bytes);

class LedgerJournal {
 public:
  // Opens `path` for appending, creating it if needed, and locks it so two
  // gateways cannot share one journal. Throws std::runtime_error naming the
  // path (and the other process) when it cannot.
  explicit LedgerJournal(std::string path);
  ~LedgerJournal();
  LedgerJournal(const LedgerJournal&) = delete;
  LedgerJournal& operator=(const LedgerJournal&) = delete;

  // Rows left by a previous process (read once, at open).
  std::vector<LedgerRow> take_leftovers();
  // Appends one encoded row. Throws std::runtime_error when the disk refuses.
  void append(const std::string& frame);
  // Empties the journal: call only when every appended row is stored.
  void truncate();
  std::uint64_t bytes() const { return bytes_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  std::uint64_t bytes_ = 0;
  std::vector<LedgerRow> leftovers_;
};

}  // namespace tg::ledger
