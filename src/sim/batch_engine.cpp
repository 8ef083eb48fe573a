#include "sim/batch_engine.h"

#include <algorithm>

namespace tg::sim {

EngineProfile llama3_8b_h100() {
  EngineProfile p;
  p.name = "llama3-8b-h100";
  return p;
}

EngineProfile llama3_70b_4xh100() {
  EngineProfile p;
  p.name = "llama3-70b-4xh100";
  p.params = 70.6e9;                 // Llama-3-70B (Meta model card)
  p.weight_bytes = 141.2e9;          // bf16, split over 4 GPUs (tensor parallel)
  p.kv_bytes_per_token = 327680;     // 80 layers x 8 KV heads x 128 dims x (K,V) x 2 bytes
  p.kv_capacity_tokens = 500'000;    // 4 x 80 GB x 0.9 - 141 GB weights - activations, / 320 KiB
  p.bandwidth = 4 * 3.35e12;         // 4 x H100 SXM HBM3
  p.peak_flops = 4 * 989e12;         // 4 x H100 SXM dense BF16
  p.bw_efficiency = 0.60;            // tensor-parallel all-reduce eats into it
  p.flops_efficiency = 0.50;
  p.c0_s = 0.003;
  return p;
}

EngineProfile small_cpu_model() {
  EngineProfile p;
  p.name = "small-cpu";
  p.params = 0.5e9;                  // a 0.5B model (e.g. Qwen2.5-0.5B) on a server CPU
  p.weight_bytes = 1.0e9;            // bf16
  p.kv_bytes_per_token = 12288;      // 24 layers x 2 KV heads x 64 dims x (K,V) x 2 bytes
  p.kv_capacity_tokens = 200'000;
  p.bandwidth = 100e9;               // one socket of DDR5, bytes/s
  p.peak_flops = 2e12;               // AVX-512 BF16, one socket
  p.bw_efficiency = 0.5;
  p.flops_efficiency = 0.4;
  p.c0_s = 0.002;
  p.max_num_batched_tokens = 2048;
  p.max_num_seqs = 32;
  return p;
}

std::optional<EngineProfile> profile_named(const std::string& name) {
  for (EngineProfile p : {llama3_8b_h100(), llama3_70b_4xh100(), small_cpu_model()})
    if (p.name == name) return p;
  return std::nullopt;
}

double BatchEngine::step_seconds(std::int64_t prefill_tokens, std::int64_t decode_tokens,
                                 std::int64_t kv_read_tokens) const {
  const double memory = (p_.weight_bytes + static_cast<double>(kv_read_tokens) * p_.kv_bytes_per_token) /
                        (p_.bw_efficiency * p_.bandwidth);
  const double compute = 2.0 * p_.params * static_cast<double>(prefill_tokens + decode_tokens) /
                         (p_.flops_efficiency * p_.peak_flops);
  return p_.c0_s + std::max(memory, compute);
}

void BatchEngine::submit(const EngineRequest& r) {
  Seq s;
  s.req = r;
  s.req.prompt_tokens = std::max<std::int64_t>(1, r.prompt_tokens);
  s.req.output_tokens = std::max<std::int64_t>(1, r.output_tokens);  // a completion samples at least one token
  s.pending = s.req.prompt_tokens;
  waiting_.push_back(s);
}

bool BatchEngine::cancel(std::uint64_t id) {
  auto w = std::find_if(waiting_.begin(), waiting_.end(), [&](const Seq& s) { return s.req.id == id; });
  if (w != waiting_.end()) {
    kv_blocks_used_ -= w->blocks;
    waiting_.erase(w);
    return true;
  }
  auto r = std::find_if(running_.begin(), running_.end(), [&](const Seq& s) { return s.req.id == id; });
  if (r == running_.end()) return false;
  kv_blocks_used_ -= r->blocks;
  running_.erase(r);
  return true;
}

bool BatchEngine::grow(Seq& s, std::int64_t tokens) {
  const std::int64_t need = blocks_for(s.kv + tokens) - s.blocks;
  if (need > 0) {
    if (kv_blocks_used_ + need > kv_blocks_total()) return false;
    kv_blocks_used_ += need;
    s.blocks += need;
  }
  s.kv += tokens;
  return true;
}

// Recompute preemption of the most recently admitted running sequence: its KV
// is freed and it goes back to the front of the queue, to prefill its prompt
// and the output it already produced again.
void BatchEngine::preempt_last(StepResult& out) {
  Seq s = std::move(running_.back());
  running_.pop_back();
  kv_blocks_used_ -= s.blocks;
  s.blocks = 0;
  s.kv = 0;
  s.pending = s.req.prompt_tokens + s.generated;
  out.preempted.push_back(s.req.id);
  ++preemptions_;
  waiting_.push_front(std::move(s));
}

StepResult BatchEngine::step() {
  StepResult out;
  out.start_s = now_;
  std::int64_t budget = p_.max_num_batched_tokens;
  std::int64_t kv_read = 0;
  // (index in running_, prefill tokens; 0 = a decode)
  struct Work {
    std::uint64_t id;
    std::int64_t prefill;
  };
  std::vector<Work> work;

  auto decodes = [&] {
    for (std::size_t i = 0; i < running_.size() && budget > 0; ++i) {
      if (running_[i].pending > 0) continue;
      bool ok = grow(running_[i], 1);
      while (!ok) {
        const bool self = i == running_.size() - 1;
        preempt_last(out);
        if (self) break;
        ok = grow(running_[i], 1);
      }
      if (!ok) break;  // it preempted itself
      work.push_back({running_[i].req.id, 0});
      kv_read += running_[i].kv;
      --budget;
    }
  };
  auto prefill = [&](Seq& s, std::int64_t chunk) {
    if (chunk <= 0 || !grow(s, chunk)) return false;
    s.pending -= chunk;
    work.push_back({s.req.id, chunk});
    kv_read += s.kv;
    budget -= chunk;
    return true;
  };
  auto admit = [&](bool whole) {
    while (!waiting_.empty() && static_cast<std::int64_t>(running_.size()) < p_.max_num_seqs && budget > 0) {
      Seq& s = waiting_.front();
      std::int64_t chunk = std::min(s.pending, budget);
      if (whole) {
        // Old behaviour: whole prompts only (one over the budget runs alone).
        if (s.pending > budget && !work.empty()) break;
        chunk = s.pending;
      }
      if (!prefill(s, chunk)) break;  // no KV for it: it waits
      running_.push_back(std::move(s));
      waiting_.pop_front();
    }
  };

  if (p_.chunked_prefill) {
    decodes();
    for (auto& s : running_)
      if (s.pending > 0 && budget > 0) prefill(s, std::min(s.pending, budget));
    admit(false);
  } else {
    admit(true);
    if (work.empty()) decodes();
  }

  // Apply the step's results at its end.
  std::int64_t prefill_tokens = 0, decode_tokens = 0;
  for (const Work& w : work) (w.prefill ? prefill_tokens += w.prefill : decode_tokens += 1);
  out.prefill_tokens = prefill_tokens;
  out.decode_tokens = decode_tokens;
  out.running = static_cast<std::int64_t>(work.size());
  now_ += step_seconds(prefill_tokens, decode_tokens, kv_read);
  out.end_s = now_;
  for (const Work& w : work) {
    auto it = std::find_if(running_.begin(), running_.end(), [&](const Seq& s) { return s.req.id == w.id; });
    if (it == running_.end()) continue;  // preempted later in this step
    Seq& s = *it;
    TokenEvent ev{s.req.id, 0, false, false};
    if (w.prefill == 0) {
      ++s.generated;
      ev.tokens = 1;
    } else if (s.pending == 0) {
      // The step that completes a prefill samples the next token. Its KV is
      // written by the next step, so reserve it now.
      if (grow(s, 1)) {
        ev.first = s.generated == 0;
        ++s.generated;
        ev.tokens = 1;
      } else {
        s.pending = 1;  // no room for it yet: emitted once KV frees up
      }
    }
    if (s.generated >= s.req.output_tokens) {
      ev.finished = true;
      kv_blocks_used_ -= s.blocks;
      running_.erase(it);
    }
    out.events.push_back(ev);
  }
  return out;
}

}  // namespace tg::sim
