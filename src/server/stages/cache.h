// cache: the response cache's stage (src/cache/ does the deciding). After
// admission and before the queue, lookup() decides the request's cache mode
// (Cache-Control, temperature, the endpoint), computes its key in each
// partition it may use (the user's; the tenant's when the tenant opted in
// and the prompt holds no personal data; a public namespace named by
// X-TG-Cache-Namespace) and looks them up. A complete answer is stored by
// remember_answer() / remember_stream() just before its last bytes. Each
// response says what happened in `x-tg-cache: hit|miss|bypass|refresh` and
// nothing else (no key, no similarity). The store is process-wide and
// thread-safe; this stage is per worker.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <optional>
#include <string>

#include "api/request.h"
#include "cache/store.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/error.h"
#include "core/request_identity.h"
#include "server/exchange.h"
#include "server/handler.h"
#include "server/metrics.h"
#include "store/cache_replica.h"
#include "upstream/router.h"

namespace tg::server::stages {

class Cache {
 public:
  // `store` null: the cache is off (every call does nothing). `embedders`
  // routes the configured embedding model when cache.embedder is not "local".
  Cache(const CacheConfig& config, cache::CacheStore* store, store::CacheReplica* replica,
        upstream::Router& embedders, GatewayStats& stats, const Clock& clock)
      : config_(config), store_(store), replica_(replica), embedders_(embedders), stats_(stats), clock_(clock) {}

  bool enabled() const { return store_ != nullptr; }

  // The stored answer (an OpenAI completion body, as first served) when the
  // request may be answered from the cache; fills `st` (status, keys, audit)
  // and adds the x-tg-cache header line to `headers`. 400 for an unknown
  // X-TG-Cache-Namespace.
  boost::asio::awaitable<Expected<std::optional<std::string>>> lookup(const Request& head, const RequestIdentity& who,
                                                                      const TenantConfig* tenant,
                                                                      const api::ParsedRequest& r, CacheState& st,
                                                                      std::string& headers) const;

  // Stores a complete answer when the lookup said it may.
  void remember_answer(CacheState& st, const RequestIdentity& who, std::string_view body) const;
  void remember_stream(CacheState& st, const RequestIdentity& who, const api::ParsedRequest& r,
                       const std::optional<api::Usage>& usage) const;

 private:
  boost::asio::awaitable<std::vector<float>> embed(const RequestIdentity& who, const std::string& prompt) const;
  void set_status(CacheState& st, std::string& headers, const char* status) const;
  void store(CacheState& st, const RequestIdentity& who, std::string body, std::string_view answer_text) const;

  const CacheConfig& config_;
  cache::CacheStore* store_;
  store::CacheReplica* replica_;
  upstream::Router& embedders_;
  GatewayStats& stats_;
  const Clock& clock_;
};

}  // namespace tg::server::stages
