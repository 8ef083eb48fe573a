#include "core/config_load.h"

#include <yaml-cpp/yaml.h>

#include <boost/url/parse.hpp>
#include <cstdlib>
#include <fmt/format.h>
#include <limits>
#include <set>
#include <unordered_map>
#include <unordered_set>

namespace tg {
namespace {

// Collects problems with their source position.
class Problems {
 public:
  explicit Problems(std::string source) : source_(std::move(source)) {}
  void add(const YAML::Node& at, const std::string& path, const std::string& what) {
    int line = at.IsDefined() && at.Mark().line >= 0 ? at.Mark().line + 1 : 0;
    if (line > 0)
      list_.push_back(fmt::format("{}:{}: {}: {}", source_, line, path, what));
    else
      list_.push_back(fmt::format("{}: {}: {}", source_, path, what));
  }
  // With the column too: for what may share its line with its like (a repeated key).
  void add_at_column(const YAML::Mark& at, const std::string& path, const std::string& what) {
    list_.push_back(fmt::format("{}:{}:{}: {}: {}", source_, at.line + 1, at.column + 1, path, what));
  }
  bool empty() const { return list_.empty(); }
  std::vector<std::string> take() { return std::move(list_); }

 private:
  std::string source_;
  std::vector<std::string> list_;
};

std::string join_path(const std::string& base, const std::string& key) {
  return base.empty() ? key : base + "." + key;
}

// Reads the fields of one YAML mapping, recording type errors and, when
// done() is called, any field nobody asked for (a typo must not be ignored).
class Fields {
 public:
  Fields(const YAML::Node& node, std::string path, Problems& p)
      : node_(node), path_(std::move(path)), p_(p) {
    if (node_.IsDefined() && !node_.IsNull() && !node_.IsMap()) {
      p_.add(node_, path_.empty() ? "(top level)" : path_, "must be a mapping of fields");
      bad_ = true;
    }
  }

  const std::string& path() const { return path_; }
  const YAML::Node& node() const { return node_; }
  std::string sub(const std::string& key) const { return join_path(path_, key); }

  YAML::Node get(const std::string& key) {
    seen_.insert(key);
    if (bad_ || !node_.IsDefined() || node_.IsNull()) return YAML::Node(YAML::NodeType::Undefined);
    return node_[key];
  }

  std::optional<std::string> str(const std::string& key, bool required) {
    YAML::Node n = get(key);
    if (!n.IsDefined() || n.IsNull()) {
      if (required) p_.add(node_, sub(key), "is required");
      return std::nullopt;
    }
    if (!n.IsScalar()) {
      p_.add(n, sub(key), "must be a string");
      return std::nullopt;
    }
    return n.Scalar();
  }

  std::optional<std::string> id(const std::string& key, bool required) {
    auto s = str(key, required);
    if (s && !valid_id(*s)) {
      p_.add(node_[key], sub(key),
             fmt::format("'{}' is not a valid id (1-64 chars of a-z A-Z 0-9 . _ -)", *s));
      return std::nullopt;
    }
    return s;
  }

  template <class T>
  void number(const std::string& key, T& out, double min, double max) {
    YAML::Node n = get(key);
    if (!n.IsDefined() || n.IsNull()) return;
    double v = 0;
    bool ok = n.IsScalar();
    if (ok) {
      try {
        v = n.as<double>();
      } catch (const YAML::Exception&) {
        ok = false;
      }
    }
    if (ok && std::is_integral_v<T> && v != static_cast<double>(static_cast<long long>(v))) ok = false;
    if (!ok) {
      p_.add(n, sub(key), fmt::format("must be {}", std::is_integral_v<T> ? "an integer" : "a number"));
      return;
    }
    if (v < min || v > max) {
      p_.add(n, sub(key), fmt::format("{} is out of range [{}, {}]", n.Scalar(), min, max));
      return;
    }
    out = static_cast<T>(v);
  }

  void millis(const std::string& key, Millis& out, long long min, long long max) {
    long long v = out.count();
    number(key, v, static_cast<double>(min), static_cast<double>(max));
    out = Millis(v);
  }

  // "host:port" (see parse_host_port); the reason when it is not one.
  std::optional<HostPort> address(const std::string& key, bool required) {
    auto a = str(key, required);
    if (!a) return std::nullopt;
    std::string why;
    auto hp = parse_host_port(*a, &why);
    if (!hp) p_.add(get(key), sub(key), why);
    return hp;
  }

  void boolean(const std::string& key, bool& out) {
    YAML::Node n = get(key);
    if (!n.IsDefined() || n.IsNull()) return;
    try {
      out = n.as<bool>();
    } catch (const YAML::Exception&) {
      p_.add(n, sub(key), "must be true or false");
    }
  }

  // A sequence field; absent gives an empty sequence.
  YAML::Node seq(const std::string& key, bool required) {
    YAML::Node n = get(key);
    if (!n.IsDefined() || n.IsNull()) {
      if (required) p_.add(node_, sub(key), "is required (a list)");
      return YAML::Node(YAML::NodeType::Sequence);
    }
    if (!n.IsSequence()) {
      p_.add(n, sub(key), "must be a list");
      return YAML::Node(YAML::NodeType::Sequence);
    }
    return n;
  }

  void done() {
    if (bad_ || !node_.IsMap()) return;
    for (const auto& kv : node_) {
      std::string k = kv.first.Scalar();
      if (!seen_.count(k)) {
        std::string known;
        for (const auto& s : seen_) known += (known.empty() ? "" : ", ") + s;
        p_.add(kv.first, sub(k), fmt::format("unknown field (known here: {})", known));
      }
    }
  }

  static bool valid_id(const std::string& s) {
    if (s.empty() || s.size() > 64) return false;
    for (unsigned char c : s)
      if (!(std::isalnum(c) || c == '.' || c == '_' || c == '-')) return false;
    return true;
  }

 private:
  YAML::Node node_;
  std::string path_;
  Problems& p_;
  std::set<std::string> seen_;
  bool bad_ = false;
};

std::string idx(const std::string& base, std::size_t i) { return fmt::format("{}[{}]", base, i); }

// What to do about a config too large for one gateway.
constexpr const char* kSplitTenants = "split the tenants across several gateway instances, each with its own config file";

// One walk over the whole tree, before any field is read. Every mapping must
// name each key once: yaml-cpp keeps both pairs and lookups see the first, so a
// second `requests_per_min:` or `server:` would be ignored without a word. And
// the tree, every alias (*name) expanded, must stay within
// config_bounds::kMaxNodes. A node reached through several aliases is walked
// once (yaml-cpp shares it; its text offset identifies it) and then counted by
// its remembered expanded size, so the walk is linear in the text, never in the
// expansion. Returns false, and nothing may be built from the tree, when the
// node bound is passed or an alias names a node that contains it.
bool check_tree(const YAML::Node& root, Problems& p) {
  struct Open {  // a mapping or sequence being walked
    YAML::Node node;
    std::string path;
    YAML::const_iterator next, end;
    std::size_t index = 0;
    std::uint64_t nodes_before = 0;
    std::unordered_map<std::string, YAML::Mark> keys;  // mappings: where each key is first
  };
  constexpr std::uint64_t kWalking = std::numeric_limits<std::uint64_t>::max();
  std::unordered_map<int, std::uint64_t> expanded;  // by text offset: nodes under it, or kWalking
  std::vector<Open> open;
  std::uint64_t nodes = 0;
  // Counts `n`, reached at `path` under `key` (mappings) or in `seq`. A shared
  // node's mark is its anchor's, so an alias is pointed at by its key or list.
  auto reach = [&](const YAML::Node& n, std::string path, const YAML::Node* key, const YAML::Node& seq) {
    bool fresh = true;
    const auto where = [&]() -> const YAML::Node& { return key ? *key : fresh ? n : seq; };
    if (n.IsMap() || n.IsSequence()) {
      auto [it, first_visit] = expanded.try_emplace(n.Mark().pos, kWalking);
      fresh = first_visit;
      if (!fresh && it->second == kWalking) {
        p.add(where(), path,
              fmt::format("is an alias of a node that contains it (anchored at line {}); a config "
                          "cannot contain itself", n.Mark().line + 1));
        return false;
      }
      if (fresh) open.push_back(Open{n, path, n.begin(), n.end(), 0, nodes, {}});
      nodes += fresh ? 1 : it->second;
    } else {
      ++nodes;
    }
    if (nodes <= config_bounds::kMaxNodes) return true;
    p.add(where(), path,
          fmt::format("here the config passes {} YAML nodes with its aliases (*name) expanded, the "
                      "most a config may hold; an alias repeats all of its anchor's contents: "
                      "repeat smaller anchors, or fewer times", config_bounds::kMaxNodes));
    return false;
  };
  if (!reach(root, "", nullptr, root)) return false;
  while (!open.empty()) {
    Open& o = open.back();
    if (o.next == o.end) {
      expanded[o.node.Mark().pos] = nodes - o.nodes_before;
      open.pop_back();
      continue;
    }
    const bool in_map = o.node.IsMap();
    const auto item = *o.next;  // a key and value in a mapping, the node in a sequence
    const YAML::Node child = in_map ? item.second : YAML::Node(item);
    const YAML::Node& at = item.first;
    const YAML::Node seq = o.node;
    std::string path;
    if (!in_map) {
      path = idx(o.path, o.index++);
    } else if (!at.IsScalar()) {
      ++nodes;  // a key that is itself a collection: no field has one, so it is not walked
      path = join_path(o.path, "?");
    } else {
      ++nodes;
      const std::string& key = at.Scalar();
      path = join_path(o.path, key);
      auto [first, fresh] = o.keys.try_emplace(key, at.Mark());
      if (!fresh)
        p.add_at_column(at.Mark(), path,
                        fmt::format("duplicate key '{}' (first at line {}, column {}); YAML would "
                                    "silently keep only one of them: remove or merge the other",
                                    key, first->second.line + 1, first->second.column + 1));
    }
    ++o.next;  // before reach(), which may grow `open` and move `o`
    if (!reach(child, std::move(path), in_map ? &at : nullptr, seq)) return false;
  }
  return true;
}

// The lists whose length config_bounds limits, counted on the tree before
// anything is built from them. Returns false when one is over its bound.
bool check_counts(const YAML::Node& root, Problems& p) {
  using namespace config_bounds;
  bool ok = true;
  auto bound = [&](const YAML::Node& list, const std::string& path, std::size_t max, const std::string& per,
                   const std::string& remedy) {
    if (!list.IsDefined() || !list.IsSequence() || list.size() <= max) return;
    p.add(list, path, fmt::format("{} entries, over the limit of {} {}; {}", list.size(), max, per, remedy));
    ok = false;
  };
  bound(root["orgs"], "orgs", kMaxOrgs, "orgs per config", std::string("use fewer orgs, or ") + kSplitTenants);
  bound(root["tenants"], "tenants", kMaxTenants, "tenants per config", kSplitTenants);
  bound(root["models"], "models", kMaxModels, "models per config", "use fewer models");
  bound(root["budgets"], "budgets", kMaxBudgets, "budgets per config",
        "use fewer budgets (one of scope tenant covers all of its users and keys)");
  const YAML::Node tenants = root["tenants"];
  if (tenants.IsDefined() && tenants.IsSequence()) {
    std::size_t i = 0;
    for (const auto& t : tenants) {
      std::string path = idx("tenants", i++);
      if (!t.IsMap()) continue;
      bound(t["users"], path + ".users", kMaxUsersPerTenant, "users per tenant",
            "use fewer users, or split this tenant into several tenants");
      bound(t["keys"], path + ".keys", kMaxKeysPerTenant, "keys per tenant",
            "use fewer keys, or split this tenant into several tenants");
    }
  }
  const YAML::Node models = root["models"];
  if (models.IsDefined() && models.IsSequence()) {
    std::size_t deployments = 0, i = 0;
    for (const auto& m : models) {
      std::string path = idx("models", i++) + ".deployments";
      const YAML::Node deps = m.IsMap() ? m["deployments"] : YAML::Node();
      if (!deps.IsDefined() || !deps.IsSequence()) continue;
      deployments += deps.size();
      if (deployments > kMaxDeployments) {
        p.add(deps, path,
              fmt::format("brings the deployments to {}, over the limit of {} per config (over all "
                          "models); use fewer deployments", deployments, kMaxDeployments));
        ok = false;
        break;
      }
    }
  }
  return ok;
}

bool parse_hex32(const std::string& s, Sha256& out) {
  if (s.size() != 64) return false;
  auto nib = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < 32; ++i) {
    int hi = nib(s[2 * i]), lo = nib(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<std::uint8_t>(hi * 16 + lo);
  }
  return true;
}

void load_server(Fields& f, ServerConfig& s, Problems& p) {
  if (auto hp = f.address("listen", false)) s.listen = *hp;
  f.number("threads", s.threads, 0, 256);
  f.number("max_body_bytes", s.max_body_bytes, 1024, 1 << 30);
  f.number("max_header_bytes", s.max_header_bytes, 1024, 1 << 20);
  f.millis("header_timeout_ms", s.header_timeout, 100, 3'600'000);
  f.millis("body_timeout_ms", s.body_timeout, 100, 3'600'000);
  f.millis("idle_timeout_ms", s.idle_timeout, 100, 3'600'000);
  f.millis("write_timeout_ms", s.write_timeout, 100, 3'600'000);
  f.millis("drain_timeout_ms", s.drain_timeout, 0, 3'600'000);
  if (auto a = f.str("access_log", false)) s.access_log = *a;
  f.number("refusal_burst", s.refusal_burst, 0, 1e9);
  f.number("refusal_per_s", s.refusal_per_s, 0, 1e9);
  f.number("offload_count_bytes", s.offload_count_bytes, 0, 1 << 30);
  f.done();
}

void load_sim(Fields& f, SimProfile& s, Problems& p) {
  if (auto e = f.str("engine", false)) {
    static const std::set<std::string> kEngines = {"fixed", "llama3-8b-h100", "llama3-70b-4xh100", "small-cpu"};
    if (kEngines.count(*e)) s.engine = *e;
    else p.add(f.get("engine"), f.sub("engine"),
               fmt::format("unknown engine '{}' (llama3-8b-h100, llama3-70b-4xh100, small-cpu, or fixed)", *e));
  }
  const bool fixed = s.engine == "fixed";
  for (const char* key : {"prefill_tokens_per_s", "decode_ms_per_token", "ttft_base_ms"})
    if (!fixed && f.get(key).IsDefined())
      p.add(f.get(key), f.sub(key), fmt::format("only applies to engine: fixed (this deployment's engine is {})", s.engine));
  for (const char* key : {"max_num_seqs", "max_num_batched_tokens", "kv_capacity_tokens", "chunked_prefill"})
    if (fixed && f.get(key).IsDefined())
      p.add(f.get(key), f.sub(key), "does not apply to engine: fixed (a batching engine's setting)");
  f.number("prefill_tokens_per_s", s.prefill_tokens_per_s, 1, 1e9);
  f.number("decode_ms_per_token", s.decode_ms_per_token, 0, 60'000);
  f.number("ttft_base_ms", s.ttft_base_ms, 0, 600'000);
  f.number("max_num_seqs", s.max_num_seqs, 1, 100'000);
  f.number("max_num_batched_tokens", s.max_num_batched_tokens, 16, 10'000'000);
  f.number("kv_capacity_tokens", s.kv_capacity_tokens, 16, 1e10);
  f.boolean("chunked_prefill", s.chunked_prefill);
  f.number("default_output_tokens", s.default_output_tokens, 1, 1'000'000);
  f.number("embedding_dims", s.embedding_dims, 1, 65'536);
  f.done();
}

void load_pool(Fields& f, PoolSettings& pool) {
  f.number("max_seqs", pool.max_seqs, 1, 1e6);
  f.number("inflight_tokens", pool.inflight_tokens, 1, 1e12);
  f.number("long_tokens", pool.long_tokens, 1, 1e9);
  f.number("long_share", pool.long_share, 0.01, 1);
  f.number("short_idle_s", pool.short_idle_s, 0, 3600);
  f.done();
}

// `key: 300` (rate = ceil = 300) or `key: { rate: 100, ceil: 300 }`.
void load_rate(Fields& f, const std::string& key, RateLimit& out, Problems& p) {
  YAML::Node n = f.get(key);
  if (!n.IsDefined() || n.IsNull()) return;
  constexpr double kMax = 1e9;  // per minute; bucket arithmetic stays inside int64
  if (n.IsScalar()) {
    std::int64_t v = 0;
    f.number(key, v, 1, kMax);
    out.ceil = v;
    return;
  }
  Fields rf(n, f.sub(key), p);
  rf.number("rate", out.rate, 1, kMax);
  rf.number("ceil", out.ceil, 1, kMax);
  rf.done();
  if (out.rate && out.ceil && out.rate > out.ceil)
    p.add(n, f.sub(key), fmt::format("rate ({}) is above ceil ({}): the guarantee cannot exceed the cap", out.rate, out.ceil));
  if (!out.ceil) out.ceil = out.rate;  // a guarantee alone is also the cap
}

// A `limits:` block of one scope.
void load_limits(Fields& parent, const std::string& key, ScopeLimits& out, Problems& p) {
  Fields f(parent.get(key), parent.sub(key), p);
  load_rate(f, "requests_per_min", out.requests_per_min, p);
  load_rate(f, "tokens_per_min", out.tokens_per_min, p);
  f.number("concurrency", out.concurrency, 1, 1e9);
  f.done();
}

void load_run_limits(Fields& parent, const std::string& key, RunLimits& out, Problems& p) {
  Fields f(parent.get(key), parent.sub(key), p);
  f.number("max_tokens", out.tokens, 1, 1e15);
  if (auto usd = f.str("max_cost_usd", false)) {
    if (auto m = parse_usd_micros(*usd); m && *m > 0) out.cost_micros = *m;
    else p.add(f.get("max_cost_usd"), f.sub("max_cost_usd"), fmt::format("'{}' is not a positive USD amount (e.g. \"2.50\")", *usd));
  }
  f.number("max_concurrency", out.concurrency, 1, 1e6);
  f.number("max_depth", out.depth, 0, 1000);
  f.number("max_fanout", out.fanout, 1, 1e6);
  f.number("calls_per_min", out.calls_per_min, 1, 1e9);
  f.number("max_wall_s", out.wall_s, 1, 30 * 86400);
  f.done();
}

void load_deployment(Fields& f, DeploymentConfig& d, Problems& p, const EnvLookup& env) {
  d.id = f.id("id", true).value_or("");
  std::string provider = f.str("provider", true).value_or("");
  if (provider == "sim") d.provider = ProviderKind::kSim;
  else if (provider == "openai") d.provider = ProviderKind::kOpenAI;
  else if (provider == "anthropic") d.provider = ProviderKind::kAnthropic;
  else if (!provider.empty())
    p.add(f.get("provider"), f.sub("provider"),
          fmt::format("unknown provider '{}' (known: sim, openai — any OpenAI-compatible endpoint, anthropic — "
                      "any Anthropic Messages endpoint)", provider));
  const bool http = d.provider == ProviderKind::kOpenAI || d.provider == ProviderKind::kAnthropic;
  d.model = f.str("model", false).value_or("");
  f.number("weight", d.weight, 1, 1'000'000);
  auto url = f.str("base_url", http);
  if (url) {
    auto r = boost::urls::parse_absolute_uri(*url);
    if (!r) {
      p.add(f.get("base_url"), f.sub("base_url"), fmt::format("'{}' is not an absolute URL", *url));
    } else {
      d.scheme = r->scheme();
      d.host = r->host_address();
      if (d.scheme != "http" && d.scheme != "https")
        p.add(f.get("base_url"), f.sub("base_url"), fmt::format("scheme '{}' is not http or https", d.scheme));
      else if (d.host.empty())
        p.add(f.get("base_url"), f.sub("base_url"), "has no host");
      d.port = r->has_port() ? r->port_number() : (d.scheme == "https" ? 443 : 80);
      if (r->has_port() && d.port == 0)
        p.add(f.get("base_url"), f.sub("base_url"), "port must be 1-65535");
      d.base_path = std::string(r->encoded_path());
      while (!d.base_path.empty() && d.base_path.back() == '/') d.base_path.pop_back();
      if (r->has_query() || r->has_fragment())
        p.add(f.get("base_url"), f.sub("base_url"), "must not have a query or fragment");
    }
  }
  if (auto e = f.str("api_key_env", false)) {
    d.api_key_env = *e;
    if (auto v = env(*e)) d.api_key = *v;
    else
      p.add(f.get("api_key_env"), f.sub("api_key_env"),
            fmt::format("environment variable '{}' is not set (export it, or remove api_key_env for "
                        "an upstream that needs no key)", *e));
  }
  f.millis("connect_timeout_ms", d.connect_timeout, 1, 600'000);
  f.millis("read_timeout_ms", d.read_timeout, 1, 3'600'000);
  f.boolean("tls_verify", d.tls_verify);
  d.tls_ca_file = f.str("tls_ca_file", false).value_or("");
  f.number("max_idle_connections", d.max_idle_connections, 0, 100'000);
  {
    const bool anthropic = d.provider == ProviderKind::kAnthropic;
    auto only_anthropic = [&](const char* key) {
      if (!anthropic && f.get(key).IsDefined()) p.add(f.get(key), f.sub(key), "only applies to provider 'anthropic'");
    };
    if (auto v = f.str("anthropic_version", false)) {
      only_anthropic("anthropic_version");
      // A header value: printable, bounded.
      if (v->empty() || v->size() > 64 || v->find_first_of("\r\n") != std::string::npos)
        p.add(f.get("anthropic_version"), f.sub("anthropic_version"),
              fmt::format("'{}' is not an anthropic-version header value (e.g. \"2023-06-01\")", *v));
      d.anthropic_version = *v;
    }
    if (auto v = f.str("auth_header", false)) {
      only_anthropic("auth_header");
      if (*v == "x-api-key") d.auth_bearer = false;
      else if (*v == "authorization") d.auth_bearer = true;
      else
        p.add(f.get("auth_header"), f.sub("auth_header"),
              fmt::format("unknown auth_header '{}' (known: x-api-key — Anthropic's own, authorization — "
                          "'Authorization: Bearer <key>')", *v));
    }
    only_anthropic("default_max_tokens");
    f.number("default_max_tokens", d.default_max_tokens, 1, 10'000'000);
  }
  load_limits(f, "limits", d.limits, p);
  {
    Fields s(f.get("sim"), f.sub("sim"), p);
    load_sim(s, d.sim, p);
    if (d.provider != ProviderKind::kSim && f.get("sim").IsDefined())
      p.add(f.get("sim"), f.sub("sim"), "only applies to provider 'sim'");
  }
  {
    Fields pf(f.get("pool"), f.sub("pool"), p);
    load_pool(pf, d.pool);
    // A simulated batching engine always has its pool (its capacity by default).
    d.pool.enabled = f.get("pool").IsDefined() || (d.provider == ProviderKind::kSim && d.sim.engine != "fixed");
  }
  if (http && d.model.empty())
    p.add(f.get("model"), f.sub("model"), fmt::format("is required for provider '{}' (the upstream model name)", provider));
  f.done();
}

// One loader per capability's section of the file; load_config() dispatches.
void load_metering(Fields& mf, MeteringConfig& m, Problems& p) {
  if (auto e = mf.str("default_encoding", false)) {
    if (*e != "cl100k_base" && *e != "o200k_base")
      p.add(mf.get("default_encoding"), mf.sub("default_encoding"),
            fmt::format("unknown encoding '{}' (known: cl100k_base, o200k_base)", *e));
    m.default_encoding = *e;
  }
  if (auto l = mf.str("ledger_sqlite", false)) m.ledger_sqlite = *l;
  if (auto l = mf.str("ledger_postgres", false)) {
    m.ledger_postgres = *l;
    if (mf.get("ledger_sqlite").IsDefined() && m.ledger_sqlite != "off")
      p.add(mf.get("ledger_postgres"), mf.sub("ledger_postgres"),
            "set either ledger_sqlite or ledger_postgres (a gateway writes one ledger)");
    m.ledger_sqlite = "off";
  }
  if (auto j = mf.str("ledger_journal", false)) {
    if (j->empty())
      p.add(mf.get("ledger_journal"), mf.sub("ledger_journal"),
            "empty path (leave it out for the default, or say \"off\")");
    m.ledger_journal = *j;
  }
  mf.done();
}

void load_limits_section(Fields& lf, LimitsConfig& l, Problems& p) {
  load_limits(lf, "global", l.global, p);
  load_run_limits(lf, "runs", l.runs, p);
  Fields ff(lf.get("fair_share"), lf.sub("fair_share"), p);
  ff.boolean("enabled", l.fair_share);
  ff.number("burst_s", l.fair_burst_s, 1, 3600);
  ff.number("active_window_s", l.active_window_s, 1, 86400);
  ff.done();
  Fields tf(lf.get("tracking"), lf.sub("tracking"), p);
  tf.number("max_users_per_tenant", l.tracking.users_per_tenant, 1, 1e7);
  tf.number("max_runs_per_tenant", l.tracking.runs_per_tenant, 1, 1e7);
  tf.number("max_calls_per_run", l.tracking.calls_per_run, 1, 1e7);
  tf.number("run_quiet_s", l.tracking.run_quiet_s, 1, 86400);
  tf.done();
  Fields rf(lf.get("redis"), lf.sub("redis"), p);
  RedisLimitsConfig& r = l.redis;
  if (auto hp = rf.address("address", lf.get("redis").IsDefined())) {
    r.host = hp->host;
    r.port = hp->port;
  }
  if (auto k = rf.str("key_prefix", false)) r.key_prefix = *k;
  rf.millis("timeout_ms", r.timeout, 1, 60'000);
  rf.number("fleet_size", r.fleet_size, 1, 10'000);
  rf.boolean("cluster", r.cluster);
  for (auto [key, out] : {std::pair{"on_outage", &r.local_share}, std::pair{"runs_on_outage", &r.runs_local_share}}) {
    if (auto v = rf.str(key, false)) {
      if (*v == "local_share") *out = true;
      else if (*v == "fail_closed") *out = false;
      else p.add(rf.get(key), rf.sub(key), fmt::format("'{}' is not local_share or fail_closed", *v));
    }
  }
  rf.done();
  lf.done();
}

void load_scheduling(Fields& sf, SchedulingConfig& sc, Problems& p) {
    if (auto pol = sf.str("policy", false)) {
    if (*pol == "fair") sc.fair = true;
    else if (*pol == "fcfs") sc.fair = false;
    else p.add(sf.get("policy"), sf.sub("policy"), fmt::format("'{}' is not fair or fcfs", *pol));
  }
  sf.number("input_weight", sc.input_weight, 0, 1000);
  sf.number("output_weight", sc.output_weight, 0, 1000);
  sf.number("batch_aging_s", sc.batch_aging_s, 0, 86400);
  sf.millis("interactive_timeout_ms", sc.interactive_timeout, 1, 3'600'000);
  sf.millis("batch_timeout_ms", sc.batch_timeout, 1, 86'400'000);
  sf.number("default_output_tokens", sc.default_output_tokens, 1, 10'000'000);
  sf.done();
}

// `embedder_at`: where cache.embedder was given, checked against the models later.
void load_cache(Fields& cf, CacheConfig& cc, Problems& p, YAML::Node* embedder_at) {
    cc.enabled = cf.node().IsDefined() && !cf.node().IsNull();
  cf.boolean("enabled", cc.enabled);
  cf.boolean("exact", cc.exact);
  cf.boolean("semantic", cc.semantic);
  cf.number("threshold", cc.threshold, 0.5, 1.0);
  cf.number("prior_turns", cc.prior_turns, 0, 64);
  cf.number("ttl_s", cc.ttl_s, 1, 365 * 86400.0);
  cf.number("max_entries_per_tenant", cc.max_entries_per_tenant, 1, 1e9);
  cf.number("max_bytes_per_tenant", cc.max_bytes_per_tenant, 1024, 1e12);
  cf.number("max_partitions_per_tenant", cc.max_partitions_per_tenant, 1, 1e9);
  cf.number("max_bytes_total", cc.max_bytes_total, 1 << 20, 1e12);
  cf.number("flat_max_vectors", cc.flat_max_vectors, 0, 1e6);
  cf.number("max_temperature", cc.max_temperature, 0, 2);
  cf.number("verify_lexical", cc.verify_lexical, 0, 1);
  YAML::Node pubs = cf.seq("public_namespaces", false);
  for (std::size_t i = 0; i < pubs.size(); ++i) {
    Fields nf(pubs[i], idx(cf.sub("public_namespaces"), i), p);
    PublicNamespace ns;
    ns.name = nf.id("name", true).value_or("");
    nf.number("threshold", ns.threshold, 0.5, 1.0);
    YAML::Node ws = nf.seq("writers", false);
    for (std::size_t j = 0; j < ws.size(); ++j) ns.writers.push_back(ws[j].IsScalar() ? ws[j].Scalar() : "");
    nf.done();
    for (const auto& other : cc.public_namespaces)
      if (other.name == ns.name) p.add(pubs[i], nf.sub("name"), fmt::format("duplicate namespace '{}'", ns.name));
    cc.public_namespaces.push_back(std::move(ns));
  }
  {
    Fields rf(cf.get("redis"), cf.sub("redis"), p);
    if (auto hp = rf.address("address", cf.get("redis").IsDefined())) {
      cc.redis_host = hp->host;
      cc.redis_port = hp->port;
    }
    if (auto k = rf.str("key_prefix", false)) cc.redis_prefix = *k;
    rf.done();
  }
  if (auto e = cf.str("embedder", false)) {
    cc.embedder = *e;
    *embedder_at = cf.get("embedder");
  }
  cf.done();
}

// Ids seen so far in the file: later sections refer to earlier ones.
struct Names {
  std::set<std::string> orgs, aliases, deployments, tenants, keys;
  std::set<Sha256> key_hashes;
};

OrgConfig load_org(Fields& f, const YAML::Node& node, Names& n, Problems& p) {
  OrgConfig o;
  o.id = f.id("id", true).value_or("");
  if (!o.id.empty() && !n.orgs.insert(o.id).second)
    p.add(node, f.sub("id"), fmt::format("duplicate org id '{}'", o.id));
  load_limits(f, "limits", o.limits, p);
  f.done();
  return o;
}

ModelConfig load_model(Fields& f, const YAML::Node& node, Names& n, Problems& p, const EnvLookup& env) {
  ModelConfig m;
  m.alias = f.str("alias", true).value_or("");
  if (!m.alias.empty() && !n.aliases.insert(m.alias).second)
    p.add(node, f.sub("alias"), fmt::format("duplicate model alias '{}'", m.alias));
  if (auto o = f.str("owned_by", false)) m.owned_by = *o;
  if (auto e = f.str("encoding", false)) {
    if (*e != "cl100k_base" && *e != "o200k_base")
      p.add(f.get("encoding"), f.sub("encoding"), fmt::format("unknown encoding '{}' (known: cl100k_base, o200k_base)", *e));
    m.encoding = *e;
  }
  f.boolean("reasoning", m.reasoning);
  f.number("context_tokens", m.context_tokens, 0, 100'000'000);
  {
    Fields pf(f.get("price"), f.sub("price"), p);
    auto usd = [&](const char* key, std::int64_t& out) {
      if (auto v = pf.str(key, false)) {
        if (auto micros = parse_usd_micros(*v)) out = *micros;
        else p.add(pf.get(key), pf.sub(key), fmt::format("'{}' is not a USD amount per 1M tokens (e.g. 0.15)", *v));
      }
    };
    usd("input_per_1m", m.price.input_per_1m);
    usd("output_per_1m", m.price.output_per_1m);
    usd("cached_input_per_1m", m.price.cached_input_per_1m);
    // A prompt-cache write is never free by omission: absent, it costs what input does.
    m.price.cache_write_per_1m = m.price.input_per_1m;
    usd("cache_write_per_1m", m.price.cache_write_per_1m);
    pf.done();
  }
  load_limits(f, "limits", m.limits, p);
  YAML::Node deps = f.seq("deployments", true);
  if (deps.size() == 0 && f.get("deployments").IsDefined())
    p.add(node, f.sub("deployments"), "needs at least one deployment");
  for (std::size_t j = 0; j < deps.size(); ++j) {
    Fields df(deps[j], idx(f.sub("deployments"), j), p);
    DeploymentConfig d;
    load_deployment(df, d, p, env);
    if (d.model.empty()) d.model = m.alias;
    if (!d.id.empty() && !n.deployments.insert(d.id).second)
      p.add(deps[j], df.sub("id"), fmt::format("duplicate deployment id '{}' (ids are fleet-wide)", d.id));
    m.deployments.push_back(std::move(d));
  }
  f.done();
  return m;
}

TenantConfig load_tenant(Fields& f, const YAML::Node& node, Names& n, Problems& p) {
  TenantConfig t;
  t.id = f.id("id", true).value_or("");
  if (!t.id.empty() && !n.tenants.insert(t.id).second)
    p.add(node, f.sub("id"), fmt::format("duplicate tenant id '{}'", t.id));
  t.org = f.id("org", true).value_or("");
  if (!t.org.empty() && !n.orgs.count(t.org))
    p.add(f.get("org"), f.sub("org"), fmt::format("unknown org '{}' (declare it under orgs)", t.org));
  std::set<std::string> user_ids;
  YAML::Node users = f.seq("users", false);
  for (std::size_t j = 0; j < users.size(); ++j) {
    std::string path = idx(f.sub("users"), j);
    UserConfig u;
    if (users[j].IsScalar()) {
      u.id = users[j].Scalar();
      if (!Fields::valid_id(u.id)) {
        p.add(users[j], path, fmt::format("'{}' is not a valid id (1-64 chars of a-z A-Z 0-9 . _ -)", u.id));
        u.id.clear();
      }
    } else {
      Fields uf(users[j], path, p);
      u.id = uf.id("id", true).value_or("");
      load_limits(uf, "limits", u.limits, p);
      uf.done();
    }
    if (!u.id.empty() && !user_ids.insert(u.id).second)
      p.add(users[j], path, fmt::format("duplicate user id '{}'", u.id));
    t.users.push_back(std::move(u));
  }
  YAML::Node keys = f.seq("keys", false);
  for (std::size_t j = 0; j < keys.size(); ++j) {
    Fields kf(keys[j], idx(f.sub("keys"), j), p);
    KeyConfig k;
    k.id = kf.id("id", true).value_or("");
    if (!k.id.empty() && !n.keys.insert(k.id).second)
      p.add(keys[j], kf.sub("id"), fmt::format("duplicate key id '{}' (ids are gateway-wide)", k.id));
    k.user = kf.str("user", false).value_or("");
    if (!k.user.empty() && !user_ids.count(k.user)) {
      std::string known;
      for (const auto& u : user_ids) known += (known.empty() ? "" : ", ") + u;
      p.add(kf.get("user"), kf.sub("user"),
            fmt::format("unknown user '{}' (tenant '{}' has: {})", k.user, t.id,
                        known.empty() ? "no users" : known));
    }
    if (auto h = kf.str("sha256", true)) {
      if (!parse_hex32(*h, k.sha256))
        p.add(kf.get("sha256"), kf.sub("sha256"),
              "must be 64 hex chars, the SHA-256 of the key (`tenantgate keys new` prints it)");
      else if (!n.key_hashes.insert(k.sha256).second)
        p.add(kf.get("sha256"), kf.sub("sha256"), "the same key is configured twice");
    }
    load_limits(kf, "limits", k.limits, p);
    kf.done();
    t.keys.push_back(std::move(k));
  }
  YAML::Node allowed = f.seq("models", false);
  for (std::size_t j = 0; j < allowed.size(); ++j) {
    std::string a = allowed[j].IsScalar() ? allowed[j].Scalar() : "";
    if (!n.aliases.count(a))
      p.add(allowed[j], idx(f.sub("models"), j), fmt::format("unknown model alias '{}'", a));
    t.models.push_back(a);
  }
  load_limits(f, "limits", t.limits, p);
  load_limits(f, "user_limits", t.user_limits, p);
  f.number("weight", t.weight, 0.001, 1e6);
  f.number("cache_threshold", t.cache_threshold, 0.5, 1.0);
  if (auto cs = f.str("cache_scope", false)) {
    if (*cs == "tenant") t.cache_tenant_scope = true;
    else if (*cs != "user")
      p.add(f.get("cache_scope"), f.sub("cache_scope"), fmt::format("'{}' is not user or tenant", *cs));
  }
  if (f.get("run_limits").IsDefined()) {
    t.has_run_limits = true;
    load_run_limits(f, "run_limits", t.run_limits, p);
  }
  f.done();
  return t;
}

BudgetConfig load_budget(Fields& f, const YAML::Node& node, std::size_t i, const Names& n, Problems& p) {
  BudgetConfig b;
  std::string scope = f.str("scope", true).value_or("");
  if (scope == "tenant") b.scope = BudgetScope::kTenant;
  else if (scope == "user") b.scope = BudgetScope::kUser;
  else if (scope == "key") b.scope = BudgetScope::kKey;
  else if (scope == "feature") b.scope = BudgetScope::kFeature;
  else if (!scope.empty())
    p.add(f.get("scope"), f.sub("scope"), fmt::format("unknown scope '{}' (tenant, user, key, feature)", scope));
  std::string period = f.str("period", true).value_or("");
  if (period == "day") b.period = BudgetPeriod::kDay;
  else if (period == "month") b.period = BudgetPeriod::kMonth;
  else if (!period.empty())
    p.add(f.get("period"), f.sub("period"), fmt::format("unknown period '{}' (day, month; UTC)", period));
  b.tenant = f.str("tenant", false).value_or("");
  b.user = f.str("user", false).value_or("");
  b.key = f.str("key", false).value_or("");
  b.feature = f.str("feature", false).value_or("");
  const bool needs_tenant = b.scope != BudgetScope::kKey;
  if (needs_tenant && b.tenant.empty() && !scope.empty())
    p.add(node, f.sub("tenant"), fmt::format("is required for scope '{}'", scope));
  if (!b.tenant.empty() && !n.tenants.count(b.tenant))
    p.add(f.get("tenant"), f.sub("tenant"), fmt::format("unknown tenant '{}'", b.tenant));
  if (b.scope == BudgetScope::kUser && b.user.empty()) p.add(node, f.sub("user"), "is required for scope 'user'");
  if (b.scope == BudgetScope::kFeature && b.feature.empty())
    p.add(node, f.sub("feature"), "is required for scope 'feature'");
  if (b.scope == BudgetScope::kKey) {
    if (b.key.empty()) p.add(node, f.sub("key"), "is required for scope 'key' (a key id)");
    else if (!n.keys.count(b.key)) p.add(f.get("key"), f.sub("key"), fmt::format("unknown key id '{}'", b.key));
  }
  auto usd = f.str("usd", false);
  std::int64_t tokens = -1;
  f.number("tokens", tokens, 1, 1e15);
  if (usd && tokens >= 0) p.add(node, idx("budgets", i), "set either usd or tokens, not both");
  else if (usd) {
    if (auto m = parse_usd_micros(*usd); m && *m > 0) b.limit = *m;
    else p.add(f.get("usd"), f.sub("usd"), fmt::format("'{}' is not a positive USD amount (e.g. \"25.00\")", *usd));
  } else if (tokens >= 0) {
    b.in_tokens = true;
    b.limit = tokens;
  } else {
    p.add(node, idx("budgets", i), "needs a limit: usd or tokens");
  }
  f.number("soft_percent", b.soft_percent, 1, 100);
  if (auto w = f.str("webhook", false)) {
    auto u = boost::urls::parse_absolute_uri(*w);
    if (!u || u->scheme() != "http" || u->host_address().empty())
      p.add(f.get("webhook"), f.sub("webhook"), fmt::format("'{}' is not an http:// URL", *w));
    b.webhook = *w;
  }
  f.done();
  return b;
}

}  // namespace

std::string ConfigProblems::joined() const {
  std::string out;
  for (const auto& s : problems) out += s + "\n";
  return out;
}

EnvLookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (!v) return std::nullopt;
    return std::string(v);
  };
}

std::optional<HostPort> parse_host_port(std::string_view s, std::string* why) {
  HostPort hp;
  std::string_view port;
  if (!s.empty() && s.front() == '[') {
    auto close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') {
      *why = fmt::format("'{}' is not HOST:PORT ([v6addr]:port for IPv6)", s);
      return std::nullopt;
    }
    hp.host = std::string(s.substr(1, close - 1));
    port = s.substr(close + 2);
  } else {
    auto colon = s.rfind(':');
    if (colon == std::string_view::npos) {
      *why = fmt::format("'{}' is not HOST:PORT", s);
      return std::nullopt;
    }
    hp.host = std::string(s.substr(0, colon));
    port = s.substr(colon + 1);
    if (hp.host.empty()) hp.host = "127.0.0.1";
  }
  unsigned long v = 0;
  if (port.empty() || port.size() > 5) {
    *why = fmt::format("'{}': port must be 0-65535", s);
    return std::nullopt;
  }
  for (char c : port) {
    if (c < '0' || c > '9') {
      *why = fmt::format("'{}': port must be 0-65535", s);
      return std::nullopt;
    }
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v > 65535) {  // 0: the kernel picks a free port (tests)
    *why = fmt::format("'{}': port must be 0-65535", s);
    return std::nullopt;
  }
  hp.port = static_cast<std::uint16_t>(v);
  return hp;
}

std::optional<std::string> config_size_problem(const std::string& source, std::uintmax_t bytes) {
  if (bytes <= config_bounds::kMaxFileBytes) return std::nullopt;
  return fmt::format(
      "{}: the file is {} bytes ({:.1f} MiB), over the limit of {} bytes ({} MiB) for a config "
      "file, as parsing YAML takes up to 250 bytes of memory per byte; {}, or share repeated "
      "limits with YAML anchors (&name) and aliases (*name)",
      source, bytes, static_cast<double>(bytes) / (1 << 20), config_bounds::kMaxFileBytes,
      config_bounds::kMaxFileBytes >> 20, kSplitTenants);
}

std::variant<Config, ConfigProblems> load_config(std::string_view yaml, std::string source,
                                                 const EnvLookup& env) {
  Problems p(source);
  if (auto too_large = config_size_problem(source, yaml.size())) return ConfigProblems{{std::move(*too_large)}};
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::ParserException& e) {
    return ConfigProblems{{fmt::format("{}:{}: YAML syntax error: {}", source, e.mark.line + 1, e.msg)}};
  }
  Config c;
  c.source = source;
  if (!root.IsMap()) return ConfigProblems{{fmt::format("{}: the file must be a YAML mapping", source)}};
  if (!check_tree(root, p) || !check_counts(root, p)) return ConfigProblems{p.take()};
  Fields top(root, "", p);
  // The capabilities' sections, each loaded by its own loader.
  auto section = [&](const char* name, auto&& load) {
    Fields f(top.get(name), name, p);
    load(f);
  };
  section("server", [&](Fields& f) { load_server(f, c.server, p); });
  section("metering", [&](Fields& f) { load_metering(f, c.metering, p); });
  section("limits", [&](Fields& f) { load_limits_section(f, c.limits, p); });
  section("scheduling", [&](Fields& f) { load_scheduling(f, c.scheduling, p); });
  YAML::Node cache_embedder_at;  // checked against the models below
  section("cache", [&](Fields& f) { load_cache(f, c.cache, p, &cache_embedder_at); });

  Names names;  // ids seen so far: later sections refer to earlier ones
  YAML::Node orgs = top.seq("orgs", true);
  for (std::size_t i = 0; i < orgs.size(); ++i) {
    Fields f(orgs[i], idx("orgs", i), p);
    c.orgs.push_back(load_org(f, orgs[i], names, p));
  }

  // Models first: tenants may name them in their allow-lists, the cache its embedder.
  YAML::Node models = top.seq("models", true);
  for (std::size_t i = 0; i < models.size(); ++i) {
    Fields f(models[i], idx("models", i), p);
    c.models.push_back(load_model(f, models[i], names, p, env));
  }

  if (c.cache.embedder != "local" && !names.aliases.count(c.cache.embedder))
    p.add(cache_embedder_at, "cache.embedder",
          fmt::format("'{}' is neither 'local' nor a model alias of this config (an OpenAI-compatible "
                      "/v1/embeddings model)", c.cache.embedder));
  YAML::Node tenants = top.seq("tenants", true);
  for (std::size_t i = 0; i < tenants.size(); ++i) {
    Fields f(tenants[i], idx("tenants", i), p);
    c.tenants.push_back(load_tenant(f, tenants[i], names, p));
  }
  {
    Fields af(top.get("admin"), "admin", p);
    YAML::Node ks = af.seq("key_sha256", false);
    for (std::size_t i = 0; i < ks.size(); ++i) {
      Sha256 h{};
      if (!ks[i].IsScalar() || !parse_hex32(ks[i].Scalar(), h))
        p.add(ks[i], idx("admin.key_sha256", i), "must be 64 hex chars, the SHA-256 of an admin key");
      else if (names.key_hashes.count(h))
        p.add(ks[i], idx("admin.key_sha256", i), "is also a tenant key; use a separate admin key");
      else c.admin_keys.push_back(h);
    }
    af.done();
  }

  for (std::size_t i = 0; i < c.cache.public_namespaces.size(); ++i)
    for (std::size_t j = 0; j < c.cache.public_namespaces[i].writers.size(); ++j)
      if (!names.tenants.count(c.cache.public_namespaces[i].writers[j]))
        p.add(root["cache"]["public_namespaces"][i]["writers"][j],
              fmt::format("cache.public_namespaces[{}].writers[{}]", i, j),
              fmt::format("unknown tenant '{}'", c.cache.public_namespaces[i].writers[j]));

  // Budgets last: they name tenants, users and keys.
  YAML::Node budgets = top.seq("budgets", false);
  for (std::size_t i = 0; i < budgets.size(); ++i) {
    Fields f(budgets[i], idx("budgets", i), p);
    c.budgets.push_back(load_budget(f, budgets[i], i, names, p));
  }
  top.done();
  if (!p.empty()) return ConfigProblems{p.take()};
  return c;
}

std::optional<std::int64_t> parse_usd_micros(std::string_view s) {
  if (s.empty()) return std::nullopt;
  std::int64_t whole = 0, frac = 0;
  int frac_digits = 0;
  bool dot = false, digits = false;
  for (char c : s) {
    if (c == '.') {
      if (dot) return std::nullopt;
      dot = true;
      continue;
    }
    if (c < '0' || c > '9') return std::nullopt;
    digits = true;
    if (!dot) {
      if (whole > 1'000'000'000) return std::nullopt;  // > $1e9 per 1M tokens is a typo
      whole = whole * 10 + (c - '0');
    } else {
      if (++frac_digits > 6) return std::nullopt;
      frac = frac * 10 + (c - '0');
    }
  }
  if (!digits) return std::nullopt;
  for (int i = frac_digits; i < 6; ++i) frac *= 10;
  return whole * 1'000'000 + frac;
}

std::string_view embedded_default_config() {
  static const char kText[] =
#include "default_config.inc"
      ;
  return std::string_view(kText, sizeof(kText) - 1);
}

}  // namespace tg
