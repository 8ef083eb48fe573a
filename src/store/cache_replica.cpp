#include "store/cache_replica.h"

#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <random>

#include <fmt/format.h>

namespace tg::store {
namespace {

using Conn = std::unique_ptr<redisContext, decltype(&redisFree)>;
using Reply = std::unique_ptr<redisReply, decltype(&freeReplyObject)>;

Conn connect(const std::string& host, std::uint16_t port) {
  timeval tv{1, 0};
  Conn c(redisConnectWithTimeout(host.c_str(), port, tv), &redisFree);
  if (!c || c->err) return Conn(nullptr, &redisFree);
  redisSetTimeout(c.get(), timeval{5, 0});
  return c;
}

Reply command(redisContext* c, const std::vector<std::string>& argv) {
  std::vector<const char*> a;
  std::vector<std::size_t> l;
  for (const auto& s : argv) {
    a.push_back(s.data());
    l.push_back(s.size());
  }
  return Reply(static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(a.size()), a.data(), l.data())),
               &freeReplyObject);
}

std::string str(const redisReply* r) { return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) ? std::string(r->str, r->len) : ""; }

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}
double steady_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

}  // namespace

CacheReplica::CacheReplica(cache::CacheStore& store, std::string host, std::uint16_t port, std::string prefix,
                           double ttl_s)
    : store_(store),
      host_(std::move(host)),
      prefix_(std::move(prefix)),
      node_(fmt::format("{:016x}", std::random_device{}() * 0x9e3779b97f4a7c15ull ^ static_cast<std::uint64_t>(wall_ms()))),
      port_(port),
      ttl_s_(ttl_s),
      writer_([this] { writer(); }),
      follower_([this] { follower(); }) {}

CacheReplica::~CacheReplica() {
  stop_ = true;
  cv_.notify_all();
  writer_.join();
  follower_.join();
}

bool CacheReplica::wait_loaded(int ms) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (!loaded_ && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return loaded_;
}

void CacheReplica::enqueue(Op op) {
  {
    std::lock_guard lock(mu_);
    if (!op.must_deliver && queue_.size() > 10'000) {
      ++stats_.dropped;
      return;
    }
    queue_.push_back(std::move(op));
  }
  cv_.notify_one();
}

void CacheReplica::put(const cache::Entry& e) {
  const std::string key = fmt::format("{}:e:{{{}}}:{}", prefix_, e.key.tenant, e.ref);
  std::string vec(reinterpret_cast<const char*>(e.key.embedding.data()), e.key.embedding.size() * sizeof(float));
  const std::int64_t expires = wall_ms() + static_cast<std::int64_t>((e.expires_s - e.created_s) * 1000);
  Op op;
  op.argv = {"HSET", key, "p", e.key.partition, "x", e.key.exact, "t", e.key.tenant, "u", e.key.user, "s", e.key.scope,
             "q", e.key.prompt, "v", vec, "b", e.body, "o", e.origin_request_id, "e", std::to_string(expires)};
  enqueue(std::move(op));
  enqueue({{"PEXPIRE", key, std::to_string(std::max<std::int64_t>(1, expires - wall_ms()))}, false});
  enqueue({{"XADD", prefix_ + ":log", "MAXLEN", "~", "100000", "*", "op", "put", "k", key, "n", node_}, false});
  ++stats_.puts;
}

void CacheReplica::purge_entry(const std::string& ref) {
  // The entry's hash is found by scanning its name (the tenant is in the key).
  enqueue({{"TG-PURGE", "entry", ref}, true});
}
void CacheReplica::purge_user(const std::string& tenant, const std::string& user) {
  enqueue({{"TG-PURGE", "user", tenant, user}, true});
}
void CacheReplica::purge_tenant(const std::string& tenant) { enqueue({{"TG-PURGE", "tenant", tenant}, true}); }

void CacheReplica::writer() {
  Conn c(nullptr, &redisFree);
  while (!stop_) {
    Op op;
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) continue;
      op = queue_.front();
    }
    if (!c) c = connect(host_, port_);
    bool ok = c != nullptr;
    if (ok && op.argv[0] == "TG-PURGE") {
      // Delete the matching hashes, then tell the other nodes.
      const std::string& kind = op.argv[1];
      const std::string pattern = kind == "entry" ? fmt::format("{}:e:*:{}", prefix_, op.argv[2])
                                                  : fmt::format("{}:e:{{{}}}:*", prefix_, op.argv[2]);
      std::string cursor = "0";
      do {
        Reply r = command(c.get(), {"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"});
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
          ok = false;
          break;
        }
        cursor = str(r->element[0]);
        for (std::size_t i = 0; i < r->element[1]->elements; ++i) {
          const std::string k = str(r->element[1]->element[i]);
          if (kind == "user" && str(command(c.get(), {"HGET", k, "u"}).get()) != op.argv[3]) continue;
          command(c.get(), {"DEL", k});
        }
      } while (cursor != "0");
      if (ok) {
        std::vector<std::string> x = {"XADD", prefix_ + ":log", "MAXLEN", "~", "100000", "*", "op", "purge_" + kind,
                                      "a", op.argv[2], "b", op.argv.size() > 3 ? op.argv[3] : "", "n", node_};
        Reply r = command(c.get(), x);
        ok = r && r->type != REDIS_REPLY_ERROR;
      }
    } else if (ok) {
      Reply r = command(c.get(), op.argv);
      ok = r != nullptr;
      if (r && r->type == REDIS_REPLY_ERROR) spdlog::warn("cache replica: {} failed: {}", op.argv[0], str(r.get()));
    }
    if (!ok) {
      c.reset();
      stats_.up = false;
      if (!op.must_deliver) {
        std::lock_guard lock(mu_);
        queue_.pop_front();
        ++stats_.dropped;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      continue;
    }
    stats_.up = true;
    std::lock_guard lock(mu_);
    queue_.pop_front();
  }
}

void CacheReplica::follower() {
  std::string last_id;
  while (!stop_) {
    Conn c = connect(host_, port_);
    if (!c) {
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      continue;
    }
    auto fetch = [&](const std::string& k) {
      Reply r = command(c.get(), {"HGETALL", k});
      if (!r || r->type != REDIS_REPLY_ARRAY || r->elements == 0) return false;
      std::map<std::string, std::string> f;
      for (std::size_t i = 0; i + 1 < r->elements; i += 2) f[str(r->element[i])] = str(r->element[i + 1]);
      cache::Key key;
      key.partition = f["p"];
      key.exact = f["x"];
      key.tenant = f["t"];
      key.user = f["u"];
      key.scope = f["s"];
      key.prompt = f["q"];
      const std::string& v = f["v"];
      key.embedding.resize(v.size() / sizeof(float));
      if (!key.embedding.empty()) std::memcpy(key.embedding.data(), v.data(), key.embedding.size() * sizeof(float));
      const double left = static_cast<double>(std::stoll(f["e"].empty() ? "0" : f["e"]) - wall_ms()) / 1000.0;
      if (left <= 0) return false;
      store_.insert(key, f["b"], f["o"], steady_s(), left);
      return true;
    };
    if (last_id.empty()) {
      // Start: where the log ends now, then every entry Redis holds (events
      // after that point are replayed idempotently).
      Reply tail = command(c.get(), {"XREVRANGE", prefix_ + ":log", "+", "-", "COUNT", "1"});
      if (!tail) continue;
      last_id = tail->type == REDIS_REPLY_ARRAY && tail->elements > 0 ? str(tail->element[0]->element[0]) : "0-0";
      std::string cursor = "0";
      bool ok = true;
      do {
        Reply r = command(c.get(), {"SCAN", cursor, "MATCH", prefix_ + ":e:*", "COUNT", "1000"});
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
          ok = false;
          break;
        }
        cursor = str(r->element[0]);
        for (std::size_t i = 0; i < r->element[1]->elements; ++i)
          if (fetch(str(r->element[1]->element[i]))) ++stats_.loaded;
      } while (cursor != "0");
      if (!ok) {
        last_id.clear();
        continue;
      }
      loaded_ = true;
      spdlog::info("cache replica: {} entries loaded from redis {}:{}", stats_.loaded.load(), host_, port_);
    }
    stats_.up = true;
    while (!stop_) {
      Reply r = command(c.get(), {"XREAD", "COUNT", "500", "BLOCK", "500", "STREAMS", prefix_ + ":log", last_id});
      if (!r) break;  // connection lost: reconnect, continue from last_id
      if (r->type != REDIS_REPLY_ARRAY) continue;  // nil: nothing new
      for (std::size_t s = 0; s < r->elements; ++s) {
        const redisReply* entries = r->element[s]->element[1];
        for (std::size_t i = 0; i < entries->elements; ++i) {
          const redisReply* ev = entries->element[i];
          last_id = str(ev->element[0]);
          std::map<std::string, std::string> f;
          for (std::size_t j = 0; j + 1 < ev->element[1]->elements; j += 2)
            f[str(ev->element[1]->element[j])] = str(ev->element[1]->element[j + 1]);
          if (f["n"] == node_) continue;  // our own change, applied already
          const std::string& op = f["op"];
          if (op == "put") fetch(f["k"]);
          else if (op == "purge_entry") store_.purge_entry(f["a"]);
          else if (op == "purge_user") store_.purge_user(f["a"], f["b"]);
          else if (op == "purge_tenant") store_.purge_tenant(f["a"]);
          ++stats_.applied;
        }
      }
    }
    stats_.up = false;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

}  // namespace tg::store
