// Clock: the one source of time for the edge and every core. Cores stay
// pure: they take the time as an argument (microseconds of the monotonic
// clock, or Unix milliseconds of the wall clock); the edge reads it from a
// Clock, and tests pass a ManualClock. Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace tg {

using Micros = std::int64_t;  // microseconds of the monotonic clock (durations, deadlines, buckets)

class Clock {
 public:
  virtual ~Clock() = default;
  virtual Micros steady_us() const = 0;       // monotonic: never goes back
  virtual std::int64_t wall_ms() const = 0;   // Unix milliseconds (UTC): for records and calendar periods
  double steady_s() const { return static_cast<double>(steady_us()) / 1e6; }
  std::chrono::system_clock::time_point wall() const {
    return std::chrono::system_clock::time_point(std::chrono::milliseconds(wall_ms()));
  }
  // The process's clocks (std::chrono::steady_clock and system_clock).
  static const Clock& system();
};

// A clock that moves only when told to: for tests.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(Micros steady_us = 1'000'000, std::int64_t wall_ms = 1'767'225'600'000)
      : steady_(steady_us), wall_(wall_ms) {}
  Micros steady_us() const override { return steady_.load(); }
  std::int64_t wall_ms() const override { return wall_.load(); }
  void advance_us(Micros us) {
    steady_ += us;
    wall_ += us / 1000;
  }

 private:
  std::atomic<Micros> steady_;
  std::atomic<std::int64_t> wall_;
};

}  // namespace tg
