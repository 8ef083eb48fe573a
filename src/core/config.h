// The validated configuration model. A Config is built once by load_config()
// (config_load.cpp) from YAML and is immutable afterwards: stages keep
// references into it for the life of the process. Every field here has been
// checked; nothing downstream re-validates.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace tg {

using Millis = std::chrono::milliseconds;

struct HostPort {
  std::string host;
  std::uint16_t port = 0;
  std::string to_string() const;
};

struct ServerConfig {
  HostPort listen{"127.0.0.1", 8080};
  unsigned threads = 0;                    // 0: one per core
  std::size_t max_body_bytes = 4u << 20;   // larger bodies get 413
  std::size_t max_header_bytes = 16u << 10;
  Millis header_timeout{10'000};  // first byte of a request to end of its headers
  Millis body_timeout{30'000};    // end of headers to end of body
  Millis idle_timeout{60'000};    // keep-alive wait for the next request
  Millis write_timeout{30'000};   // one write to a slow reader
  Millis drain_timeout{20'000};   // SIGTERM: in-flight work gets this long
  std::string access_log = "stdout";  // stdout | stderr | off | a file path
  // What refused requests may cost (limits/refusal_budget.h), per key or
  // client address and per worker thread: units (one a refusal before
  // admission, one per 64 KiB of body) held at once and refilled a second.
  // refusal_burst 0: never limited.
  double refusal_burst = 200, refusal_per_s = 5;
  // Prompts of more bytes than this are tokenized on the counting thread,
  // never on an I/O worker (whose other connections would wait meanwhile).
  std::size_t offload_count_bytes = 64u << 10;
};

// A per-minute limit with HTB-style borrowing. `ceil` is the hard cap (0:
// none). `rate` is what the scope is guaranteed out of its parent's capacity
// when siblings compete; 0 means a fair share: the parent's rate divided by
// its active children. Above its guarantee a scope borrows only the parent's
// idle capacity, up to `ceil`.
struct RateLimit {
  std::int64_t rate = 0, ceil = 0;
};

// The limits of one scope (global, org, tenant, user, key, model, deployment).
struct ScopeLimits {
  RateLimit requests_per_min, tokens_per_min;  // tokens: prompt + output
  std::int64_t concurrency = 0;                // requests in flight; 0: none
  bool any() const {
    return requests_per_min.ceil || tokens_per_min.ceil || concurrency || requests_per_min.rate ||
           tokens_per_min.rate;
  }
};

// Limits of one agent run (requests sharing X-TG-Run). 0: no limit. Depth
// counts X-TG-Parent links: a run's first call is depth 0.
struct RunLimits {
  std::int64_t tokens = 0;       // prompt + output over the whole run
  std::int64_t cost_micros = 0;  // USD micro-dollars over the whole run
  std::int64_t concurrency = 0;  // calls in flight at once
  std::int64_t depth = 0;        // deepest call allowed
  std::int64_t fanout = 0;       // calls one parent may spawn
  std::int64_t calls_per_min = 0;
  std::int64_t wall_s = 0;       // seconds from the run's first call
};

// The fleet's shared limit state. Empty host: limits are kept in-process.
struct RedisLimitsConfig {
  std::string host;
  std::uint16_t port = 6379;
  std::string key_prefix = "tg";
  Millis timeout{250};
  std::int64_t fleet_size = 1;     // gateways sharing the limits, for local_share
  bool local_share = true;         // on_outage: local_share | fail_closed (scope limits)
  bool runs_local_share = false;   // runs_on_outage: fail_closed (default) | local_share
  bool cluster = false;            // a Redis Cluster (the address is a seed node); docs/limits-cluster.md
};

// The most the limit stores keep for names clients choose, per tenant
// (limits/limit_store.h): at a bound the oldest entry that forgetting changes
// nothing for goes, else the new name gets a 429 naming the bound.
struct TrackingConfig {
  std::int64_t users_per_tenant = 10'000;  // user scopes (X-TG-User, body `user`)
  std::int64_t runs_per_tenant = 1'000;    // live agent runs (X-TG-Run)
  std::int64_t calls_per_run = 10'000;     // calls a run remembers as possible parents
  std::int64_t run_quiet_s = 300;          // a run this long without a call may be forgotten
};

struct LimitsConfig {
  RedisLimitsConfig redis;
  TrackingConfig tracking;
  ScopeLimits global;
  RunLimits runs;  // every run, unless its tenant sets run_limits
  // A scope within its fair share may always use it: borrowers above their
  // share must leave each competing sibling `fair_burst_s` seconds of its
  // share in the parent's bucket.
  bool fair_share = true;  // false: parents are plain buckets (the single-bucket behaviour of other gateways)
  std::int64_t fair_burst_s = 10;
  std::int64_t active_window_s = 60;  // a child counts as active this long after its last request
};

struct UserConfig {
  std::string id;
  ScopeLimits limits;  // overrides the tenant's user_limits when set
};

using Sha256 = std::array<std::uint8_t, 32>;

struct KeyConfig {
  std::string id;    // shown in logs and the ledger; never the secret
  std::string user;  // empty: a tenant-level key
  Sha256 sha256{};
  ScopeLimits limits;
};

struct TenantConfig {
  std::string id;
  std::string org;
  std::vector<UserConfig> users;
  std::vector<KeyConfig> keys;
  std::vector<std::string> models;  // allowed model aliases; empty: all
  ScopeLimits limits;
  ScopeLimits user_limits;  // each of its users (configured or named by X-TG-User)
  bool has_run_limits = false;
  RunLimits run_limits;  // when has_run_limits: its runs', instead of limits.runs
  double weight = 1;     // its share of contended engines (fair admission)
  bool cache_tenant_scope = false;  // cache_scope: tenant — answers without personal data shared by its users
  double cache_threshold = 0;       // its namespace's similarity threshold; 0: the cache's
};

struct OrgConfig {
  std::string id;
  ScopeLimits limits;
};

enum class ProviderKind { kSim, kOpenAI, kAnthropic };

// The built-in `sim` provider's engine. `engine` names a continuous-batching
// profile (sim::BatchEngine, one engine per deployment shared by all workers:
// llama3-8b-h100, llama3-70b-4xh100, small-cpu), with optional overrides, or
// `fixed`: the foundation's contention-free model (TTFT = ttft_base +
// prompt_tokens / prefill_rate, then one token every decode interval), for
// measuring the gateway's own overhead.
struct SimProfile {
  std::string engine = "llama3-8b-h100";
  std::int64_t max_num_seqs = 0, max_num_batched_tokens = 0, kv_capacity_tokens = 0;  // 0: the profile's
  bool chunked_prefill = true;
  // engine: fixed
  double prefill_tokens_per_s = 40'000;
  double decode_ms_per_token = 8.0;
  double ttft_base_ms = 5.0;
  std::uint32_t default_output_tokens = 48;  // when the request sets no max
  std::uint32_t embedding_dims = 256;
};

// Fair admission to a deployment (sched::Pool): its capacity in sequences
// and in-flight tokens (prompt + expected output: a model of its KV cache),
// and the long-request lane.
struct PoolSettings {
  bool enabled = false;  // `pool:` given, or a sim deployment with a batching engine
  std::int64_t max_seqs = 0, inflight_tokens = 0;  // 0: no limit (sim: the engine's)
  std::int64_t long_tokens = 8192;
  double long_share = 0.8;
  double short_idle_s = 10;  // short work unseen this long: long work may fill the pool
};

struct DeploymentConfig {
  std::string id;
  ProviderKind provider = ProviderKind::kSim;
  std::string model;  // the name sent upstream
  std::uint32_t weight = 1;
  // kOpenAI and kAnthropic:
  std::string scheme;     // http | https
  std::string host;
  std::uint16_t port = 0;
  std::string base_path;  // e.g. "/v1", no trailing slash
  std::string api_key;    // resolved from api_key_env at load; may be empty
  std::string api_key_env;
  Millis connect_timeout{5'000};
  Millis read_timeout{120'000};  // max silence between upstream bytes
  bool tls_verify = true;
  std::string tls_ca_file;  // empty: system trust store
  std::uint32_t max_idle_connections = 64;  // per worker thread
  // kAnthropic only (Messages API, POST {base_url}/messages):
  std::string anthropic_version = "2023-06-01";  // sent as the anthropic-version header
  bool auth_bearer = false;  // auth_header: x-api-key (false, Anthropic's own) | authorization (Bearer)
  // max_tokens when the client sets none: Anthropic requires it, OpenAI does not.
  std::uint32_t default_max_tokens = 4096;
  ScopeLimits limits;
  // kSim only:
  SimProfile sim;
  PoolSettings pool;
};

// USD per 1M tokens, in micro-dollars (parsed exactly from the config's decimals).
struct PriceConfig {
  std::int64_t input_per_1m = 0;
  std::int64_t output_per_1m = 0;
  std::int64_t cached_input_per_1m = 0;
  std::int64_t cache_write_per_1m = 0;  // prompt-cache writes (Anthropic); absent: input_per_1m
};

struct ModelConfig {
  std::string alias;  // what clients send as "model"
  std::string owned_by = "tenantgate";
  std::string encoding;  // cl100k_base | o200k_base; empty: metering.default_encoding
  PriceConfig price;     // all zero when the model has no price
  ScopeLimits limits;
  bool reasoning = false;  // a reasoning model: fair admission expects longer outputs of it
  // The model's context window (prompt + output), in tokens; 0: unknown.
  // When set, a longer request is refused with 400 context_length_exceeded
  // before admission, and counting its prompt stops there.
  std::uint64_t context_tokens = 0;
  std::vector<DeploymentConfig> deployments;
};

enum class BudgetScope { kTenant, kUser, kKey, kFeature };
enum class BudgetPeriod { kDay, kMonth };  // UTC

// A spend limit. `limit` is micro-dollars, or tokens when `in_tokens`.
struct BudgetConfig {
  BudgetScope scope = BudgetScope::kTenant;
  std::string tenant;   // tenant, user and feature scopes
  std::string user;     // user scope
  std::string key;      // key scope (a key id)
  std::string feature;  // feature scope (X-TG-Feature within the tenant)
  BudgetPeriod period = BudgetPeriod::kDay;
  bool in_tokens = false;
  std::int64_t limit = 0;
  int soft_percent = 80;  // alert (log + metric) when spend crosses this share
  std::string webhook;    // optional http:// URL POSTed a JSON alert at the soft threshold
};

struct MeteringConfig {
  std::string default_encoding = "o200k_base";  // for models with no encoding of their own
  std::string ledger_sqlite = "tenantgate-ledger.db";  // "off": no ledger
  std::string ledger_postgres;  // libpq conninfo; when set, the ledger is in PostgreSQL (fleet)
  // Write-ahead journal of rows not yet stored (kill -9 durability); one per
  // gateway process. Empty: "<ledger_sqlite>.tg-journal", or
  // "tenantgate-ledger.tg-journal" in the working directory for PostgreSQL.
  // "off": none (rows queued at a kill -9 are lost).
  std::string ledger_journal;
  std::string journal_path() const {
    if (ledger_journal == "off") return {};
    if (!ledger_journal.empty()) return ledger_journal;
    if (!ledger_postgres.empty()) return "tenantgate-ledger.tg-journal";
    if (ledger_sqlite == "off") return {};
    return ledger_sqlite + ".tg-journal";
  }
};

// How waiting requests are ordered at saturated deployments.
struct SchedulingConfig {
  bool fair = true;  // policy: fair (VTC + lane) | fcfs
  double input_weight = 1, output_weight = 2;  // VTC w_p, w_q
  double batch_aging_s = 30;
  Millis interactive_timeout{30'000}, batch_timeout{300'000};  // queue deadlines
  std::int64_t default_output_tokens = 512;  // expected output when max_tokens is absent (before history)
};

// An operator-defined public cache namespace: shared across tenants, written
// only by requests marked `X-TG-Cache-Namespace: <name>` from its writers,
// never with personal data.
struct PublicNamespace {
  std::string name;
  double threshold = 0;  // 0: the cache's
  std::vector<std::string> writers;  // tenants that may write it (any tenant may read)
};

// The response cache (src/cache/): exact and semantic tiers, partitioned by
// construction, guarded, bounded per tenant.
struct CacheConfig {
  bool enabled = false;
  bool exact = true, semantic = true;
  double threshold = 0.9;          // cosine similarity for a semantic hit (guards must pass too)
  double verify_lexical = 0;       // > 0: a semantic hit must also reach this lexical similarity
  std::vector<PublicNamespace> public_namespaces;
  std::uint32_t prior_turns = 0;   // earlier turns embedded with the last user turn
  double ttl_s = 3600;
  std::int64_t max_entries_per_tenant = 10'000;
  std::int64_t max_bytes_per_tenant = 64ll << 20;  // entries, their partitions and indexes, counted (cache/store.h)
  std::int64_t max_partitions_per_tenant = 10'000;
  std::int64_t max_bytes_total = 512ll << 20;   // the whole store; the largest tenant's LRU entry goes first
  std::int64_t flat_max_vectors = 512;          // a partition scans its vectors up to this many, then builds an HNSW index
  double max_temperature = 1.0;    // hotter requests are not cached
  std::string embedder = "local";  // local (built in), or a model alias served by an OpenAI-compatible /v1/embeddings
  // Fleet mode: entries in Redis, every gateway's store a replica (empty host: per process).
  std::string redis_host;
  std::uint16_t redis_port = 0;
  std::string redis_prefix = "tgc";
};

struct Config {
  std::string source;  // file name or "<embedded default>"
  ServerConfig server;
  MeteringConfig metering;
  LimitsConfig limits;
  SchedulingConfig scheduling;
  CacheConfig cache;
  std::vector<Sha256> admin_keys;  // admin API keys (hashes); none: the admin API answers 403
  std::vector<OrgConfig> orgs;
  std::vector<TenantConfig> tenants;
  std::vector<ModelConfig> models;
  std::vector<BudgetConfig> budgets;

  const ModelConfig* find_model(const std::string& alias) const;
  const TenantConfig* find_tenant(const std::string& id) const;
};

}  // namespace tg
