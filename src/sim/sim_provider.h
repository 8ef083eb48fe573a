// SimProvider: the built-in `sim` upstream. Answers like an OpenAI-compatible
// engine (deterministic text, correct usage) on this thread's timers, with
// first-token and inter-token delays from EngineModel. Belongs to one worker
// thread; honours terminal cancellation like every Provider.
#pragma once

#include <atomic>

#include "sim/engine_model.h"
#include "sim/responder.h"
#include "upstream/provider.h"

namespace tg::sim {

class SimProvider final : public upstream::Provider {
 public:
  explicit SimProvider(const DeploymentConfig& d) : d_(d), model_(d.sim), responder_(d.sim, d.model) {}
  boost::asio::awaitable<upstream::UpstreamReply> send(const upstream::UpstreamRequest& req,
                                                       upstream::StreamSink& sink) override;
  const DeploymentConfig& deployment() const override { return d_; }

  // Streams cut short by cancellation, process-wide (tests read it via /metrics).
  static std::atomic<std::uint64_t> cancelled_streams;

 private:
  const DeploymentConfig& d_;
  EngineModel model_;
  Responder responder_;
};

}  // namespace tg::sim
