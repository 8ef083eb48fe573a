#include "server/metrics.h"

#include <fmt/format.h>

namespace tg::server {

namespace {
// Prometheus label values escape backslash, double quote and newline.
std::string esc(const std::string& s) {
  std::string o;
  o.reserve(s.size());
  for (char c : s) {
    if (c == '\\') o += "\\\\";
    else if (c == '"') o += "\\\"";
    else if (c == '\n') o += "\\n";
    else o += c;
  }
  return o;
}
}  // namespace

// Finds or inserts `key` (a tuple of string_views and ints) in `family`.
template <class Fam, class... Parts>
typename Fam::mapped_type& slot(Fam& family, Parts... parts) {
  auto probe = std::make_tuple(parts...);
  auto it = family.find(probe);
  if (it != family.end()) return it->second;
  typename Fam::key_type key(parts...);
  return family.emplace(std::move(key), typename Fam::mapped_type{}).first->second;
}

void Metrics::Histogram::observe(double v) {
  for (std::size_t i = 0; i < kBuckets.size(); ++i)
    if (v <= kBuckets[i]) ++counts[i];
  ++count;
  sum += v;
}

void Metrics::record_request(const std::string& tenant, const std::string& model, const std::string& endpoint,
                             int status, double seconds) {
  std::string_view t = tenant, m = model, e = endpoint;
  std::lock_guard lock(mu_);
  ++slot(requests_, t, m, e, status);
  slot(latency_, t, m).observe(seconds);
}

void Metrics::record_ttft(const std::string& tenant, const std::string& model, double seconds) {
  std::string_view t = tenant, m = model;
  std::lock_guard lock(mu_);
  slot(ttft_, t, m).observe(seconds);
}

void Metrics::record_tokens(const std::string& tenant, const std::string& model, std::uint64_t prompt,
                            std::uint64_t completion) {
  std::string_view t = tenant, m = model;
  std::lock_guard lock(mu_);
  slot(tokens_, t, m, std::string_view("prompt")) += prompt;
  slot(tokens_, t, m, std::string_view("completion")) += completion;
}

void Metrics::record_upstream_error(const std::string& deployment, const std::string& code) {
  std::string_view d = deployment, c = code;
  std::lock_guard lock(mu_);
  ++slot(upstream_errors_, d, c);
}

void Metrics::record_limit_rejection(const std::string& tenant, const std::string& code) {
  std::string_view t = tenant, c = code;
  std::lock_guard lock(mu_);
  ++slot(limit_rejections_, t, c);
}

std::string Metrics::render(const std::string& extra) const {
  std::string out;
  auto scalar = [&](const char* name, const char* help, const char* type, std::int64_t v) {
    out += fmt::format("# HELP tg_{0} {1}\n# TYPE tg_{0} {2}\ntg_{0} {3}\n", name, help, type, v);
  };
#define TG_RENDER_COUNTER(name, help) scalar(#name, help, "counter", stats.name.load());
#define TG_RENDER_GAUGE(name, help) scalar(#name, help, "gauge", stats.name.load());
  TG_ALL_GATEWAY_STATS(TG_RENDER_COUNTER, TG_RENDER_GAUGE)
#undef TG_RENDER_COUNTER
#undef TG_RENDER_GAUGE

  std::lock_guard lock(mu_);
  out += "# HELP tg_requests_total Requests answered, by tenant, model alias, endpoint and HTTP status\n"
         "# TYPE tg_requests_total counter\n";
  for (const auto& [k, v] : requests_)
    out += fmt::format("tg_requests_total{{tenant=\"{}\",model=\"{}\",endpoint=\"{}\",status=\"{}\"}} {}\n",
                       esc(std::get<0>(k)), esc(std::get<1>(k)), esc(std::get<2>(k)), std::get<3>(k), v);
  auto histo = [&](const char* name, const char* help,
                   const Family<Key2, Histogram>& m) {
    out += fmt::format("# HELP tg_{0} {1}\n# TYPE tg_{0} histogram\n", name, help);
    for (const auto& [k, h] : m) {
      std::string labels = fmt::format("tenant=\"{}\",model=\"{}\"", esc(std::get<0>(k)), esc(std::get<1>(k)));
      for (std::size_t i = 0; i < kBuckets.size(); ++i)
        out += fmt::format("tg_{}_bucket{{{},le=\"{}\"}} {}\n", name, labels, kBuckets[i], h.counts[i]);
      out += fmt::format("tg_{}_bucket{{{},le=\"+Inf\"}} {}\n", name, labels, h.count);
      out += fmt::format("tg_{}_sum{{{}}} {}\ntg_{}_count{{{}}} {}\n", name, labels, h.sum, name, labels, h.count);
    }
  };
  histo("request_duration_seconds", "Time from request headers read to response end", latency_);
  histo("time_to_first_token_seconds", "Streams: time from request headers read to the first token sent",
        ttft_);
  out += "# HELP tg_tokens_total Tokens reported by upstreams, by tenant, model and kind\n"
         "# TYPE tg_tokens_total counter\n";
  for (const auto& [k, v] : tokens_)
    out += fmt::format("tg_tokens_total{{tenant=\"{}\",model=\"{}\",kind=\"{}\"}} {}\n", esc(std::get<0>(k)),
                       esc(std::get<1>(k)), std::get<2>(k), v);
  out += "# HELP tg_upstream_errors_total Upstream failures, by deployment and error code\n"
         "# TYPE tg_upstream_errors_total counter\n";
  for (const auto& [k, v] : upstream_errors_)
    out += fmt::format("tg_upstream_errors_total{{deployment=\"{}\",code=\"{}\"}} {}\n", esc(std::get<0>(k)),
                       esc(std::get<1>(k)), v);
  out += "# HELP tg_limit_rejections_total Requests refused by a limit (rate, concurrency, fair share, run), by "
         "tenant and error code\n# TYPE tg_limit_rejections_total counter\n";
  for (const auto& [k, v] : limit_rejections_)
    out += fmt::format("tg_limit_rejections_total{{tenant=\"{}\",code=\"{}\"}} {}\n", esc(std::get<0>(k)),
                       esc(std::get<1>(k)), v);
  out += extra;
  return out;
}

}  // namespace tg::server
