// tenantgate: the command line. `serve` runs the gateway; `keys new` mints a
// virtual key; `config check` validates a config file without serving.
#include <CLI/CLI.hpp>
#include <boost/json/parse.hpp>
#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "core/config_load.h"
#include "identity/keys.h"
#include "meter/tokenizer.h"
#include "ledger/usage_query.h"
#include "server/gateway.h"
#include "sim/replay.h"

namespace {

// Loads --config FILE, or the embedded default. Prints every problem and
// returns nullopt when the config is invalid.
std::optional<tg::Config> load(const std::string& path) {
  std::string text, source;
  if (path.empty()) {
    text = std::string(tg::embedded_default_config());
    source = "<embedded default>";
  } else {
    std::ifstream in(path);
    if (!in) {
      std::cerr << fmt::format("tenantgate: cannot read config file '{}': {}\n", path, std::strerror(errno));
      return std::nullopt;
    }
    std::error_code size_error;  // (not a regular file, e.g. a pipe: read, and the loader measures it)
    if (auto too_large = tg::config_size_problem(path, std::filesystem::file_size(path, size_error));
        too_large && !size_error) {
      std::cerr << "tenantgate: invalid configuration:\n" << *too_large << "\n";
      return std::nullopt;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
    source = path;
  }
  auto r = tg::load_config(text, source, tg::process_env());
  if (auto* p = std::get_if<tg::ConfigProblems>(&r)) {
    std::cerr << "tenantgate: invalid configuration:\n" << p->joined();
    return std::nullopt;
  }
  return std::get<tg::Config>(std::move(r));
}

// `tenantgate count-tokens`: for users checking a bill, and for the
// tokenizer's conformance tests (--jsonl).
int count_tokens(const std::string& enc_name, const std::string& model, bool print_ids, bool jsonl) {
  std::optional<tg::meter::Encoding> enc;
  if (!model.empty()) {
    enc = tg::meter::encoding_for_model(model);
    if (!enc) {
      std::cerr << fmt::format("tenantgate: no known encoding for model '{}'; pass --encoding cl100k_base "
                               "or --encoding o200k_base\n", model);
      return 2;
    }
  } else {
    enc = tg::meter::encoding_from_name(enc_name.empty() ? "o200k_base" : enc_name);
    if (!enc) {
      std::cerr << fmt::format("tenantgate: unknown encoding '{}' (use cl100k_base or o200k_base)\n", enc_name);
      return 2;
    }
  }
  const auto& tok = tg::meter::Tokenizer::builtin(*enc);
  auto ids_json = [](const std::vector<std::uint32_t>& ids) {
    std::string out = "[";
    for (std::size_t i = 0; i < ids.size(); ++i) out += (i ? "," : "") + std::to_string(ids[i]);
    return out + "]";
  };
  if (jsonl) {
    std::string line;
    std::size_t n = 0;
    while (std::getline(std::cin, line)) {
      ++n;
      boost::system::error_code ec;
      auto v = boost::json::parse(line, ec);
      if (ec || !v.is_object() || !v.as_object().contains("text") || !v.as_object().at("text").is_string()) {
        std::cerr << fmt::format("tenantgate: stdin line {}: expected {{\"text\": \"...\"}}\n", n);
        return 2;
      }
      auto ids = tok.encode(std::string_view(v.as_object().at("text").as_string()));
      std::cout << fmt::format("{{\"count\":{},\"ids\":{}}}\n", ids.size(), ids_json(ids));
    }
    return 0;
  }
  std::stringstream ss;
  ss << std::cin.rdbuf();
  const std::string text = ss.str();
  if (!tg::meter::is_valid_utf8(text)) {
    std::cerr << "tenantgate: stdin is not valid UTF-8; tokens are counted on UTF-8 text\n";
    return 2;
  }
  auto ids = tok.encode(text);
  if (print_ids) std::cout << ids_json(ids) << "\n";
  else std::cout << ids.size() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tenantgate: a multi-tenant LLM gateway"};
  app.require_subcommand(1);

  auto* serve = app.add_subcommand("serve", "Run the gateway (the embedded default config without --config)");
  std::string config_path, listen;
  unsigned threads = 0;
  serve->add_option("--config", config_path, "YAML config file")->check(CLI::ExistingFile);
  serve->add_option("--listen", listen, "HOST:PORT to listen on (overrides server.listen)");
  serve->add_option("--threads", threads, "worker threads (overrides server.threads)");

  auto* keys = app.add_subcommand("keys", "Manage virtual keys");
  keys->require_subcommand(1);
  auto* keys_new = keys->add_subcommand("new", "Print a new key once, and the config line holding its hash");
  std::string tenant, user, key_id;
  keys_new->add_option("--tenant", tenant, "tenant id")->required();
  keys_new->add_option("--user", user, "bind the key to this user (omit for a tenant-level key)");
  keys_new->add_option("--id", key_id, "key id shown in logs (default: derived from the hash)");

  auto* check = app.add_subcommand("config", "Config tools");
  check->require_subcommand(1);
  auto* check_cmd = check->add_subcommand("check", "Validate a config file and exit");
  std::string check_path;
  check_cmd->add_option("file", check_path, "YAML config file")->required();

  auto* count = app.add_subcommand("count-tokens", "Count tokens of text on stdin, as OpenAI's tokenizer does");
  std::string enc_name, model_name;
  bool print_ids = false, jsonl = false;
  auto* enc_opt = count->add_option("--encoding", enc_name, "cl100k_base or o200k_base");
  count->add_option("--model", model_name, "pick the encoding of an OpenAI model (gpt-4o, gpt-4, ...)")
      ->excludes(enc_opt);
  count->add_flag("--ids", print_ids, "print the token ids, not just the count");
  count->add_flag("--jsonl", jsonl, "stdin holds JSON lines {\"text\": ...}; print one {\"count\",\"ids\"} line each");

  auto* usage = app.add_subcommand("usage", "Usage and spend from a SQLite ledger (offline)");
  std::string usage_db, usage_group, usage_from, usage_to, usage_gran, usage_tenant;
  bool usage_csv = false;
  std::string usage_pg;
  auto* db_opt = usage->add_option("--db", usage_db, "SQLite ledger file (metering.ledger_sqlite)");
  usage->add_option("--postgres", usage_pg, "PostgreSQL ledger conninfo (metering.ledger_postgres)")->excludes(db_opt);
  usage->add_option("--group-by", usage_group, "comma list: tenant,user,key,feature,model,deployment,run,org");
  usage->add_option("--from", usage_from, "start (inclusive): 2026-11-01, 2026-11-01T00:00:00Z or Unix ms");
  usage->add_option("--to", usage_to, "end (exclusive), same forms");
  usage->add_option("--granularity", usage_gran, "hour or day");
  usage->add_option("--tenant", usage_tenant, "only this tenant");
  usage->add_flag("--csv", usage_csv, "CSV instead of a table");

  auto* sim_cmd = app.add_subcommand("sim", "The engine simulator");
  sim_cmd->require_subcommand(1);
  auto* replay_cmd = sim_cmd->add_subcommand("replay", "Replay a trace through one simulated engine, in virtual time");
  std::vector<std::string> trace_files;
  std::string policy_name = "fcfs", profile_name = "llama3-8b-h100";
  bool replay_json = false, no_chunked = false;
  double heavy_rate = 0, replay_seconds = 0;
  std::int64_t heavy_prompt = 4'000, heavy_output = 24'000, pool_seqs = 0, pool_tokens = 0;
  int split_tenants = 1;
  tg::sched::PoolConfig pool_limits;
  replay_cmd->add_option("--trace", trace_files, "CSV trace (arrival_s,tenant,user,prompt_tokens,output_tokens) or an "
                         "Azure LLM trace (its tenant is the file name); repeat to merge")->required()->check(CLI::ExistingFile);
  replay_cmd->add_option("--policy", policy_name, "fcfs or fair")->check(CLI::IsMember({"fcfs", "fair"}));
  replay_cmd->add_option("--profile", profile_name, "engine: llama3-8b-h100, llama3-70b-4xh100, small-cpu")
      ->check(CLI::IsMember({"llama3-8b-h100", "llama3-70b-4xh100", "small-cpu"}));
  replay_cmd->add_option("--split", split_tenants, "spread each Azure trace over N tenants (a mix of light tenants)");
  replay_cmd->add_option("--seconds", replay_seconds, "only the first S seconds of the trace (0: all)");
  replay_cmd->add_option("--heavy-rate", heavy_rate, "add tenant 'heavy' sending reasoning requests at R per second");
  replay_cmd->add_option("--heavy-prompt", heavy_prompt, "its prompt tokens (default 4000)");
  replay_cmd->add_option("--heavy-output", heavy_output, "its output tokens: reasoning (default 24000)");
  replay_cmd->add_option("--pool-seqs", pool_seqs, "admission pool: max sequences (default: the engine's max_num_seqs)");
  replay_cmd->add_option("--pool-tokens", pool_tokens, "admission pool: in-flight token budget (default: KV capacity)");
  replay_cmd->add_option("--long-tokens", pool_limits.long_tokens, "fair: a request over this many tokens (prompt + output) is long (default 8192)");
  replay_cmd->add_option("--long-share", pool_limits.long_share, "fair: share of the token budget long requests may hold while short work is waiting or running (default 0.8)")
      ->check(CLI::Range(0.0, 1.0));
  replay_cmd->add_flag("--no-chunked-prefill", no_chunked, "whole prompts in one step, prefills before decodes");
  replay_cmd->add_flag("--json", replay_json, "one JSON object instead of a table");
  std::string requests_csv;
  replay_cmd->add_option("--requests-csv", requests_csv, "also write each request's arrival_s,tenant,ttft_s,done_s to FILE");

  CLI11_PARSE(app, argc, argv);
  // Operational logs go to stderr; stdout carries the access log.
  spdlog::set_default_logger(spdlog::stderr_color_mt("tenantgate"));

  if (serve->parsed()) {
    auto config = load(config_path);
    if (!config) return 2;
    if (!listen.empty()) {
      std::string why;
      auto hp = tg::parse_host_port(listen, &why);
      if (!hp) {
        std::cerr << "tenantgate: --listen: " << why << "\n";
        return 2;
      }
      config->server.listen = *hp;
    }
    if (threads) config->server.threads = threads;
    try {
      // SIGHUP re-reads the same config file and applies its limits.
      tg::server::Gateway gateway(std::move(*config), [path = config_path]() { return load(path); });
      return gateway.run();
    } catch (const std::exception& e) {
      spdlog::critical("{}", e.what());
      return 1;
    }
  }
  if (keys_new->parsed()) {
    std::string key = tg::identity::generate_key();
    std::string hash = tg::identity::to_hex(tg::identity::sha256(key));
    if (key_id.empty()) key_id = fmt::format("{}-{}", tenant, hash.substr(0, 8));
    std::cout << fmt::format("key: {}\n", key)
              << "# Shown once: store it now. Paste this under the tenant's keys:\n"
              << fmt::format("- {{ id: {}, {}sha256: {} }}\n", key_id,
                             user.empty() ? "" : fmt::format("user: {}, ", user), hash);
    return 0;
  }
  if (count->parsed()) return count_tokens(enc_name, model_name, print_ids, jsonl);
  if (replay_cmd->parsed()) {
    std::vector<tg::sim::TraceRequest> trace;
    try {
      for (const auto& f : trace_files) {
        std::ifstream in(f);
        std::stringstream ss;
        ss << in.rdbuf();
        std::string stem = std::filesystem::path(f).stem().string();
        auto part = tg::sim::read_trace(ss.str(), stem, split_tenants);
        trace.insert(trace.end(), part.begin(), part.end());
      }
    } catch (const std::exception& e) {
      std::cerr << "tenantgate: " << e.what() << "\n";
      return 2;
    }
    if (replay_seconds > 0)
      std::erase_if(trace, [&](const tg::sim::TraceRequest& r) { return r.arrival_s >= replay_seconds; });
    double span = 0;
    for (const auto& r : trace) span = std::max(span, r.arrival_s);
    auto heavy = tg::sim::heavy_tenant("heavy", heavy_rate, span, heavy_prompt, heavy_output);
    trace.insert(trace.end(), heavy.begin(), heavy.end());
    tg::sim::EngineProfile prof = *tg::sim::profile_named(profile_name);
    prof.chunked_prefill = !no_chunked;
    pool_limits.max_seqs = pool_seqs;
    pool_limits.inflight_tokens = pool_tokens;
    auto res = tg::sim::replay(std::move(trace), prof,
                               policy_name == "fair" ? tg::sched::Policy::kFair : tg::sched::Policy::kFcfs,
                               pool_limits);
    if (!requests_csv.empty()) {
      std::ofstream out(requests_csv);
      out << "arrival_s,tenant,ttft_s,done_s\n";
      for (const auto& r : res.requests) out << fmt::format("{:.4f},{},{:.4f},{:.4f}\n", r.arrival_s, r.tenant, r.ttft_s, r.done_s);
      if (!out) {
        std::cerr << "tenantgate: cannot write " << requests_csv << "\n";
        return 2;
      }
    }
    std::cout << (replay_json ? tg::sim::to_json(res) + "\n" : tg::sim::to_table(res));
    return 0;
  }
  if (usage->parsed()) {
    if (usage_db.empty() && usage_pg.empty()) {
      std::cerr << "tenantgate: usage needs --db FILE or --postgres CONNINFO\n";
      return 2;
    }
    tg::ledger::UsageQuery q;
    for (std::size_t i = 0; i < usage_group.size();) {
      std::size_t j = usage_group.find(',', i);
      if (j == std::string::npos) j = usage_group.size();
      if (j > i) q.group_by.push_back(usage_group.substr(i, j - i));
      i = j + 1;
    }
    q.granularity = usage_gran;
    q.tenant = usage_tenant;
    for (auto [text, out, name] : {std::tuple{&usage_from, &q.from_ms, "--from"}, std::tuple{&usage_to, &q.to_ms, "--to"}}) {
      if (text->empty()) continue;
      *out = tg::ledger::parse_time(*text);
      if (!*out) {
        std::cerr << fmt::format("tenantgate: {} '{}' is not a date (2026-11-01), a UTC time (2026-11-01T00:00:00Z) "
                                 "or Unix milliseconds\n", name, *text);
        return 2;
      }
    }
    if (auto why = tg::ledger::validate(q)) {
      std::cerr << "tenantgate: " << *why << "\n";
      return 2;
    }
    try {
      auto rows = tg::ledger::query_usage({usage_db, usage_pg}, q);
      std::cout << (usage_csv ? tg::ledger::usage_csv(q, rows) : tg::ledger::usage_table(q, rows));
    } catch (const std::exception& e) {
      std::cerr << "tenantgate: " << e.what() << "\n";
      return 1;
    }
    return 0;
  }
  if (check_cmd->parsed()) {
    auto config = load(check_path);
    if (!config) return 2;
    std::cout << fmt::format("{}: OK ({} orgs, {} tenants, {} models)\n", check_path, config->orgs.size(),
                             config->tenants.size(), config->models.size());
    return 0;
  }
  return 0;
}
