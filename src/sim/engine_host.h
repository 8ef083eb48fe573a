// EngineHost: one simulated continuous-batching engine (BatchEngine) run in
// real time on its own thread, shared by every worker that sends to its
// deployment, as a real vLLM server is shared by everyone in front of it.
// Each step's virtual duration is slept out before its tokens are delivered;
// submissions made meanwhile join the next step, as they would on a GPU.
//
// Delivery: submit() takes a callback that the engine thread calls once per
// step with that request's TokenEvent; it must be cheap and thread-safe
// (SimProvider posts it to the request's own worker). cancel() drops a
// request and frees its KV; its callback is never called again.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "core/config.h"
#include "sim/batch_engine.h"

namespace tg::sim {

// The engine a sim deployment's config describes (its profile with the
// config's overrides); null for engine: fixed.
std::optional<EngineProfile> engine_profile(const SimProfile& sim);

class EngineHost {
 public:
  using OnTokens = std::function<void(const TokenEvent&)>;
  explicit EngineHost(EngineProfile profile);
  ~EngineHost();  // stops the thread; pending callbacks are dropped
  EngineHost(const EngineHost&) = delete;
  EngineHost& operator=(const EngineHost&) = delete;

  // Returns the id to cancel() with.
  std::uint64_t submit(std::int64_t prompt_tokens, std::int64_t output_tokens, OnTokens on_tokens);
  void cancel(std::uint64_t id);
  void stop();

  struct Stats {
    std::size_t running = 0, waiting = 0;
    std::int64_t kv_used_tokens = 0, kv_capacity_tokens = 0;
    std::uint64_t preemptions = 0, steps = 0;
  };
  Stats stats() const;
  const EngineProfile& profile() const { return engine_.profile(); }

 private:
  void run();
  double wall_s() const;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  BatchEngine engine_;
  std::unordered_map<std::uint64_t, OnTokens> listeners_;
  std::uint64_t next_id_ = 1, steps_ = 0;
  bool stop_ = false;
  const std::chrono::steady_clock::time_point epoch_ = std::chrono::steady_clock::now();
  std::thread thread_;  // last: starts after everything above exists
};

}  // namespace tg::sim
