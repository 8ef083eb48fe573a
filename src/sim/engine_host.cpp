#include "sim/engine_host.h"

#include <vector>

namespace tg::sim {

std::optional<EngineProfile> engine_profile(const SimProfile& sim) {
  auto p = profile_named(sim.engine);
  if (!p) return p;
  if (sim.max_num_seqs) p->max_num_seqs = sim.max_num_seqs;
  if (sim.max_num_batched_tokens) p->max_num_batched_tokens = sim.max_num_batched_tokens;
  if (sim.kv_capacity_tokens) p->kv_capacity_tokens = sim.kv_capacity_tokens;
  p->chunked_prefill = sim.chunked_prefill;
  return p;
}

EngineHost::EngineHost(EngineProfile profile) : engine_(std::move(profile)), thread_([this] { run(); }) {}

EngineHost::~EngineHost() { stop(); }

void EngineHost::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    listeners_.clear();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

double EngineHost::wall_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_).count();
}

std::uint64_t EngineHost::submit(std::int64_t prompt_tokens, std::int64_t output_tokens, OnTokens on_tokens) {
  std::uint64_t id = 0;
  {
    std::lock_guard lock(mu_);
    id = next_id_++;
    if (!engine_.busy()) engine_.advance_to(wall_s());  // an idle engine starts the request now
    engine_.submit({id, prompt_tokens, output_tokens});
    listeners_.emplace(id, std::move(on_tokens));
  }
  cv_.notify_one();
  return id;
}

void EngineHost::cancel(std::uint64_t id) {
  std::lock_guard lock(mu_);
  if (listeners_.erase(id)) engine_.cancel(id);
}

EngineHost::Stats EngineHost::stats() const {
  std::lock_guard lock(mu_);
  return {engine_.running(), engine_.waiting(), engine_.kv_used_tokens(), engine_.kv_capacity_tokens(),
          engine_.preemptions(), steps_};
}

void EngineHost::run() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    if (!engine_.busy()) {
      cv_.wait(lock, [&] { return stop_ || engine_.busy(); });
      continue;
    }
    // Behind real time (a slow host): the step starts now, not in the past.
    engine_.advance_to(wall_s());
    const StepResult step = engine_.step();
    ++steps_;
    const auto end = epoch_ + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                  std::chrono::duration<double>(step.end_s));
    // The step "runs" for its simulated time; submissions and cancellations
    // go on meanwhile (they apply from the next step).
    cv_.wait_until(lock, end, [&] { return stop_; });
    if (stop_) break;
    for (const TokenEvent& ev : step.events) {
      auto it = listeners_.find(ev.id);
      if (it == listeners_.end()) continue;  // cancelled during the step
      it->second(ev);
      if (ev.finished) listeners_.erase(it);
    }
  }
}

}  // namespace tg::sim
