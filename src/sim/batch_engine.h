// BatchEngine: a discrete-event model of one continuous-batching inference
// engine in the style of vLLM V1, for the `sim` upstream and offline replay.
// Each step schedules running decodes first (one token each), then prefill
// chunks of running and newly admitted requests, within a per-step token
// budget (max_num_batched_tokens) and max_num_seqs. KV cache is paged
// (block_tokens per block) with a fixed capacity; when a decode needs a block
// and none is free, the most recently admitted running request is preempted
// (its KV freed, its work recomputed from scratch when it is readmitted).
// With chunked prefill off, a prompt is prefilled whole in one step and
// prefills are scheduled before decodes (the older behaviour).
//
// Step time follows a roofline: t = c0 + max(memory, compute), memory =
// (weights + KV read) / (bw_efficiency × bandwidth), compute = (2 × params ×
// tokens) / (flops_efficiency × peak FLOPs). Pure and deterministic: time is
// the engine's own virtual clock, advanced only by step().
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

namespace tg::sim {

struct EngineProfile {
  std::string name;
  double params = 8.03e9;           // Llama-3-8B: 8.03B parameters (Meta model card)
  double weight_bytes = 16.06e9;    // bf16: 2 bytes per parameter
  double kv_bytes_per_token = 131072;  // 32 layers x 8 KV heads x 128 dims x (K,V) x 2 bytes (Llama-3-8B config, GQA)
  std::int64_t kv_capacity_tokens = 450'000;  // H100 80 GB x 0.9 gpu_memory_utilization - weights - activations, / 128 KiB
  double bandwidth = 3.35e12;       // H100 SXM HBM3, bytes/s (NVIDIA H100 datasheet)
  double peak_flops = 989e12;       // H100 SXM dense BF16 tensor FLOP/s (NVIDIA H100 datasheet)
  double bw_efficiency = 0.70;      // achieved/peak HBM bandwidth in decode; calibrated so batch-1 decode is ~8 ms
  double flops_efficiency = 0.60;   // achieved MFU in prefill; calibrated to ~37k prefill tokens/s
  double c0_s = 0.0012;             // fixed per-step overhead (scheduler, kernel launches), seconds
  std::int64_t max_num_batched_tokens = 8192;  // vLLM V1 default with chunked prefill on H100-class GPUs
  std::int64_t max_num_seqs = 256;              // vLLM default
  std::int64_t block_tokens = 16;               // vLLM default KV block size
  bool chunked_prefill = true;
};

// The default profile above, and the others the config may name.
EngineProfile llama3_8b_h100();
EngineProfile llama3_70b_4xh100();
EngineProfile small_cpu_model();
// One of the above by its name (llama3-8b-h100, llama3-70b-4xh100, small-cpu); null when unknown.
std::optional<EngineProfile> profile_named(const std::string& name);

struct EngineRequest {
  std::uint64_t id = 0;
  std::int64_t prompt_tokens = 0;
  std::int64_t output_tokens = 0;  // it stops after this many
};

// What one step produced for one request.
struct TokenEvent {
  std::uint64_t id = 0;
  std::int64_t tokens = 0;  // output tokens emitted by this step (0 while prefilling)
  bool first = false;       // this step emitted the request's first token
  bool finished = false;    // the request is complete (its KV is freed)
};

struct StepResult {
  double start_s = 0, end_s = 0;
  std::int64_t prefill_tokens = 0, decode_tokens = 0;
  std::int64_t running = 0;  // sequences in the batch
  std::vector<TokenEvent> events;
  std::vector<std::uint64_t> preempted;
};

class BatchEngine {
 public:
  explicit BatchEngine(EngineProfile p) : p_(std::move(p)) {}

  // Queues a request at the engine's current time (FCFS behind earlier ones).
  void submit(const EngineRequest& r);
  // Drops a request (its client left): its KV is freed at once. False when unknown.
  bool cancel(std::uint64_t id);
  // Runs one step from now(); returns what it did. REQUIRES: busy().
  StepResult step();
  bool busy() const { return !waiting_.empty() || !running_.empty(); }
  double now() const { return now_; }
  // Lets idle time pass (the engine has nothing to do until `t`).
  void advance_to(double t) {
    if (t > now_) now_ = t;
  }
  std::int64_t kv_used_tokens() const { return kv_blocks_used_ * p_.block_tokens; }
  std::int64_t kv_capacity_tokens() const { return kv_blocks_total() * p_.block_tokens; }
  std::size_t running() const { return running_.size(); }
  std::size_t waiting() const { return waiting_.size(); }
  std::uint64_t preemptions() const { return preemptions_; }
  // The roofline time of one step with these prefill/decode tokens and this
  // much KV read (context tokens of every scheduled sequence).
  double step_seconds(std::int64_t prefill_tokens, std::int64_t decode_tokens, std::int64_t kv_read_tokens) const;
  const EngineProfile& profile() const { return p_; }

 private:
  struct Seq {
    EngineRequest req;
    std::int64_t pending = 0;    // tokens to prefill before it can decode (prompt, or prompt + output after preemption)
    std::int64_t kv = 0;         // tokens in its KV cache
    std::int64_t generated = 0;  // output tokens emitted
    std::int64_t blocks = 0;
  };
  std::int64_t kv_blocks_total() const { return p_.kv_capacity_tokens / p_.block_tokens; }
  std::int64_t blocks_for(std::int64_t tokens) const { return (tokens + p_.block_tokens - 1) / p_.block_tokens; }
  bool grow(Seq& s, std::int64_t tokens);  // reserve KV for `tokens` more; false when full
  void preempt_last(StepResult& out);

  EngineProfile p_;
  double now_ = 0;
  std::deque<Seq> waiting_;
  std::vector<Seq> running_;  // admission order
  std::int64_t kv_blocks_used_ = 0;
  std::uint64_t preemptions_ = 0;
};

}  // namespace tg::sim
