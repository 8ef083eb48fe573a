#include "cache/request_facts.h"

#include <openssl/sha.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <fmt/format.h>

namespace tg::cache {
namespace json = boost::json;
namespace {

void canonical(const json::value& v, std::string& out);

// An object with its keys sorted; `skip`: keys of this object (not of nested ones) left out.
void canonical_object(const json::object& o, std::string& out, std::initializer_list<std::string_view> skip = {}) {
  std::vector<std::pair<std::string_view, const json::value*>> kv;
  for (const auto& e : o)
    if (std::find(skip.begin(), skip.end(), e.key()) == skip.end()) kv.emplace_back(e.key(), &e.value());
  std::sort(kv.begin(), kv.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  out += '{';
  for (std::size_t i = 0; i < kv.size(); ++i) {
    if (i) out += ',';
    out += json::serialize(json::string(kv[i].first));
    out += ':';
    canonical(*kv[i].second, out);
  }
  out += '}';
}

void canonical(const json::value& v, std::string& out) {
  switch (v.kind()) {
    case json::kind::object:
      canonical_object(v.get_object(), out);
      break;
    case json::kind::array: {
      out += '[';
      const auto& a = v.get_array();
      for (std::size_t i = 0; i < a.size(); ++i) {
        if (i) out += ',';
        canonical(a[i], out);
      }
      out += ']';
      break;
    }
    default:
      out += json::serialize(v);
  }
}

std::string canonical_of(const json::value* v) {
  std::string out;
  if (v) canonical(*v, out);
  return out;
}

std::string sha256_hex(std::string_view s) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), d);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(2 * SHA256_DIGEST_LENGTH, '0');
  for (std::size_t i = 0; i < SHA256_DIGEST_LENGTH; ++i) {
    out[2 * i] = kHex[d[i] >> 4];
    out[2 * i + 1] = kHex[d[i] & 15];
  }
  return out;
}

double number_or(const json::object& o, std::string_view k, double dflt) {
  auto* v = o.if_contains(k);
  if (!v) return dflt;
  if (v->is_double()) return v->get_double();
  if (v->is_int64()) return static_cast<double>(v->get_int64());
  if (v->is_uint64()) return static_cast<double>(v->get_uint64());
  return dflt;
}

// A message's text content (string, or the text parts of an array).
std::string content_text(const json::value& m) {
  const auto* c = m.is_object() ? m.get_object().if_contains("content") : nullptr;
  if (!c) return {};
  if (c->is_string()) return std::string(c->get_string());
  std::string out;
  if (c->is_array())
    for (const auto& part : c->get_array())
      if (const auto* t = part.is_object() ? part.get_object().if_contains("text") : nullptr; t && t->is_string()) {
        if (!out.empty()) out += '\n';
        out += t->get_string();
      }
  return out;
}

std::string_view role_of(const json::value& m) {
  const auto* r = m.is_object() ? m.get_object().if_contains("role") : nullptr;
  return r && r->is_string() ? std::string_view(r->get_string()) : std::string_view();
}

}  // namespace

Answer read_answer(std::string_view body) {
  Answer a;
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) return a;
  const auto* choices = v.get_object().if_contains("choices");
  if (!choices || !choices->is_array() || choices->get_array().empty()) return a;
  auto present = [](const json::object& o, std::string_view k) {
    const auto* f = o.if_contains(k);
    return f && !f->is_null() && !(f->is_array() && f->get_array().empty());
  };
  for (const auto& c : choices->get_array()) {
    if (!c.is_object()) return a;
    const auto& co = c.get_object();
    if (!present(co, "finish_reason")) return a;
    const json::value* t = nullptr;
    if (const auto* m = co.if_contains("message"); m && m->is_object()) {
      const auto& mo = m->get_object();
      if (present(mo, "tool_calls") || present(mo, "function_call") || present(mo, "refusal")) return a;
      t = mo.if_contains("content");
    } else {
      t = co.if_contains("text");
    }
    if (!t || !t->is_string()) return a;
    a.text += t->get_string();
    a.text += '\n';
  }
  a.storable = true;
  return a;
}

std::string canonical_json(std::string_view text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec) return std::string(text);
  return canonical_of(&v);
}

Decision decide(const api::ParsedRequest& req, std::string_view cache_control, const Policy& policy) {
  auto has = [&](std::string_view directive) {
    std::string cc(cache_control);
    std::transform(cc.begin(), cc.end(), cc.begin(), [](unsigned char c) { return std::tolower(c); });
    return cc.find(directive) != std::string::npos;
  };
  if (req.endpoint == api::Endpoint::kEmbeddings) return {Mode::kBypass, "embeddings are not cached"};
  if (has("no-store")) return {Mode::kBypass, "Cache-Control: no-store"};
  const double temperature = number_or(req.body, "temperature", 1.0);
  if (temperature > policy.max_temperature)
    return {Mode::kBypass, fmt::format("temperature {} is above the cache's ceiling {}", temperature, policy.max_temperature)};
  if (has("no-cache")) return {Mode::kRefresh, "Cache-Control: no-cache"};
  return {Mode::kLookup, {}};
}

namespace {
// Length-prefixed, so no two different tuples join to the same string.
std::string joined(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (std::string_view part : parts) {
    out += std::to_string(part.size());
    out += ':';
    out += part;
  }
  return out;
}
}  // namespace

RequestFacts request_facts(const api::ParsedRequest& req, const Policy& policy, std::string_view door) {
  RequestFacts f;
  const json::object& b = req.body;
  // Messages: system/developer apart; the last user turn (plus prior_turns
  // before it) embedded; everything before that fingerprinted.
  std::string system, history, prompt;
  if (const auto* ms = b.if_contains("messages"); ms && ms->is_array()) {
    const auto& arr = ms->get_array();
    std::ptrdiff_t last_user = -1;
    for (std::size_t i = 0; i < arr.size(); ++i)
      if (role_of(arr[i]) == "user") last_user = static_cast<std::ptrdiff_t>(i);
    const std::ptrdiff_t first_embedded =
        last_user < 0 ? static_cast<std::ptrdiff_t>(arr.size()) : std::max<std::ptrdiff_t>(0, last_user - policy.prior_turns);
    for (std::size_t i = 0; i < arr.size(); ++i) {
      const std::string_view role = role_of(arr[i]);
      if (role == "system" || role == "developer") {
        system += canonical_of(&arr[i]);
      } else if (static_cast<std::ptrdiff_t>(i) < first_embedded) {
        history += canonical_of(&arr[i]);
      } else if (static_cast<std::ptrdiff_t>(i) <= last_user) {
        if (!prompt.empty()) prompt += '\n';
        prompt += content_text(arr[i]);
        if (role != "user" || static_cast<std::ptrdiff_t>(i) != last_user) history += canonical_of(&arr[i]);
      } else {
        history += canonical_of(&arr[i]);  // after the last user turn (e.g. a prefilled assistant turn)
      }
    }
  } else if (const auto* p = b.if_contains("prompt")) {
    prompt = p->is_string() ? std::string(p->get_string()) : canonical_of(p);
  }
  f.prompt = std::move(prompt);
  auto field = [&](std::string_view name) { return canonical_of(b.if_contains(name)); };
  const double temperature = number_or(b, "temperature", 1.0), top_p = number_or(b, "top_p", 1.0);
  const std::string sampling = fmt::format(
      "t={:.2f};p={:.2f};seed={};n={};max={};logprobs={}{};stop={};fp={};pp={};bias={};effort={}",
      std::round(temperature * 20) / 20, std::round(top_p * 20) / 20, field("seed"), field("n"),
      req.max_output_tokens ? std::to_string(*req.max_output_tokens) : std::string("-"), field("logprobs"),
      field("top_logprobs"), field("stop"), field("frequency_penalty"), field("presence_penalty"),
      field("logit_bias"), field("reasoning_effort"));
  const std::string tools = field("tools") + "|" + field("tool_choice") + "|" + field("functions") + "|" +
                            field("function_call") + "|" + field("parallel_tool_calls");
  const std::string context_access;  // the context issue's ACL scope; empty until then
  // Another door's answers have another shape (and its sampling knobs, top_k): its own partitions.
  const std::string door_shape = door.empty() ? std::string() : std::string(door) + ";k=" + field("top_k");
  f.content = sha256_hex(joined({api::endpoint_name(req.endpoint), req.model, sha256_hex(system), sha256_hex(tools),
                                 sha256_hex(field("response_format")), sampling, sha256_hex(history),
                                 sha256_hex(context_access), door_shape}));
  std::string rest;
  canonical_object(b, rest, {"stream", "stream_options", "user", "metadata", "store"});
  f.exact = sha256_hex(rest).substr(0, 32);
  return f;
}

Key key_in(const RequestFacts& f, const std::string& tenant, const std::string& user, bool tenant_scope,
           const std::string& public_namespace, const std::string& key_id) {
  Key k;
  k.tenant = tenant;  // the owner for limits and purges; not part of a public partition
  k.user = user;
  // ("key:" cannot be confused with a user's scope: "user:" prefixes every user id, even one with colons.)
  k.scope = !public_namespace.empty() ? "public:" + public_namespace
            : tenant_scope            ? "tenant"
            : user.empty()            ? "key:" + key_id
                                      : "user:" + user;
  const std::string partition_tenant = public_namespace.empty() ? tenant : std::string();
  k.partition = sha256_hex(joined({f.content, partition_tenant, k.scope})).substr(0, 32);
  k.exact = f.exact;
  k.prompt = f.prompt;
  return k;
}

Key make_key(const api::ParsedRequest& req, const std::string& tenant, const std::string& user, bool tenant_scope,
             const Policy& policy, const std::string& public_namespace) {
  return key_in(request_facts(req, policy), tenant, user, tenant_scope, public_namespace);
}

}  // namespace tg::cache
