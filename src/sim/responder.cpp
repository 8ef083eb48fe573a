#include "sim/responder.h"

#include <boost/json/serialize.hpp>
#include <cmath>
#include <cstring>
#include <string_view>

#include "api/usage.h"
#include "meter/chat_count.h"
#include "meter/tokenizer.h"
#include "sim/engine_model.h"

namespace tg::sim {
namespace json = boost::json;

namespace {

// A small fixed vocabulary so that sim text reads like words.
constexpr std::string_view kWords[] = {
    "the", "gateway", "admits", "each", "request", "fairly", "tokens", "stream", "through",
    "shared", "capacity", "tenant", "budget", "cache", "limits", "agent", "runs", "model",
    "answer", "context", "is", "a", "of", "to", "and", "in", "for", "with", "on", "every",
    "user", "latency", "engine", "queue", "short", "long", "work", "waits", "never", "safe"};
constexpr std::size_t kWordCount = sizeof kWords / sizeof kWords[0];

std::uint64_t fnv1a(std::string_view s, std::uint64_t h = 1469598103934665603ULL) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

std::uint64_t splitmix(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::uint32_t choice_count(const api::ParsedRequest& req) {
  auto it = req.body.find("n");
  if (it != req.body.end() && it->value().is_int64()) return static_cast<std::uint32_t>(it->value().get_int64());
  return 1;
}

std::string base64(const unsigned char* p, std::size_t n) {
  static constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((n + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < n; i += 3) {
    std::uint32_t v = (p[i] << 16) | (p[i + 1] << 8) | p[i + 2];
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += kB64[v & 63];
  }
  if (i < n) {
    std::uint32_t v = p[i] << 16;
    if (i + 1 < n) v |= p[i + 1] << 8;
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 63];
    out += i + 1 < n ? kB64[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

bool is_chat(const api::ParsedRequest& req) { return req.endpoint == api::Endpoint::kChatCompletions; }

}  // namespace

Generation Responder::generate(const api::ParsedRequest& req) const {
  Generation g;
  std::string prompt = api::prompt_text(req);
  g.prompt_tokens = count_prompt_tokens(req);
  std::uint32_t natural = profile_.default_output_tokens;
  std::uint32_t limit = req.max_output_tokens.value_or(
      req.endpoint == api::Endpoint::kCompletions ? 16 : natural);
  std::uint32_t len = std::min(natural, limit);
  g.truncated = limit < natural;
  std::uint64_t seed = fnv1a(prompt, fnv1a(model_));
  for (std::uint32_t c = 0; c < choice_count(req); ++c) {
    std::uint64_t s = seed + c * 0x632be59bd9b4e019ULL;
    std::vector<std::string> toks;
    toks.reserve(len);
    for (std::uint32_t i = 0; i < len; ++i) {
      std::string t = i == 0 ? "" : " ";
      std::string_view w = kWords[splitmix(s) % kWordCount];
      t.append(w);
      if (i == 0) t[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(t[0])));
      if (i + 1 == len && !g.truncated) t.push_back('.');
      toks.push_back(std::move(t));
    }
    g.completion_tokens += len;
    g.choices.push_back(std::move(toks));
  }
  return g;
}

std::string Responder::completion_body(const api::ParsedRequest& req, const Generation& g,
                                       const std::string& id, std::int64_t created) const {
  json::object o;
  o["id"] = (is_chat(req) ? "chatcmpl-" : "cmpl-") + id;
  o["object"] = is_chat(req) ? "chat.completion" : "text_completion";
  o["created"] = created;
  o["model"] = model_;
  json::array choices;
  for (std::size_t c = 0; c < g.choices.size(); ++c) {
    std::string text;
    for (const auto& t : g.choices[c]) text += t;
    json::object ch;
    ch["index"] = c;
    if (is_chat(req)) {
      ch["message"] = json::object{{"role", "assistant"}, {"content", text}, {"refusal", nullptr}};
    } else {
      ch["text"] = text;
    }
    ch["logprobs"] = nullptr;
    ch["finish_reason"] = g.truncated ? "length" : "stop";
    choices.push_back(std::move(ch));
  }
  o["choices"] = std::move(choices);
  o["usage"] = api::usage_json({g.prompt_tokens, g.completion_tokens, 0});
  o["system_fingerprint"] = "tg-sim";
  return json::serialize(o);
}

std::vector<std::string> Responder::stream_chunks(const api::ParsedRequest& req, const Generation& g,
                                                  const std::string& id, std::int64_t created) const {
  std::vector<std::string> out;
  json::object base;
  base["id"] = (is_chat(req) ? "chatcmpl-" : "cmpl-") + id;
  base["object"] = is_chat(req) ? "chat.completion.chunk" : "text_completion";
  base["created"] = created;
  base["model"] = model_;
  base["system_fingerprint"] = "tg-sim";
  auto chunk = [&](json::array choices) {
    json::object o = base;
    o["choices"] = std::move(choices);
    out.push_back(json::serialize(o));
  };
  auto choice = [&](std::size_t c, json::value delta_or_text, json::value finish) {
    json::object ch;
    ch["index"] = c;
    if (is_chat(req)) ch["delta"] = std::move(delta_or_text);
    else ch["text"] = std::move(delta_or_text);
    ch["logprobs"] = nullptr;
    ch["finish_reason"] = std::move(finish);
    return ch;
  };
  std::size_t longest = 0;
  for (const auto& c : g.choices) longest = std::max(longest, c.size());
  if (is_chat(req))
    for (std::size_t c = 0; c < g.choices.size(); ++c)
      chunk({choice(c, json::object{{"role", "assistant"}, {"content", ""}}, nullptr)});
  for (std::size_t i = 0; i < longest; ++i) {
    for (std::size_t c = 0; c < g.choices.size(); ++c) {
      if (i >= g.choices[c].size()) continue;
      const std::string& t = g.choices[c][i];
      chunk({choice(c, is_chat(req) ? json::value(json::object{{"content", t}}) : json::value(t), nullptr)});
    }
  }
  for (std::size_t c = 0; c < g.choices.size(); ++c)
    chunk({choice(c, is_chat(req) ? json::value(json::object{}) : json::value(""),
                  g.truncated ? "length" : "stop")});
  json::object u = base;
  u["choices"] = json::array{};
  u["usage"] = api::usage_json({g.prompt_tokens, g.completion_tokens, 0});
  out.push_back(json::serialize(u));
  return out;
}

std::vector<float> Responder::embed(const std::string& text, std::uint32_t dims) {
  std::vector<float> v(dims, 0.0f);
  std::string t = " " + text + " ";
  for (auto& ch : t) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  auto add = [&](std::string_view piece, float w) {
    std::uint64_t h = fnv1a(piece);
    std::size_t i = h % dims;
    float sign = (h >> 63) ? -1.0f : 1.0f;
    v[i] += sign * w;
  };
  for (std::size_t i = 0; i + 3 <= t.size(); ++i) add(std::string_view(t).substr(i, 3), 1.0f);
  std::size_t start = 0;
  for (std::size_t i = 0; i <= t.size(); ++i) {
    if (i == t.size() || std::isspace(static_cast<unsigned char>(t[i]))) {
      if (i > start) add(std::string_view(t).substr(start, i - start), 2.0f);
      start = i + 1;
    }
  }
  double norm = 0;
  for (float x : v) norm += static_cast<double>(x) * x;
  norm = std::sqrt(norm);
  if (norm > 0)
    for (float& x : v) x = static_cast<float>(x / norm);
  return v;
}

std::uint64_t Responder::count_prompt_tokens(const api::ParsedRequest& req) {
  const auto& tok = meter::Tokenizer::builtin(meter::Encoding::kO200kBase);
  if (!is_chat(req)) return tok.count(api::prompt_text(req));
  auto texts = api::message_texts(req);
  std::vector<meter::ChatTurn> turns;
  for (const auto& t : texts) turns.push_back({t.role, t.name, t.content});
  return meter::count_chat_tokens(tok, turns);
}

std::string Responder::embeddings_body(const api::ParsedRequest& req) const {
  std::uint32_t dims = req.dimensions.value_or(profile_.embedding_dims);
  json::array data;
  std::uint64_t tokens = 0;
  std::size_t n = api::embedding_input_count(req);
  for (std::size_t i = 0; i < n; ++i) {
    std::string text = api::embedding_input_text(req, i);
    tokens += meter::Tokenizer::builtin(meter::Encoding::kO200kBase).count(text);
    std::vector<float> e = embed(text, dims);
    json::object item;
    item["object"] = "embedding";
    item["index"] = i;
    if (req.embeddings_base64) {
      static_assert(sizeof(float) == 4);
      item["embedding"] = base64(reinterpret_cast<const unsigned char*>(e.data()), e.size() * 4);
    } else {
      json::array a;
      a.reserve(e.size());
      for (float x : e) a.push_back(static_cast<double>(x));
      item["embedding"] = std::move(a);
    }
    data.push_back(std::move(item));
  }
  json::object o;
  o["object"] = "list";
  o["data"] = std::move(data);
  o["model"] = model_;
  o["usage"] = json::object{{"prompt_tokens", tokens}, {"total_tokens", tokens}};
  return json::serialize(o);
}

}  // namespace tg::sim
