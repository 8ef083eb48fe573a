// Coarse I/O deadlines for one worker thread. Instead of an Asio timer per
// socket operation (a timer-queue update, often a timerfd_settime syscall,
// and a cancelled-handler dispatch for every read and write), each socket
// owns a Deadline that is a plain time stamp; one periodic sweep per worker
// cancels the pending operations of every socket whose deadline has passed.
// Resolution is the sweep period (100 ms): a 400 ms timeout fires between
// 400 and 500 ms. Not thread-safe: everything lives on one worker's thread.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <list>
#include <memory>

namespace tg::io {

class Deadline;

class DeadlineSweeper {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kPeriod{100};

  explicit DeadlineSweeper(boost::asio::any_io_executor ex);
  DeadlineSweeper(const DeadlineSweeper&) = delete;
  DeadlineSweeper& operator=(const DeadlineSweeper&) = delete;

  // Starts the periodic sweep on the executor; stop() ends it.
  void start();
  void stop();
  // Fires every armed deadline that has passed at `now` (the sweep; public
  // so tests can drive it without waiting).
  void sweep(Clock::time_point now);
  std::size_t registered() const { return registry_->size(); }

 private:
  friend class Deadline;
  void schedule();
  boost::asio::steady_timer timer_;
  // Shared with every Deadline, so a socket destroyed after the sweeper (a
  // coroutine frame torn down with its io_context) still unregisters safely.
  std::shared_ptr<std::list<Deadline*>> registry_ = std::make_shared<std::list<Deadline*>>();
  bool running_ = false;
};

// One socket's deadline. REQUIRES: the socket outlives it (the sweeper need not).
class Deadline {
 public:
  Deadline(DeadlineSweeper& sweeper, boost::asio::ip::tcp::socket& socket);
  ~Deadline();
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;

  // The next operations must finish within `d` from now, or be cancelled
  // (they then complete with operation_aborted and expired() is true).
  void arm(std::chrono::milliseconds d);
  void disarm();
  bool expired() const { return expired_; }

 private:
  friend class DeadlineSweeper;
  std::shared_ptr<std::list<Deadline*>> registry_;
  boost::asio::ip::tcp::socket& socket_;
  std::list<Deadline*>::iterator self_;
  DeadlineSweeper::Clock::time_point at_{DeadlineSweeper::Clock::time_point::max()};
  bool expired_ = false;
};

}  // namespace tg::io
