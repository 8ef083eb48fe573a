// api::anthropic (src/api/anthropic_wire.h): OpenAI chat requests into
// Anthropic Messages requests, and Anthropic messages, errors and event
// streams back into OpenAI's shapes. Plus the `provider: anthropic` config keys.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <string>
#include <vector>

#include "api/anthropic_wire.h"
#include "core/config_load.h"

namespace tg::api::anthropic {
namespace {
namespace json = boost::json;

ParsedRequest parsed(const std::string& body, Endpoint e = Endpoint::kChatCompletions) {
  auto r = parse_request(e, body);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? std::move(*r) : ParsedRequest{};
}

// The Anthropic request for an OpenAI request body (which must translate).
json::object translate(const std::string& body, std::uint32_t default_max = 4096) {
  auto out = messages_request(parsed(body), "claude-x", default_max);
  EXPECT_TRUE(out.ok()) << (out.ok() ? "" : out.error().message);
  return out.ok() ? json::parse(*out).as_object() : json::object();
}

// The refusal for an OpenAI request body (which must not translate).
ApiError refusal(const std::string& body) {
  auto out = messages_request(parsed(body), "claude-x", 4096);
  EXPECT_FALSE(out.ok()) << "translated: " << (out.ok() ? *out : "");
  return out.ok() ? ApiError{} : out.error();
}

std::string one_user(const std::string& content_json, const std::string& extra = "") {
  return R"({"model":"m","messages":[{"role":"user","content":)" + content_json + "}]" + extra + "}";
}

// ---- stop reasons -------------------------------------------------------------

TEST(AnthropicWire, EveryKnownStopReasonMapsToAFinishReason) {
  const std::vector<std::pair<std::string, std::string>> table{
      {"end_turn", "stop"},          {"stop_sequence", "stop"},    {"max_tokens", "length"},
      {"tool_use", "tool_calls"},    {"refusal", "content_filter"}, {"pause_turn", "stop"},
      {"model_context_window_exceeded", "length"},
  };
  for (const auto& [stop, finish] : table) {
    FinishReason f = finish_reason_of(stop);
    EXPECT_EQ(f.finish_reason, finish) << stop;
    EXPECT_TRUE(f.known) << stop;
  }
}

TEST(AnthropicWire, UnknownStopReasonsAreStopAndReportedUnknown) {
  for (const char* stop : {"", "end_of_world", "END_TURN", "tool_use "}) {
    FinishReason f = finish_reason_of(stop);
    EXPECT_EQ(f.finish_reason, "stop") << stop;
    EXPECT_FALSE(f.known) << stop;
  }
}

// ---- usage ----------------------------------------------------------------------

TEST(AnthropicWire, UsageCountsCacheReadsAndWritesIntoPromptTokens) {
  Usage u = usage_of_message_usage(json::parse(R"({"input_tokens":12,"output_tokens":34,
      "cache_read_input_tokens":1000,"cache_creation_input_tokens":200})").as_object());
  EXPECT_EQ(u.prompt_tokens, 12u + 1000u + 200u);
  EXPECT_EQ(u.cached_tokens, 1000u);
  EXPECT_EQ(u.cache_creation_tokens, 200u);
  EXPECT_EQ(u.completion_tokens, 34u);
  // Absent or null cache fields (older servers, llama-server) count 0.
  Usage plain = usage_of_message_usage(json::parse(R"({"input_tokens":5,"output_tokens":6,
      "cache_read_input_tokens":null})").as_object());
  EXPECT_EQ(plain.prompt_tokens, 5u);
  EXPECT_EQ(plain.cached_tokens, 0u);
  EXPECT_EQ(plain.cache_creation_tokens, 0u);
  EXPECT_EQ(plain.completion_tokens, 6u);
}

// ---- request direction ------------------------------------------------------------

TEST(AnthropicWire, RequestCarriesModelMaxTokensAndSamplingAndDropsWhatAnthropicLacks) {
  json::object a = translate(R"({"model":"alias","messages":[{"role":"user","content":"hi"}],
      "max_tokens":77,"temperature":0.5,"top_p":0.9,"seed":7,"frequency_penalty":0.1,"presence_penalty":0.2,
      "logit_bias":{"50256":-100},"store":true,"user":"u-42","n":1,"logprobs":false})");
  EXPECT_EQ(a["model"], "claude-x");
  EXPECT_EQ(a["max_tokens"], 77);
  EXPECT_EQ(a["temperature"], 0.5);
  EXPECT_EQ(a["top_p"], 0.9);
  EXPECT_EQ(a["metadata"], (json::object{{"user_id", "u-42"}}));
  for (const char* dropped : {"seed", "frequency_penalty", "presence_penalty", "logit_bias", "store", "user", "n",
                              "logprobs", "stream", "stop_sequences", "system", "tools", "tool_choice"})
    EXPECT_FALSE(a.contains(dropped)) << dropped;
  EXPECT_EQ(a["messages"], json::parse(R"([{"role":"user","content":"hi"}])"));
}

TEST(AnthropicWire, MaxTokensFromEitherFieldElseTheDeploymentDefault) {
  EXPECT_EQ(translate(one_user(R"("x")", R"(,"max_completion_tokens":9,"max_tokens":99)"))["max_tokens"], 9);
  EXPECT_EQ(translate(one_user(R"("x")", R"(,"max_tokens":99)"))["max_tokens"], 99);
  EXPECT_EQ(translate(one_user(R"("x")"), 1234)["max_tokens"], 1234);
}

TEST(AnthropicWire, StreamAndStopSequences) {
  json::object a = translate(one_user(R"("x")", R"(,"stream":true,"stream_options":{"include_usage":true},"stop":"END")"));
  EXPECT_EQ(a["stream"], true);
  EXPECT_FALSE(a.contains("stream_options"));
  EXPECT_EQ(a["stop_sequences"], json::parse(R"(["END"])"));
  EXPECT_EQ(translate(one_user(R"("x")", R"(,"stop":["a","b"])"))["stop_sequences"], json::parse(R"(["a","b"])"));
  EXPECT_FALSE(translate(one_user(R"("x")", R"(,"stop":[])")).contains("stop_sequences"));
  ApiError e = refusal(one_user(R"("x")", R"(,"stop":[1])"));
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.param, "stop");
}

TEST(AnthropicWire, SystemAndDeveloperMessagesBecomeTopLevelSystem) {
  json::object a = translate(R"({"model":"m","messages":[{"role":"system","content":"Be brief."},
      {"role":"developer","content":[{"type":"text","text":"Use French."}]},{"role":"user","content":"hi"}]})");
  EXPECT_EQ(a["system"], "Be brief.\n\nUse French.");
  EXPECT_EQ(a["messages"].as_array().size(), 1u);
  // A part asking for prompt caching keeps the block form, cache_control included.
  json::object c = translate(R"({"model":"m","messages":[{"role":"system","content":[
      {"type":"text","text":"Long context","cache_control":{"type":"ephemeral"}}]},{"role":"user","content":"hi"}]})");
  EXPECT_EQ(c["system"], json::parse(R"([{"type":"text","text":"Long context","cache_control":{"type":"ephemeral"}}])"));
  // System content parts are text only.
  ApiError e = refusal(R"({"model":"m","messages":[{"role":"system","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]},{"role":"user","content":"hi"}]})");
  EXPECT_EQ(e.param, "messages[0].content[0].type");
}

TEST(AnthropicWire, EveryUserContentPartType) {
  json::object a = translate(one_user(R"([
      {"type":"text","text":"look"},
      {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo=","detail":"high"}},
      {"type":"image_url","image_url":{"url":"https://example.com/cat.jpg"}},
      {"type":"file","file":{"filename":"a.pdf","file_data":"data:application/pdf;base64,JVBERi0="}}])"));
  EXPECT_EQ(a["messages"], json::parse(R"([{"role":"user","content":[
      {"type":"text","text":"look"},
      {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},
      {"type":"image","source":{"type":"url","url":"https://example.com/cat.jpg"}},
      {"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBERi0="}}]}])"));
}

TEST(AnthropicWire, UserPartsAnthropicCannotTakeAreRefusedNamingThePart) {
  const std::vector<std::pair<std::string, std::string>> table{
      {R"([{"type":"input_audio","input_audio":{"data":"AAA=","format":"wav"}}])", "messages[0].content[0].type"},
      {R"([{"type":"video","video":{}}])", "messages[0].content[0].type"},
      {R"([{"type":"image_url","image_url":{"url":"data:image/png,rawbytes"}}])", "messages[0].content[0].image_url.url"},
      {R"([{"type":"image_url","image_url":{"url":"data:image/bmp;base64,Qk0="}}])", "messages[0].content[0].image_url.url"},
      {R"([{"type":"image_url","image_url":{"url":"ftp://example.com/x.png"}}])", "messages[0].content[0].image_url.url"},
      {R"([{"type":"image_url"}])", "messages[0].content[0].image_url"},
      {R"([{"type":"file","file":{"file_id":"file-abc"}}])", "messages[0].content[0].file.file_id"},
      {R"([{"type":"file","file":{"file_data":"data:text/plain;base64,aGk="}}])", "messages[0].content[0].file.file_data"},
  };
  for (const auto& [parts, param] : table) {
    ApiError e = refusal(one_user(parts));
    EXPECT_EQ(e.status, 400) << parts;
    EXPECT_EQ(e.type, "invalid_request_error") << parts;
    EXPECT_EQ(e.param, param) << parts;
    EXPECT_FALSE(e.message.empty()) << parts;
  }
}

TEST(AnthropicWire, AssistantToolCallsBecomeToolUseAndToolMessagesOneUserTurn) {
  json::object a = translate(R"({"model":"m","messages":[
      {"role":"user","content":"weather in Paris and Rome?"},
      {"role":"assistant","content":"Checking.","tool_calls":[
        {"id":"call_1","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Paris\"}"}},
        {"id":"call_2","type":"function","function":{"name":"weather","arguments":""}}]},
      {"role":"tool","tool_call_id":"call_1","content":"18C"},
      {"role":"tool","tool_call_id":"call_2","content":[{"type":"text","text":"21C"}]},
      {"role":"user","content":"thanks"}]})");
  EXPECT_EQ(a["messages"], json::parse(R"([
      {"role":"user","content":"weather in Paris and Rome?"},
      {"role":"assistant","content":[{"type":"text","text":"Checking."},
        {"type":"tool_use","id":"call_1","name":"weather","input":{"city":"Paris"}},
        {"type":"tool_use","id":"call_2","name":"weather","input":{}}]},
      {"role":"user","content":[{"type":"tool_result","tool_use_id":"call_1","content":"18C"},
        {"type":"tool_result","tool_use_id":"call_2","content":[{"type":"text","text":"21C"}]}]},
      {"role":"user","content":"thanks"}])"));
}

TEST(AnthropicWire, AssistantRefusalPartsAreTextAndEmptyAssistantTurnsAreSkipped) {
  json::object a = translate(R"({"model":"m","messages":[{"role":"user","content":"a"},
      {"role":"assistant","content":[{"type":"refusal","refusal":"I can't."}]},
      {"role":"assistant","content":""},{"role":"assistant","content":null},{"role":"user","content":"b"}]})");
  EXPECT_EQ(a["messages"], json::parse(R"([{"role":"user","content":"a"},
      {"role":"assistant","content":[{"type":"text","text":"I can't."}]},{"role":"user","content":"b"}])"));
}

TEST(AnthropicWire, InvalidToolArgumentsAreRefusedNamingTheField) {
  const std::vector<std::pair<std::string, std::string>> table{
      {R"("{\"city\": ")", "not valid JSON"},  // cut short
      {R"("[1,2]")", "an array"},              // JSON, but Anthropic needs an object
      {R"("42")", "an integer"},
  };
  for (const auto& [args, why] : table) {
    ApiError e = refusal(R"({"model":"m","messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[
        {"id":"c","type":"function","function":{"name":"f","arguments":)" + args + R"(}}]}]})");
    EXPECT_EQ(e.status, 400) << args;
    EXPECT_EQ(e.param, "messages[1].tool_calls[0].function.arguments") << args;
    EXPECT_EQ(e.code, "invalid_tool_arguments") << args;
    EXPECT_NE(e.message.find(why), std::string::npos) << e.message;
  }
  ApiError no_id = refusal(R"({"model":"m","messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[
      {"type":"function","function":{"name":"f","arguments":"{}"}}]}]})");
  EXPECT_EQ(no_id.param, "messages[1].tool_calls[0].id");
}

TEST(AnthropicWire, ToolsAndEveryToolChoice) {
  const std::string tools = R"(,"tools":[{"type":"function","function":{"name":"weather","description":"Forecast",
      "parameters":{"type":"object","properties":{"city":{"type":"string"}}}}},{"type":"function","function":{"name":"now"}}])";
  json::object a = translate(one_user(R"("x")", tools));
  EXPECT_EQ(a["tools"], json::parse(R"([{"name":"weather","description":"Forecast",
      "input_schema":{"type":"object","properties":{"city":{"type":"string"}}}},
      {"name":"now","input_schema":{"type":"object","properties":{}}}])"));
  EXPECT_FALSE(a.contains("tool_choice"));
  const std::vector<std::pair<std::string, std::string>> table{
      {R"("auto")", R"({"type":"auto"})"},
      {R"("required")", R"({"type":"any"})"},
      {R"("none")", R"({"type":"none"})"},
      {R"({"type":"function","function":{"name":"now"}})", R"({"type":"tool","name":"now"})"},
  };
  for (const auto& [choice, want] : table)
    EXPECT_EQ(translate(one_user(R"("x")", tools + R"(,"tool_choice":)" + choice))["tool_choice"], json::parse(want))
        << choice;
  EXPECT_EQ(translate(one_user(R"("x")", tools + R"(,"parallel_tool_calls":false)"))["tool_choice"],
            json::parse(R"({"type":"auto","disable_parallel_tool_use":true})"));
  EXPECT_EQ(translate(one_user(R"("x")", tools + R"(,"tool_choice":"required","parallel_tool_calls":false)"))["tool_choice"],
            json::parse(R"({"type":"any","disable_parallel_tool_use":true})"));
  // Without tools: auto and none say nothing; a forced call cannot be met.
  EXPECT_FALSE(translate(one_user(R"("x")", R"(,"tool_choice":"none")")).contains("tool_choice"));
  EXPECT_EQ(refusal(one_user(R"("x")", R"(,"tool_choice":"required")")).param, "tool_choice");
  EXPECT_EQ(refusal(one_user(R"("x")", tools + R"(,"tool_choice":"sometimes")")).param, "tool_choice");
  EXPECT_EQ(refusal(one_user(R"("x")", tools + R"(,"tool_choice":{"type":"function"})")).param, "tool_choice");
  EXPECT_EQ(refusal(one_user(R"("x")", R"(,"tools":[{"type":"code_interpreter"}])")).param, "tools[0].type");
  EXPECT_EQ(refusal(one_user(R"("x")", R"(,"tools":{"type":"function"})")).param, "tools");
}

TEST(AnthropicWire, WhatChangesTheAnswerAndCannotBeTranslatedIsRefused) {
  const std::vector<std::pair<std::string, std::string>> table{
      {R"(,"n":2)", "n"},
      {R"(,"logprobs":true)", "logprobs"},
      {R"(,"top_logprobs":3)", "top_logprobs"},
      {R"(,"response_format":{"type":"json_object"})", "response_format"},
      {R"(,"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{}}})", "response_format"},
      {R"(,"audio":{"voice":"alloy","format":"wav"})", "audio"},
      {R"(,"modalities":["text","audio"])", "modalities"},
      {R"(,"functions":[{"name":"f"}])", "functions"},
  };
  for (const auto& [extra, param] : table) {
    ApiError e = refusal(one_user(R"("x")", extra));
    EXPECT_EQ(e.status, 400) << extra;
    EXPECT_EQ(e.param, param) << extra;
    EXPECT_EQ(e.code, "unsupported_parameter") << extra;
    EXPECT_NE(e.message.find("Anthropic"), std::string::npos) << e.message;
  }
  EXPECT_EQ(translate(one_user(R"("x")", R"(,"response_format":{"type":"text"})"))["max_tokens"], 4096);
  EXPECT_EQ(refusal(R"({"model":"m","messages":[{"role":"function","name":"f","content":"1"}]})").param,
            "messages[0].role");
}

TEST(AnthropicWire, OnlyChatCompletionsTranslate) {
  for (auto [endpoint, body] : {std::pair{Endpoint::kEmbeddings, R"({"model":"m","input":"x"})"},
                                std::pair{Endpoint::kCompletions, R"({"model":"m","prompt":"x"})"}}) {
    auto out = messages_request(parsed(body, endpoint), "claude-x", 4096);
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.error().status, 400);
    EXPECT_EQ(out.error().code, "unsupported_endpoint");
  }
}

// ---- answer direction ------------------------------------------------------------

json::object completion(const std::string& message) {
  auto out = chat_completion(message, 1700000000);
  EXPECT_TRUE(out.ok()) << (out.ok() ? "" : out.error().message);
  return out.ok() ? json::parse(*out).as_object() : json::object();
}

TEST(AnthropicWire, MessageBecomesChatCompletion) {
  json::object c = completion(R"({"id":"msg_1","type":"message","role":"assistant","model":"claude-x",
      "content":[{"type":"thinking","thinking":"hmm","signature":"s"},{"type":"text","text":"Hello"},
                 {"type":"redacted_thinking","data":"xx"},{"type":"text","text":" world"}],
      "stop_reason":"end_turn","stop_sequence":null,
      "usage":{"input_tokens":10,"output_tokens":3,"cache_read_input_tokens":90,"cache_creation_input_tokens":5}})");
  EXPECT_EQ(c, json::parse(R"({"id":"msg_1","object":"chat.completion","created":1700000000,"model":"claude-x",
      "choices":[{"index":0,"message":{"role":"assistant","content":"Hello world","refusal":null},
                  "logprobs":null,"finish_reason":"stop"}],
      "usage":{"prompt_tokens":105,"completion_tokens":3,"total_tokens":108,
               "prompt_tokens_details":{"cached_tokens":90,"cache_creation_tokens":5}}})").as_object());
}

TEST(AnthropicWire, ToolUseBlocksBecomeToolCalls) {
  json::object c = completion(R"({"id":"msg_2","type":"message","model":"claude-x","content":[
      {"type":"tool_use","id":"toolu_1","name":"weather","input":{"city":"Paris"}}],
      "stop_reason":"tool_use","usage":{"input_tokens":1,"output_tokens":2}})");
  const json::object& choice = c["choices"].as_array()[0].as_object();
  EXPECT_EQ(choice.at("finish_reason"), "tool_calls");
  EXPECT_EQ(choice.at("message"), json::parse(R"({"role":"assistant","content":null,"refusal":null,"tool_calls":[
      {"id":"toolu_1","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Paris\"}"}}]})"));
}

TEST(AnthropicWire, EveryStopReasonInAMessageAndUnknownOnesReported) {
  const std::vector<std::pair<std::string, std::string>> table{
      {"end_turn", "stop"}, {"stop_sequence", "stop"}, {"max_tokens", "length"}, {"tool_use", "tool_calls"},
      {"refusal", "content_filter"}, {"pause_turn", "stop"}, {"galaxy_brain", "stop"}};
  for (const auto& [stop, finish] : table) {
    std::string unknown;
    auto out = chat_completion(R"({"id":"m","type":"message","model":"x","content":[{"type":"text","text":"t"}],
        "stop_reason":")" + stop + R"(","usage":{"input_tokens":1,"output_tokens":1}})", 1, &unknown);
    ASSERT_TRUE(out.ok()) << stop;
    EXPECT_EQ(json::parse(*out).at("choices").at(0).at("finish_reason"), finish.c_str()) << stop;
    EXPECT_EQ(unknown, stop == "galaxy_brain" ? stop : "") << stop;
  }
}

TEST(AnthropicWire, AnAnswerThatIsNotAMessageIs502) {
  for (const char* body : {"", "not json", "[]", R"({"type":"message"})", R"({"content":"text"})"}) {
    auto out = chat_completion(body, 1);
    ASSERT_FALSE(out.ok()) << body;
    EXPECT_EQ(out.error().status, 502) << body;
    EXPECT_EQ(out.error().code, "upstream_bad_response") << body;
  }
}

TEST(AnthropicWire, ErrorsKeepTheirStatusInOpenAIsShape) {
  struct Row {
    int status;
    const char* type;
    int want_status;
    const char* want_type;
  };
  for (const Row& r : {Row{400, "invalid_request_error", 400, "invalid_request_error"},
                       Row{401, "authentication_error", 401, "authentication_error"},
                       Row{403, "permission_error", 403, "permission_error"},
                       Row{404, "not_found_error", 404, "invalid_request_error"},
                       Row{413, "request_too_large", 413, "invalid_request_error"},
                       Row{429, "rate_limit_error", 429, "rate_limit_error"},
                       Row{500, "api_error", 500, "server_error"},
                       Row{529, "overloaded_error", 503, "server_error"}}) {
    TranslatedError e = openai_error(
        r.status, std::string(R"({"type":"error","error":{"type":")") + r.type + R"(","message":"why: )" + r.type + R"("}})");
    EXPECT_EQ(e.status, r.want_status) << r.type;
    json::value v = json::parse(e.body);
    EXPECT_EQ(v.at("error").at("type"), r.want_type) << r.type;
    EXPECT_EQ(v.at("error").at("code"), r.type) << r.type;
    EXPECT_EQ(v.at("error").at("message").as_string(), std::string("why: ") + r.type);
    EXPECT_TRUE(v.at("error").at("param").is_null());
  }
  // Not Anthropic's shape (a proxy's HTML page): kept for the gateway to quote.
  TranslatedError html = openai_error(502, "<html>Bad Gateway</html>");
  EXPECT_EQ(html.status, 502);
  EXPECT_EQ(html.body, "<html>Bad Gateway</html>");
  EXPECT_EQ(openai_error(529, "").status, 503);
}

// ---- streams ----------------------------------------------------------------------

struct Event {
  std::string event, data;
};

std::vector<std::string> run(MessageStreamTranslator& t, const std::vector<Event>& events, bool finish = true) {
  std::vector<std::string> out;
  for (const auto& e : events) t.feed(e.event, e.data, out);
  if (finish) t.finish(out);
  return out;
}

json::value delta_of(const std::string& payload) { return json::parse(payload).at("choices").at(0).at("delta"); }

const Event kStart{"message_start", R"({"type":"message_start","message":{"id":"msg_9","type":"message",
    "role":"assistant","model":"claude-x","content":[],"stop_reason":null,"stop_sequence":null,
    "usage":{"input_tokens":25,"output_tokens":1,"cache_read_input_tokens":100,"cache_creation_input_tokens":7}}})"};
const Event kStop{"message_stop", R"({"type":"message_stop"})"};

Event message_delta(const std::string& stop, int output_tokens) {
  return {"message_delta", R"({"type":"message_delta","delta":{"stop_reason":")" + stop +
                               R"(","stop_sequence":null},"usage":{"output_tokens":)" + std::to_string(output_tokens) + "}}"};
}

// The text stream from Anthropic's streaming documentation, ping included.
TEST(AnthropicStream, TextStream) {
  MessageStreamTranslator t(1700000001);
  auto out = run(t, {kStart,
                     {"content_block_start", R"({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})"},
                     {"ping", R"({"type":"ping"})"},
                     {"content_block_delta", R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}})"},
                     {"content_block_delta", R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"!"}})"},
                     {"content_block_stop", R"({"type":"content_block_stop","index":0})"},
                     message_delta("end_turn", 15),
                     kStop});
  ASSERT_EQ(out.size(), 6u);
  json::value first = json::parse(out[0]);
  EXPECT_EQ(first.at("id"), "msg_9");
  EXPECT_EQ(first.at("object"), "chat.completion.chunk");
  EXPECT_EQ(first.at("created"), 1700000001);
  EXPECT_EQ(first.at("model"), "claude-x");
  EXPECT_EQ(delta_of(out[0]), json::parse(R"({"role":"assistant","content":""})"));
  EXPECT_EQ(delta_of(out[1]), json::parse(R"({"content":"Hello"})"));
  EXPECT_EQ(delta_of(out[2]), json::parse(R"({"content":"!"})"));
  EXPECT_EQ(json::parse(out[3]).at("choices").at(0).at("finish_reason"), "stop");
  EXPECT_EQ(delta_of(out[3]), json::object());
  // The usage-only chunk: the prompt side from message_start, the output from message_delta.
  json::value usage = json::parse(out[4]);
  EXPECT_EQ(usage.at("choices"), json::array());
  EXPECT_EQ(usage.at("usage"), json::parse(R"({"prompt_tokens":132,"completion_tokens":15,"total_tokens":147,
      "prompt_tokens_details":{"cached_tokens":100,"cache_creation_tokens":7}})"));
  EXPECT_EQ(out[5], "[DONE]");
  EXPECT_TRUE(t.ended());
  EXPECT_EQ(t.usage().prompt_tokens, 132u);
  EXPECT_EQ(t.unknown_stop_reason(), "");
}

TEST(AnthropicStream, ToolUseWithInputJsonFragments) {
  MessageStreamTranslator t(1);
  auto out = run(t, {kStart,
                     {"content_block_start", R"({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})"},
                     {"content_block_delta", R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me check."}})"},
                     {"content_block_stop", R"({"type":"content_block_stop","index":0})"},
                     {"content_block_start", R"({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_7","name":"weather","input":{}}})"},
                     {"content_block_delta", R"({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}})"},
                     {"content_block_delta", R"({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Pa"}})"},
                     {"content_block_delta", R"({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ris\"}"}})"},
                     {"content_block_stop", R"({"type":"content_block_stop","index":1})"},
                     message_delta("tool_use", 40),
                     kStop});
  ASSERT_EQ(out.size(), 8u);
  EXPECT_EQ(delta_of(out[1]), json::parse(R"({"content":"Let me check."})"));
  EXPECT_EQ(delta_of(out[2]), json::parse(R"({"tool_calls":[{"index":0,"id":"toolu_7","type":"function",
      "function":{"name":"weather","arguments":""}}]})"));
  EXPECT_EQ(delta_of(out[3]), json::parse(R"({"tool_calls":[{"index":0,"function":{"arguments":"{\"city\": \"Pa"}}]})"));
  EXPECT_EQ(delta_of(out[4]), json::parse(R"({"tool_calls":[{"index":0,"function":{"arguments":"ris\"}"}}]})"));
  // The fragments join into the tool's input.
  std::string args;
  for (int i = 2; i <= 4; ++i)
    args += delta_of(out[i]).at("tool_calls").at(0).at("function").at("arguments").as_string();
  EXPECT_EQ(json::parse(args), json::parse(R"({"city":"Paris"})"));
  EXPECT_EQ(json::parse(out[5]).at("choices").at(0).at("finish_reason"), "tool_calls");
  EXPECT_EQ(out[7], "[DONE]");
}

TEST(AnthropicStream, SecondToolGetsTheNextIndexAndThinkingIsDropped) {
  MessageStreamTranslator t(1);
  auto out = run(t, {kStart,
                     {"content_block_start", R"({"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}})"},
                     {"content_block_delta", R"({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"secret"}})"},
                     {"content_block_delta", R"({"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"sig"}})"},
                     {"content_block_stop", R"({"type":"content_block_stop","index":0})"},
                     {"content_block_start", R"({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"a","name":"f","input":{}}})"},
                     {"content_block_start", R"({"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"b","name":"g","input":{"x":1}}})"},
                     message_delta("tool_use", 9),
                     kStop});
  ASSERT_EQ(out.size(), 6u);
  for (const auto& p : out) EXPECT_EQ(p.find("secret"), std::string::npos) << p;
  EXPECT_EQ(delta_of(out[1]).at("tool_calls").at(0).at("index"), 0);
  EXPECT_EQ(delta_of(out[2]).at("tool_calls").at(0).at("index"), 1);
  // A server that sends the whole input at the start (no deltas): arguments carry it.
  EXPECT_EQ(delta_of(out[2]).at("tool_calls").at(0).at("function").at("arguments"), "{\"x\":1}");
}

TEST(AnthropicStream, ErrorMidStreamEndsWithAnOpenAIErrorAndNoDone) {
  MessageStreamTranslator t(1);
  auto out = run(t, {kStart,
                     {"content_block_start", R"({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})"},
                     {"content_block_delta", R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}})"},
                     {"error", R"({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})"},
                     {"content_block_delta", R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo"}})"},
                     kStop});
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(json::parse(out[2]), json::parse(R"({"error":{"message":"Overloaded","type":"server_error","param":null,
      "code":"overloaded_error"}})"));
  EXPECT_TRUE(t.ended());
}

// Recorded from llama.cpp's llama-server (random weights, greedy, max_tokens 6,
// "Count to three"): its output parser fails mid-stream and it says so in its
// own error shape, the error type where Anthropic repeats the event name.
TEST(AnthropicStream, LlamaServersErrorEventEndsTheStreamWithItsMessage) {
  MessageStreamTranslator t(1);
  auto out = run(t, {{"message_start", R"({"type":"message_start","message":{"id":"chatcmpl-x","type":"message","role":"assistant","content":[],"model":"/m/tiny-gpt2.gguf","stop_reason":null,"stop_sequence":null,"usage":{"cache_read_input_tokens":9,"input_tokens":21,"output_tokens":0}}})"},
                     {"content_block_start", R"({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})"},
                     {"content_block_delta", R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" Guinea"}})"},
                     {"error", R"({"code":500,"message":"The model produced output that does not match the expected peg-native format","type":"server_error"})"}});
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(json::parse(out[2]), json::parse(R"({"error":{"message":"The model produced output that does not match the expected peg-native format",
      "type":"server_error","param":null,"code":"server_error"}})"));
  EXPECT_EQ(t.usage().prompt_tokens, 30u);
  EXPECT_EQ(t.usage().cached_tokens, 9u);
  // Its non-streamed error body, with HTTP 500.
  TranslatedError e = openai_error(500, R"({"error":{"code":500,"message":"The model produced output that does not match the expected peg-native format","type":"server_error"}})");
  EXPECT_EQ(e.status, 500);
  EXPECT_EQ(json::parse(e.body).at("error").at("type"), "server_error");
}

TEST(AnthropicStream, AStreamCutShortOrMalformedEndsWithAnError) {
  {
    MessageStreamTranslator t(1);
    auto out = run(t, {kStart});
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(json::parse(out[1]).at("error").at("code"), "upstream_stream_truncated");
  }
  {
    MessageStreamTranslator t(1);
    auto out = run(t, {});
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(json::parse(out[0]).at("error").at("code"), "upstream_stream_truncated");
  }
  {
    MessageStreamTranslator t(1);
    auto out = run(t, {kStart, {"content_block_delta", "{not json"}, kStop});
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(json::parse(out[1]).at("error").at("code"), "upstream_bad_response");
  }
  {
    MessageStreamTranslator t(1);
    auto out = run(t, {kStart, {"content_block_start", R"({"type":"content_block_start","index":4096,"content_block":{"type":"text"}})"}});
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(json::parse(out[1]).at("error").at("code"), "upstream_bad_response");
  }
}

TEST(AnthropicStream, MessageDeltaUsageIsCumulativeAndMayRestateThePrompt) {
  MessageStreamTranslator t(1);
  auto out = run(t, {kStart,
                     {"message_delta", R"({"type":"message_delta","delta":{"stop_reason":"max_tokens"},
                         "usage":{"output_tokens":4,"input_tokens":30,"cache_read_input_tokens":100}})"},
                     kStop});
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(json::parse(out[1]).at("choices").at(0).at("finish_reason"), "length");
  EXPECT_EQ(json::parse(out[2]).at("usage"), json::parse(R"({"prompt_tokens":137,"completion_tokens":4,"total_tokens":141,
      "prompt_tokens_details":{"cached_tokens":100,"cache_creation_tokens":7}})"));
}

TEST(AnthropicStream, EventNamesWithoutTypesAndUnknownStopReasons) {
  MessageStreamTranslator t(1);
  auto out = run(t, {{"message_start", R"({"message":{"id":"m","model":"x","usage":{"input_tokens":2}}})"},
                     {"content_block_start", R"({"index":0,"content_block":{"type":"text","text":"Hi"}})"},
                     {"brand_new_event", R"({"type":"brand_new_event"})"},
                     {"message_delta", R"({"delta":{"stop_reason":"nap_time"},"usage":{"output_tokens":1}})"},
                     {"message_stop", "{}"}});
  ASSERT_EQ(out.size(), 5u);
  EXPECT_EQ(delta_of(out[1]), json::parse(R"({"content":"Hi"})"));
  EXPECT_EQ(json::parse(out[2]).at("choices").at(0).at("finish_reason"), "stop");
  EXPECT_EQ(t.unknown_stop_reason(), "nap_time");
  EXPECT_EQ(out[4], "[DONE]");
}

TEST(AnthropicStream, MessageStopWithoutMessageDeltaStillFinishes) {
  MessageStreamTranslator t(1);
  auto out = run(t, {kStart, kStop});
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(json::parse(out[1]).at("choices").at(0).at("finish_reason"), "stop");
  EXPECT_EQ(out[3], "[DONE]");
}

// ---- config ----------------------------------------------------------------------------

std::variant<Config, ConfigProblems> load(const std::string& deployment) {
  return load_config("orgs: [{ id: demo }]\ntenants: [{ id: t, org: demo }]\nmodels:\n  - alias: c\n    deployments:\n      - " +
                         deployment + "\n",
                     "t.yaml", [](const std::string& k) -> std::optional<std::string> {
                       if (k == "ANTHROPIC_KEY") return std::string("sk-ant-1");
                       return std::nullopt;
                     });
}

TEST(AnthropicConfig, DefaultsAndKeys) {
  auto r = load("{ id: a, provider: anthropic, model: claude-x, base_url: \"https://api.anthropic.com/v1\", api_key_env: ANTHROPIC_KEY }");
  ASSERT_TRUE(std::holds_alternative<Config>(r)) << std::get<ConfigProblems>(r).joined();
  const DeploymentConfig& d = std::get<Config>(r).models[0].deployments[0];
  EXPECT_EQ(d.provider, ProviderKind::kAnthropic);
  EXPECT_EQ(d.host, "api.anthropic.com");
  EXPECT_EQ(d.base_path, "/v1");
  EXPECT_EQ(d.api_key, "sk-ant-1");
  EXPECT_EQ(d.anthropic_version, "2023-06-01");
  EXPECT_FALSE(d.auth_bearer);
  EXPECT_EQ(d.default_max_tokens, 4096u);

  auto r2 = load("{ id: a, provider: anthropic, model: m, base_url: \"http://127.0.0.1:1/v1\", anthropic_version: \"2024-01-01\", "
                 "auth_header: authorization, default_max_tokens: 512 }");
  ASSERT_TRUE(std::holds_alternative<Config>(r2)) << std::get<ConfigProblems>(r2).joined();
  const DeploymentConfig& d2 = std::get<Config>(r2).models[0].deployments[0];
  EXPECT_EQ(d2.anthropic_version, "2024-01-01");
  EXPECT_TRUE(d2.auth_bearer);
  EXPECT_EQ(d2.default_max_tokens, 512u);
}

TEST(AnthropicConfig, ProblemsNameTheField) {
  const std::vector<std::pair<std::string, std::string>> table{
      {"{ id: a, provider: anthropic, model: m }", "base_url: is required"},
      {"{ id: a, provider: anthropic, base_url: \"http://h/v1\" }", "is required for provider 'anthropic'"},
      {"{ id: a, provider: anthropic, model: m, base_url: \"http://h/v1\", auth_header: bearer }", "unknown auth_header 'bearer'"},
      {"{ id: a, provider: anthropic, model: m, base_url: \"http://h/v1\", default_max_tokens: 0 }", "default_max_tokens: 0 is out of range"},
      {"{ id: a, provider: openai, model: m, base_url: \"http://h/v1\", anthropic_version: \"2023-06-01\" }", "only applies to provider 'anthropic'"},
      {"{ id: a, provider: anthropik, model: m, base_url: \"http://h/v1\" }", "anthropic — any Anthropic Messages endpoint"},
  };
  for (const auto& [dep, want] : table) {
    auto r = load(dep);
    ASSERT_TRUE(std::holds_alternative<ConfigProblems>(r)) << dep;
    const std::string all = std::get<ConfigProblems>(r).joined();
    EXPECT_NE(all.find(want), std::string::npos) << dep << "\n" << all;
  }
}

}  // namespace
}  // namespace tg::api::anthropic
