#include "api/anthropic_wire.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include "api/errors.h"
#include "core/text.h"

namespace tg::api::anthropic {
namespace json = boost::json;

namespace {

const json::value* field(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  return it == o.end() || it->value().is_null() ? nullptr : &it->value();
}

std::string_view str_field(const json::object& o, std::string_view key) {
  const json::value* v = field(o, key);
  return v && v->is_string() ? std::string_view(v->get_string()) : std::string_view();
}

const json::object* obj_field(const json::object& o, std::string_view key) {
  const json::value* v = field(o, key);
  return v && v->is_object() ? &v->get_object() : nullptr;
}

std::uint64_t count_field(const json::object& o, std::string_view key) {
  const json::value* v = field(o, key);
  if (!v) return 0;
  if (v->is_uint64()) return v->get_uint64();
  if (v->is_int64() && v->get_int64() > 0) return static_cast<std::uint64_t>(v->get_int64());
  return 0;
}

ApiError unsupported(const std::string& param, std::string what) {
  return invalid_request(fmt::format("{} This model is served by an Anthropic Messages deployment.", what), param,
                         "unsupported_parameter");
}

// ---- request direction ----------------------------------------------------

// A text block, keeping the part's cache_control (Anthropic prompt caching)
// when the client set one.
json::object text_block(std::string_view text, const json::object* part) {
  json::object b{{"type", "text"}, {"text", text}};
  if (part)
    if (const json::object* cc = obj_field(*part, "cache_control")) b["cache_control"] = *cc;
  return b;
}

// "data:<media type>;base64,<data>" -> media type and data.
struct DataUrl {
  std::string_view media_type, data;
};
std::optional<DataUrl> parse_data_url(std::string_view url) {
  if (!url.starts_with("data:")) return std::nullopt;
  url.remove_prefix(5);
  auto comma = url.find(',');
  if (comma == std::string_view::npos) return std::nullopt;
  std::string_view meta = url.substr(0, comma);
  if (!meta.ends_with(";base64")) return std::nullopt;
  return DataUrl{meta.substr(0, meta.size() - 7), url.substr(comma + 1)};
}

Expected<json::object> image_block(const json::object& part, const std::string& p) {
  const json::value* iu = field(part, "image_url");
  if (!iu) return invalid_request(fmt::format("Missing required parameter: '{}.image_url'.", p), p + ".image_url",
                                  "missing_required_parameter");
  std::string_view url;
  if (iu->is_string()) url = iu->get_string();  // tolerated shorthand
  else if (iu->is_object()) url = str_field(iu->get_object(), "url");
  else return type_error(p + ".image_url", "an object", *iu);
  const std::string param = p + ".image_url.url";
  json::object source;
  if (url.starts_with("data:")) {
    auto d = parse_data_url(url);
    if (!d)
      return invalid_request(fmt::format("Invalid '{}': a data URL must be 'data:<media type>;base64,<data>'.", param),
                             param, "invalid_image_url");
    if (d->media_type != "image/jpeg" && d->media_type != "image/png" && d->media_type != "image/gif" &&
        d->media_type != "image/webp")
      return invalid_request(fmt::format("Invalid '{}': media type '{}' is not supported; Anthropic accepts "
                                         "image/jpeg, image/png, image/gif and image/webp.",
                                         param, printable(d->media_type)),
                             param, "invalid_image_format");
    source = {{"type", "base64"}, {"media_type", d->media_type}, {"data", d->data}};
  } else if (url.starts_with("https://") || url.starts_with("http://")) {
    source = {{"type", "url"}, {"url", url}};
  } else {
    return invalid_request(fmt::format("Invalid '{}': expected an http(s) URL or a base64 data URL.", param), param,
                           "invalid_image_url");
  }
  json::object b{{"type", "image"}, {"source", std::move(source)}};
  if (const json::object* cc = obj_field(part, "cache_control")) b["cache_control"] = *cc;
  return b;
}

Expected<json::object> document_block(const json::object& part, const std::string& p) {
  const json::object* file = obj_field(part, "file");
  if (!file) return invalid_request(fmt::format("Missing required parameter: '{}.file'.", p), p + ".file",
                                    "missing_required_parameter");
  if (field(*file, "file_id"))
    return unsupported(p + ".file.file_id", fmt::format("'{}.file.file_id' (an OpenAI file) cannot be sent to "
                                                        "Anthropic; send the file inline as file_data.", p));
  const std::string param = p + ".file.file_data";
  auto d = parse_data_url(str_field(*file, "file_data"));
  if (!d || d->media_type != "application/pdf")
    return invalid_request(fmt::format("Invalid '{}': expected a PDF as 'data:application/pdf;base64,<data>'.", param),
                           param, "invalid_file");
  json::object b{{"type", "document"},
                 {"source", json::object{{"type", "base64"}, {"media_type", "application/pdf"}, {"data", d->data}}}};
  if (const json::object* cc = obj_field(part, "cache_control")) b["cache_control"] = *cc;
  return b;
}

// A user message's content parts as Anthropic blocks.
Expected<json::array> user_blocks(const json::array& parts, const std::string& p) {
  json::array out;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const std::string pp = fmt::format("{}[{}]", p, i);
    const json::object& part = parts[i].get_object();  // parse_request checked objects with a string type
    std::string_view type = str_field(part, "type");
    if (type == "text") {
      out.push_back(text_block(str_field(part, "text"), &part));
    } else if (type == "image_url") {
      auto b = image_block(part, pp);
      if (!b) return b.error();
      out.push_back(std::move(*b));
    } else if (type == "file") {
      auto b = document_block(part, pp);
      if (!b) return b.error();
      out.push_back(std::move(*b));
    } else if (type == "input_audio") {
      return unsupported(pp + ".type", fmt::format("'{}': audio input is not supported by Anthropic.", pp));
    } else {
      return invalid_request(fmt::format("Invalid value for '{}.type': '{}'. Supported values are: 'text', "
                                         "'image_url' and 'file'.", pp, printable(type)),
                             pp + ".type", "invalid_value");
    }
  }
  return out;
}

// Text of a system, developer or tool message: a string or text parts.
Expected<json::array> text_blocks(const json::value& content, const std::string& p, bool allow_refusal) {
  json::array out;
  if (content.is_string()) {
    if (!content.get_string().empty()) out.push_back(text_block(content.get_string(), nullptr));
    return out;
  }
  const json::array& parts = content.get_array();
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const json::object& part = parts[i].get_object();
    std::string_view type = str_field(part, "type");
    std::string_view text;
    if (type == "text") text = str_field(part, "text");
    else if (type == "refusal" && allow_refusal) text = str_field(part, "refusal");
    else
      return invalid_request(fmt::format("Invalid value for '{}[{}].type': '{}'. This message accepts only {} "
                                         "parts.", p, i, printable(type), allow_refusal ? "'text' and 'refusal'" : "'text'"),
                             fmt::format("{}[{}].type", p, i), "invalid_value");
    if (!text.empty()) out.push_back(text_block(text, &part));  // Anthropic refuses empty text blocks
  }
  return out;
}

// The `function` object of a tool call or tool at `p`, with a string `name`.
Expected<const json::object*> function_of(const json::object& holder, const std::string& p) {
  const json::object* fn = obj_field(holder, "function");
  if (!fn) return invalid_request(fmt::format("Missing required parameter: '{}.function'.", p), p + ".function",
                                  "missing_required_parameter");
  const json::value* name = field(*fn, "name");
  if (!name || !name->is_string())
    return invalid_request(fmt::format("Invalid '{}.function.name': expected a string.", p), p + ".function.name",
                           "invalid_type");
  return fn;
}

Expected<json::object> tool_use_block(const json::value& call, const std::string& p) {
  if (!call.is_object()) return type_error(p, "an object", call);
  const json::object& c = call.get_object();
  const json::value* id = field(c, "id");
  if (!id || !id->is_string())
    return id ? type_error(p + ".id", "a string", *id)
              : invalid_request(fmt::format("Missing required parameter: '{}.id'.", p), p + ".id",
                                "missing_required_parameter");
  if (std::string_view t = str_field(c, "type"); !t.empty() && t != "function")
    return unsupported(p + ".type", fmt::format("'{}.type' '{}': only function tool calls can be sent.", p, printable(t)));
  const auto fn = function_of(c, p);
  if (!fn) return fn.error();
  const json::value* name = field(**fn, "name");
  const std::string ap = p + ".function.arguments";
  json::value input = json::object();
  if (const json::value* args = field(**fn, "arguments")) {
    if (!args->is_string()) return type_error(ap, "a string of JSON", *args);
    std::string_view text = args->get_string();
    if (text.find_first_not_of(" \t\r\n") != std::string_view::npos) {
      boost::system::error_code ec;
      input = json::parse(text, ec);
      if (ec)
        return invalid_request(fmt::format("Invalid '{}': not valid JSON ({}). Anthropic needs a tool call's "
                                           "arguments as a JSON object.", ap, ec.message()),
                               ap, "invalid_tool_arguments");
      if (!input.is_object())
        return invalid_request(fmt::format("Invalid '{}': the JSON is {}, but Anthropic needs a tool call's "
                                           "arguments as a JSON object.", ap, json_kind_name(input)),
                               ap, "invalid_tool_arguments");
    }
  }
  return json::object{{"type", "tool_use"}, {"id", id->get_string()}, {"name", name->get_string()},
                      {"input", std::move(input)}};
}

struct Conversation {
  json::array system;    // text blocks
  json::array messages;  // Anthropic messages
};

Expected<Conversation> conversation(const json::array& msgs) {
  Conversation out;
  bool last_is_tool_results = false;  // the last message is a user turn of tool_result blocks
  for (std::size_t i = 0; i < msgs.size(); ++i) {
    const std::string p = fmt::format("messages[{}]", i);
    const json::object& m = msgs[i].get_object();  // parse_request checked the shape
    std::string_view role = str_field(m, "role");
    const json::value* content = field(m, "content");
    bool tool_results = false;
    if (role == "system" || role == "developer") {
      auto blocks = text_blocks(*content, p + ".content", false);
      if (!blocks) return blocks.error();
      for (auto& b : *blocks) out.system.push_back(std::move(b));
      continue;
    }
    if (role == "function" || field(m, "function_call"))
      return unsupported(role == "function" ? p + ".role" : p + ".function_call",
                         fmt::format("'{}': legacy function calling cannot be translated; use 'tools' and "
                                     "'tool_calls' (tool messages with a tool_call_id).", p));
    if (role == "user") {
      json::value c;
      if (content->is_string()) {
        c = content->get_string();
      } else {
        auto blocks = user_blocks(content->get_array(), p + ".content");
        if (!blocks) return blocks.error();
        c = std::move(*blocks);
      }
      out.messages.push_back(json::object{{"role", "user"}, {"content", std::move(c)}});
    } else if (role == "assistant") {
      json::array blocks;
      if (content) {
        auto t = text_blocks(*content, p + ".content", true);
        if (!t) return t.error();
        blocks = std::move(*t);
      }
      if (const json::value* calls = field(m, "tool_calls")) {
        if (!calls->is_array()) return type_error(p + ".tool_calls", "an array", *calls);
        for (std::size_t j = 0; j < calls->get_array().size(); ++j) {
          auto b = tool_use_block(calls->get_array()[j], fmt::format("{}.tool_calls[{}]", p, j));
          if (!b) return b.error();
          blocks.push_back(std::move(*b));
        }
      }
      // An empty assistant turn has nothing to say: Anthropic refuses empty content.
      if (blocks.empty()) continue;
      out.messages.push_back(json::object{{"role", "assistant"}, {"content", std::move(blocks)}});
    } else {  // tool
      json::object result{{"type", "tool_result"}, {"tool_use_id", str_field(m, "tool_call_id")}};
      if (content->is_string()) {
        result["content"] = content->get_string();
      } else {
        auto t = text_blocks(*content, p + ".content", false);
        if (!t) return t.error();
        result["content"] = std::move(*t);
      }
      tool_results = true;
      // Consecutive tool messages answer one assistant turn: one user turn.
      if (last_is_tool_results)
        out.messages.back().get_object()["content"].get_array().push_back(std::move(result));
      else
        out.messages.push_back(json::object{{"role", "user"}, {"content", json::array{std::move(result)}}});
    }
    last_is_tool_results = tool_results;
  }
  return out;
}

Expected<json::array> tools_of(const json::value& v) {
  if (!v.is_array()) return type_error("tools", "an array", v);
  json::array out;
  for (std::size_t i = 0; i < v.get_array().size(); ++i) {
    const std::string p = fmt::format("tools[{}]", i);
    const json::value& t = v.get_array()[i];
    if (!t.is_object()) return type_error(p, "an object", t);
    std::string_view type = str_field(t.get_object(), "type");
    if (type != "function")
      return unsupported(p + ".type", fmt::format("'{}.type' '{}': only function tools can be sent.", p, printable(type)));
    const auto fn = function_of(t.get_object(), p);
    if (!fn) return fn.error();
    const json::value* name = field(**fn, "name");
    json::object tool{{"name", name->get_string()}};
    if (std::string_view d = str_field(**fn, "description"); !d.empty()) tool["description"] = d;
    const json::object* params = obj_field(**fn, "parameters");
    tool["input_schema"] = params ? json::value(*params)
                                  : json::value(json::object{{"type", "object"}, {"properties", json::object()}});
    out.push_back(std::move(tool));
  }
  return out;
}

// tool_choice; nullopt: send none.
Expected<std::optional<json::object>> tool_choice_of(const json::object& in, bool have_tools) {
  const json::value* v = field(in, "tool_choice");
  if (!v) return std::optional<json::object>();
  json::object out;
  if (v->is_string()) {
    std::string_view s = v->get_string();
    if (s == "auto") out["type"] = "auto";
    else if (s == "required") out["type"] = "any";
    else if (s == "none") out["type"] = "none";
    else
      return invalid_request(fmt::format("Invalid value for 'tool_choice': '{}'. Supported values are: 'none', "
                                         "'auto', 'required' or a named function.", printable(s)),
                             "tool_choice", "invalid_value");
  } else if (v->is_object()) {
    const json::object* fn = obj_field(v->get_object(), "function");
    std::string_view name = fn ? str_field(*fn, "name") : std::string_view();
    if (str_field(v->get_object(), "type") != "function" || name.empty())
      return invalid_request("Invalid 'tool_choice': expected {\"type\": \"function\", \"function\": {\"name\": "
                             "\"...\"}}.", "tool_choice", "invalid_value");
    out = {{"type", "tool"}, {"name", name}};
  } else {
    return type_error("tool_choice", "a string or an object", *v);
  }
  if (!have_tools) {
    const std::string_view t = out["type"].get_string();
    if (t == "none" || t == "auto") return std::optional<json::object>();
    return invalid_request("Invalid 'tool_choice': a tool must be called, but 'tools' lists none.", "tool_choice",
                           "invalid_value");
  }
  return std::optional<json::object>(std::move(out));
}

// Fields that change what the client gets back and that Anthropic cannot do.
std::optional<ApiError> refuse_untranslatable(const ParsedRequest& req) {
  const json::object& in = req.body;
  if (req.choices > 1)
    return unsupported("n", fmt::format("Invalid value for 'n': {}. Anthropic generates one choice per request; "
                                        "send n requests of n=1.", req.choices));
  if (const json::value* v = field(in, "logprobs"); v && !(v->is_bool() && !v->get_bool()))
    return unsupported("logprobs", "'logprobs': Anthropic does not return log probabilities.");
  if (field(in, "top_logprobs"))
    return unsupported("top_logprobs", "'top_logprobs': Anthropic does not return log probabilities.");
  if (const json::value* v = field(in, "response_format")) {
    std::string_view t = v->is_object() ? str_field(v->get_object(), "type") : std::string_view();
    if (t != "text")
      return unsupported("response_format", fmt::format("'response_format' type '{}': Anthropic has no JSON mode; "
                                                        "describe the format in the prompt or use a tool.", printable(t)));
  }
  if (field(in, "audio")) return unsupported("audio", "'audio': Anthropic does not generate audio.");
  if (const json::value* v = field(in, "modalities"); v && v->is_array())
    for (const auto& m : v->get_array())
      if (!(m.is_string() && m.get_string() == "text"))
        return unsupported("modalities", "'modalities': Anthropic generates text only.");
  if (field(in, "functions"))
    return unsupported("functions", "'functions': legacy function calling cannot be translated; use 'tools'.");
  return std::nullopt;
}

// ---- answer direction -------------------------------------------------------

std::string_view openai_error_type(std::string_view anthropic_type, int status) {
  if (anthropic_type == "invalid_request_error" || anthropic_type == "not_found_error" ||
      anthropic_type == "request_too_large")
    return "invalid_request_error";
  if (anthropic_type == "authentication_error") return "authentication_error";
  if (anthropic_type == "permission_error") return "permission_error";
  if (anthropic_type == "rate_limit_error") return "rate_limit_error";
  if (anthropic_type == "api_error" || anthropic_type == "overloaded_error" || anthropic_type == "timeout_error")
    return "server_error";
  return status >= 500 || status == 0 ? "server_error" : "invalid_request_error";
}

ApiError error_of(const json::object& e, int status) {
  std::string_view type = str_field(e, "type");
  std::string message(str_field(e, "message"));
  if (message.empty()) message = fmt::format("the Anthropic upstream reported '{}' without a message", printable(type));
  ApiError out{status, std::string(openai_error_type(type, status)), std::string(type), std::move(message), {}};
  return out;
}

json::object tool_call(std::int64_t index, std::string_view id, std::string_view name, std::string arguments,
                       bool streamed) {
  json::object c;
  if (streamed) c["index"] = index;
  c["id"] = id;
  c["type"] = "function";
  c["function"] = json::object{{"name", name}, {"arguments", std::move(arguments)}};
  return c;
}

}  // namespace

FinishReason finish_reason_of(std::string_view s) {
  if (s == "end_turn" || s == "stop_sequence") return {"stop"};
  if (s == "max_tokens" || s == "model_context_window_exceeded") return {"length"};
  if (s == "tool_use") return {"tool_calls"};
  if (s == "refusal") return {"content_filter"};
  if (s == "pause_turn") return {"stop"};
  return {"stop", false};
}

Usage usage_of_message_usage(const json::object& u) {
  Usage out;
  out.cached_tokens = count_field(u, "cache_read_input_tokens");
  out.cache_creation_tokens = count_field(u, "cache_creation_input_tokens");
  out.prompt_tokens = count_field(u, "input_tokens") + out.cached_tokens + out.cache_creation_tokens;
  out.completion_tokens = count_field(u, "output_tokens");
  return out;
}

Expected<std::string> messages_request(const ParsedRequest& req, const std::string& upstream_model,
                                       std::uint32_t default_max_tokens) {
  if (req.endpoint != Endpoint::kChatCompletions)
    return invalid_request(fmt::format("'{}' is served by an Anthropic Messages deployment, which has no {} API; "
                                       "use /v1/chat/completions.", printable(req.model), endpoint_name(req.endpoint)),
                           "model", "unsupported_endpoint");
  if (auto e = refuse_untranslatable(req)) return *e;
  const json::object& in = req.body;
  json::object out;
  out["model"] = upstream_model;
  out["max_tokens"] = req.max_output_tokens.value_or(default_max_tokens);
  auto conv = conversation(in.at("messages").get_array());
  if (!conv) return conv.error();
  bool cached_system = false;
  for (const auto& b : conv->system) cached_system = cached_system || b.get_object().contains("cache_control");
  if (cached_system) {
    out["system"] = std::move(conv->system);
  } else if (!conv->system.empty()) {
    // Plain text unless a part asks for caching: every Messages implementation takes a string.
    std::string joined;
    for (const auto& b : conv->system) {
      if (!joined.empty()) joined += "\n\n";
      joined += b.get_object().at("text").get_string();
    }
    out["system"] = std::move(joined);
  }
  out["messages"] = std::move(conv->messages);
  if (const json::value* stop = field(in, "stop")) {
    json::array seqs;
    if (stop->is_string()) {
      seqs.push_back(stop->get_string());
    } else if (stop->is_array()) {
      for (const auto& s : stop->get_array()) {
        if (!s.is_string()) return type_error("stop", "a string or an array of strings", *stop);
        seqs.push_back(s);
      }
    } else {
      return type_error("stop", "a string or an array of strings", *stop);
    }
    if (!seqs.empty()) out["stop_sequences"] = std::move(seqs);
  }
  for (const char* k : {"temperature", "top_p"})
    if (const json::value* v = field(in, k)) out[k] = *v;
  if (req.stream) out["stream"] = true;
  if (!req.user.empty()) out["metadata"] = json::object{{"user_id", req.user}};
  bool have_tools = false;
  if (const json::value* t = field(in, "tools")) {
    auto tools = tools_of(*t);
    if (!tools) return tools.error();
    have_tools = !tools->empty();
    if (have_tools) out["tools"] = std::move(*tools);
  }
  auto choice = tool_choice_of(in, have_tools);
  if (!choice) return choice.error();
  if (const json::value* par = field(in, "parallel_tool_calls"); par && par->is_bool() && !par->get_bool() && have_tools) {
    if (!*choice) *choice = json::object{{"type", "auto"}};
    if ((**choice)["type"].get_string() != "none") (**choice)["disable_parallel_tool_use"] = true;
  }
  if (*choice) out["tool_choice"] = std::move(**choice);
  return json::serialize(out);
}

Expected<std::string> chat_completion(std::string_view body, std::int64_t created, std::string* unknown_stop_reason) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  const json::value* content = !ec && v.is_object() ? field(v.get_object(), "content") : nullptr;
  if (!content || !content->is_array())
    return upstream_error(502, fmt::format("the Anthropic upstream's answer is not a message: {}",
                                           printable(body, 200)), "upstream_bad_response");
  const json::object& m = v.get_object();
  std::string text;
  bool any_text = false;
  json::array calls;
  for (const auto& b : content->get_array()) {
    if (!b.is_object()) continue;
    const json::object& block = b.get_object();
    std::string_view type = str_field(block, "type");
    if (type == "text") {
      text += str_field(block, "text");
      any_text = true;
    } else if (type == "tool_use") {
      const json::value* input = field(block, "input");
      calls.push_back(tool_call(0, str_field(block, "id"), str_field(block, "name"),
                                input ? json::serialize(*input) : std::string("{}"), false));
    }
    // thinking, redacted_thinking, server tool blocks: not part of an OpenAI answer.
  }
  std::string_view stop = str_field(m, "stop_reason");
  FinishReason fr = stop.empty() ? FinishReason{"stop"} : finish_reason_of(stop);
  if (!fr.known && unknown_stop_reason) *unknown_stop_reason = stop;
  json::object message{{"role", "assistant"}};
  message["content"] = any_text || calls.empty() ? json::value(text) : json::value(nullptr);
  message["refusal"] = nullptr;
  if (!calls.empty()) message["tool_calls"] = std::move(calls);
  json::object out;
  out["id"] = str_field(m, "id");
  out["object"] = "chat.completion";
  out["created"] = created;
  out["model"] = str_field(m, "model");
  out["choices"] = json::array{json::object{
      {"index", 0}, {"message", std::move(message)}, {"logprobs", nullptr}, {"finish_reason", fr.finish_reason}}};
  const json::object* u = obj_field(m, "usage");
  out["usage"] = usage_json(u ? usage_of_message_usage(*u) : Usage{});
  return json::serialize(out);
}

TranslatedError openai_error(int status, std::string_view body) {
  const int mapped = status == 529 ? 503 : status;
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  const json::object* e = !ec && v.is_object() ? obj_field(v.get_object(), "error") : nullptr;
  if (!e) return {mapped, std::string(body)};
  return {mapped, error_body(error_of(*e, mapped))};
}

std::string openai_error_payload(const json::object& anthropic_error) {
  return error_body(error_of(anthropic_error, 0));
}

// ---- streams ------------------------------------------------------------------

json::object MessageStreamTranslator::chunk() const {
  return json::object{{"id", id_}, {"object", "chat.completion.chunk"}, {"created", created_}, {"model", model_}};
}

void MessageStreamTranslator::emit_delta(json::object delta, std::vector<std::string>& out) const {
  json::object c = chunk();
  c["choices"] = json::array{
      json::object{{"index", 0}, {"delta", std::move(delta)}, {"logprobs", nullptr}, {"finish_reason", nullptr}}};
  out.push_back(json::serialize(c));
}

void MessageStreamTranslator::end_with_error(std::string_view type, std::string message,
                                             std::vector<std::string>& out) {
  out.push_back(openai_error_payload(json::object{{"type", type}, {"message", std::move(message)}}));
  ended_ = true;
}

void MessageStreamTranslator::read_usage(const json::object& u) {
  // message_start carries the prompt side, message_delta the cumulative
  // output (and, from newer servers, the prompt side again): keep what each sets.
  if (field(u, "input_tokens")) input_ = count_field(u, "input_tokens");
  if (field(u, "cache_read_input_tokens")) cache_read_ = count_field(u, "cache_read_input_tokens");
  if (field(u, "cache_creation_input_tokens")) cache_write_ = count_field(u, "cache_creation_input_tokens");
  if (field(u, "output_tokens")) usage_.completion_tokens = count_field(u, "output_tokens");
  usage_.prompt_tokens = input_ + cache_read_ + cache_write_;
  usage_.cached_tokens = cache_read_;
  usage_.cache_creation_tokens = cache_write_;
}

void MessageStreamTranslator::feed(std::string_view event, std::string_view data, std::vector<std::string>& out) {
  if (ended_) return;
  if (data.empty()) return;  // a bare `event:` line carries nothing to translate
  boost::system::error_code ec;
  json::value v = json::parse(data, ec);
  if (ec || !v.is_object()) {
    end_with_error("upstream_bad_response", fmt::format("the Anthropic upstream sent a malformed '{}' event: {}",
                                                        printable(event), printable(data, 200)), out);
    return;
  }
  const json::object& o = v.get_object();
  // The event name decides (Anthropic repeats it as the payload's "type";
  // llama-server's error event carries an error type there instead).
  std::string_view type = event.empty() ? str_field(o, "type") : event;

  if (type == "message_start") {
    if (const json::object* m = obj_field(o, "message")) {
      id_ = str_field(*m, "id");
      model_ = str_field(*m, "model");
      if (const json::object* u = obj_field(*m, "usage")) read_usage(*u);
    }
    started_ = true;
    emit_delta(json::object{{"role", "assistant"}, {"content", ""}}, out);
  } else if (type == "content_block_start") {
    const std::uint64_t index = count_field(o, "index");
    if (index >= kMaxBlocks) {
      end_with_error("upstream_bad_response",
                     fmt::format("the Anthropic upstream's message has more than {} content blocks", kMaxBlocks), out);
      return;
    }
    if (blocks_.size() <= index) blocks_.resize(index + 1);
    const json::object* cb = obj_field(o, "content_block");
    std::string_view kind = cb ? str_field(*cb, "type") : std::string_view();
    BlockState& b = blocks_[index];
    if (kind == "text") {
      b.kind = Block::kText;
      if (std::string_view t = str_field(*cb, "text"); !t.empty()) emit_delta(json::object{{"content", t}}, out);
    } else if (kind == "tool_use") {
      b.kind = Block::kTool;
      b.tool_index = tools_++;
      const json::object* input = obj_field(*cb, "input");
      // Anthropic starts with input {} and streams it as input_json_delta; a
      // server that sends the whole input here sends no deltas.
      std::string args = input && !input->empty() ? json::serialize(*input) : std::string();
      emit_delta(json::object{{"tool_calls", json::array{tool_call(b.tool_index, str_field(*cb, "id"),
                                                                   str_field(*cb, "name"), std::move(args), true)}}},
                 out);
    } else {
      b.kind = Block::kIgnored;  // thinking, redacted_thinking, server tools: dropped
    }
  } else if (type == "content_block_delta") {
    const std::uint64_t index = count_field(o, "index");
    const json::object* d = obj_field(o, "delta");
    if (!d || index >= blocks_.size()) return;
    const BlockState& b = blocks_[index];
    std::string_view dt = str_field(*d, "type");
    if (dt == "text_delta" && b.kind == Block::kText) {
      if (std::string_view t = str_field(*d, "text"); !t.empty()) emit_delta(json::object{{"content", t}}, out);
    } else if (dt == "input_json_delta" && b.kind == Block::kTool) {
      if (std::string_view j = str_field(*d, "partial_json"); !j.empty())
        emit_delta(json::object{{"tool_calls", json::array{json::object{
                                    {"index", b.tool_index}, {"function", json::object{{"arguments", j}}}}}}},
                   out);
    }
    // thinking_delta, signature_delta, citations_delta: dropped with their blocks.
  } else if (type == "message_delta") {
    if (const json::object* u = obj_field(o, "usage")) read_usage(*u);
    const json::object* d = obj_field(o, "delta");
    std::string_view stop = d ? str_field(*d, "stop_reason") : std::string_view();
    if (!stop.empty() && !finished_) {
      FinishReason fr = finish_reason_of(stop);
      if (!fr.known) unknown_stop_ = stop;
      json::object c = chunk();
      c["choices"] = json::array{json::object{
          {"index", 0}, {"delta", json::object()}, {"logprobs", nullptr}, {"finish_reason", fr.finish_reason}}};
      out.push_back(json::serialize(c));
      finished_ = true;
    }
  } else if (type == "message_stop") {
    if (!finished_) {
      json::object c = chunk();
      c["choices"] = json::array{json::object{
          {"index", 0}, {"delta", json::object()}, {"logprobs", nullptr}, {"finish_reason", "stop"}}};
      out.push_back(json::serialize(c));
      finished_ = true;
    }
    json::object c = chunk();
    c["choices"] = json::array();
    c["usage"] = usage_json(usage_);
    out.push_back(json::serialize(c));
    out.emplace_back("[DONE]");
    ended_ = true;
  } else if (type == "error") {
    // Anthropic: {"type":"error","error":{"type","message"}}; llama-server:
    // {"code":500,"message":..,"type":"server_error"}.
    const json::object* e = obj_field(o, "error");
    out.push_back(openai_error_payload(e ? *e : o));
    ended_ = true;
  }
  // ping, content_block_stop, and event types added later: nothing to say.
}

void MessageStreamTranslator::finish(std::vector<std::string>& out) {
  if (ended_) return;
  end_with_error("upstream_stream_truncated",
                 started_ ? "the Anthropic upstream's stream ended before message_stop"
                          : "the Anthropic upstream's stream ended before message_start",
                 out);
}

}  // namespace tg::api::anthropic
