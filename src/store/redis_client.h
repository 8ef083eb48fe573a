// A Redis client for one worker thread: a small pool of plain TCP connections
// to one server, each carrying one command at a time (RESP written with
// hiredis's formatter, replies parsed with its reader). A command that cannot
// be sent or answered within the timeout fails; the client then stays "down"
// for a short back-off and fails fast, instead of dialling on every request,
// until a retry connects. Not thread-safe: use from the owning io_context only.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>
#include <functional>
#include <map>

#include "io/deadlines.h"
#include "limits/redis_script.h"

namespace tg::store {

// What the Redis stores need of a connection: one command, or a script.
class RedisCaller {
 public:
  virtual ~RedisCaller() = default;
  virtual boost::asio::awaitable<std::optional<limits::RedisValue>> command(const std::vector<std::string>& argv) = 0;
  virtual boost::asio::awaitable<std::optional<limits::RedisValue>> eval(std::string_view script, const std::string& sha,
                                                                         const limits::RedisScriptCall& call) = 0;
  virtual bool down() const = 0;
  virtual const std::string& last_error() const = 0;
};

class RedisClient final : public RedisCaller {
 public:
  RedisClient(boost::asio::any_io_executor ex, std::string host, std::uint16_t port, io::DeadlineSweeper& deadlines,
              std::chrono::milliseconds timeout);
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // Sends one command; the reply, or nullopt when the server could not be
  // reached in time (the reason is in last_error()). Server error replies
  // (-ERR ...) are returned as values of type kError.
  boost::asio::awaitable<std::optional<limits::RedisValue>> command(const std::vector<std::string>& argv) override;
  // EVALSHA, falling back to EVAL (which also loads the script) on NOSCRIPT.
  boost::asio::awaitable<std::optional<limits::RedisValue>> eval(std::string_view script, const std::string& sha,
                                                                 const limits::RedisScriptCall& call) override;

  bool down() const override;  // inside the back-off after a failure
  const std::string& last_error() const override { return last_error_; }

 private:
  struct Conn;
  boost::asio::awaitable<std::unique_ptr<Conn>> dial();
  boost::asio::any_io_executor ex_;
  std::string host_;
  std::uint16_t port_;
  io::DeadlineSweeper& deadlines_;
  std::chrono::milliseconds timeout_;
  std::vector<std::unique_ptr<Conn>> idle_;
  std::chrono::steady_clock::time_point down_until_{};
  std::string last_error_;
};

// A Redis Cluster, for one worker thread: a RedisClient per primary, the slot
// map from CLUSTER SLOTS (read at first use and again after a MOVED), each
// command sent to the primary of its first key's slot (CRC16 of the key's
// hash tag, as Redis computes it). A MOVED reply updates the map and the
// command is retried once; ASK (a slot being migrated) is returned as the
// error it is. Not thread-safe.
class RedisClusterClient final : public RedisCaller {
 public:
  RedisClusterClient(boost::asio::any_io_executor ex, std::string seed_host, std::uint16_t seed_port,
                     io::DeadlineSweeper& deadlines, std::chrono::milliseconds timeout);
  boost::asio::awaitable<std::optional<limits::RedisValue>> command(const std::vector<std::string>& argv) override;
  boost::asio::awaitable<std::optional<limits::RedisValue>> eval(std::string_view script, const std::string& sha,
                                                                 const limits::RedisScriptCall& call) override;
  bool down() const override;
  const std::string& last_error() const override { return last_error_; }

  static std::uint16_t slot_of(std::string_view key);

 private:
  boost::asio::awaitable<bool> refresh();
  RedisClient& node(const std::string& host, std::uint16_t port);
  RedisClient& for_key(std::string_view key);
  // Retries once after a MOVED (the map updated meanwhile).
  boost::asio::awaitable<std::optional<limits::RedisValue>> routed(std::string_view key,
                                                                   const std::function<boost::asio::awaitable<std::optional<limits::RedisValue>>(RedisClient&)>& send);

  boost::asio::any_io_executor ex_;
  io::DeadlineSweeper& deadlines_;
  std::chrono::milliseconds timeout_;
  std::map<std::string, std::unique_ptr<RedisClient>> nodes_;  // "host:port" → its pool
  std::vector<RedisClient*> slots_;  // 16384 entries once mapped; empty before
  std::string seed_;
  std::string last_error_;
};

}  // namespace tg::store
