// Offline replay: a whole trace through one BatchEngine behind an admission
// pool (max sequences + in-flight token budget) ordered by a FairQueue, in
// virtual time. Pure and deterministic: the same trace gives the same result.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "sched/pool.h"
#include "sim/batch_engine.h"

namespace tg::sim {

struct TraceRequest {
  double arrival_s = 0;
  std::string tenant, user;
  std::int64_t prompt_tokens = 0, output_tokens = 0;
  sched::Priority priority = sched::Priority::kInteractive;
};

// Reads a trace: the simple CSV `arrival_s,tenant,user,prompt_tokens,
// output_tokens[,priority]` (with that header; priority interactive or batch), or the Azure LLM inference
// trace `TIMESTAMP,ContextTokens,GeneratedTokens` (arrival relative to its
// first row; tenant = `azure_tenant`, users spread by row). Throws
// std::runtime_error naming the line on a malformed row.
// `split` > 1 spreads an Azure trace's rows over that many tenants
// ("<azure_tenant>-0" ...), for a mix of many light tenants.
std::vector<TraceRequest> read_trace(const std::string& text, const std::string& azure_tenant, int split = 1);

// The noisy neighbour: `tenant` sends a reasoning request (prompt, output)
// every 1/rate seconds over [0, duration).
std::vector<TraceRequest> heavy_tenant(const std::string& tenant, double rate, double duration_s,
                                       std::int64_t prompt_tokens, std::int64_t output_tokens);


struct TenantStats {
  std::int64_t completed = 0, output_tokens = 0;
  double ttft_p50_s = 0, ttft_p90_s = 0, ttft_p99_s = 0;
  double itl_p50_s = 0, itl_p90_s = 0, itl_p99_s = 0;
  double service_rate = 0;  // (input + 2 x output tokens) per second while it had work
};

struct RequestRecord {
  double arrival_s = 0, ttft_s = 0, done_s = 0;
  std::string tenant;
};

struct ReplayResult {
  std::string policy;
  std::vector<RequestRecord> requests;  // every request, in arrival order
  double makespan_s = 0, tokens_per_s = 0, utilisation = 0;
  // Jain's fairness index of the service given to tenants backlogged through
  // a 10 s window, averaged over such windows (1.0 when there were none).
  double jain = 1.0;
  int jain_windows = 0;
  std::uint64_t preemptions = 0;
  std::map<std::string, TenantStats> tenants;
};

// With `policy` fcfs the lane is off (plain arrival order); with fair, VTC order plus the lane.
// `pool` is the live gateway's pool settings (sched::Pool); its max_seqs and
// inflight_tokens default (0) to the engine's max_num_seqs and KV capacity.
ReplayResult replay(std::vector<TraceRequest> trace, const EngineProfile& engine, sched::Policy policy,
                    sched::PoolConfig pool = {});
std::string to_json(const ReplayResult& r);
std::string to_table(const ReplayResult& r);

}  // namespace tg::sim
