#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include "api/anthropic.h"

namespace tg::api {
namespace {
namespace json = boost::json;

MessagesRequest parse_ok(const std::string& body, bool count_tokens_only = false) {
  auto r = parse_messages_request(body, count_tokens_only);
  EXPECT_TRUE(r.ok()) << body << "\n -> " << (r.ok() ? "" : r.error().message);
  return r.ok() ? std::move(*r) : MessagesRequest{};
}

ApiError parse_err(const std::string& body, bool count_tokens_only = false) {
  auto r = parse_messages_request(body, count_tokens_only);
  EXPECT_FALSE(r.ok()) << body;
  return r.ok() ? ApiError{} : r.error();
}

// A minimal valid request around `messages` (a JSON array) and extra top-level members.
std::string req(const std::string& messages, const std::string& extra = "") {
  return fmt::format(R"({{"model":"claude-x","max_tokens":64,"messages":{}{}{}}})", messages,
                     extra.empty() ? "" : ",", extra);
}

const char* kHi = R"([{"role":"user","content":"hi"}])";

// ---------------------------------------------------------------- requests

TEST(AnthropicRequest, FillsTheParsedRequest) {
  MessagesRequest r = parse_ok(req(kHi, R"("stream":true,"metadata":{"user_id":"u-7"},"stop_sequences":["END","##"])"));
  EXPECT_EQ(r.parsed.endpoint, Endpoint::kChatCompletions);
  EXPECT_EQ(r.parsed.model, "claude-x");
  EXPECT_TRUE(r.parsed.stream);
  EXPECT_FALSE(r.parsed.client_wants_usage);
  EXPECT_EQ(r.parsed.max_output_tokens, 64u);
  EXPECT_EQ(r.parsed.choices, 1u);
  EXPECT_EQ(r.parsed.user, "u-7");
  EXPECT_EQ(r.stop_sequences, (std::vector<std::string>{"END", "##"}));
  EXPECT_EQ(json::value(r.parsed.body), json::parse(R"({"model":"claude-x","max_tokens":64,"stream":true,
    "stream_options":{"include_usage":true},"stop":["END","##"],"user":"u-7",
    "messages":[{"role":"user","content":"hi"}]})"));
  EXPECT_EQ(prompt_text(r.parsed), "hi");
}

TEST(AnthropicRequest, TranslatesEveryBlockType) {
  struct Case { const char* name; std::string anthropic_messages; const char* extra; const char* openai_messages; };
  const Case cases[] = {
      {"string content", kHi, "", R"([{"role":"user","content":"hi"}])"},
      {"text blocks joined",
       R"([{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b","cache_control":{"type":"ephemeral"}}]}])",
       "", R"([{"role":"user","content":"a\nb"}])"},
      {"image base64",
       R"([{"role":"user","content":[{"type":"text","text":"what?"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBO"}}]}])",
       "",
       R"([{"role":"user","content":[{"type":"text","text":"what?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBO"}}]}])"},
      {"image url",
       R"([{"role":"user","content":[{"type":"image","source":{"type":"url","url":"https://x.test/a.jpg"}}]}])", "",
       R"([{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x.test/a.jpg"}}]}])"},
      {"assistant text and tool_use",
       R"([{"role":"user","content":"weather?"},{"role":"assistant","content":[{"type":"text","text":"Checking."},
           {"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}]}])",
       "",
       R"([{"role":"user","content":"weather?"},{"role":"assistant","content":"Checking.","tool_calls":[
           {"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]}])"},
      {"assistant tool_use only",
       R"([{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{}}]}])",
       "",
       R"([{"role":"user","content":"x"},{"role":"assistant","content":null,"tool_calls":[
           {"id":"t1","type":"function","function":{"name":"f","arguments":"{}"}}]}])"},
      {"tool_result string content",
       R"([{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"18C"}]}])", "",
       R"([{"role":"tool","tool_call_id":"toolu_1","content":"18C"}])"},
      {"tool_result block content, then text",
       R"([{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
           {"type":"text","text":"thanks"}]}])",
       "", R"([{"role":"tool","tool_call_id":"t1","content":"a\nb"},{"role":"user","content":"thanks"}])"},
      {"tool_result is_error",
       R"([{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","is_error":true,"content":"no such city"},
           {"type":"tool_result","tool_use_id":"t2","is_error":true}]}])",
       "",
       R"([{"role":"tool","tool_call_id":"t1","content":"Error: no such city"},{"role":"tool","tool_call_id":"t2","content":"Error"}])"},
      {"tool_result image moves to the user message",
       R"([{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"text","text":"shot"},
           {"type":"image","source":{"type":"base64","media_type":"image/jpeg","data":"/9j/"}}]}]}])",
       "",
       R"([{"role":"tool","tool_call_id":"t1","content":"shot"},
           {"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/jpeg;base64,/9j/"}}]}])"},
      {"system string", kHi, R"("system":"be brief")",
       R"([{"role":"system","content":"be brief"},{"role":"user","content":"hi"}])"},
      {"system blocks", kHi,
       R"("system":[{"type":"text","text":"one"},{"type":"text","text":"two","cache_control":{"type":"ephemeral","ttl":"1h"}}])",
       R"([{"role":"system","content":"one\ntwo"},{"role":"user","content":"hi"}])"},
      {"empty system dropped", kHi, R"("system":"")", R"([{"role":"user","content":"hi"}])"},
      {"thinking blocks dropped",
       R"([{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"thinking","thinking":"hmm","signature":"s"},
           {"type":"redacted_thinking","data":"zz"},{"type":"text","text":"y"}]},{"role":"user","content":"z"}])",
       "",
       R"([{"role":"user","content":"x"},{"role":"assistant","content":"y"},{"role":"user","content":"z"}])"},
      {"final assistant prefill may be empty",
       R"([{"role":"user","content":"x"},{"role":"assistant","content":""}])", "",
       R"([{"role":"user","content":"x"},{"role":"assistant","content":""}])"},
  };
  for (const auto& c : cases) {
    MessagesRequest r = parse_ok(req(c.anthropic_messages, c.extra));
    auto it = r.parsed.body.find("messages");
    ASSERT_NE(it, r.parsed.body.end()) << c.name;
    EXPECT_EQ(it->value(), json::parse(c.openai_messages)) << c.name << ": " << json::serialize(it->value());
  }
}

TEST(AnthropicRequest, TranslatesSamplingToolsAndToolChoice) {
  MessagesRequest r = parse_ok(req(kHi, R"("temperature":0.2,"top_p":0.9,"top_k":40,"thinking":{"type":"enabled","budget_tokens":2048},
    "service_tier":"auto","tools":[{"name":"get_weather","description":"Weather now","input_schema":{"type":"object",
    "properties":{"city":{"type":"string"}},"required":["city"]},"cache_control":{"type":"ephemeral"}},
    {"type":"custom","name":"noop","input_schema":{"type":"object"}}],
    "tool_choice":{"type":"auto","disable_parallel_tool_use":true})"));
  const json::object& b = r.parsed.body;
  EXPECT_EQ(b.at("temperature"), json::value(0.2));
  EXPECT_EQ(b.at("top_p"), json::value(0.9));
  EXPECT_EQ(b.at("top_k"), json::value(40));
  EXPECT_EQ(b.at("tools"), json::parse(R"([{"type":"function","function":{"name":"get_weather","description":"Weather now",
    "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}},
    {"type":"function","function":{"name":"noop","parameters":{"type":"object"}}}])"));
  EXPECT_EQ(b.at("tool_choice"), json::value("auto"));
  EXPECT_EQ(b.at("parallel_tool_calls"), json::value(false));
  EXPECT_FALSE(b.contains("thinking"));
  EXPECT_FALSE(b.contains("service_tier"));
  EXPECT_FALSE(b.contains("stream"));
  EXPECT_FALSE(b.contains("stream_options"));

  // top_k 0 means "off": not forwarded.
  EXPECT_FALSE(parse_ok(req(kHi, R"("top_k":0)")).parsed.body.contains("top_k"));

  struct Choice { const char* anthropic; const char* openai; };
  const Choice choices[] = {
      {R"({"type":"auto"})", R"("auto")"},
      {R"({"type":"any"})", R"("required")"},
      {R"({"type":"none"})", R"("none")"},
      {R"({"type":"tool","name":"f"})", R"({"type":"function","function":{"name":"f"}})"},
  };
  for (const auto& c : choices) {
    MessagesRequest t = parse_ok(
        req(kHi, fmt::format(R"("tools":[{{"name":"f","input_schema":{{"type":"object"}}}}],"tool_choice":{})", c.anthropic)));
    ASSERT_TRUE(t.parsed.body.contains("tool_choice")) << c.anthropic;
    EXPECT_EQ(t.parsed.body.at("tool_choice"), json::parse(c.openai)) << c.anthropic;
    EXPECT_FALSE(t.parsed.body.contains("parallel_tool_calls")) << c.anthropic;
  }
  // auto or none without tools: nothing to choose, dropped.
  EXPECT_FALSE(parse_ok(req(kHi, R"("tool_choice":{"type":"auto"})")).parsed.body.contains("tool_choice"));
}

TEST(AnthropicRequest, MaxTokensIsOptionalOnlyForCountTokens) {
  MessagesRequest r = parse_ok(R"({"model":"m","messages":[{"role":"user","content":"hi"}]})", true);
  EXPECT_FALSE(r.parsed.max_output_tokens.has_value());
  EXPECT_FALSE(r.parsed.body.contains("max_tokens"));
  ApiError e = parse_err(R"({"model":"m","messages":[{"role":"user","content":"hi"}]})", false);
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.param, "max_tokens");
  EXPECT_EQ(e.message, "max_tokens: Field required");
}

TEST(AnthropicRequest, NamesTheFieldForEveryMistake) {
  std::string many_stops = "[";
  for (int i = 0; i < 17; ++i) many_stops += fmt::format("{}\"s{}\"", i ? "," : "", i);
  many_stops += "]";
  std::string many_tools = "[";
  for (int i = 0; i < 129; ++i) many_tools += fmt::format(R"({}{{"name":"t{}","input_schema":{{"type":"object"}}}})", i ? "," : "", i);
  many_tools += "]";
  std::string many_messages = "[";
  for (int i = 0; i < 10'001; ++i) many_messages += fmt::format(R"({}{{"role":"user","content":"x"}})", i ? "," : "");
  many_messages += "]";
  std::string many_blocks = R"([{"role":"user","content":[)";
  for (int i = 0; i < 20'001; ++i) many_blocks += fmt::format(R"({}{{"type":"text","text":"x"}})", i ? "," : "");
  many_blocks += "]}]";
  const std::string u = R"([{"role":"user","content":)";  // opens a user message; close with "}]"
  const std::string tools_f = R"("tools":[{"name":"f","input_schema":{"type":"object"}}])";

  struct Case { std::string body; const char* param; const char* says; };
  const std::vector<Case> cases = {
      // top level
      {R"({"max_tokens":5,"messages":[{"role":"user","content":"x"}]})", "model", "Field required"},
      {R"({"model":7,"max_tokens":5,"messages":[{"role":"user","content":"x"}]})", "model", "valid string"},
      {R"({"model":"","max_tokens":5,"messages":[{"role":"user","content":"x"}]})", "model", "at least 1"},
      {fmt::format(R"({{"model":"{}","max_tokens":5,"messages":[{{"role":"user","content":"x"}}]}})", std::string(300, 'm')), "model", "at most 256"},
      {R"({"model":"a\u0001b","max_tokens":5,"messages":[{"role":"user","content":"x"}]})", "model", "control characters"},
      {R"({"model":"m","messages":[{"role":"user","content":"x"}]})", "max_tokens", "Field required"},
      {R"({"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]})", "max_tokens", "between 1 and"},
      {R"({"model":"m","max_tokens":"5","messages":[{"role":"user","content":"x"}]})", "max_tokens", "valid integer"},
      {R"({"model":"m","max_tokens":18446744073709551615,"messages":[{"role":"user","content":"x"}]})", "max_tokens", "between 1 and"},
      {R"({"model":"m","max_tokens":5.5,"messages":[{"role":"user","content":"x"}]})", "max_tokens", "valid integer"},
      {req(kHi, R"("foo":1)"), "foo", "Extra inputs are not permitted"},
      {req(kHi, R"("container":"c1")"), "container", "not supported"},
      {req(kHi, R"("mcp_servers":[])"), "mcp_servers", "not supported"},
      {req(kHi, R"("context_management":{})"), "context_management", "not supported"},
      {req(kHi, R"("stream":"yes")"), "stream", "valid boolean"},
      {req(kHi, R"("temperature":1.5)"), "temperature", "between 0 and 1"},
      {req(kHi, R"("temperature":"hot")"), "temperature", "valid number"},
      {req(kHi, R"("top_p":-0.1)"), "top_p", "between 0 and 1"},
      {req(kHi, R"("top_k":-1)"), "top_k", "between 0 and"},
      {req(kHi, R"("top_k":2.5)"), "top_k", "valid integer"},
      {req(kHi, R"("top_k":9999999999)"), "top_k", "between 0 and"},
      {req(kHi, R"("stop_sequences":"END")"), "stop_sequences", "valid list"},
      {req(kHi, "\"stop_sequences\":" + many_stops), "stop_sequences", "at most 16"},
      {req(kHi, R"("stop_sequences":[1])"), "stop_sequences.0", "valid string"},
      {req(kHi, R"("stop_sequences":["ok",""])"), "stop_sequences.1", "1 to 256"},
      {req(kHi, R"("stop_sequences":[" \n"])"), "stop_sequences.0", "non-whitespace"},
      {req(kHi, fmt::format(R"("stop_sequences":["{}"])", std::string(257, 's'))), "stop_sequences.0", "1 to 256"},
      {req(kHi, R"("metadata":"u1")"), "metadata", "valid dictionary"},
      {req(kHi, R"("metadata":{"user_id":5})"), "metadata.user_id", "valid string"},
      {req(kHi, R"("metadata":{"user_id":"u","tenant":"t"})"), "metadata.tenant", "Extra inputs"},
      {req(kHi, fmt::format(R"("metadata":{{"user_id":"{}"}})", std::string(257, 'u'))), "metadata.user_id", "at most 256"},
      {req(kHi, R"("thinking":true)"), "thinking", "valid dictionary"},
      {req(kHi, R"("thinking":{})"), "thinking.type", "Field required"},
      {req(kHi, R"("service_tier":1)"), "service_tier", "valid string"},
      // system
      {req(kHi, R"("system":5)"), "system", "valid string or a list"},
      {req(kHi, R"("system":[{"type":"image","source":{}}])"), "system.0.type", "Input should be 'text'"},
      {req(kHi, R"("system":[{"type":"text","text":"a","x":1}])"), "system.0.x", "Extra inputs"},
      {req(kHi, R"("system":["a"])"), "system.0", "valid dictionary"},
      {req(kHi, R"("system":[{"type":"text","text":"a","cache_control":"yes"}])"), "system.0.cache_control", "valid dictionary"},
      // messages
      {R"({"model":"m","max_tokens":5})", "messages", "Field required"},
      {R"({"model":"m","max_tokens":5,"messages":{}})", "messages", "valid list"},
      {req("[]"), "messages", "at least one message"},
      {req(many_messages), "messages", "at most 10000 messages"},
      {req("[1]"), "messages.0", "valid dictionary"},
      {req(R"([{"content":"x"}])"), "messages.0.role", "Field required"},
      {req(R"([{"role":"system","content":"x"}])"), "messages.0.role", "'user' or 'assistant'"},
      {req(R"([{"role":"user"}])"), "messages.0.content", "Field required"},
      {req(R"([{"role":"user","content":7}])"), "messages.0.content", "valid string or a list"},
      {req(R"([{"role":"user","content":""}])"), "messages.0.content", "non-empty content"},
      {req(R"([{"role":"user","content":[]},{"role":"assistant","content":"a"}])"), "messages.0.content", "non-empty content"},
      {req(R"([{"role":"user","content":"x","name":"bob"}])"), "messages.0.name", "Extra inputs"},
      {req(u + R"([{"type":"text","text":""}]}])"), "messages.0.content.0.text", "non-empty"},
      {req(u + R"([{"type":"text","text":5}]}])"), "messages.0.content.0.text", "valid string"},
      {req(u + R"([{"text":"a"}]}])"), "messages.0.content.0.type", "Field required"},
      {req(u + R"(["a"]}])"), "messages.0.content.0", "valid dictionary"},
      {req(u + R"([{"type":"document","source":{}}]}])"), "messages.0.content.0.type", "'document' is not supported"},
      {req(u + R"([{"type":"tool_use","id":"t","name":"f","input":{}}]}])"), "messages.0.content.0.type", "only allowed in assistant"},
      {req(u + R"([{"type":"image","source":{"type":"file","file_id":"f1"}}]}])"), "messages.0.content.0.source.type", "not supported"},
      {req(u + R"([{"type":"image","source":{"type":"base64","media_type":"image/bmp","data":"AA"}}]}])"), "messages.0.content.0.source.media_type", "image/jpeg"},
      {req(u + R"([{"type":"image","source":{"type":"base64","media_type":"image/png"}}]}])"), "messages.0.content.0.source.data", "Field required"},
      {req(u + R"([{"type":"image","source":{"type":"url","url":"file:///etc/passwd"}}]}])"), "messages.0.content.0.source.url", "http"},
      {req(u + R"([{"type":"image"}]}])"), "messages.0.content.0.source", "Field required"},
      {req(u + R"([{"type":"tool_result","content":"x"}]}])"), "messages.0.content.0.tool_use_id", "Field required"},
      {req(u + R"([{"type":"tool_result","tool_use_id":""}]}])"), "messages.0.content.0.tool_use_id", "1 to 256"},
      {req(u + R"([{"type":"tool_result","tool_use_id":"t","is_error":"no"}]}])"), "messages.0.content.0.is_error", "valid boolean"},
      {req(u + R"([{"type":"tool_result","tool_use_id":"t","content":5}]}])"), "messages.0.content.0.content", "valid string or a list"},
      {req(u + R"([{"type":"tool_result","tool_use_id":"t","content":[{"type":"document"}]}]}])"), "messages.0.content.0.content.0.type", "not supported"},
      {req(u + R"([{"type":"text","text":"a","cache_control":{"ttl":"5m"}}]}])"), "messages.0.content.0.cache_control.type", "Field required"},
      {req(R"([{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"image","source":{"type":"url","url":"https://a"}}]}])"),
       "messages.1.content.0.type", "only allowed in user"},
      {req(R"([{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":"{}"}]}])"),
       "messages.1.content.0.input", "valid dictionary"},
      {req(R"([{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"tool_use","name":"f","input":{}}]}])"),
       "messages.1.content.0.id", "Field required"},
      {req(R"([{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"tool_use","id":"t","input":{}}]}])"),
       "messages.1.content.0.name", "Field required"},
      {req(many_blocks), "messages.0.content.20000", "at most 20000 content blocks"},
      // tools and tool_choice
      {req(kHi, R"("tools":{})"), "tools", "valid list"},
      {req(kHi, "\"tools\":" + many_tools), "tools", "at most 128"},
      {req(kHi, R"("tools":[{"type":"web_search_20250305","name":"web_search"}])"), "tools.0.type", "Anthropic-hosted tool"},
      {req(kHi, R"("tools":[{"name":"bad name","input_schema":{"type":"object"}}])"), "tools.0.name", "pattern"},
      {req(kHi, R"("tools":[{"input_schema":{"type":"object"}}])"), "tools.0.name", "Field required"},
      {req(kHi, R"("tools":[{"name":"f"}])"), "tools.0.input_schema", "Field required"},
      {req(kHi, R"("tools":[{"name":"f","input_schema":"{}"}])"), "tools.0.input_schema", "valid dictionary"},
      {req(kHi, R"("tools":[{"name":"f","input_schema":{"type":"array"}}])"), "tools.0.input_schema.type", "'object'"},
      {req(kHi, R"("tools":[{"name":"f","input_schema":{"type":"object"},"strict":true}])"), "tools.0.strict", "Extra inputs"},
      {req(kHi, R"("tools":[{"name":"f","description":5,"input_schema":{"type":"object"}}])"), "tools.0.description", "valid string"},
      {req(kHi, R"("tools":[{"name":"f","input_schema":{"type":"object"}},{"name":"f","input_schema":{"type":"object"}}])"), "tools", "unique"},
      {req(kHi, R"("tool_choice":"auto")"), "tool_choice", "valid dictionary"},
      {req(kHi, R"("tool_choice":{"type":"some"})"), "tool_choice.type", "'auto', 'any', 'tool' or 'none'"},
      {req(kHi, R"("tool_choice":{"type":"any"})"), "tool_choice", "requires 'tools'"},
      {req(kHi, tools_f + R"(,"tool_choice":{"type":"tool"})"), "tool_choice.name", "Field required"},
      {req(kHi, tools_f + R"(,"tool_choice":{"type":"tool","name":"g"})"), "tool_choice.name", "no tool named 'g'"},
      {req(kHi, tools_f + R"(,"tool_choice":{"type":"none","disable_parallel_tool_use":true})"), "tool_choice.disable_parallel_tool_use", "Extra inputs"},
      {req(kHi, tools_f + R"(,"tool_choice":{"type":"auto","disable_parallel_tool_use":1})"), "tool_choice.disable_parallel_tool_use", "valid boolean"},
  };
  for (const auto& c : cases) {
    ApiError e = parse_err(c.body);
    EXPECT_EQ(e.status, 400) << c.body.substr(0, 300);
    EXPECT_EQ(e.type, "invalid_request_error") << c.body.substr(0, 300);
    EXPECT_EQ(e.param, c.param) << c.body.substr(0, 300) << "\n -> " << e.message;
    EXPECT_NE(e.message.find(c.says), std::string::npos) << e.message;
    EXPECT_EQ(e.message.rfind(std::string(c.param) + ": ", 0), 0u) << "names the field first: " << e.message;
  }
}

TEST(AnthropicRequest, RefusesBodiesThatAreNotJsonObjectsOrTooDeep) {
  std::string deep = req(kHi, R"("metadata":)" + std::string(40, '[') + std::string(40, ']'));
  // A tool schema nested to the parser's limit must still fit once translated
  // (one level deeper in the OpenAI body).
  std::string schema = R"({"type":"object","properties":{"a":)";
  std::string close = "}}";
  for (int i = 0; i < 12; ++i) {
    schema += R"({"type":"object","properties":{"a":)";
    close += "}}";
  }
  // 31 levels in the Anthropic body (the most the door parses), 32 in the OpenAI one.
  std::string too_deep = req(kHi, R"("tools":[{"name":"f","input_schema":)" + schema + R"({"type":"string","enum":[[1]]})" + close + "}]");
  schema += R"({"type":"string","enum":["x"]})" + close;
  struct Case { std::string body; const char* says; };
  const Case cases[] = {{"", "not valid JSON"},          {"not json", "not valid JSON"},
                        {"[1,2]", "must be a JSON object"}, {"\"x\"", "must be a JSON object"},
                        {"{\"model\":", "not valid JSON"}, {deep, "deeper than 31"},
                        {too_deep, "deeper than 31"}};
  for (const auto& c : cases) {
    ApiError e = parse_err(c.body);
    EXPECT_EQ(e.status, 400) << c.body;
    EXPECT_EQ(e.code, "invalid_json") << c.body;
    EXPECT_NE(e.message.find(c.says), std::string::npos) << e.message;
  }
  MessagesRequest r = parse_ok(req(kHi, R"("tools":[{"name":"f","input_schema":)" + schema + "}]"));
  EXPECT_TRUE(r.parsed.body.contains("tools"));
}

// ---------------------------------------------------------------- stop reasons

TEST(AnthropicStopReason, MapsEveryFinishReason) {
  struct Case { const char* finish; const char* matched; const char* anthropic; bool known; };
  const Case cases[] = {
      {"stop", "", "end_turn", true},
      {"stop", "END", "stop_sequence", true},
      {"length", "", "max_tokens", true},
      {"length", "END", "max_tokens", true},
      {"tool_calls", "", "tool_use", true},
      {"function_call", "", "tool_use", true},
      {"content_filter", "", "refusal", true},
      {"", "", "end_turn", false},
      {"eos", "", "end_turn", false},
      {"abort", "", "end_turn", false},
      {"STOP", "", "end_turn", false},
  };
  for (const auto& c : cases) {
    StopReason s = stop_reason_from_finish(c.finish, c.matched);
    EXPECT_EQ(s.anthropic, c.anthropic) << c.finish << "/" << c.matched;
    EXPECT_EQ(s.known, c.known) << c.finish;
  }
}

// ---------------------------------------------------------------- answers

TEST(AnthropicAnswer, TranslatesATextAnswerWithCachedUsage) {
  std::string unknown = "untouched";
  std::string body = R"({"id":"chatcmpl-1","object":"chat.completion","model":"qwen","choices":[{"index":0,
    "message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}],
    "usage":{"prompt_tokens":100,"completion_tokens":7,"total_tokens":107,
             "prompt_tokens_details":{"cached_tokens":60,"cache_creation_tokens":30}}})";
  json::value m = json::parse(message_from_completion(body, "claude-x", {}, "msg_1", &unknown));
  EXPECT_EQ(m, json::parse(R"({"id":"msg_1","type":"message","role":"assistant","model":"claude-x",
    "content":[{"type":"text","text":"Hello!"}],"stop_reason":"end_turn","stop_sequence":null,
    "usage":{"input_tokens":10,"cache_creation_input_tokens":30,"cache_read_input_tokens":60,"output_tokens":7}})"));
  EXPECT_EQ(unknown, "untouched");
}

TEST(AnthropicAnswer, TranslatesToolCallsAndKeepsAnswersWellFormed) {
  std::string body = R"({"choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":"Let me look.",
    "tool_calls":[{"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
                  {"id":"call_b","type":"function","function":{"name":"broken","arguments":"{\"city\":"}},
                  {"type":"function","function":{"name":"noargs","arguments":""}},
                  {"id":"call_d","type":"function","function":{"name":"arr","arguments":"[1]"}}]}}],
    "usage":{"prompt_tokens":5,"completion_tokens":9}})";
  json::value m = json::parse(message_from_completion(body, "a", {}, "msg_2", nullptr));
  EXPECT_EQ(m.at("content"), json::parse(R"([{"type":"text","text":"Let me look."},
    {"type":"tool_use","id":"call_a","name":"get_weather","input":{"city":"Paris"}},
    {"type":"tool_use","id":"call_b","name":"broken","input":{}},
    {"type":"tool_use","id":"toolu_msg_2_2","name":"noargs","input":{}},
    {"type":"tool_use","id":"call_d","name":"arr","input":{}}])"));
  EXPECT_EQ(m.at("stop_reason"), json::value("tool_use"));
  EXPECT_EQ(m.at("usage"), json::parse(R"({"input_tokens":5,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":9})"));

  // vLLM finishes a forced tool call with "stop": still tool_use.
  std::string forced = R"({"choices":[{"index":0,"finish_reason":"stop","message":{"content":null,
    "tool_calls":[{"id":"c","function":{"name":"f","arguments":"{}"}}]}}]})";
  EXPECT_EQ(json::parse(message_from_completion(forced, "a", {}, "m", nullptr)).at("stop_reason"), json::value("tool_use"));
}

TEST(AnthropicAnswer, NamesTheMatchedStopSequenceOnlyWhenTheClientSentIt) {
  struct Case { const char* choice_stop_reason; const char* stop_reason; const char* stop_sequence; };
  const Case cases[] = {
      {R"("END")", "stop_sequence", R"("END")"},
      {R"("OTHER")", "end_turn", "null"},  // not one of the client's: never echoed
      {"128009", "end_turn", "null"},      // vLLM: a stop token id
      {"null", "end_turn", "null"},
  };
  for (const auto& c : cases) {
    std::string body = fmt::format(R"({{"choices":[{{"index":0,"finish_reason":"stop","stop_reason":{},
      "message":{{"content":"x"}}}}]}})", c.choice_stop_reason);
    json::value m = json::parse(message_from_completion(body, "a", {"END", "##"}, "m", nullptr));
    EXPECT_EQ(m.at("stop_reason"), json::value(c.stop_reason)) << c.choice_stop_reason;
    EXPECT_EQ(m.at("stop_sequence"), json::parse(c.stop_sequence)) << c.choice_stop_reason;
  }
}

TEST(AnthropicAnswer, ReportsUnknownFinishReasonsAndSurvivesBadBodies) {
  struct Case { std::string body; const char* unknown; std::size_t blocks; };
  const Case cases[] = {
      {R"({"choices":[{"index":0,"finish_reason":"abort","message":{"content":"partial"}}]})", "abort", 1},
      {R"({"choices":[{"index":0,"finish_reason":null,"message":{"content":"partial"}}]})", "(none)", 1},
      {R"({"choices":[{"index":0,"finish_reason":"bad\u0001reason","message":{}}]})", "bad\\x01reason", 0},
      {R"({"choices":[]})", "(none)", 0},
      {"not json", "(none)", 0},
      {R"({"choices":[{"index":1,"finish_reason":"stop","message":{"content":"other choice"}}]})", "(none)", 0},
  };
  for (const auto& c : cases) {
    std::string unknown;
    json::value m = json::parse(message_from_completion(c.body, "a", {}, "m", &unknown));
    EXPECT_EQ(unknown, c.unknown) << c.body;
    EXPECT_EQ(m.at("stop_reason"), json::value("end_turn")) << c.body;
    EXPECT_EQ(m.at("content").as_array().size(), c.blocks) << c.body;
    EXPECT_EQ(m.at("usage").at("output_tokens"), json::value(0)) << c.body;
  }
}

TEST(AnthropicAnswer, UsageNeverGoesNegative) {
  Usage u;
  u.prompt_tokens = 10;
  u.cached_tokens = 8;
  u.cache_creation_tokens = 8;  // an upstream that double counts
  u.completion_tokens = 3;
  EXPECT_EQ(json::value(anthropic_usage(u)),
            json::parse(R"({"input_tokens":0,"cache_creation_input_tokens":8,"cache_read_input_tokens":8,"output_tokens":3})"));
}

// ---------------------------------------------------------------- streams

struct Event {
  std::string type;
  json::value data;
};

// Splits "event: T\ndata: J\n\n" events; fails the test on any other framing.
std::vector<Event> events_of(const std::string& s) {
  std::vector<Event> out;
  std::size_t at = 0;
  while (at < s.size()) {
    std::size_t end = s.find("\n\n", at);
    EXPECT_NE(end, std::string::npos) << "unterminated event: " << s.substr(at);
    if (end == std::string::npos) break;
    std::string_view ev(s.data() + at, end - at);
    std::size_t nl = ev.find('\n');
    EXPECT_EQ(ev.substr(0, 7), "event: ") << ev;
    EXPECT_EQ(ev.substr(nl + 1, 6), "data: ") << ev;
    Event e{std::string(ev.substr(7, nl - 7)), json::parse(ev.substr(nl + 7))};
    EXPECT_EQ(e.data.at("type"), json::value(e.type)) << ev;
    out.push_back(std::move(e));
    at = end + 2;
  }
  return out;
}

std::vector<std::string> types_of(const std::vector<Event>& evs) {
  std::vector<std::string> t;
  for (const auto& e : evs) t.push_back(e.type);
  return t;
}

std::string run_stream(MessagesStreamWriter& w, const std::vector<std::string>& chunks, std::uint64_t fallback = 0) {
  std::string out = w.start(42);
  for (const auto& c : chunks) out += w.on_chunk(c);
  return out + w.finish(fallback);
}

std::string chunk(const std::string& delta, const std::string& finish = "null") {
  return fmt::format(R"({{"id":"c","object":"chat.completion.chunk","choices":[{{"index":0,"delta":{},"finish_reason":{}}}]}})",
                     delta, finish);
}

const std::string kUsageChunk =
    R"({"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":50,"completion_tokens":4,
       "prompt_tokens_details":{"cached_tokens":20}}})";

TEST(AnthropicStream, TranslatesATextStream) {
  MessagesStreamWriter w("msg_s", "claude-x", {});
  std::vector<Event> ev = events_of(run_stream(w, {
      chunk(R"({"role":"assistant","content":""})"),
      chunk(R"({"content":"Hel"})"),
      chunk(R"({"content":"lo"})"),
      chunk("{}", R"("stop")"),
      kUsageChunk,
      "[DONE]",
  }));
  ASSERT_EQ(types_of(ev), (std::vector<std::string>{"message_start", "content_block_start", "content_block_delta",
                                                    "content_block_delta", "content_block_stop", "message_delta",
                                                    "message_stop"}));
  EXPECT_EQ(ev[0].data, json::parse(R"({"type":"message_start","message":{"id":"msg_s","type":"message","role":"assistant",
    "model":"claude-x","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":42,"output_tokens":0}}})"));
  EXPECT_EQ(ev[1].data, json::parse(R"({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})"));
  EXPECT_EQ(ev[2].data, json::parse(R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}})"));
  EXPECT_EQ(ev[3].data.at("delta").at("text"), json::value("lo"));
  EXPECT_EQ(ev[4].data, json::parse(R"({"type":"content_block_stop","index":0})"));
  EXPECT_EQ(ev[5].data, json::parse(R"({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},
    "usage":{"input_tokens":30,"cache_creation_input_tokens":0,"cache_read_input_tokens":20,"output_tokens":4}})"));
  EXPECT_FALSE(w.saw_unknown_finish());
  ASSERT_TRUE(w.usage().has_value());
  EXPECT_EQ(w.usage()->completion_tokens, 4u);
}

TEST(AnthropicStream, TranslatesTwoToolCalls) {
  MessagesStreamWriter w("msg_t", "a", {});
  std::vector<Event> ev = events_of(run_stream(w, {
      chunk(R"({"role":"assistant","content":"Checking."})"),
      chunk(R"({"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]})"),
      chunk(R"({"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]})"),
      chunk(R"({"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]})"),
      chunk(R"({"tool_calls":[{"index":1,"id":"call_2","type":"function","function":{"name":"get_time","arguments":"{}"}}]})"),
      chunk(R"({"tool_calls":[{"index":0,"function":{"arguments":"late"}}]})"),  // a closed block: dropped
      chunk("{}", R"("tool_calls")"),
      kUsageChunk,
  }));
  ASSERT_EQ(types_of(ev), (std::vector<std::string>{
                              "message_start",
                              "content_block_start", "content_block_delta", "content_block_stop",         // text 0
                              "content_block_start", "content_block_delta", "content_block_delta",        // tool 1
                              "content_block_stop",
                              "content_block_start", "content_block_delta", "content_block_stop",         // tool 2
                              "message_delta", "message_stop"}));
  EXPECT_EQ(ev[3].data.at("index"), json::value(0));
  EXPECT_EQ(ev[4].data, json::parse(R"({"type":"content_block_start","index":1,
    "content_block":{"type":"tool_use","id":"call_1","name":"get_weather","input":{}}})"));
  EXPECT_EQ(ev[5].data, json::parse(R"({"type":"content_block_delta","index":1,
    "delta":{"type":"input_json_delta","partial_json":"{\"city\":"}})"));
  EXPECT_EQ(ev[6].data.at("delta").at("partial_json"), json::value("\"Paris\"}"));
  EXPECT_EQ(ev[7].data.at("index"), json::value(1));
  EXPECT_EQ(ev[8].data.at("content_block").at("id"), json::value("call_2"));
  EXPECT_EQ(ev[8].data.at("index"), json::value(2));
  EXPECT_EQ(ev[9].data.at("delta").at("partial_json"), json::value("{}"));
  EXPECT_EQ(ev[10].data.at("index"), json::value(2));
  EXPECT_EQ(ev[11].data.at("delta").at("stop_reason"), json::value("tool_use"));
}

TEST(AnthropicStream, WithoutAUsageChunkCountsTheFallback) {
  MessagesStreamWriter w("m", "a", {});
  std::vector<Event> ev = events_of(run_stream(w, {chunk(R"({"content":"hi"})"), chunk("{}", R"("length")")}, 17));
  ASSERT_EQ(ev.size(), 6u);
  EXPECT_EQ(ev[4].data, json::parse(R"({"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},
    "usage":{"output_tokens":17}})"));
  EXPECT_FALSE(w.usage().has_value());
}

TEST(AnthropicStream, NamesTheMatchedStopSequence) {
  MessagesStreamWriter w("m", "a", {"END"});
  std::vector<Event> ev = events_of(run_stream(w, {
      chunk(R"({"content":"x"})"),
      R"({"choices":[{"index":0,"delta":{},"finish_reason":"stop","stop_reason":"END"}]})",
  }));
  ASSERT_EQ(ev.size(), 6u);
  EXPECT_EQ(ev[4].data.at("delta"), json::parse(R"({"stop_reason":"stop_sequence","stop_sequence":"END"})"));
}

TEST(AnthropicStream, IgnoresGarbageAndOtherChoicesAndReportsUnknownFinish) {
  MessagesStreamWriter w("m", "a", {});
  std::vector<Event> ev = events_of(run_stream(w, {
      "", "not json", "[1,2]", "{\"choices\":5}", "{\"choices\":[7,{\"index\":0,\"delta\":\"x\"}]}",
      R"({"choices":[{"index":1,"delta":{"content":"other choice"},"finish_reason":"stop"}]})",
      R"({"choices":[{"index":0,"delta":{"content":"mine"}},{"index":1,"delta":{"content":"theirs"}}]})",
      R"({"choices":[{"index":0,"delta":{"tool_calls":[5,{"index":"x"}]},"finish_reason":"abort"}]})",
  }));
  ASSERT_EQ(types_of(ev), (std::vector<std::string>{"message_start", "content_block_start", "content_block_delta",
                                                    "content_block_stop", "content_block_start", "content_block_stop",
                                                    "message_delta", "message_stop"}));
  EXPECT_EQ(ev[2].data.at("delta").at("text"), json::value("mine"));
  // {"index":"x"} counts as index 0 and opens a tool block with no name.
  EXPECT_EQ(ev[4].data.at("content_block").at("type"), json::value("tool_use"));
  EXPECT_EQ(ev[6].data.at("delta").at("stop_reason"), json::value("end_turn"));
  EXPECT_TRUE(w.saw_unknown_finish());
  EXPECT_EQ(w.finish_reason(), "abort");
  EXPECT_EQ(w.finish(), "");            // once only
  EXPECT_EQ(w.on_chunk(chunk(R"({"content":"late"})")), "");
}

TEST(AnthropicStream, AStreamWithoutFinishReasonIsUnknown) {
  MessagesStreamWriter w("m", "a", {});
  std::vector<Event> ev = events_of(run_stream(w, {}));
  ASSERT_EQ(types_of(ev), (std::vector<std::string>{"message_start", "message_delta", "message_stop"}));
  EXPECT_TRUE(w.saw_unknown_finish());
}

TEST(AnthropicStream, PingAndErrorEvents) {
  MessagesStreamWriter w("m", "a", {});
  std::vector<Event> ping = events_of(w.ping());
  ASSERT_EQ(ping.size(), 1u);
  EXPECT_EQ(ping[0].data, json::parse(R"({"type":"ping"})"));
  std::vector<Event> err = events_of(MessagesStreamWriter::error_event(
      upstream_error(502, "upstream 'vllm-a' broke the connection", "upstream_closed")));
  ASSERT_EQ(err.size(), 1u);
  EXPECT_EQ(err[0].data, json::parse(R"({"type":"error","error":{"type":"api_error",
    "message":"upstream 'vllm-a' broke the connection"}})"));
}

// ---------------------------------------------------------------- errors

TEST(AnthropicErrors, MapsEveryStatus) {
  struct Case { ApiError e; int status; const char* type; };
  ApiError queue{503, "server_error", "queue_timeout", "queued too long", {}};
  ApiError limits{503, "server_error", "limits_unavailable", "redis down", {}};
  ApiError odd{200, "x", "y", "not an error status", {}};
  ApiError conflict{409, "x", "y", "conflict", {}};
  ApiError too_large{413, "invalid_request_error", "request_too_large", "body too large", {}};
  ApiError rate{429, "rate_limit_error", "tenant_tpm_exhausted", "slow down", {}};
  ApiError overloaded{529, "x", "y", "overloaded", {}};
  const Case cases[] = {
      {invalid_request("bad", "max_tokens"), 400, "invalid_request_error"},
      {authentication_error("who?"), 401, "authentication_error"},
      {permission_error("no"), 403, "permission_error"},
      {not_found("no model", "model_not_found", "model"), 404, "not_found_error"},
      {conflict, 409, "invalid_request_error"},
      {too_large, 413, "request_too_large"},
      {rate, 429, "rate_limit_error"},
      {server_error("oops"), 500, "api_error"},
      {upstream_error(502, "broke", "upstream_closed"), 502, "api_error"},
      {queue, 529, "overloaded_error"},
      {limits, 503, "api_error"},
      {upstream_error(504, "slow", "upstream_timeout"), 504, "api_error"},
      {overloaded, 529, "overloaded_error"},
      {odd, 500, "api_error"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(anthropic_status(c.e), c.status) << c.e.status << " " << c.e.code;
    json::value body = json::parse(anthropic_error_body(c.e));
    EXPECT_EQ(body, json::parse(fmt::format(R"({{"type":"error","error":{{"type":"{}","message":{}}}}})", c.type,
                                            json::serialize(json::string(c.e.message)))))
        << c.e.status << " " << c.e.code;
  }
}

TEST(AnthropicErrors, MessagesAreMadePrintableAndBounded) {
  ApiError e = invalid_request("bad \x01 field \xff" + std::string(5000, 'x'), "f");
  std::string body = anthropic_error_body(e);
  json::value v = json::parse(body);
  std::string msg(v.at("error").at("message").as_string());
  EXPECT_LT(msg.size(), 2200u);
  EXPECT_NE(msg.find("\\x01"), std::string::npos);
  EXPECT_NE(msg.find("\\xFF"), std::string::npos) << msg.substr(0, 40);
  EXPECT_EQ(msg.find('\x01'), std::string::npos);
}

TEST(AnthropicErrors, ARequestErrorRoundTripsThroughTheErrorBody) {
  ApiError e = parse_err(req(kHi, R"("foo":1)"));
  EXPECT_EQ(anthropic_status(e), 400);
  EXPECT_EQ(json::parse(anthropic_error_body(e)),
            json::parse(R"({"type":"error","error":{"type":"invalid_request_error","message":"foo: Extra inputs are not permitted"}})"));
}

}  // namespace
}  // namespace tg::api
