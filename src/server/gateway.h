// Gateway: the composition root. Builds the key ring, one worker per thread
// (its own io_context, SO_REUSEPORT listener, router and upstream providers,
// so the hot path takes no lock), and runs until SIGTERM/SIGINT, then drains:
// stops accepting, answers /readyz 503, lets in-flight requests and streams
// finish up to server.drain_timeout, closes the rest, and returns. SIGHUP
// calls `reload` and applies the new config's limits (the rest of a config
// change needs a restart); an invalid config is reported and ignored.
#pragma once

#include <functional>
#include <memory>
#include <optional>

#include "core/config.h"

namespace tg::server {

class Gateway {
 public:
  explicit Gateway(Config config, std::function<std::optional<Config>()> reload = {});
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Binds, serves until a stop signal, drains. Returns the process exit code.
  // Throws std::runtime_error when the address cannot be bound.
  int run();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tg::server
