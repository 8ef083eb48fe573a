#include "ledger/ledger_journal.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

namespace tg::ledger {
namespace {

std::uint32_t fnv1a(std::string_view s) {
  std::uint32_t h = 2166136261u;
  for (unsigned char c : s) h = (h ^ c) * 16777619u;
  return h;
}

void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}
void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}
void put_str(std::string& out, const std::string& s) {
  put_u32(out, static_cast<std::uint32_t>(s.size()));
  out += s;
}

struct Reader {
  std::string_view in;
  bool ok = true;
  std::uint64_t u(int bytes) {
    if (in.size() < static_cast<std::size_t>(bytes)) { ok = false; return 0; }
    std::uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= std::uint64_t(static_cast<unsigned char>(in[i])) << (8 * i);
    in.remove_prefix(bytes);
    return v;
  }
  std::string s() {
    const auto n = u(4);
    if (!ok || in.size() < n) { ok = false; return {}; }
    std::string v(in.substr(0, n));
    in.remove_prefix(n);
    return v;
  }
};

}  // namespace

std::string encode_row(const LedgerRow& r) {
  std::string p;
  p.reserve(256);
  put_u64(p, static_cast<std::uint64_t>(r.ts_ms));
  for (const std::string* s : {&r.who.request_id, &r.who.org, &r.who.tenant, &r.who.user, &r.who.key_id, &r.who.run_id, &r.who.feature,
                               &r.who.model, &r.who.deployment, &r.endpoint, &r.usage_source, &r.cache_status,
                               &r.error_code})
    put_str(p, *s);
  p.push_back(r.stream ? 1 : 0);
  put_u64(p, r.prompt_tokens);
  put_u64(p, r.completion_tokens);
  put_u64(p, r.cached_tokens);
  put_u64(p, static_cast<std::uint64_t>(r.cost_micros));
  put_u32(p, static_cast<std::uint32_t>(r.status));
  put_u64(p, static_cast<std::uint64_t>(r.ttft_us));
  put_u64(p, static_cast<std::uint64_t>(r.latency_us));
  // Optional tail (absent in journals written before the cache audit): the cache audit.
  if (!r.cache.event.empty() || r.audit_only) {
    p.push_back(static_cast<char>(r.audit_only ? 2 : 1));
    for (const std::string* s : {&r.cache.event, &r.cache.entry, &r.cache.partition, &r.cache.scope,
                                 &r.cache.origin_request_id, &r.cache.guards})
      put_str(p, *s);
    put_u64(p, static_cast<std::uint64_t>(r.cache.expires_ms));
    put_u64(p, static_cast<std::uint64_t>(std::llround(r.cache.similarity * 1e6)));
    put_u64(p, static_cast<std::uint64_t>(std::llround(r.cache.threshold * 1e6)));
  }
  std::string frame;
  frame.reserve(p.size() + 8);
  put_u32(frame, static_cast<std::uint32_t>(p.size()));
  put_u32(frame, fnv1a(p));
  frame += p;
  return frame;
}

std::vector<LedgerRow> decode_rows(std::string_view bytes) {
  std::vector<LedgerRow> rows;
  Reader f{bytes};
  while (!f.in.empty()) {
    const auto len = f.u(4);
    const auto sum = f.u(4);
    if (!f.ok || f.in.size() < len) break;  // torn tail
    std::string_view payload = f.in.substr(0, len);
    f.in.remove_prefix(len);
    if (fnv1a(payload) != sum) break;
    Reader p{payload};
    LedgerRow r;
    r.ts_ms = static_cast<std::int64_t>(p.u(8));
    for (std::string* s : {&r.who.request_id, &r.who.org, &r.who.tenant, &r.who.user, &r.who.key_id, &r.who.run_id, &r.who.feature, &r.who.model,
                           &r.who.deployment, &r.endpoint, &r.usage_source, &r.cache_status, &r.error_code})
      *s = p.s();
    r.stream = p.u(1) != 0;
    r.prompt_tokens = p.u(8);
    r.completion_tokens = p.u(8);
    r.cached_tokens = p.u(8);
    r.cost_micros = static_cast<std::int64_t>(p.u(8));
    r.status = static_cast<int>(p.u(4));
    r.ttft_us = static_cast<std::int64_t>(p.u(8));
    r.latency_us = static_cast<std::int64_t>(p.u(8));
    if (p.ok && !p.in.empty()) {
      r.audit_only = p.u(1) == 2;
      for (std::string* s : {&r.cache.event, &r.cache.entry, &r.cache.partition, &r.cache.scope,
                             &r.cache.origin_request_id, &r.cache.guards})
        *s = p.s();
      r.cache.expires_ms = static_cast<std::int64_t>(p.u(8));
      r.cache.similarity = static_cast<double>(p.u(8)) / 1e6;
      r.cache.threshold = static_cast<double>(p.u(8)) / 1e6;
    }
    if (!p.ok) break;
    rows.push_back(std::move(r));
  }
  return rows;
}

LedgerJournal::LedgerJournal(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd_ < 0) throw std::runtime_error(fmt::format("cannot open ledger journal '{}': {}", path_, std::strerror(errno)));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd_);
    throw std::runtime_error(fmt::format(
        "ledger journal '{}' is locked by another running gateway; give each gateway its own "
        "(metering.ledger_journal) or stop the other one", path_));
  }
  std::string bytes;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::pread(fd_, buf, sizeof buf, static_cast<off_t>(bytes.size()));
    if (n <= 0) break;
    bytes.append(buf, static_cast<std::size_t>(n));
  }
  leftovers_ = decode_rows(bytes);
  bytes_ = bytes.size();
}

LedgerJournal::~LedgerJournal() {
  if (fd_ >= 0) ::close(fd_);
}

std::vector<LedgerRow> LedgerJournal::take_leftovers() { return std::move(leftovers_); }

void LedgerJournal::append(const std::string& frame) {
  std::size_t done = 0;
  while (done < frame.size()) {
    ssize_t n = ::write(fd_, frame.data() + done, frame.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      throw std::runtime_error(fmt::format("ledger journal '{}' write failed: {}", path_, std::strerror(errno)));
    done += static_cast<std::size_t>(n);
  }
  bytes_ += frame.size();
}

void LedgerJournal::truncate() {
  if (::ftruncate(fd_, 0) != 0)
    throw std::runtime_error(fmt::format("ledger journal '{}' truncate failed: {}", path_, std::strerror(errno)));
  bytes_ = 0;
}

}  // namespace tg::ledger
