#include "api/usage.h"

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/stream_parser.hpp>

namespace tg::api {
namespace json = boost::json;

namespace {
std::uint64_t count(const json::object& o, const char* key) {
  auto it = o.find(key);
  if (it == o.end()) return 0;
  if (it->value().is_uint64()) return it->value().get_uint64();
  if (it->value().is_int64() && it->value().get_int64() > 0) return static_cast<std::uint64_t>(it->value().get_int64());
  return 0;
}
}  // namespace

std::optional<Usage> usage_of(const json::object& response) {
  auto it = response.find("usage");
  if (it == response.end() || !it->value().is_object()) return std::nullopt;
  const auto& u = it->value().get_object();
  Usage out;
  out.prompt_tokens = count(u, "prompt_tokens");
  out.completion_tokens = count(u, "completion_tokens");
  if (auto d = u.find("prompt_tokens_details"); d != u.end() && d->value().is_object()) {
    out.cached_tokens = count(d->value().get_object(), "cached_tokens");
    out.cache_creation_tokens = count(d->value().get_object(), "cache_creation_tokens");
  }
  return out;
}

json::object usage_json(const Usage& u) {
  json::object o;
  o["prompt_tokens"] = u.prompt_tokens;
  o["completion_tokens"] = u.completion_tokens;
  o["total_tokens"] = u.prompt_tokens + u.completion_tokens;
  if (u.cached_tokens || u.cache_creation_tokens) {
    json::object d{{"cached_tokens", u.cached_tokens}};
    if (u.cache_creation_tokens) d["cache_creation_tokens"] = u.cache_creation_tokens;
    o["prompt_tokens_details"] = std::move(d);
  }
  return o;
}

std::optional<Usage> usage_of_body(std::string_view body) {
  // Only the usage object is parsed, not the whole (possibly long) body. The
  // bytes `"usage"` followed by `:` can only be an object key: inside a JSON
  // string every quote is escaped. OpenAI-compatible bodies put the top-level
  // usage last, so the last such key is the one.
  constexpr std::string_view kKey = "\"usage\"";
  for (std::size_t at = body.rfind(kKey); at != std::string_view::npos;
       at = at == 0 ? std::string_view::npos : body.rfind(kKey, at - 1)) {
    std::size_t i = at + kKey.size();
    while (i < body.size() && (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t')) ++i;
    if (i >= body.size() || body[i] != ':') continue;
    ++i;
    while (i < body.size() && (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t')) ++i;
    if (i >= body.size() || body[i] != '{') return std::nullopt;  // "usage": null
    unsigned char arena[2048];
    json::monotonic_resource mr(arena, sizeof arena);
    json::stream_parser p(&mr);
    boost::system::error_code ec;
    p.write_some(body.data() + i, body.size() - i, ec);  // stops after the one value
    if (ec || !p.done()) return std::nullopt;
    json::value u = p.release();
    json::object wrapper(&mr);
    wrapper.emplace("usage", std::move(u));
    return usage_of(wrapper);
  }
  return std::nullopt;
}

ChunkVerdict inspect_stream_chunk(std::string_view data, bool client_wants_usage, std::string& rewritten,
                                  std::optional<Usage>& usage, std::string& generated, StreamCapture* capture) {
  unsigned char arena[4096];
  json::monotonic_resource mr(arena, sizeof arena);
  boost::system::error_code ec;
  json::value v = json::parse(data, ec, &mr);
  if (ec || !v.is_object()) return ChunkVerdict::kForward;  // not ours to judge
  json::object& o = v.get_object();
  if (auto u = usage_of(o)) usage = u;
  if (auto ch = o.find("choices"); ch != o.end() && ch->value().is_array()) {
    if (capture && capture->model.empty())
      if (auto m = o.find("model"); m != o.end() && m->value().is_string()) capture->model = m->value().get_string();
    for (const auto& c : ch->value().get_array()) {
      if (!c.is_object()) continue;
      const auto& co = c.get_object();
      if (capture) {
        std::int64_t idx = 0;
        if (auto i = co.find("index"); i != co.end() && i->value().is_int64()) idx = i->value().get_int64();
        if (auto f = co.find("finish_reason"); f != co.end() && f->value().is_string()) capture->finish[idx] = f->value().get_string();
        if (auto d = co.find("delta"); d != co.end() && d->value().is_object()) {
          const auto& dd = d->value().get_object();
          for (const char* k : {"tool_calls", "function_call", "refusal"})
            if (auto t = dd.find(k); t != dd.end() && !t->value().is_null()) capture->tool_calls = true;
          if (auto t = dd.find("content"); t != dd.end() && t->value().is_string()) capture->text[idx].append(t->value().get_string());
        } else if (auto t = co.find("text"); t != co.end() && t->value().is_string()) {
          capture->text[idx].append(t->value().get_string());
        }
      }
      if (auto d = co.find("delta"); d != co.end() && d->value().is_object()) {
        auto t = d->value().get_object().find("content");
        if (t != d->value().get_object().end() && t->value().is_string()) generated.append(t->value().get_string());
      } else if (auto t = co.find("text"); t != co.end() && t->value().is_string()) {
        generated.append(t->value().get_string());
      }
    }
  }
  if (client_wants_usage) return ChunkVerdict::kForward;
  auto it = o.find("usage");
  if (it == o.end()) return ChunkVerdict::kForward;
  auto ch = o.find("choices");
  bool usage_only = ch == o.end() || (ch->value().is_array() && ch->value().get_array().empty());
  if (usage_only && it->value().is_object()) return ChunkVerdict::kDrop;
  o.erase(it);
  rewritten = json::serialize(o);
  return ChunkVerdict::kRewritten;
}

std::string completion_from_capture(const StreamCapture& c, bool chat, const std::optional<Usage>& usage,
                                    const std::string& id, std::int64_t created) {
  if (c.tool_calls || c.finish.empty()) return {};
  for (const auto& [idx, text] : c.text)
    if (!c.finish.count(idx)) return {};  // a choice that never finished: not a complete answer
  json::array choices;
  for (const auto& [idx, reason] : c.finish) {
    auto t = c.text.find(idx);
    const std::string text = t == c.text.end() ? std::string() : t->second;
    json::object ch;
    ch["index"] = idx;
    if (chat) ch["message"] = json::object{{"role", "assistant"}, {"content", text}, {"refusal", nullptr}};
    else ch["text"] = text;
    ch["logprobs"] = nullptr;
    ch["finish_reason"] = reason;
    choices.push_back(std::move(ch));
  }
  json::object o;
  o["id"] = id;
  o["object"] = chat ? "chat.completion" : "text_completion";
  o["created"] = created;
  o["model"] = c.model;
  o["choices"] = std::move(choices);
  if (usage) o["usage"] = usage_json(*usage);
  return json::serialize(o);
}

std::string restamp_completion(std::string_view body, const std::string& id, std::int64_t created) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) return std::string(body);
  v.get_object()["id"] = id;
  v.get_object()["created"] = created;
  return json::serialize(v);
}

std::vector<std::string> chunks_from_completion(std::string_view body, bool chat, bool include_usage,
                                                const std::string& id, std::int64_t created) {
  std::vector<std::string> out;
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) return out;
  const json::object& o = v.get_object();
  const json::value* model = o.if_contains("model");
  auto chunk = [&](json::array choices) {
    json::object c;
    c["id"] = id;
    c["object"] = chat ? "chat.completion.chunk" : "text_completion";
    c["created"] = created;
    c["model"] = model ? *model : json::value("");
    c["choices"] = std::move(choices);
    return c;
  };
  const json::value* choices = o.if_contains("choices");
  for (const auto& ch : choices && choices->is_array() ? choices->get_array() : json::array()) {
    if (!ch.is_object()) continue;
    const auto& co = ch.get_object();
    const json::value idx = co.contains("index") ? co.at("index") : json::value(0);
    std::string text;
    if (chat) {
      if (const auto* m = co.if_contains("message"); m && m->is_object())
        if (const auto* t = m->get_object().if_contains("content"); t && t->is_string()) text = t->get_string();
      out.push_back(json::serialize(chunk(json::array{json::object{
          {"index", idx}, {"delta", json::object{{"role", "assistant"}, {"content", text}}}, {"logprobs", nullptr}, {"finish_reason", nullptr}}})));
      out.push_back(json::serialize(chunk(json::array{json::object{
          {"index", idx}, {"delta", json::object{}}, {"logprobs", nullptr}, {"finish_reason", co.contains("finish_reason") ? co.at("finish_reason") : json::value("stop")}}})));
    } else {
      if (const auto* t = co.if_contains("text"); t && t->is_string()) text = t->get_string();
      out.push_back(json::serialize(chunk(json::array{json::object{
          {"index", idx}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", co.contains("finish_reason") ? co.at("finish_reason") : json::value("stop")}}})));
    }
  }
  if (include_usage) {
    json::object u = chunk(json::array{});
    u["usage"] = o.contains("usage") ? o.at("usage") : json::value(nullptr);
    out.push_back(json::serialize(u));
  }
  return out;
}

}  // namespace tg::api
