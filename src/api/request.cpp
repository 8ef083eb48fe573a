#include "api/request.h"

#include <algorithm>

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>

namespace tg::api {
namespace json = boost::json;

const char* json_kind_name(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null: return "null";
    case json::kind::bool_: return "a boolean";
    case json::kind::int64:
    case json::kind::uint64: return "an integer";
    case json::kind::double_: return "a number";
    case json::kind::string: return "a string";
    case json::kind::array: return "an array";
    case json::kind::object: return "an object";
  }
  return "?";
}

ApiError type_error(const std::string& param, const char* want, const json::value& got) {
  return invalid_request(fmt::format("Invalid type for '{}': expected {}, but got {}.", param, want,
                                     json_kind_name(got)),
                         param, "invalid_type");
}


std::string_view endpoint_name(Endpoint e) {
  switch (e) {
    case Endpoint::kChatCompletions: return "chat.completions";
    case Endpoint::kCompletions: return "completions";
    case Endpoint::kEmbeddings: return "embeddings";
  }
  return "?";
}

std::string_view endpoint_path(Endpoint e) {
  switch (e) {
    case Endpoint::kChatCompletions: return "/chat/completions";
    case Endpoint::kCompletions: return "/completions";
    case Endpoint::kEmbeddings: return "/embeddings";
  }
  return "/";
}

namespace {

constexpr std::size_t kMaxModelBytes = 256;


ApiError missing(const std::string& param) {
  return invalid_request(fmt::format("Missing required parameter: '{}'.", param), param,
                         "missing_required_parameter");
}

std::optional<ApiError> check_number(const json::object& o, const char* key, double lo, double hi) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) return std::nullopt;
  if (!it->value().is_number()) return type_error(key, "a number", it->value());
  double v = it->value().to_number<double>();
  if (v < lo || v > hi)
    return invalid_request(fmt::format("Invalid value for '{}': {} is outside [{}, {}].", key,
                                       json::serialize(it->value()), lo, hi),
                           key, "invalid_value");
  return std::nullopt;
}

// An integer field in [lo, hi]; sets `out` when present.
std::optional<ApiError> check_int(const json::object& o, const char* key, std::int64_t lo,
                                  std::int64_t hi, std::optional<std::uint32_t>* out = nullptr) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) return std::nullopt;
  const json::value& v = it->value();
  std::int64_t n;
  if (v.is_int64()) n = v.get_int64();
  else if (v.is_uint64()) n = v.get_uint64() > static_cast<std::uint64_t>(hi) ? hi + 1 : static_cast<std::int64_t>(v.get_uint64());
  else return type_error(key, "an integer", v);
  if (n < lo || n > hi)
    return invalid_request(
        fmt::format("Invalid value for '{}': {} is outside [{}, {}].", key, json::serialize(v), lo, hi),
        key, "invalid_value");
  if (out) *out = static_cast<std::uint32_t>(n);
  return std::nullopt;
}

std::optional<ApiError> check_bool(const json::object& o, const char* key, bool* out) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) return std::nullopt;
  if (!it->value().is_bool()) return type_error(key, "a boolean", it->value());
  if (out) *out = it->value().get_bool();
  return std::nullopt;
}

std::optional<ApiError> check_content_parts(const json::array& parts, const std::string& param) {
  for (std::size_t i = 0; i < parts.size(); ++i) {
    std::string p = fmt::format("{}[{}]", param, i);
    if (!parts[i].is_object()) return type_error(p, "an object", parts[i]);
    const auto& part = parts[i].get_object();
    auto t = part.find("type");
    if (t == part.end()) return missing(p + ".type");
    if (!t->value().is_string()) return type_error(p + ".type", "a string", t->value());
    if (t->value().get_string() == "text") {
      auto tx = part.find("text");
      if (tx == part.end()) return missing(p + ".text");
      if (!tx->value().is_string()) return type_error(p + ".text", "a string", tx->value());
    }
  }
  return std::nullopt;
}

std::optional<ApiError> check_messages(const json::object& o) {
  auto it = o.find("messages");
  if (it == o.end()) return missing("messages");
  if (!it->value().is_array()) return type_error("messages", "an array", it->value());
  const auto& msgs = it->value().get_array();
  if (msgs.empty())
    return invalid_request("Invalid 'messages': empty array. Expected an array with minimum length 1.",
                           "messages", "empty_array");
  for (std::size_t i = 0; i < msgs.size(); ++i) {
    std::string p = fmt::format("messages[{}]", i);
    if (!msgs[i].is_object()) return type_error(p, "an object", msgs[i]);
    const auto& m = msgs[i].get_object();
    auto role = m.find("role");
    if (role == m.end()) return missing(p + ".role");
    if (!role->value().is_string()) return type_error(p + ".role", "a string", role->value());
    std::string_view r = role->value().get_string();
    if (r != "system" && r != "developer" && r != "user" && r != "assistant" && r != "tool" &&
        r != "function")
      return invalid_request(
          fmt::format("Invalid value for '{}.role': '{}'. Supported values are: 'system', "
                      "'developer', 'user', 'assistant', 'tool' and 'function'.", p, r),
          p + ".role", "invalid_value");
    auto c = m.find("content");
    bool has_tool_calls = m.contains("tool_calls") || m.contains("function_call");
    if (c == m.end() || c->value().is_null()) {
      if (r == "assistant" && has_tool_calls) continue;
      if (r == "assistant" && c != m.end()) continue;  // null content is allowed for assistant
      return missing(p + ".content");
    }
    if (c->value().is_array()) {
      if (auto e = check_content_parts(c->value().get_array(), p + ".content")) return e;
    } else if (!c->value().is_string()) {
      return type_error(p + ".content", "a string or an array of content parts", c->value());
    }
    if (r == "tool") {
      auto id = m.find("tool_call_id");
      if (id == m.end()) return missing(p + ".tool_call_id");
      if (!id->value().is_string()) return type_error(p + ".tool_call_id", "a string", id->value());
    }
  }
  return std::nullopt;
}

bool is_int_array(const json::array& a) {
  for (const auto& v : a)
    if (!v.is_int64() && !v.is_uint64()) return false;
  return true;
}

// prompt (completions) and input (embeddings): a string, strings, token ids,
// or arrays of token ids.
std::optional<ApiError> check_text_input(const json::object& o, const char* key, bool required) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) {
    if (required) return missing(key);
    return std::nullopt;
  }
  const json::value& v = it->value();
  const char* want = "a string, an array of strings, an array of token ids, or an array of token-id arrays";
  if (v.is_string()) {
    if (required && v.get_string().empty())
      return invalid_request(fmt::format("Invalid '{}': must not be empty.", key), key, "invalid_value");
    return std::nullopt;
  }
  if (!v.is_array()) return type_error(key, want, v);
  const auto& a = v.get_array();
  if (a.empty()) return invalid_request(fmt::format("Invalid '{}': empty array.", key), key, "empty_array");
  if (a.size() > 2048)
    return invalid_request(fmt::format("Invalid '{}': at most 2048 inputs per request, got {}.", key, a.size()),
                           key, "array_too_long");
  if (is_int_array(a)) return std::nullopt;
  bool all_strings = true, all_int_arrays = true;
  for (const auto& e : a) {
    all_strings = all_strings && e.is_string();
    all_int_arrays = all_int_arrays && e.is_array() && is_int_array(e.get_array());
  }
  if (!all_strings && !all_int_arrays) return type_error(key, want, v);
  return std::nullopt;
}

}  // namespace

Expected<ParsedRequest> parse_request(Endpoint endpoint, std::string_view body, json::storage_ptr storage) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec, std::move(storage));
  if (ec) {
    return invalid_request(
        fmt::format("We could not parse the JSON body of your request ({}). The API expects a "
                    "JSON object; check that the body is valid JSON and sent with "
                    "'Content-Type: application/json'.", ec.message()),
        {}, "invalid_json");
  }
  if (!v.is_object())
    return invalid_request(fmt::format("The request body must be a JSON object, but got {}.", json_kind_name(v)),
                           {}, "invalid_json");
  // Move-construct (never move-assign) the object: assignment across
  // different storage (the caller's arena vs the default) deep-copies it.
  ParsedRequest r{endpoint, std::move(v.get_object())};
  const json::object& o = r.body;

  auto m = o.find("model");
  if (m == o.end() || m->value().is_null()) return missing("model");
  if (!m->value().is_string()) return type_error("model", "a string", m->value());
  r.model = std::string(m->value().get_string());
  if (r.model.empty())
    return invalid_request("Invalid 'model': must not be empty.", "model", "invalid_value");
  // A model id names a configured alias: bounded, printable (it reaches
  // error messages, the ledger and the access log even when it is unknown).
  if (r.model.size() > kMaxModelBytes)
    return invalid_request(fmt::format("Invalid 'model': at most {} characters, got {}. Use one of the model ids "
                                       "GET /v1/models lists.", kMaxModelBytes, r.model.size()),
                           "model", "string_above_max_length");
  for (unsigned char c : r.model)
    if (c < 0x20 || c == 0x7F)
      return invalid_request("Invalid 'model': control characters are not allowed. Use one of the model ids "
                             "GET /v1/models lists.", "model", "invalid_value");

  if (auto u = o.find("user"); u != o.end() && !u->value().is_null()) {
    if (!u->value().is_string()) return type_error("user", "a string", u->value());
    r.user = std::string(u->value().get_string());
    if (r.user.size() > 256)
      return invalid_request("Invalid 'user': at most 256 characters.", "user", "string_above_max_length");
  }

  if (endpoint == Endpoint::kEmbeddings) {
    if (auto e = check_text_input(o, "input", true)) return *e;
    if (auto f = o.find("encoding_format"); f != o.end() && !f->value().is_null()) {
      if (!f->value().is_string()) return type_error("encoding_format", "a string", f->value());
      std::string_view fmt = f->value().get_string();
      if (fmt != "float" && fmt != "base64")
        return invalid_request(fmt::format("Invalid value for 'encoding_format': '{}'. Supported "
                                           "values are: 'float' and 'base64'.", fmt),
                               "encoding_format", "invalid_value");
      r.embeddings_base64 = fmt == "base64";
    }
    if (auto e = check_int(o, "dimensions", 1, 65536, &r.dimensions)) return *e;
    return r;
  }

  if (endpoint == Endpoint::kChatCompletions) {
    if (auto e = check_messages(o)) return *e;
  } else {
    if (auto e = check_text_input(o, "prompt", false)) return *e;
  }
  if (auto e = check_bool(o, "stream", &r.stream)) return *e;
  if (auto so = o.find("stream_options"); so != o.end() && !so->value().is_null()) {
    if (!so->value().is_object()) return type_error("stream_options", "an object", so->value());
    if (!r.stream)
      return invalid_request("The 'stream_options' parameter is only allowed when 'stream' is true.",
                             "stream_options", "invalid_value");
    const auto& sob = so->value().get_object();
    if (auto iu = sob.find("include_usage"); iu != sob.end() && !iu->value().is_null()) {
      if (!iu->value().is_bool()) return type_error("stream_options.include_usage", "a boolean", iu->value());
      r.client_wants_usage = iu->value().get_bool();
    }
  }
  std::optional<std::uint32_t> max_tokens, max_completion_tokens;
  if (auto e = check_int(o, "max_tokens", 1, 10'000'000, &max_tokens)) return *e;
  if (auto e = check_int(o, "max_completion_tokens", 1, 10'000'000, &max_completion_tokens)) return *e;
  r.max_output_tokens = max_completion_tokens ? max_completion_tokens : max_tokens;
  std::optional<std::uint32_t> n, best_of;
  if (auto e = check_int(o, "n", 1, 128, &n)) return *e;
  if (endpoint == Endpoint::kCompletions) {
    if (auto e = check_int(o, "best_of", 1, 20, &best_of)) return *e;
    if (best_of && n && *best_of < *n)
      return invalid_request(fmt::format("Invalid value for 'best_of': {} is less than 'n' ({}); best_of must be "
                                         "at least n.", *best_of, *n),
                             "best_of", "invalid_value");
  }
  r.choices = std::max(n.value_or(1), best_of.value_or(1));
  if (auto e = check_number(o, "temperature", 0, 2)) return *e;
  if (auto e = check_number(o, "top_p", 0, 1)) return *e;
  if (auto e = check_number(o, "presence_penalty", -2, 2)) return *e;
  if (auto e = check_number(o, "frequency_penalty", -2, 2)) return *e;
  return r;
}

std::string upstream_body(const ParsedRequest& req, const std::string& upstream_model) {
  // Serialised member by member instead of copying the whole object to
  // change two fields.
  std::string out;
  out.reserve(64 + upstream_model.size());
  out += "{\"model\":";
  out += json::serialize(json::string_view(upstream_model));
  for (const auto& kv : req.body) {
    if (kv.key() == "model" || (req.stream && kv.key() == "stream_options")) continue;
    out += ',';
    out += json::serialize(kv.key());
    out += ':';
    out += json::serialize(kv.value());
  }
  if (req.stream) {
    json::object so;
    if (auto it = req.body.find("stream_options"); it != req.body.end() && it->value().is_object())
      so = it->value().get_object();
    so["include_usage"] = true;
    out += ",\"stream_options\":";
    out += json::serialize(so);
  }
  out += '}';
  return out;
}

namespace {
void append_content(std::string& out, const json::value& c) {
  if (c.is_string()) {
    out.append(c.get_string());
  } else if (c.is_array()) {
    for (const auto& part : c.get_array()) {
      if (!part.is_object()) continue;
      auto t = part.get_object().find("text");
      if (t != part.get_object().end() && t->value().is_string()) out.append(t->value().get_string());
    }
  }
}
}  // namespace

std::string prompt_text(const ParsedRequest& req) {
  std::string out;
  const json::object& o = req.body;
  if (req.endpoint == Endpoint::kChatCompletions) {
    auto it = o.find("messages");
    if (it == o.end() || !it->value().is_array()) return out;
    for (const auto& m : it->value().get_array()) {
      if (!m.is_object()) continue;
      auto c = m.get_object().find("content");
      if (c == m.get_object().end()) continue;
      if (!out.empty()) out.push_back('\n');
      append_content(out, c->value());
    }
    return out;
  }
  std::size_t n = embedding_input_count(req);
  for (std::size_t i = 0; i < n; ++i) {
    if (i) out.push_back('\n');
    out += embedding_input_text(req, i);
  }
  return out;
}

std::vector<MessageText> message_texts(const ParsedRequest& req) {
  std::vector<MessageText> out;
  auto it = req.body.find("messages");
  if (it == req.body.end() || !it->value().is_array()) return out;
  for (const auto& m : it->value().get_array()) {
    if (!m.is_object()) continue;
    const auto& o = m.get_object();
    MessageText t;
    if (auto r = o.find("role"); r != o.end() && r->value().is_string()) t.role = r->value().get_string();
    if (auto n = o.find("name"); n != o.end() && n->value().is_string()) t.name = n->value().get_string();
    if (auto c = o.find("content"); c != o.end()) append_content(t.content, c->value());
    out.push_back(std::move(t));
  }
  return out;
}

bool is_valid_traceparent(std::string_view v) {
  if (v.size() < 55 || v.size() > 512) return false;
  auto hex = [&](std::size_t from, std::size_t n, bool nonzero) {
    bool any = false;
    for (std::size_t i = from; i < from + n; ++i) {
      const char c = v[i];
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
      any = any || c != '0';
    }
    return !nonzero || any;
  };
  if (!hex(0, 2, false) || v.substr(0, 2) == "ff" || v[2] != '-' || !hex(3, 32, true) || v[35] != '-' ||
      !hex(36, 16, true) || v[52] != '-' || !hex(53, 2, false))
    return false;
  if (v.substr(0, 2) == "00") return v.size() == 55;
  return v.size() == 55 || v[55] == '-';
}

namespace {
const json::value* text_input(const ParsedRequest& req) {
  const char* key = req.endpoint == Endpoint::kEmbeddings ? "input" : "prompt";
  auto it = req.body.find(key);
  return it == req.body.end() ? nullptr : &it->value();
}
}  // namespace

std::size_t embedding_input_count(const ParsedRequest& req) {
  const json::value* v = text_input(req);
  if (!v || v->is_null()) return 0;
  if (v->is_array() && !v->get_array().empty() && !is_int_array(v->get_array()))
    return v->get_array().size();
  return 1;
}

std::string embedding_input_text(const ParsedRequest& req, std::size_t i) {
  const json::value* v = text_input(req);
  if (!v) return {};
  const json::value* e = v;
  if (v->is_array() && !is_int_array(v->get_array())) e = &v->get_array().at(i);
  if (e->is_string()) return std::string(e->get_string());
  // Token ids: rendered as their decimal text, one "word" each.
  std::string out;
  if (e->is_array())
    for (const auto& t : e->get_array()) out += json::serialize(t) + " ";
  return out;
}

}  // namespace tg::api
