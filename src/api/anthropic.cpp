#include "api/anthropic.h"

#include <algorithm>
#include <array>
#include <initializer_list>

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include "core/text.h"

namespace tg::api {
namespace json = boost::json;

namespace {

constexpr std::size_t kMaxModelBytes = 256;
constexpr std::size_t kMaxMessages = 10'000;
constexpr std::size_t kMaxBlocks = 20'000;
constexpr std::size_t kMaxStopSequences = 16;
constexpr std::size_t kMaxStopSequenceBytes = 256;
constexpr std::size_t kMaxTools = 128;
constexpr std::size_t kMaxToolNameBytes = 64;
constexpr std::size_t kMaxToolIdBytes = 256;
constexpr std::size_t kMaxUrlBytes = 8192;
constexpr std::size_t kMaxUserIdBytes = 256;
constexpr std::int64_t kMaxOutputTokens = 10'000'000;
constexpr std::int64_t kMaxTopK = 1'000'000;
// One less than the parser's default (32): the OpenAI body nests a tool's
// schema one level deeper (tools[i].function.parameters) than Anthropic's
// (tools[i].input_schema), and it is parsed again by parse_request().
constexpr unsigned kMaxDepth = 31;
constexpr std::size_t kMaxErrorMessageBytes = 2048;  // as error_body()
constexpr std::size_t kMaxFinishReasonBytes = 64;

// Errors in Anthropic's wording ("<field>: <problem>"), with the field in
// `param` as the OpenAI door does.
ApiError field_error(const std::string& path, std::string_view problem, const char* code) {
  return invalid_request(fmt::format("{}: {}", path, problem), path, code);
}
ApiError missing(const std::string& path) { return field_error(path, "Field required", "missing_required_parameter"); }
ApiError field_type_error(const std::string& path, const char* want, const json::value& got) {
  return field_error(path, fmt::format("Input should be {}, but got {}", want, json_kind_name(got)), "invalid_type");
}
ApiError extra_input(const std::string& path) {
  return field_error(path, "Extra inputs are not permitted", "extra_inputs");
}
ApiError unsupported(const std::string& path, std::string_view what) {
  return field_error(path, fmt::format("{} is not supported by this gateway", what), "unsupported_parameter");
}

std::string join(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : fmt::format("{}.{}", path, key);
}
std::string join(const std::string& path, std::size_t i) { return fmt::format("{}.{}", path, i); }

// The first key of `o` outside `allowed`, as Anthropic's "Extra inputs" error.
std::optional<ApiError> only_keys(const json::object& o, std::initializer_list<std::string_view> allowed,
                                  const std::string& path) {
  for (const auto& kv : o)
    if (std::find(allowed.begin(), allowed.end(), std::string_view(kv.key())) == allowed.end())
      return extra_input(join(path, kv.key()));
  return std::nullopt;
}

const json::value* field(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) return nullptr;
  return &it->value();
}

// A string field: nullptr when absent and optional; an error when present
// and not a string, or required and absent.
Expected<const json::string*> string_field(const json::object& o, std::string_view key, const std::string& path,
                                           bool required) {
  const json::value* v = field(o, key);
  if (!v) {
    if (required) return missing(join(path, key));
    return static_cast<const json::string*>(nullptr);
  }
  if (!v->is_string()) return field_type_error(join(path, key), "a valid string", *v);
  return &v->get_string();
}

std::optional<ApiError> check_bool(const json::object& o, std::string_view key, const std::string& path,
                                   bool* out) {
  const json::value* v = field(o, key);
  if (!v) return std::nullopt;
  if (!v->is_bool()) return field_type_error(join(path, key), "a valid boolean", *v);
  *out = v->get_bool();
  return std::nullopt;
}

std::optional<ApiError> check_number(const json::object& o, const char* key, double lo, double hi) {
  const json::value* v = field(o, key);
  if (!v) return std::nullopt;
  if (!v->is_number()) return field_type_error(key, "a valid number", *v);
  double d = v->to_number<double>();
  if (d < lo || d > hi)
    return field_error(key, fmt::format("Input should be between {} and {}, but got {}", lo, hi, json::serialize(*v)),
                       "invalid_value");
  return std::nullopt;
}

std::optional<ApiError> check_int(const json::object& o, const char* key, std::int64_t lo, std::int64_t hi,
                                  std::optional<std::int64_t>* out) {
  const json::value* v = field(o, key);
  if (!v) return std::nullopt;
  std::int64_t n;
  if (v->is_int64()) n = v->get_int64();
  else if (v->is_uint64()) n = hi + 1;  // above every int64, so above hi
  else return field_type_error(key, "a valid integer", *v);
  if (n < lo || n > hi)
    return field_error(key, fmt::format("Input should be between {} and {}, but got {}", lo, hi, json::serialize(*v)),
                       "invalid_value");
  *out = n;
  return std::nullopt;
}

bool is_tool_name(std::string_view s) {
  if (s.empty() || s.size() > kMaxToolNameBytes) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

bool has_non_whitespace(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return c != ' ' && c != '\t' && c != '\n' && c != '\r'; });
}

// `cache_control` is validated (an object with a string type) and dropped.
std::optional<ApiError> check_cache_control(const json::object& block, const std::string& path) {
  const json::value* v = field(block, "cache_control");
  if (!v) return std::nullopt;
  std::string p = join(path, "cache_control");
  if (!v->is_object()) return field_type_error(p, "a valid dictionary", *v);
  if (auto e = only_keys(v->get_object(), {"type", "ttl"}, p)) return e;
  auto t = string_field(v->get_object(), "type", p, true);
  if (!t.ok()) return t.error();
  return std::nullopt;
}

// Translation state for one request: the OpenAI messages built so far and
// the block budget.
class Translator {
 public:
  explicit Translator(json::storage_ptr sp) : sp_(std::move(sp)), messages_(sp_) {}

  json::array& messages() { return messages_; }

  std::optional<ApiError> count_block(const std::string& path) {
    if (++blocks_ > kMaxBlocks)
      return field_error(path, fmt::format("at most {} content blocks per request", kMaxBlocks), "array_above_max_length");
    return std::nullopt;
  }

  // A content block at `p`: counted against the request's bound, an object with a string `type`.
  struct Block {
    const json::object* b;
    std::string_view type;
  };
  Expected<Block> block_at(const json::value& v, const std::string& p) {
    if (auto e = count_block(p)) return *e;
    if (!v.is_object()) return field_type_error(p, "a valid dictionary", v);
    auto type = string_field(v.get_object(), "type", p, true);
    if (!type.ok()) return type.error();
    return Block{&v.get_object(), std::string_view(**type)};
  }

  std::optional<ApiError> system(const json::value& v) {
    std::string text;
    if (v.is_string()) {
      text = v.get_string();
    } else if (v.is_array()) {
      const auto& blocks = v.get_array();
      for (std::size_t i = 0; i < blocks.size(); ++i) {
        std::string p = join("system", i);
        auto block = block_at(blocks[i], p);
        if (!block) return block.error();
        const auto& b = *block->b;
        if (block->type != "text")
          return field_error(join(p, "type"), fmt::format("Input should be 'text', but got '{}'", block->type),
                             "invalid_value");
        auto t = text_block(b, p);
        if (!t.ok()) return t.error();
        if (!text.empty()) text += '\n';
        text += *t;
      }
    } else {
      return field_type_error("system", "a valid string or a list of text blocks", v);
    }
    if (!text.empty()) messages_.push_back(json::object({{"role", "system"}, {"content", text}}, sp_));
    return std::nullopt;
  }

  std::optional<ApiError> message(const json::value& v, std::size_t i, bool last) {
    std::string p = join("messages", i);
    if (!v.is_object()) return field_type_error(p, "a valid dictionary", v);
    const auto& m = v.get_object();
    if (auto e = only_keys(m, {"role", "content"}, p)) return e;
    auto role = string_field(m, "role", p, true);
    if (!role.ok()) return role.error();
    std::string_view r = **role;
    if (r != "user" && r != "assistant")
      return field_error(join(p, "role"), fmt::format("Input should be 'user' or 'assistant', but got '{}'", r),
                         "invalid_value");
    const bool assistant = r == "assistant";
    const json::value* c = field(m, "content");
    std::string cp = join(p, "content");
    if (!c) return missing(cp);
    bool empty = c->is_string() ? c->get_string().empty() : c->is_array() && c->get_array().empty();
    if (empty && !(last && assistant))
      return field_error(cp, "all messages must have non-empty content except for the optional final assistant message",
                         "invalid_value");
    if (c->is_string()) {
      messages_.push_back(json::object({{"role", r}, {"content", c->get_string()}}, sp_));
      return std::nullopt;
    }
    if (!c->is_array()) return field_type_error(cp, "a valid string or a list of content blocks", *c);
    return assistant ? assistant_blocks(c->get_array(), cp) : user_blocks(c->get_array(), cp);
  }

 private:
  // A text block's text (type already checked), non-empty as Anthropic requires.
  Expected<std::string_view> text_block(const json::object& b, const std::string& p) {
    if (auto e = only_keys(b, {"type", "text", "cache_control", "citations"}, p)) return *e;
    if (auto e = check_cache_control(b, p)) return *e;
    auto t = string_field(b, "text", p, true);
    if (!t.ok()) return t.error();
    if ((*t)->empty()) return field_error(join(p, "text"), "text content blocks must be non-empty", "invalid_value");
    return std::string_view(**t);
  }

  // An image block as an OpenAI image_url part.
  Expected<json::object> image_block(const json::object& b, const std::string& p) {
    if (auto e = only_keys(b, {"type", "source", "cache_control"}, p)) return *e;
    if (auto e = check_cache_control(b, p)) return *e;
    std::string sp = join(p, "source");
    const json::value* src = field(b, "source");
    if (!src) return missing(sp);
    if (!src->is_object()) return field_type_error(sp, "a valid dictionary", *src);
    const auto& s = src->get_object();
    auto type = string_field(s, "type", sp, true);
    if (!type.ok()) return type.error();
    std::string url;
    if (**type == "base64") {
      if (auto e = only_keys(s, {"type", "media_type", "data"}, sp)) return *e;
      auto mt = string_field(s, "media_type", sp, true);
      if (!mt.ok()) return mt.error();
      static constexpr std::array<std::string_view, 4> kTypes{"image/jpeg", "image/png", "image/gif", "image/webp"};
      if (std::find(kTypes.begin(), kTypes.end(), std::string_view(**mt)) == kTypes.end())
        return field_error(join(sp, "media_type"),
                           "Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'", "invalid_value");
      auto data = string_field(s, "data", sp, true);
      if (!data.ok()) return data.error();
      if ((*data)->empty()) return field_error(join(sp, "data"), "image data must be non-empty", "invalid_value");
      url = fmt::format("data:{};base64,{}", std::string_view(**mt), std::string_view(**data));
    } else if (**type == "url") {
      if (auto e = only_keys(s, {"type", "url"}, sp)) return *e;
      auto u = string_field(s, "url", sp, true);
      if (!u.ok()) return u.error();
      std::string_view uv = **u;
      if (uv.size() > kMaxUrlBytes)
        return field_error(join(sp, "url"), fmt::format("at most {} characters", kMaxUrlBytes), "string_above_max_length");
      if (uv.substr(0, 8) != "https://" && uv.substr(0, 7) != "http://")
        return field_error(join(sp, "url"), "must be an http:// or https:// URL", "invalid_value");
      url = uv;
    } else {
      return unsupported(join(sp, "type"), fmt::format("image source type '{}'", std::string_view(**type)));
    }
    return json::object({{"type", "image_url"}, {"image_url", json::object({{"url", url}}, sp_)}}, sp_);
  }

  std::optional<ApiError> tool_id(const json::object& b, std::string_view key, const std::string& p,
                                  std::string_view* out) {
    auto id = string_field(b, key, p, true);
    if (!id.ok()) return id.error();
    std::string_view v = **id;
    if (v.empty() || v.size() > kMaxToolIdBytes)
      return field_error(join(p, key), fmt::format("must be 1 to {} characters", kMaxToolIdBytes), "invalid_value");
    *out = v;
    return std::nullopt;
  }

  std::optional<ApiError> user_blocks(const json::array& blocks, const std::string& cp) {
    json::array parts(sp_);
    bool all_text = true;
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      std::string p = join(cp, i);
      auto block = block_at(blocks[i], p);
      if (!block) return block.error();
      const auto& b = *block->b;
      const std::string_view t = block->type;
      if (t == "text") {
        auto text = text_block(b, p);
        if (!text.ok()) return text.error();
        parts.push_back(json::object({{"type", "text"}, {"text", *text}}, sp_));
      } else if (t == "image") {
        auto img = image_block(b, p);
        if (!img.ok()) return img.error();
        parts.push_back(std::move(*img));
        all_text = false;
      } else if (t == "tool_result") {
        if (auto e = tool_result(b, p, parts, all_text)) return e;
      } else if (t == "tool_use" || t == "thinking" || t == "redacted_thinking") {
        return field_error(join(p, "type"), fmt::format("'{}' blocks are only allowed in assistant messages", t),
                           "invalid_value");
      } else {
        return unsupported(join(p, "type"), fmt::format("content block type '{}'", t));
      }
    }
    if (parts.empty()) return std::nullopt;  // only tool results
    if (all_text) {
      std::string text;
      for (const auto& part : parts) {
        if (!text.empty()) text += '\n';
        text += part.get_object().at("text").get_string();
      }
      messages_.push_back(json::object({{"role", "user"}, {"content", text}}, sp_));
    } else {
      messages_.push_back(json::object({{"role", "user"}, {"content", std::move(parts)}}, sp_));
    }
    return std::nullopt;
  }

  // A tool_result as a `role: tool` message; its images join the user parts
  // that follow (OpenAI tool messages carry text only).
  std::optional<ApiError> tool_result(const json::object& b, const std::string& p, json::array& parts, bool& all_text) {
    if (auto e = only_keys(b, {"type", "tool_use_id", "content", "is_error", "cache_control"}, p)) return e;
    if (auto e = check_cache_control(b, p)) return e;
    std::string_view id;
    if (auto e = tool_id(b, "tool_use_id", p, &id)) return e;
    bool is_error = false;
    if (auto e = check_bool(b, "is_error", p, &is_error)) return e;
    std::string text;
    std::string cp = join(p, "content");
    if (const json::value* c = field(b, "content")) {
      if (c->is_string()) {
        text = c->get_string();
      } else if (c->is_array()) {
        const auto& inner = c->get_array();
        for (std::size_t i = 0; i < inner.size(); ++i) {
          std::string ip = join(cp, i);
          if (auto e = count_block(ip)) return e;
          if (!inner[i].is_object()) return field_type_error(ip, "a valid dictionary", inner[i]);
          const auto& ib = inner[i].get_object();
          auto type = string_field(ib, "type", ip, true);
          if (!type.ok()) return type.error();
          if (**type == "text") {
            auto t = text_block(ib, ip);
            if (!t.ok()) return t.error();
            if (!text.empty()) text += '\n';
            text += *t;
          } else if (**type == "image") {
            auto img = image_block(ib, ip);
            if (!img.ok()) return img.error();
            parts.push_back(std::move(*img));
            all_text = false;
          } else {
            return unsupported(join(ip, "type"),
                               fmt::format("tool_result content block type '{}'", std::string_view(**type)));
          }
        }
      } else {
        return field_type_error(cp, "a valid string or a list of content blocks", *c);
      }
    }
    if (is_error) text = text.empty() ? "Error" : "Error: " + text;
    messages_.push_back(json::object({{"role", "tool"}, {"tool_call_id", id}, {"content", text}}, sp_));
    return std::nullopt;
  }

  std::optional<ApiError> assistant_blocks(const json::array& blocks, const std::string& cp) {
    std::string text;
    json::array calls(sp_);
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      std::string p = join(cp, i);
      auto block = block_at(blocks[i], p);
      if (!block) return block.error();
      const auto& b = *block->b;
      const std::string_view t = block->type;
      if (t == "text") {
        auto tx = text_block(b, p);
        if (!tx.ok()) return tx.error();
        if (!text.empty()) text += '\n';
        text += *tx;
      } else if (t == "tool_use") {
        if (auto e = only_keys(b, {"type", "id", "name", "input", "cache_control"}, p)) return e;
        if (auto e = check_cache_control(b, p)) return e;
        std::string_view id;
        if (auto e = tool_id(b, "id", p, &id)) return e;
        auto name = string_field(b, "name", p, true);
        if (!name.ok()) return name.error();
        if ((*name)->empty() || (*name)->size() > kMaxToolIdBytes)
          return field_error(join(p, "name"), fmt::format("must be 1 to {} characters", kMaxToolIdBytes), "invalid_value");
        const json::value* input = field(b, "input");
        if (!input) return missing(join(p, "input"));
        if (!input->is_object()) return field_type_error(join(p, "input"), "a valid dictionary", *input);
        calls.push_back(json::object(
            {{"id", id},
             {"type", "function"},
             {"function", json::object({{"name", **name}, {"arguments", json::serialize(*input)}}, sp_)}},
            sp_));
      } else if (t == "thinking" || t == "redacted_thinking") {
        // Signed by another model: dropped (see the header).
        if (auto e = only_keys(b, {"type", "thinking", "signature", "data"}, p)) return e;
      } else if (t == "image" || t == "tool_result") {
        return field_error(join(p, "type"), fmt::format("'{}' blocks are only allowed in user messages", t),
                           "invalid_value");
      } else {
        return unsupported(join(p, "type"), fmt::format("content block type '{}'", t));
      }
    }
    json::object m({{"role", "assistant"}}, sp_);
    if (calls.empty()) {
      m["content"] = text;
    } else {
      m["content"] = text.empty() ? json::value(nullptr) : json::value(text);
      m["tool_calls"] = std::move(calls);
    }
    messages_.push_back(std::move(m));
    return std::nullopt;
  }

  json::storage_ptr sp_;
  json::array messages_;
  std::size_t blocks_ = 0;
};

std::optional<ApiError> translate_tools(const json::object& in, json::object& out, const json::storage_ptr& sp,
                                        std::vector<std::string_view>& names) {
  const json::value* v = field(in, "tools");
  if (!v) return std::nullopt;
  if (!v->is_array()) return field_type_error("tools", "a valid list", *v);
  const auto& tools = v->get_array();
  if (tools.size() > kMaxTools)
    return field_error("tools", fmt::format("at most {} tools, got {}", kMaxTools, tools.size()), "array_above_max_length");
  json::array out_tools(sp);
  for (std::size_t i = 0; i < tools.size(); ++i) {
    std::string p = join("tools", i);
    if (!tools[i].is_object()) return field_type_error(p, "a valid dictionary", tools[i]);
    const auto& t = tools[i].get_object();
    auto type = string_field(t, "type", p, false);
    if (!type.ok()) return type.error();
    if (*type && **type != "custom")
      return unsupported(join(p, "type"),
                         fmt::format("the Anthropic-hosted tool '{}' (only custom tools: name, description, "
                                     "input_schema)", std::string_view(**type)));
    if (auto e = only_keys(t, {"type", "name", "description", "input_schema", "cache_control"}, p)) return e;
    if (auto e = check_cache_control(t, p)) return e;
    auto name = string_field(t, "name", p, true);
    if (!name.ok()) return name.error();
    if (!is_tool_name(**name))
      return field_error(join(p, "name"), "String should match pattern '^[a-zA-Z0-9_-]{1,64}$'", "invalid_value");
    if (std::find(names.begin(), names.end(), std::string_view(**name)) != names.end())
      return field_error("tools", fmt::format("Tool names must be unique ('{}' appears twice)", std::string_view(**name)),
                         "invalid_value");
    names.push_back(**name);
    auto desc = string_field(t, "description", p, false);
    if (!desc.ok()) return desc.error();
    std::string sp_path = join(p, "input_schema");
    const json::value* schema = field(t, "input_schema");
    if (!schema) return missing(sp_path);
    if (!schema->is_object()) return field_type_error(sp_path, "a valid dictionary", *schema);
    const json::value* st = field(schema->get_object(), "type");
    if (!st || !st->is_string() || st->get_string() != "object")
      return field_error(join(sp_path, "type"), "Input should be 'object'", "invalid_value");
    json::object fn({{"name", **name}}, sp);
    if (*desc) fn["description"] = **desc;
    fn["parameters"] = *schema;
    out_tools.push_back(json::object({{"type", "function"}, {"function", std::move(fn)}}, sp));
  }
  if (!out_tools.empty()) out["tools"] = std::move(out_tools);
  return std::nullopt;
}

std::optional<ApiError> translate_tool_choice(const json::object& in, json::object& out, const json::storage_ptr& sp,
                                              const std::vector<std::string_view>& names) {
  const json::value* v = field(in, "tool_choice");
  if (!v) return std::nullopt;
  if (!v->is_object()) return field_type_error("tool_choice", "a valid dictionary", *v);
  const auto& c = v->get_object();
  auto type = string_field(c, "type", "tool_choice", true);
  if (!type.ok()) return type.error();
  std::string_view t = **type;
  if (t == "none") {
    if (auto e = only_keys(c, {"type"}, "tool_choice")) return e;
  } else if (t == "auto" || t == "any") {
    if (auto e = only_keys(c, {"type", "disable_parallel_tool_use"}, "tool_choice")) return e;
  } else if (t == "tool") {
    if (auto e = only_keys(c, {"type", "name", "disable_parallel_tool_use"}, "tool_choice")) return e;
  } else {
    return field_error("tool_choice.type", fmt::format("Input should be 'auto', 'any', 'tool' or 'none', but got '{}'", t),
                       "invalid_value");
  }
  bool no_parallel = false;
  if (auto e = check_bool(c, "disable_parallel_tool_use", "tool_choice", &no_parallel)) return e;
  std::string_view name;
  if (t == "tool") {
    auto n = string_field(c, "name", "tool_choice", true);
    if (!n.ok()) return n.error();
    name = **n;
    if (std::find(names.begin(), names.end(), name) == names.end())
      return field_error("tool_choice.name", fmt::format("no tool named '{}' in 'tools'", name), "invalid_value");
  }
  if (names.empty()) {
    if (t == "any") return field_error("tool_choice", "type 'any' requires 'tools'", "invalid_value");
    return std::nullopt;  // auto or none without tools: nothing to choose from
  }
  if (t == "auto") out["tool_choice"] = "auto";
  else if (t == "any") out["tool_choice"] = "required";
  else if (t == "none") out["tool_choice"] = "none";
  else out["tool_choice"] = json::object({{"type", "function"}, {"function", json::object({{"name", name}}, sp)}}, sp);
  if (no_parallel && t != "none") out["parallel_tool_calls"] = false;
  return std::nullopt;
}

std::optional<ApiError> translate_stop_sequences(const json::object& in, json::object& out, const json::storage_ptr& sp,
                                                 std::vector<std::string>& stops) {
  const json::value* v = field(in, "stop_sequences");
  if (!v) return std::nullopt;
  if (!v->is_array()) return field_type_error("stop_sequences", "a valid list", *v);
  const auto& a = v->get_array();
  if (a.size() > kMaxStopSequences)
    return field_error("stop_sequences", fmt::format("at most {} stop sequences, got {}", kMaxStopSequences, a.size()),
                       "array_above_max_length");
  json::array stop(sp);
  for (std::size_t i = 0; i < a.size(); ++i) {
    std::string p = join("stop_sequences", i);
    if (!a[i].is_string()) return field_type_error(p, "a valid string", a[i]);
    std::string_view s = a[i].get_string();
    if (s.empty() || s.size() > kMaxStopSequenceBytes)
      return field_error(p, fmt::format("must be 1 to {} characters", kMaxStopSequenceBytes), "invalid_value");
    if (!has_non_whitespace(s))
      return field_error(p, "stop sequences must contain non-whitespace", "invalid_value");
    stops.emplace_back(s);
    stop.push_back(json::string(s, sp));
  }
  if (!stop.empty()) out["stop"] = std::move(stop);
  return std::nullopt;
}

std::optional<ApiError> check_model(const json::object& in, json::object& out) {
  auto m = string_field(in, "model", "", true);
  if (!m.ok()) return m.error();
  std::string_view model = **m;
  if (model.empty()) return field_error("model", "String should have at least 1 character", "invalid_value");
  if (model.size() > kMaxModelBytes)
    return field_error("model", fmt::format("at most {} characters, got {}; use one of the model ids GET /v1/models lists",
                                            kMaxModelBytes, model.size()),
                       "string_above_max_length");
  for (unsigned char c : model)
    if (c < 0x20 || c == 0x7F)
      return field_error("model", "control characters are not allowed; use one of the model ids GET /v1/models lists",
                         "invalid_value");
  out["model"] = model;
  return std::nullopt;
}

}  // namespace

Expected<MessagesRequest> parse_messages_request(std::string_view body, bool count_tokens_only,
                                                 json::storage_ptr storage) {
  // The client's body and the translated one live in one arena, freed on
  // return; only the re-parsed OpenAI body lives in `storage`.
  json::monotonic_resource mr;
  json::storage_ptr sp(&mr);
  json::parse_options opts;
  opts.max_depth = kMaxDepth;
  boost::system::error_code ec;
  json::value v = json::parse(body, ec, sp, opts);
  if (ec)
    return invalid_request(fmt::format("The request body is not valid JSON ({}; nesting deeper than {} levels is "
                                       "refused). Send a JSON object with 'Content-Type: application/json'.",
                                       ec.message(), kMaxDepth),
                           {}, "invalid_json");
  if (!v.is_object())
    return invalid_request(fmt::format("The request body must be a JSON object, but got {}.", json_kind_name(v)), {},
                           "invalid_json");
  const json::object& in = v.get_object();
  for (const auto& kv : in) {
    std::string_view k = kv.key();
    if (k == "container" || k == "mcp_servers" || k == "context_management")
      return unsupported(std::string(k), fmt::format("'{}'", k));
  }
  if (auto e = only_keys(in,
                         {"model", "messages", "max_tokens", "system", "stop_sequences", "stream", "temperature",
                          "top_p", "top_k", "tools", "tool_choice", "metadata", "thinking", "service_tier"},
                         ""))
    return *e;

  MessagesRequest out;
  json::object o(sp);
  if (auto e = check_model(in, o)) return *e;

  std::optional<std::int64_t> max_tokens;
  if (auto e = check_int(in, "max_tokens", 1, kMaxOutputTokens, &max_tokens)) return *e;
  if (!max_tokens && !count_tokens_only) return missing("max_tokens");

  Translator tr(sp);
  if (const json::value* s = field(in, "system"))
    if (auto e = tr.system(*s)) return *e;
  const json::value* msgs = field(in, "messages");
  if (!msgs) return missing("messages");
  if (!msgs->is_array()) return field_type_error("messages", "a valid list", *msgs);
  const auto& ma = msgs->get_array();
  if (ma.empty()) return field_error("messages", "at least one message is required", "empty_array");
  if (ma.size() > kMaxMessages)
    return field_error("messages", fmt::format("at most {} messages, got {}", kMaxMessages, ma.size()),
                       "array_above_max_length");
  for (std::size_t i = 0; i < ma.size(); ++i)
    if (auto e = tr.message(ma[i], i, i + 1 == ma.size())) return *e;
  o["messages"] = std::move(tr.messages());
  if (max_tokens) o["max_tokens"] = *max_tokens;

  bool stream = false;
  if (auto e = check_bool(in, "stream", "", &stream)) return *e;
  if (stream) {
    o["stream"] = true;
    o["stream_options"] = json::object({{"include_usage", true}}, sp);
  }
  if (auto e = check_number(in, "temperature", 0, 1)) return *e;
  if (auto e = check_number(in, "top_p", 0, 1)) return *e;
  if (const json::value* t = field(in, "temperature")) o["temperature"] = *t;
  if (const json::value* t = field(in, "top_p")) o["top_p"] = *t;
  std::optional<std::int64_t> top_k;
  if (auto e = check_int(in, "top_k", 0, kMaxTopK, &top_k)) return *e;
  if (top_k && *top_k > 0) o["top_k"] = *top_k;
  if (auto e = translate_stop_sequences(in, o, sp, out.stop_sequences)) return *e;

  std::vector<std::string_view> names;
  if (auto e = translate_tools(in, o, sp, names)) return *e;
  if (auto e = translate_tool_choice(in, o, sp, names)) return *e;

  if (const json::value* md = field(in, "metadata")) {
    if (!md->is_object()) return field_type_error("metadata", "a valid dictionary", *md);
    if (auto e = only_keys(md->get_object(), {"user_id"}, "metadata")) return *e;
    auto uid = string_field(md->get_object(), "user_id", "metadata", false);
    if (!uid.ok()) return uid.error();
    if (*uid) {
      if ((*uid)->size() > kMaxUserIdBytes)
        return field_error("metadata.user_id", fmt::format("at most {} characters", kMaxUserIdBytes),
                           "string_above_max_length");
      if (!(*uid)->empty()) o["user"] = **uid;
    }
  }
  if (const json::value* th = field(in, "thinking")) {  // validated, then dropped
    if (!th->is_object()) return field_type_error("thinking", "a valid dictionary", *th);
    auto t = string_field(th->get_object(), "type", "thinking", true);
    if (!t.ok()) return t.error();
  }
  if (const json::value* st = field(in, "service_tier"))  // validated, then dropped
    if (!st->is_string()) return field_type_error("service_tier", "a valid string", *st);

  // Every OpenAI-side check applies once more, and fills ParsedRequest.
  auto parsed = parse_request(Endpoint::kChatCompletions, json::serialize(o), std::move(storage));
  if (!parsed.ok()) return parsed.error();
  out.parsed = std::move(*parsed);
  out.parsed.client_wants_usage = false;
  out.parsed.choices = 1;
  return out;
}

StopReason stop_reason_from_finish(std::string_view finish, std::string_view matched_stop) {
  if (finish == "stop") return {matched_stop.empty() ? "end_turn" : "stop_sequence", true};
  if (finish == "length") return {"max_tokens", true};
  if (finish == "tool_calls" || finish == "function_call") return {"tool_use", true};
  if (finish == "content_filter") return {"refusal", true};
  return {"end_turn", false};
}

json::object anthropic_usage(const Usage& u) {
  std::uint64_t not_cached = u.prompt_tokens;
  not_cached -= std::min(not_cached, u.cached_tokens);
  not_cached -= std::min(not_cached, u.cache_creation_tokens);
  return json::object({{"input_tokens", not_cached},
                       {"cache_creation_input_tokens", u.cache_creation_tokens},
                       {"cache_read_input_tokens", u.cached_tokens},
                       {"output_tokens", u.completion_tokens}});
}

namespace {

// Choice index 0 of a completion or chunk, or the first choice without an index.
const json::object* first_choice(const json::object& o) {
  auto it = o.find("choices");
  if (it == o.end() || !it->value().is_array()) return nullptr;
  for (const auto& c : it->value().get_array()) {
    if (!c.is_object()) continue;
    auto idx = c.get_object().find("index");
    if (idx == c.get_object().end() || idx->value().is_null() ||
        (idx->value().is_number() && idx->value().to_number<double>() == 0))
      return &c.get_object();
  }
  return nullptr;
}

std::string_view string_or_empty(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  if (it == o.end() || !it->value().is_string()) return {};
  return it->value().get_string();
}

// The choice's stop_reason (vLLM: the stop string that matched) when it is
// one the client asked for: a gateway never echoes anything else as
// stop_sequence.
std::string_view matched_stop(const json::object& choice, const std::vector<std::string>& stops) {
  std::string_view s = string_or_empty(choice, "stop_reason");
  if (s.empty() || std::find(stops.begin(), stops.end(), s) == stops.end()) return {};
  return s;
}

json::object tool_input(std::string_view arguments) {
  boost::system::error_code ec;
  json::value v = json::parse(arguments, ec);
  if (ec || !v.is_object()) return {};
  return std::move(v.get_object());
}

void append_event(std::string& out, std::string_view type, const json::object& data) {
  out += "event: ";
  out += type;
  out += "\ndata: ";
  out += json::serialize(data);
  out += "\n\n";
}

}  // namespace

std::string message_from_completion(std::string_view openai_body, std::string_view model_alias,
                                    const std::vector<std::string>& stop_sequences, const std::string& message_id,
                                    std::string* unknown_finish) {
  boost::system::error_code ec;
  json::value v = json::parse(openai_body, ec);
  const json::object* body = !ec && v.is_object() ? &v.get_object() : nullptr;
  const json::object* choice = body ? first_choice(*body) : nullptr;

  json::array content;
  std::string_view finish, matched;
  if (choice) {
    auto fr = choice->find("finish_reason");
    if (fr != choice->end() && fr->value().is_string()) finish = fr->value().get_string();
    matched = matched_stop(*choice, stop_sequences);
    auto m = choice->find("message");
    if (m != choice->end() && m->value().is_object()) {
      const auto& msg = m->value().get_object();
      std::string text(string_or_empty(msg, "content"));
      if (auto c = msg.find("content"); c != msg.end() && c->value().is_array())
        for (const auto& part : c->value().get_array())
          if (part.is_object()) text += string_or_empty(part.get_object(), "text");
      text += string_or_empty(msg, "refusal");
      if (!text.empty()) content.push_back(json::object({{"type", "text"}, {"text", text}}));
      if (auto tc = msg.find("tool_calls"); tc != msg.end() && tc->value().is_array()) {
        const auto& calls = tc->value().get_array();
        for (std::size_t i = 0; i < calls.size(); ++i) {
          if (!calls[i].is_object()) continue;
          const auto& call = calls[i].get_object();
          std::string_view name, args;
          if (auto fn = call.find("function"); fn != call.end() && fn->value().is_object()) {
            name = string_or_empty(fn->value().get_object(), "name");
            args = string_or_empty(fn->value().get_object(), "arguments");
          }
          std::string_view id = string_or_empty(call, "id");
          content.push_back(json::object({{"type", "tool_use"},
                                          {"id", id.empty() ? fmt::format("toolu_{}_{}", message_id, i) : std::string(id)},
                                          {"name", name},
                                          {"input", tool_input(args)}}));
        }
      }
    }
  }
  StopReason sr = stop_reason_from_finish(finish, matched);
  // vLLM answers a forced (named or required) tool call with finish "stop":
  // a message with tool_use blocks must say tool_use or clients will not run them.
  bool has_tool_use = std::any_of(content.begin(), content.end(), [](const json::value& b) {
    return b.get_object().at("type").get_string() == "tool_use";
  });
  if (has_tool_use && finish == "stop") sr = {"tool_use", true};
  if (!sr.known && unknown_finish)
    *unknown_finish = finish.empty() ? std::string("(none)") : printable(finish, kMaxFinishReasonBytes);

  json::object out;
  out["id"] = message_id;
  out["type"] = "message";
  out["role"] = "assistant";
  out["model"] = model_alias;
  out["content"] = std::move(content);
  out["stop_reason"] = sr.anthropic;
  out["stop_sequence"] = sr.anthropic == "stop_sequence" ? json::value(matched) : json::value(nullptr);
  std::optional<Usage> u = body ? usage_of(*body) : std::nullopt;
  out["usage"] = anthropic_usage(u.value_or(Usage{}));
  return json::serialize(out);
}

MessagesStreamWriter::MessagesStreamWriter(std::string message_id, std::string model_alias,
                                           std::vector<std::string> stop_sequences)
    : id_(std::move(message_id)), model_(std::move(model_alias)), stop_sequences_(std::move(stop_sequences)) {}

std::string MessagesStreamWriter::start(std::uint64_t input_tokens) {
  json::object msg;
  msg["id"] = id_;
  msg["type"] = "message";
  msg["role"] = "assistant";
  msg["model"] = model_;
  msg["content"] = json::array();
  msg["stop_reason"] = nullptr;
  msg["stop_sequence"] = nullptr;
  msg["usage"] = json::object({{"input_tokens", input_tokens}, {"output_tokens", 0}});
  std::string out;
  append_event(out, "message_start", json::object({{"type", "message_start"}, {"message", std::move(msg)}}));
  return out;
}

std::string MessagesStreamWriter::ping() const { return "event: ping\ndata: {\"type\":\"ping\"}\n\n"; }

void MessagesStreamWriter::open_block(std::string& out, Block kind, std::string_view tool_id,
                                      std::string_view tool_name) {
  json::object block;
  if (kind == Block::kText) {
    block = json::object({{"type", "text"}, {"text", ""}});
  } else {
    std::string id = tool_id.empty() ? fmt::format("toolu_{}_{}", id_, next_index_) : std::string(tool_id);
    block = json::object({{"type", "tool_use"}, {"id", id}, {"name", tool_name}, {"input", json::object()}});
    saw_tool_use_ = true;
  }
  append_event(out, "content_block_start",
               json::object({{"type", "content_block_start"}, {"index", next_index_}, {"content_block", std::move(block)}}));
  open_ = kind;
  ++next_index_;
}

void MessagesStreamWriter::close_block(std::string& out) {
  if (open_ == Block::kNone) return;
  append_event(out, "content_block_stop", json::object({{"type", "content_block_stop"}, {"index", next_index_ - 1}}));
  open_ = Block::kNone;
}

std::string MessagesStreamWriter::on_chunk(std::string_view chunk) {
  std::string out;
  if (finished_) return out;
  unsigned char arena[4096];
  json::monotonic_resource mr(arena, sizeof arena);
  boost::system::error_code ec;
  json::value v = json::parse(chunk, ec, &mr);
  if (ec || !v.is_object()) return out;  // "[DONE]", keep-alives, garbage
  const json::object& o = v.get_object();
  if (auto u = usage_of(o)) usage_ = *u;
  const json::object* choice = first_choice(o);
  if (!choice) return out;
  if (auto fr = choice->find("finish_reason"); fr != choice->end() && fr->value().is_string())
    finish_reason_ = printable(fr->value().get_string(), kMaxFinishReasonBytes);
  if (std::string_view m = matched_stop(*choice, stop_sequences_); !m.empty()) matched_stop_ = m;
  auto d = choice->find("delta");
  if (d == choice->end() || !d->value().is_object()) return out;
  const json::object& delta = d->value().get_object();

  for (std::string_view key : {"content", "refusal"}) {
    std::string_view text = string_or_empty(delta, key);
    if (text.empty()) continue;
    if (open_ != Block::kText) {
      close_block(out);
      open_block(out, Block::kText, {}, {});
    }
    append_event(out, "content_block_delta",
                 json::object({{"type", "content_block_delta"},
                               {"index", next_index_ - 1},
                               {"delta", json::object({{"type", "text_delta"}, {"text", text}})}}));
  }

  auto tc = delta.find("tool_calls");
  if (tc == delta.end() || !tc->value().is_array()) return out;
  for (const auto& call_v : tc->value().get_array()) {
    if (!call_v.is_object()) continue;
    const json::object& call = call_v.get_object();
    std::int64_t idx = 0;
    if (auto i = call.find("index"); i != call.end() && i->value().is_int64()) idx = i->value().get_int64();
    std::string_view name, args;
    if (auto fn = call.find("function"); fn != call.end() && fn->value().is_object()) {
      name = string_or_empty(fn->value().get_object(), "name");
      args = string_or_empty(fn->value().get_object(), "arguments");
    }
    if (open_ != Block::kToolUse || idx != tool_index_) {
      // A block cannot be reopened: fragments of a tool call whose block is
      // closed (an upstream interleaving calls) are dropped.
      if (idx <= tool_index_) continue;
      close_block(out);
      open_block(out, Block::kToolUse, string_or_empty(call, "id"), name);
      tool_index_ = idx;
    }
    if (!args.empty())
      append_event(out, "content_block_delta",
                   json::object({{"type", "content_block_delta"},
                                 {"index", next_index_ - 1},
                                 {"delta", json::object({{"type", "input_json_delta"}, {"partial_json", args}})}}));
  }
  return out;
}

std::string MessagesStreamWriter::finish(std::uint64_t fallback_output_tokens) {
  std::string out;
  if (finished_) return out;
  finished_ = true;
  close_block(out);
  StopReason sr = stop_reason_from_finish(finish_reason_, matched_stop_);
  if (saw_tool_use_ && finish_reason_ == "stop") sr = {"tool_use", true};  // as message_from_completion()
  unknown_finish_ = !sr.known;
  json::object delta;
  delta["stop_reason"] = sr.anthropic;
  delta["stop_sequence"] = sr.anthropic == "stop_sequence" ? json::value(matched_stop_) : json::value(nullptr);
  json::object usage = usage_ ? anthropic_usage(*usage_) : json::object({{"output_tokens", fallback_output_tokens}});
  append_event(out, "message_delta",
               json::object({{"type", "message_delta"}, {"delta", std::move(delta)}, {"usage", std::move(usage)}}));
  append_event(out, "message_stop", json::object({{"type", "message_stop"}}));
  return out;
}

std::string MessagesStreamWriter::error_event(const ApiError& e) {
  return "event: error\ndata: " + anthropic_error_body(e) + "\n\n";
}

namespace {
std::string_view error_type_for(int status) {
  switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 529: return "overloaded_error";
  }
  return status >= 400 && status < 500 ? "invalid_request_error" : "api_error";
}
}  // namespace

int anthropic_status(const ApiError& e) {
  if (e.status == 529 || (e.status == 503 && e.code == "queue_timeout")) return 529;
  if (e.status < 400 || e.status > 599) return 500;  // not an error status: an internal fault
  return e.status;
}

std::string anthropic_error_body(const ApiError& e) {
  json::object err;
  err["type"] = error_type_for(anthropic_status(e));
  err["message"] = printable(e.message, kMaxErrorMessageBytes);
  return json::serialize(json::object({{"type", "error"}, {"error", std::move(err)}}));
}

}  // namespace tg::api
