#include "admin/admin_api.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/parse_path.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "identity/keys.h"
#include "meter/pricing.h"
#include "ledger/usage_query.h"

namespace tg::admin {
namespace net = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;

net::awaitable<Expected<Reply>> AdminApi::serve(Resource what, const Request& req, const std::string& path,
                                                std::string_view rest, const std::string& request_id) const {
  if (auto e = check_admin_key(req)) co_return *e;
  switch (what) {
    case Resource::kLimits: co_return co_await limits(req, rest);
    case Resource::kUsage: co_return co_await usage(req);
    case Resource::kCache: co_return co_await cache(req, path, request_id);
  }
  co_return server_error("unknown admin resource");
}

net::awaitable<std::string> AdminApi::on_admin_thread(const std::function<void()>& query) const {
  std::string failure;
  auto work = [&]() -> net::awaitable<void> {
    try {
      query();
    } catch (const std::exception& e) {
      failure = e.what();
    }
    co_return;
  };
  co_await net::co_spawn(d_.admin_executor, work, net::use_awaitable);
  co_return failure;
}

std::optional<ApiError> AdminApi::check_admin_key(const Request& req) const {
  const std::string_view auth = req[http::field::authorization];
  if (auth.empty())
    return authentication_error("The admin API needs the admin key as 'Authorization: Bearer <key>'.", "missing_api_key");
  const std::optional<std::string_view> key = identity::bearer_token(auth);
  if (!key)
    return authentication_error("The Authorization header must be 'Bearer <admin key>'.", "invalid_authorization_header");
  const Sha256 h = identity::sha256(*key);
  bool admin = false;
  for (const auto& k : d_.config.admin_keys) admin = admin || k == h;
  if (!admin && d_.keys.authenticate(auth, "").ok())
    return permission_error("This is a tenant key; the admin API needs an admin key (admin.key_sha256).",
                            "admin_key_required");
  if (!admin) return authentication_error("Incorrect admin key.");
  return std::nullopt;
}

Expected<limits::LimitsUpdate> parse_scope_limits(std::string_view body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object())
    return invalid_request("The body must be a JSON object like {\"requests_per_min\": 120, \"tokens_per_min\": "
                           "{\"rate\": 20000, \"ceil\": 60000}, \"concurrency\": 8}.", {}, "invalid_json");
  ScopeLimits l;
  constexpr std::int64_t kMax = 1'000'000'000;
  auto number = [&](const json::value& n, const std::string& field, std::int64_t& out) -> std::optional<ApiError> {
    if (n.is_int64() && n.as_int64() >= 1 && n.as_int64() <= kMax) { out = n.as_int64(); return std::nullopt; }
    if (n.is_uint64() && n.as_uint64() >= 1 && n.as_uint64() <= kMax) { out = static_cast<std::int64_t>(n.as_uint64()); return std::nullopt; }
    return invalid_request(fmt::format("'{}' must be an integer from 1 to {}.", field, kMax), field, "invalid_value");
  };
  unsigned nulled = 0;  // the fields given as null
  for (const auto& [k, val] : v.as_object()) {
    const std::string key(k);
    const unsigned bit = key == "requests_per_min" ? 1u : key == "tokens_per_min" ? 2u : key == "concurrency" ? 4u : 0u;
    if (bit && val.is_null()) {
      nulled |= bit;
      continue;
    }
    if (key == "concurrency") {
      if (auto e = number(val, key, l.concurrency)) return *e;
      continue;
    }
    RateLimit* r = key == "requests_per_min" ? &l.requests_per_min : key == "tokens_per_min" ? &l.tokens_per_min : nullptr;
    if (!r) return invalid_request(fmt::format("Unknown field '{}' (requests_per_min, tokens_per_min, concurrency).", key), key, "unknown_parameter");
    if (val.is_object()) {
      for (const auto& [rk, rv] : val.as_object()) {
        const std::string f = key + "." + std::string(rk);
        if (rk == "rate") { if (auto e = number(rv, f, r->rate)) return *e; }
        else if (rk == "ceil") { if (auto e = number(rv, f, r->ceil)) return *e; }
        else return invalid_request(fmt::format("Unknown field '{}' (rate, ceil).", f), f, "unknown_parameter");
      }
      if (r->rate && r->ceil && r->rate > r->ceil)
        return invalid_request(fmt::format("'{}.rate' ({}) is above its ceil ({}).", key, r->rate, r->ceil), key + ".rate", "invalid_value");
      if (!r->ceil) r->ceil = r->rate;
    } else if (auto e = number(val, key, r->ceil)) {
      return *e;
    }
  }
  return limits::LimitsUpdate(l, nulled == 7u);
}

// GET /admin/limits/{scope}: a scope's limits, usage and reservations.
// PUT /admin/limits/{scope} with a `limits:` block as JSON: new limits, now.
net::awaitable<Expected<Reply>> AdminApi::limits(const Request& req, std::string_view rest) const {
  auto decoded = boost::urls::parse_path(rest);  // views `rest`
  std::string scope;
  if (decoded)
    for (auto seg : *decoded) scope += (scope.empty() ? "" : "/") + seg.decode();
  Expected<std::string> r = std::string();
  if (req.method() == http::verb::get) {
    if (d_.redis_limits) r = co_await d_.redis_limits->report_async(scope);
    else r = d_.limits.report(scope, d_.clock.steady_us());
  } else {
    auto l = parse_scope_limits(req.body());
    if (!l) co_return l.error();
    if (d_.redis_limits) r = co_await d_.redis_limits->set_limits_async(scope, *l);
    else r = d_.limits.set_limits(scope, *l, d_.clock.steady_us());
    if (r) spdlog::info("admin: limits of {} set to {}", scope, req.body());
  }
  if (!r) co_return r.error();
  co_return Reply{"application/json", std::move(*r)};
}

// GET /admin/usage?group_by=tenant,user&from=&to=&granularity=hour|day&tenant=
net::awaitable<Expected<Reply>> AdminApi::usage(const Request& req) const {
  std::optional<ApiError> err;
  ledger::UsageQuery q;
  {
    auto target = boost::urls::parse_origin_form(req.target());
    if (!target) err = invalid_request("Malformed query string.", {}, "invalid_query");
    for (const auto& param : target ? target->params() : boost::urls::params_view()) {
      std::string k(param.key), v(param.value);
      auto time = [&](std::optional<std::int64_t>& out) {
        out = ledger::parse_time(v);
        if (!out) err = invalid_request(fmt::format("Invalid '{}': '{}' is not a date (2026-11-01), a UTC time "
                                                    "(2026-11-01T00:00:00Z) or Unix milliseconds.", k, v), k, "invalid_value");
      };
      if (k == "group_by") {
        for (std::size_t i = 0; i <= v.size();) {
          std::size_t j = std::min(v.find(',', i), v.size());
          if (j > i) q.group_by.push_back(v.substr(i, j - i));
          i = j + 1;
        }
      } else if (k == "from") time(q.from_ms);
      else if (k == "to") time(q.to_ms);
      else if (k == "granularity") q.granularity = v;
      else if (k == "tenant") q.tenant = v;
      else err = invalid_request(fmt::format("Unknown parameter '{}' (group_by, from, to, granularity, tenant).", k), k, "unknown_parameter");
    }
    if (!err)
      if (auto why = ledger::validate(q)) err = invalid_request(*why, why->substr(0, why->find(':')), "invalid_value");
    if (!err && d_.config.metering.ledger_sqlite == "off" && d_.config.metering.ledger_postgres.empty())
      err = not_found("The ledger is off (metering.ledger_sqlite: off): there is no usage to query.", "ledger_disabled");
  }
  if (err) co_return *err;
  std::vector<ledger::UsageRow> rows;
  const std::function<void()> query = [&] {
    rows = ledger::query_usage({d_.config.metering.ledger_sqlite, d_.config.metering.ledger_postgres}, q);
  };
  const std::string failure = co_await on_admin_thread(query);
  if (!failure.empty()) co_return server_error("Usage query failed: " + failure, "ledger_error");
  if (req[http::field::accept].find("text/csv") != std::string_view::npos)
    co_return Reply{"text/csv; charset=utf-8", ledger::usage_csv(q, rows)};
  json::array data;
  for (const auto& r : rows) {
    json::object o;
    for (std::size_t i = 0; i < q.group_by.size(); ++i) o[q.group_by[i]] = r.groups[i];
    if (!q.granularity.empty()) o["period_start_ms"] = r.period_start_ms;
    o["requests"] = r.requests;
    o["prompt_tokens"] = r.prompt_tokens;
    o["completion_tokens"] = r.completion_tokens;
    o["cached_tokens"] = r.cached_tokens;
    o["cost_micros"] = r.cost_micros;
    o["cost_usd"] = ledger::format_micros_usd(r.cost_micros);
    data.push_back(std::move(o));
  }
  json::object out;
  out["object"] = "list";
  out["data"] = std::move(data);
  co_return Reply{"application/json", json::serialize(out)};
}

}  // namespace tg::admin

