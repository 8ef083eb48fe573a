#include "store/redis_client.h"

#include <hiredis/hiredis.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>

namespace tg::store {
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {
constexpr auto kBackoff = std::chrono::milliseconds(250);
constexpr std::size_t kMaxIdle = 32;

limits::RedisValue convert(const redisReply* r) {
  limits::RedisValue v;
  switch (r->type) {
    case REDIS_REPLY_INTEGER:
      v.type = limits::RedisValue::Type::kInt;
      v.integer = r->integer;
      break;
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
      v.type = limits::RedisValue::Type::kString;
      v.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      v.type = limits::RedisValue::Type::kError;
      v.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ARRAY:
      v.type = limits::RedisValue::Type::kArray;
      for (std::size_t i = 0; i < r->elements; ++i) v.array.push_back(convert(r->element[i]));
      break;
    default:
      break;  // nil
  }
  return v;
}
}  // namespace

struct RedisClient::Conn {
  explicit Conn(net::any_io_executor ex, io::DeadlineSweeper& d) : socket(ex), deadline(d, socket) {}
  ~Conn() {
    if (reader) redisReaderFree(reader);
  }
  tcp::socket socket;
  io::Deadline deadline;
  redisReader* reader = redisReaderCreate();
  char buf[4096];
};

RedisClient::RedisClient(net::any_io_executor ex, std::string host, std::uint16_t port,
                         io::DeadlineSweeper& deadlines, std::chrono::milliseconds timeout)
    : ex_(std::move(ex)), host_(std::move(host)), port_(port), deadlines_(deadlines), timeout_(timeout) {}

RedisClient::~RedisClient() = default;

bool RedisClient::down() const { return std::chrono::steady_clock::now() < down_until_; }

net::awaitable<std::unique_ptr<RedisClient::Conn>> RedisClient::dial() {
  auto c = std::make_unique<Conn>(ex_, deadlines_);
  boost::system::error_code ec;
  auto addr = net::ip::make_address(host_, ec);
  if (ec) {
    last_error_ = fmt::format("redis address '{}' is not an IP address", host_);
    co_return nullptr;
  }
  c->deadline.arm(timeout_);
  auto [cec] = co_await c->socket.async_connect(tcp::endpoint(addr, port_), net::as_tuple(net::use_awaitable));
  c->deadline.disarm();
  if (cec) {
    last_error_ = fmt::format("cannot connect to redis at {}:{}: {}", host_, port_,
                              c->deadline.expired() ? "timed out" : cec.message());
    co_return nullptr;
  }
  c->socket.set_option(tcp::no_delay(true), ec);
  co_return c;
}

net::awaitable<std::optional<limits::RedisValue>> RedisClient::command(const std::vector<std::string>& argv) {
  if (down()) co_return std::nullopt;
  std::unique_ptr<Conn> c;
  if (!idle_.empty()) {
    c = std::move(idle_.back());
    idle_.pop_back();
  } else {
    c = co_await dial();
  }
  auto fail = [&](std::string why) {
    last_error_ = std::move(why);
    down_until_ = std::chrono::steady_clock::now() + kBackoff;
    idle_.clear();  // they are likely dead too
  };
  if (!c) {
    down_until_ = std::chrono::steady_clock::now() + kBackoff;
    co_return std::nullopt;
  }
  std::vector<const char*> args;
  std::vector<std::size_t> lens;
  for (const auto& a : argv) {
    args.push_back(a.data());
    lens.push_back(a.size());
  }
  char* cmd = nullptr;
  const long long n = redisFormatCommandArgv(&cmd, static_cast<int>(args.size()), args.data(), lens.data());
  std::string out(cmd, static_cast<std::size_t>(n));
  redisFreeCommand(cmd);
  c->deadline.arm(timeout_);
  auto [wec, wn] = co_await net::async_write(c->socket, net::buffer(out), net::as_tuple(net::use_awaitable));
  if (wec) {
    c->deadline.disarm();
    fail(fmt::format("redis write failed: {}", c->deadline.expired() ? "timed out" : wec.message()));
    co_return std::nullopt;
  }
  void* reply = nullptr;
  for (;;) {
    if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
      c->deadline.disarm();
      fail(fmt::format("redis protocol error: {}", c->reader->errstr));
      co_return std::nullopt;
    }
    if (reply) break;
    auto [rec, rn] = co_await c->socket.async_read_some(net::buffer(c->buf), net::as_tuple(net::use_awaitable));
    if (rec) {
      c->deadline.disarm();
      fail(fmt::format("redis read failed: {}", c->deadline.expired() ? "timed out" : rec.message()));
      co_return std::nullopt;
    }
    redisReaderFeed(c->reader, c->buf, rn);
  }
  c->deadline.disarm();
  limits::RedisValue v = convert(static_cast<redisReply*>(reply));
  freeReplyObject(reply);
  if (idle_.size() < kMaxIdle) idle_.push_back(std::move(c));
  co_return v;
}

net::awaitable<std::optional<limits::RedisValue>> RedisClient::eval(std::string_view script, const std::string& sha,
                                                                    const limits::RedisScriptCall& call) {
  std::vector<std::string> argv{"EVALSHA", sha, std::to_string(call.keys.size())};
  argv.insert(argv.end(), call.keys.begin(), call.keys.end());
  argv.insert(argv.end(), call.args.begin(), call.args.end());
  auto r = co_await command(argv);
  if (r && r->type == limits::RedisValue::Type::kError && r->str.starts_with("NOSCRIPT")) {
    argv[0] = "EVAL";
    argv[1] = std::string(script);
    r = co_await command(argv);
  }
  co_return r;
}

}  // namespace tg::store

namespace tg::store {

std::uint16_t RedisClusterClient::slot_of(std::string_view key) {
  // The hash tag: the part between the first '{' and the next '}', when not empty.
  if (auto open = key.find('{'); open != std::string_view::npos)
    if (auto close = key.find('}', open + 1); close != std::string_view::npos && close > open + 1)
      key = key.substr(open + 1, close - open - 1);
  std::uint16_t crc = 0;  // CRC16-CCITT (XMODEM), as Redis Cluster uses
  for (unsigned char c : key) {
    crc ^= static_cast<std::uint16_t>(c) << 8;
    for (int i = 0; i < 8; ++i) crc = (crc & 0x8000) ? static_cast<std::uint16_t>((crc << 1) ^ 0x1021) : static_cast<std::uint16_t>(crc << 1);
  }
  return crc % 16384;
}

RedisClusterClient::RedisClusterClient(net::any_io_executor ex, std::string seed_host, std::uint16_t seed_port,
                                       io::DeadlineSweeper& deadlines, std::chrono::milliseconds timeout)
    : ex_(std::move(ex)), deadlines_(deadlines), timeout_(timeout) {
  seed_ = fmt::format("{}:{}", seed_host, seed_port);
  node(seed_host, seed_port);
}

RedisClient& RedisClusterClient::node(const std::string& host, std::uint16_t port) {
  auto& slot = nodes_[fmt::format("{}:{}", host, port)];
  if (!slot) slot = std::make_unique<RedisClient>(ex_, host, port, deadlines_, timeout_);
  return *slot;
}

bool RedisClusterClient::down() const {
  // Down when every known primary is inside its back-off.
  for (const auto& [name, c] : nodes_)
    if (!c->down()) return false;
  return true;
}

net::awaitable<bool> RedisClusterClient::refresh() {
  const std::vector<std::string> argv{"CLUSTER", "SLOTS"};
  for (auto& [name, c] : nodes_) {
    auto r = co_await c->command(argv);
    if (!r || r->type != limits::RedisValue::Type::kArray) {
      last_error_ = r ? fmt::format("CLUSTER SLOTS on {}: {}", name, r->str) : c->last_error();
      continue;
    }
    std::vector<RedisClient*> map(16384, nullptr);
    for (const auto& range : r->array) {
      if (range.array.size() < 3 || range.array[2].array.size() < 2) continue;
      std::string host = range.array[2].array[0].str;
      if (host.empty()) host = name.substr(0, name.rfind(':'));  // "": the node we asked
      RedisClient& owner = node(host, static_cast<std::uint16_t>(range.array[2].array[1].integer));
      for (std::int64_t s = range.array[0].integer; s <= range.array[1].integer && s < 16384; ++s) map[s] = &owner;
    }
    slots_ = std::move(map);
    co_return true;
  }
  co_return false;
}

RedisClient& RedisClusterClient::for_key(std::string_view key) {
  RedisClient* c = slots_.empty() ? nullptr : slots_[slot_of(key)];
  return c ? *c : *nodes_.at(seed_);
}

net::awaitable<std::optional<limits::RedisValue>> RedisClusterClient::routed(
    std::string_view key, const std::function<net::awaitable<std::optional<limits::RedisValue>>(RedisClient&)>& send) {
  if (slots_.empty()) co_await refresh();
  std::optional<limits::RedisValue> r;
  for (int attempt = 0; attempt < 2; ++attempt) {
    RedisClient& c = for_key(key);
    r = co_await send(c);
    if (!r) last_error_ = c.last_error();
    // MOVED <slot> <host>:<port>: the slot has another owner; read the map again.
    if (r && r->type == limits::RedisValue::Type::kError && r->str.starts_with("MOVED ")) {
      co_await refresh();
      continue;
    }
    break;
  }
  co_return r;
}

net::awaitable<std::optional<limits::RedisValue>> RedisClusterClient::command(const std::vector<std::string>& argv) {
  const std::string key = argv.size() > 1 ? argv[1] : std::string();
  const std::function<net::awaitable<std::optional<limits::RedisValue>>(RedisClient&)> send =
      [&argv](RedisClient& c) { return c.command(argv); };
  co_return co_await routed(key, send);
}

net::awaitable<std::optional<limits::RedisValue>> RedisClusterClient::eval(std::string_view script, const std::string& sha,
                                                                           const limits::RedisScriptCall& call) {
  const std::string key = call.keys.empty() ? std::string() : call.keys.front();
  const std::function<net::awaitable<std::optional<limits::RedisValue>>(RedisClient&)> send =
      [&](RedisClient& c) { return c.eval(script, sha, call); };
  co_return co_await routed(key, send);
}

}  // namespace tg::store
