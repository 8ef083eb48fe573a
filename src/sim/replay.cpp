#include "sim/replay.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include <fmt/format.h>

namespace tg::sim {
namespace {

std::vector<std::string> csv_fields(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : line) {
    if (c == ',') {
      out.push_back(cur);
      cur.clear();
    } else if (c != '\r') {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

// "2023-11-16 18:15:46.6805900" → seconds since midnight.
double azure_seconds(const std::string& ts, std::size_t line) {
  int h = 0, m = 0;
  double s = 0;
  if (ts.size() < 19 || std::sscanf(ts.c_str() + 11, "%d:%d:%lf", &h, &m, &s) != 3)
    throw std::runtime_error(fmt::format("trace line {}: '{}' is not a TIMESTAMP like 2023-11-16 18:15:46.68", line, ts));
  return h * 3600.0 + m * 60.0 + s;
}

double pct(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

std::vector<TraceRequest> read_trace(const std::string& text, const std::string& azure_tenant, int split) {
  std::istringstream in(text);
  std::string line;
  std::vector<TraceRequest> out;
  if (!std::getline(in, line)) return out;
  const auto header = csv_fields(line);
  const bool azure = !header.empty() && header[0] == "TIMESTAMP";
  if (!azure && (header.size() < 5 || header[0] != "arrival_s"))
    throw std::runtime_error("trace line 1: expected the header 'arrival_s,tenant,user,prompt_tokens,output_tokens' "
                             "or the Azure trace's 'TIMESTAMP,ContextTokens,GeneratedTokens'");
  double first = -1;
  for (std::size_t n = 2; std::getline(in, line); ++n) {
    if (line.empty() || line == "\r") continue;
    const auto f = csv_fields(line);
    TraceRequest r;
    try {
      if (azure) {
        if (f.size() < 3) throw std::invalid_argument("columns");
        const double t = azure_seconds(f[0], n);
        if (first < 0) first = t;
        r.arrival_s = t - first;
        r.tenant = split > 1 ? fmt::format("{}-{}", azure_tenant, n % static_cast<std::size_t>(split)) : azure_tenant;
        r.user = fmt::format("{}-u{}", r.tenant, (n * 2654435761u) % 64);
        r.prompt_tokens = std::stoll(f[1]);
        r.output_tokens = std::stoll(f[2]);
      } else {
        if (f.size() < 5) throw std::invalid_argument("columns");
        r.arrival_s = std::stod(f[0]);
        r.tenant = f[1];
        r.user = f[2];
        r.prompt_tokens = std::stoll(f[3]);
        r.output_tokens = std::stoll(f[4]);
        if (f.size() > 5 && f[5] == "batch") r.priority = sched::Priority::kBatch;
        else if (f.size() > 5 && !f[5].empty() && f[5] != "interactive")
          throw std::runtime_error(fmt::format("trace line {}: priority '{}' is not interactive or batch", n, f[5]));
      }
    } catch (const std::runtime_error&) {
      throw;
    } catch (const std::exception&) {
      throw std::runtime_error(fmt::format("trace line {}: '{}' is not {}", n, line,
                                           azure ? "TIMESTAMP,ContextTokens,GeneratedTokens"
                                                 : "arrival_s,tenant,user,prompt_tokens,output_tokens"));
    }
    if (r.prompt_tokens < 0 || r.output_tokens < 0 || r.arrival_s < 0)
      throw std::runtime_error(fmt::format("trace line {}: negative value in '{}'", n, line));
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<TraceRequest> heavy_tenant(const std::string& tenant, double rate, double duration_s,
                                       std::int64_t prompt_tokens, std::int64_t output_tokens) {
  std::vector<TraceRequest> out;
  if (rate <= 0) return out;
  for (double t = 0; t < duration_s; t += 1.0 / rate)
    out.push_back({t, tenant, tenant + "-agent", prompt_tokens, output_tokens});
  return out;
}

ReplayResult replay(std::vector<TraceRequest> trace, const EngineProfile& profile, sched::Policy policy,
                    sched::PoolConfig pool) {
  std::stable_sort(trace.begin(), trace.end(), [](const auto& a, const auto& b) { return a.arrival_s < b.arrival_s; });
  BatchEngine engine(profile);
  pool.policy = policy;
  if (!pool.max_seqs) pool.max_seqs = profile.max_num_seqs;
  if (!pool.inflight_tokens) pool.inflight_tokens = engine.kv_capacity_tokens();
  sched::Pool admission(pool);

  struct Live {
    double arrival = 0, last_token = -1;
  };
  std::unordered_map<std::uint64_t, Live> live;
  std::map<std::string, std::vector<double>> ttft, itl;
  std::map<std::string, double> service, busy_since, backlog_time;
  std::map<std::string, std::int64_t> open;  // requests waiting or in flight, per tenant
  ReplayResult res;
  res.policy = policy == sched::Policy::kFair ? "fair" : "fcfs";
  for (const auto& r : trace) res.tenants[r.tenant];
  res.requests.resize(trace.size());
  for (std::size_t i = 0; i < trace.size(); ++i) res.requests[i] = {trace[i].arrival_s, 0, 0, trace[i].tenant};

  // Jain's index over 10 s windows: among tenants that had requests waiting
  // in the queue throughout a window (backlogged), how evenly was service
  // (input + 2 x output tokens) shared? Averaged over windows with two or more.
  constexpr double kWindow = 10.0;
  double win_start = 0, jain_sum = 0;
  int jain_windows = 0;
  std::map<std::string, double> win_service;
  std::map<std::string, bool> win_backlogged;
  for (const auto& [name, st] : res.tenants) win_backlogged[name] = false;
  std::int64_t total_out = 0;
  double busy_time = 0;
  std::size_t next = 0;
  auto touch = [&](const std::string& t, int delta, double now) {
    if (open[t] == 0 && delta > 0) busy_since[t] = now;
    open[t] += delta;
    if (open[t] == 0) backlog_time[t] += now - busy_since[t];
  };
  while (next < trace.size() || admission.stats().waiting > 0 || engine.busy()) {
    const double now = engine.now();
    for (; next < trace.size() && trace[next].arrival_s <= now; ++next) {
      const auto& r = trace[next];
      const std::int64_t p = std::max<std::int64_t>(1, r.prompt_tokens), o = std::max<std::int64_t>(1, r.output_tokens);
      admission.arrive({next, r.tenant, r.user, p, o, r.priority, 0}, r.arrival_s);
      live[next] = Live{r.arrival_s, -1};
      touch(r.tenant, +1, r.arrival_s);
    }
    for (std::uint64_t id : admission.dispatch(now)) {
      const auto& r = trace[id];
      engine.submit({id, std::max<std::int64_t>(1, r.prompt_tokens), std::max<std::int64_t>(1, r.output_tokens)});
    }
    if (!engine.busy()) {
      if (next < trace.size()) engine.advance_to(trace[next].arrival_s);
      continue;
    }
    StepResult s = engine.step();
    busy_time += s.end_s - s.start_s;
    for (const TokenEvent& ev : s.events) {
      const TraceRequest& tr = trace[ev.id];
      Live& l = live[ev.id];
      if (ev.first) {
        ttft[tr.tenant].push_back(s.end_s - l.arrival);
        res.requests[ev.id].ttft_s = s.end_s - l.arrival;
        service[tr.tenant] += static_cast<double>(std::max<std::int64_t>(1, tr.prompt_tokens));
        win_service[tr.tenant] += static_cast<double>(std::max<std::int64_t>(1, tr.prompt_tokens));
      } else if (ev.tokens && l.last_token >= 0) {
        itl[tr.tenant].push_back(s.end_s - l.last_token);
      }
      if (ev.tokens) {
        l.last_token = s.end_s;
        total_out += ev.tokens;
        res.tenants[tr.tenant].output_tokens += ev.tokens;
        service[tr.tenant] += 2.0 * static_cast<double>(ev.tokens);
        win_service[tr.tenant] += 2.0 * static_cast<double>(ev.tokens);
        admission.charge_output(ev.id, ev.tokens);
      }
      if (ev.finished) {
        res.requests[ev.id].done_s = s.end_s;
        admission.finish(ev.id, s.end_s);
        ++res.tenants[tr.tenant].completed;
        touch(tr.tenant, -1, s.end_s);
        live.erase(ev.id);
      }
    }
    for (auto& [name, b] : win_backlogged) b = b && admission.waiting(name) > 0;
    if (s.end_s >= win_start + kWindow) {
      double sum = 0, sum_sq = 0;
      int n = 0;
      for (const auto& [name, b] : win_backlogged) {
        if (!b) continue;
        const double x = win_service[name];
        sum += x;
        sum_sq += x * x;
        ++n;
      }
      if (n >= 2 && sum_sq > 0) {
        jain_sum += sum * sum / (n * sum_sq);
        ++jain_windows;
      }
      win_start = s.end_s;
      win_service.clear();
      for (auto& [name, b] : win_backlogged) b = admission.waiting(name) > 0;
    }
  }
  res.makespan_s = engine.now();
  res.tokens_per_s = res.makespan_s > 0 ? static_cast<double>(total_out) / res.makespan_s : 0;
  res.utilisation = res.makespan_s > 0 ? busy_time / res.makespan_s : 0;
  res.preemptions = engine.preemptions();
  for (auto& [name, st] : res.tenants) {
    st.ttft_p50_s = pct(ttft[name], 0.50);
    st.ttft_p90_s = pct(ttft[name], 0.90);
    st.ttft_p99_s = pct(ttft[name], 0.99);
    st.itl_p50_s = pct(itl[name], 0.50);
    st.itl_p90_s = pct(itl[name], 0.90);
    st.itl_p99_s = pct(itl[name], 0.99);
    if (backlog_time[name] > 0) st.service_rate = service[name] / backlog_time[name];
  }
  res.jain = jain_windows ? jain_sum / jain_windows : 1.0;
  res.jain_windows = jain_windows;
  return res;
}

std::string to_json(const ReplayResult& r) {
  std::string t;
  for (const auto& [name, s] : r.tenants) {
    if (!t.empty()) t += ",";
    t += fmt::format(
        R"("{}":{{"completed":{},"output_tokens":{},"ttft_p50_s":{:.4f},"ttft_p90_s":{:.4f},"ttft_p99_s":{:.4f},"itl_p50_s":{:.4f},"itl_p90_s":{:.4f},"itl_p99_s":{:.4f},"service_per_s":{:.1f}}})",
        name, s.completed, s.output_tokens, s.ttft_p50_s, s.ttft_p90_s, s.ttft_p99_s, s.itl_p50_s, s.itl_p90_s,
        s.itl_p99_s, s.service_rate);
  }
  return fmt::format(
      R"({{"policy":"{}","tokens_per_s":{:.1f},"jain":{:.4f},"jain_windows":{},"utilisation":{:.4f},"makespan_s":{:.2f},"preemptions":{},"tenants":{{{}}}}})",
      r.policy, r.tokens_per_s, r.jain, r.jain_windows, r.utilisation, r.makespan_s, r.preemptions, t);
}

std::string to_table(const ReplayResult& r) {
  std::string out = fmt::format(
      "policy {}: {:.0f} output tokens/s, engine busy {:.1f}%, Jain {:.3f}, {:.1f} s, {} preemptions\n"
      "  {:<24}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}\n",
      r.policy, r.tokens_per_s, 100 * r.utilisation, r.jain, r.makespan_s, r.preemptions, "tenant", "completed",
      "ttft p50", "ttft p90", "ttft p99", "itl p99", "tok/s");
  for (const auto& [name, s] : r.tenants)
    out += fmt::format("  {:<24}{:>10}{:>9.3f}s{:>9.3f}s{:>9.3f}s{:>9.3f}s{:>10.0f}\n", name, s.completed, s.ttft_p50_s,
                       s.ttft_p90_s, s.ttft_p99_s, s.itl_p99_s,
                       r.makespan_s > 0 ? static_cast<double>(s.output_tokens) / r.makespan_s : 0.0);
  return out;
}

}  // namespace tg::sim
