// SimProvider: the built-in `sim` upstream. Answers like an OpenAI-compatible
// engine (deterministic text, correct usage). Its timing comes from the
// deployment's shared EngineHost (a continuous-batching engine: tokens
// stream at the simulated step times, delayed by everyone else's work), or
// with `engine: fixed` from EngineModel on this thread's timers. Belongs to
// one worker thread; honours terminal cancellation like every Provider (a
// cancelled request leaves the engine at once, its KV freed).
#pragma once

#include <atomic>
#include <functional>

#include "sim/engine_host.h"
#include "sim/engine_model.h"
#include "sim/responder.h"
#include "upstream/provider.h"

namespace tg::sim {

class SimProvider final : public upstream::Provider {
 public:
  // `engine`: the deployment's shared engine; null for engine: fixed.
  SimProvider(const DeploymentConfig& d, EngineHost* engine)
      : d_(d), engine_(engine), model_(d.sim), responder_(d.sim, d.model) {}
  boost::asio::awaitable<upstream::UpstreamReply> send(const upstream::UpstreamRequest& req,
                                                       upstream::StreamSink& sink) override;
  const DeploymentConfig& deployment() const override { return d_; }

  // Streams cut short by cancellation, process-wide (tests read it via /metrics).
  static std::atomic<std::uint64_t> cancelled_streams;

 private:
  // Streams a generation: open, the role chunks and token i of every choice
  // once token_ready(i) resumes, then the usage chunk and [DONE].
  using TokenReady = std::function<boost::asio::awaitable<void>(std::size_t)>;
  boost::asio::awaitable<void> stream_out(const upstream::UpstreamRequest& req, const Generation& g,
                                          std::int64_t created, upstream::StreamSink& sink,
                                          upstream::UpstreamReply& reply, const TokenReady& token_ready);
  boost::asio::awaitable<upstream::UpstreamReply> send_batched(const upstream::UpstreamRequest& req,
                                                               upstream::StreamSink& sink);

  const DeploymentConfig& d_;
  EngineHost* engine_;
  EngineModel model_;
  Responder responder_;
};

}  // namespace tg::sim
