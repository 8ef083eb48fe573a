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

#include "io/deadlines.h"
#include "limits/redis_script.h"

namespace tg::store {

class RedisClient {
 public:
  RedisClient(boost::asio::any_io_executor ex, std::string host, std::uint16_t port, io::DeadlineSweeper& deadlines,
              std::chrono::milliseconds timeout);
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // Sends one command; the reply, or nullopt when the server could not be
  // reached in time (the reason is in last_error()). Server error replies
  // (-ERR ...) are returned as values of type kError.
  boost::asio::awaitable<std::optional<limits::RedisValue>> command(const std::vector<std::string>& argv);
  // EVALSHA, falling back to EVAL (which also loads the script) on NOSCRIPT.
  boost::asio::awaitable<std::optional<limits::RedisValue>> eval(std::string_view script, const std::string& sha,
                                                                 const limits::RedisScriptCall& call);

  bool down() const;  // inside the back-off after a failure
  const std::string& last_error() const { return last_error_; }

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

}  // namespace tg::store
