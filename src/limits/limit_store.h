// Hierarchical limits: the admit stage of the request path.
//
// A request's scopes form a path through a tree, global → org → tenant →
// user → key, plus flat model and deployment scopes, plus the agent run it
// belongs to (X-TG-Run, linked into a call tree by X-TG-Parent). admit()
// checks every limit on that path and, only if all pass, reserves the
// request's estimated tokens and one concurrency slot at every scope in one
// atomic step. settle() charges the actual tokens (refunding or adding the
// difference) and frees the slots; an Admission that is destroyed unsettled
// settles at its estimate, so no path can leak a reservation.
//
// A run is named by its tenant and its X-TG-Run id: two tenants sending the
// same id have two independent runs, and neither can learn of the other.
//
// What clients name (users, runs, the calls of a run) is kept within bounds
// (TrackingBounds, per tenant): at a bound a store forgets the oldest entry
// that forgetting changes nothing for (nothing in flight, buckets full; a run
// also quiet for run_quiet_s), and refuses with a 429 naming the bound when
// there is none. A refused request leaves no new user scope
// behind, unless the user counts for its tenant's fair share.
//
// LimitStore is the interface; in_process_limit_store() is the embedded
// default (state in this process). Implementations are thread-safe. Time is
// passed in (microseconds on any monotonic-enough clock), never read.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/clock.h"
#include "core/config.h"
#include "core/error.h"
#include "core/request_identity.h"

namespace tg::limits {

using Micros = tg::Micros;

// What one request asks for, with the scopes it passes through.
struct Ask {
  std::string_view org, tenant, user, key, model, deployment;  // user may be empty
  std::string_view run_id;     // X-TG-Run; empty: not part of a run
  std::string_view parent_id;  // X-TG-Parent: the request that spawned this one
  std::string_view request_id;
  std::int64_t tokens = 0;       // estimate: prompt tokens + the most it may generate
  std::int64_t cost_micros = 0;  // estimate, for run cost limits

  // The scopes of `who`'s path (views into it: `who` outlives the Ask).
  static Ask of(const RequestIdentity& who, std::int64_t tokens = 0, std::int64_t cost_micros = 0) {
    return {who.org, who.tenant, who.user, who.key_id, who.model, who.deployment, who.run_id, who.parent_id,
            who.request_id, tokens, cost_micros};
  }
};

// The tightest scope in one dimension, for the x-ratelimit-* and RateLimit
// response headers. limit == 0: no limit applies in that dimension.
struct Headroom {
  std::int64_t limit = 0;      // per minute
  std::int64_t remaining = 0;  // after this request
  Micros reset_us = 0;         // until the bucket is full again
  std::string scope;           // "tenant:acme"
};

struct Quota {
  Headroom requests, tokens;
};

// The response header lines for `q`: OpenAI's x-ratelimit-{limit,remaining,
// reset}-{requests,tokens} and the IETF draft's RateLimit-Policy / RateLimit
// (draft-ietf-httpapi-ratelimit-headers), each ending in CRLF. Empty when no
// limit applies.
std::string rate_limit_headers(const Quota& q);
// OpenAI's duration format for x-ratelimit-reset-*: "20ms", "7s", "1.5s", "6m0s".
std::string openai_duration(Micros us);

// The most a store keeps for names clients choose, per tenant. A flood of
// new names refuses only that tenant's new names, never another tenant's.
inline constexpr std::int64_t kMaxTrackedUsersPerTenant = 10'000;  // user scopes (X-TG-User, body `user`)
inline constexpr std::int64_t kMaxLiveRunsPerTenant = 1'000;       // agent runs (X-TG-Run)
inline constexpr std::int64_t kMaxCallsPerRun = 10'000;            // calls a run remembers as possible parents
inline constexpr std::int64_t kRunEvictQuietS = 300;               // a run this long without a call may be forgotten
struct TrackingBounds {
  std::int64_t users_per_tenant = kMaxTrackedUsersPerTenant;
  std::int64_t runs_per_tenant = kMaxLiveRunsPerTenant;
  std::int64_t calls_per_run = kMaxCallsPerRun;
  std::int64_t run_quiet_s = kRunEvictQuietS;
  static TrackingBounds of(const TrackingConfig& c) {
    return {c.users_per_tenant, c.runs_per_tenant, c.calls_per_run, c.run_quiet_s};
  }
};

// PUT /admin/limits/{scope}: the scope's new limits, replacing all of them (a
// field left out is no limit). Limits that set nothing are refused unless
// `remove_all` says so: the body gave every field as null. (Converts from
// plain limits, which then can never remove every limit.)
struct LimitsUpdate {
  LimitsUpdate(const ScopeLimits& l, bool remove = false) : limits(l), remove_all(remove) {}  // NOLINT: implicit
  ScopeLimits limits;
  bool remove_all = false;
};

class LimitStore;

// A reservation held by an admitted request. Move-only.
class Admission {
 public:
  Admission() = default;
  Admission(LimitStore* store, void* hold, Quota quota) : store_(store), hold_(hold), quota_(std::move(quota)) {}
  Admission(Admission&& o) noexcept { *this = std::move(o); }
  Admission& operator=(Admission&& o) noexcept;
  ~Admission();
  // Charges the actual usage and releases the reservation. Once; later calls do nothing.
  void settle(std::int64_t tokens, std::int64_t cost_micros, Micros now);
  const Quota& quota() const { return quota_; }
  bool held() const { return store_ != nullptr; }

 private:
  LimitStore* store_ = nullptr;
  void* hold_ = nullptr;  // the store's record of what was reserved
  Quota quota_;
};

class LimitStore {
 public:
  virtual ~LimitStore() = default;
  // Admits and reserves, or returns the 429/400/403 that names the scope and
  // limit that refused (with retry_after_s for 429s, before jitter).
  virtual Expected<Admission> admit(const Ask& ask, Micros now) = 0;
  // Current state of one scope ("global", "org:demo", "tenant:acme",
  // "user:acme/alice", "key:acme-alice", "model:chat", "deployment:d",
  // "run:acme/run-42") as a JSON object text, or 404 when unknown.
  virtual Expected<std::string> report(std::string_view scope, Micros now) = 0;
  // Replaces the limits of one scope (the admin API). 404 scope_not_found
  // when the scope, or its tenant, org, key, model or deployment, is not in
  // the configuration (runs take their limits from the configuration only);
  // 400 empty_limits when `update` sets no limit without remove_all. Takes
  // effect for the next admit.
  virtual Expected<std::string> set_limits(std::string_view scope, const LimitsUpdate& update, Micros now) = 0;
  // Replaces every limit with those of `config` (config reload). Usage and
  // reservations carry over.
  virtual void reload(const Config& config) = 0;
  // LimitPolicy::token_ceiling of `ask`'s path under the limits in force
  // (admin changes included): 0 when no tokens-per-minute ceiling applies.
  virtual std::int64_t token_ceiling(const Ask& ask) = 0;

 protected:
  friend class Admission;
  virtual void settle(void* hold, std::int64_t tokens, std::int64_t cost_micros, Micros now) = 0;
  virtual Micros now_for_release() const = 0;  // for an Admission destroyed unsettled
};

// The embedded default: every limit enforced exactly inside this process.
std::unique_ptr<LimitStore> in_process_limit_store(const Config& config, const TrackingBounds& bounds = {});

}  // namespace tg::limits
