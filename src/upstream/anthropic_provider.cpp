#include "upstream/anthropic_provider.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <ctime>
#include <mutex>
#include <set>

#include "api/anthropic_wire.h"
#include "api/errors.h"
#include "core/text.h"

namespace tg::upstream {
namespace net = boost::asio;
namespace wire = api::anthropic;

namespace {

// An event stream, translated as it arrives.
class MessagesStream final : public StreamTranslation {
 public:
  explicit MessagesStream(std::int64_t created) : t_(created) {}
  void event(api::SseEvent& e, std::vector<std::string>& out) override { t_.feed(e.event, e.data, out); }
  void end(std::vector<std::string>& out) override { t_.finish(out); }
  const wire::MessageStreamTranslator& translator() const { return t_; }

 private:
  wire::MessageStreamTranslator t_;
};

}  // namespace

void note_unknown_stop_reason(const std::string& deployment, const std::string& stop_reason) {
  static std::mutex mu;
  static std::set<std::string> seen;
  constexpr std::size_t kMaxNoted = 16;
  std::lock_guard lock(mu);
  if (seen.size() > kMaxNoted || !seen.insert(stop_reason.substr(0, 64)).second) return;
  if (seen.size() > kMaxNoted) {
    spdlog::warn("anthropic: more than {} unknown stop_reason values; no longer logging them", kMaxNoted);
    return;
  }
  spdlog::warn("anthropic: deployment '{}' answered stop_reason '{}', which tenantgate does not know; "
               "reported to the client as finish_reason 'stop'", deployment, printable(stop_reason));
}

AnthropicProvider::AnthropicProvider(net::any_io_executor ex, const DeploymentConfig& d, net::ssl::context* tls,
                                     io::DeadlineSweeper& deadlines)
    : d_(d), pool_(ex, d, tls, deadlines), fixed_headers_(origin_headers(d)) {
  fixed_headers_ += fmt::format("anthropic-version: {}\r\n", d_.anthropic_version);
  if (!d_.api_key.empty())
    fixed_headers_ += d_.auth_bearer ? fmt::format("Authorization: Bearer {}\r\n", d_.api_key)
                                     : fmt::format("x-api-key: {}\r\n", d_.api_key);
}

net::awaitable<UpstreamReply> AnthropicProvider::send(const UpstreamRequest& r, StreamSink& sink) {
  if (!r.messages_body.empty()) {  // passed through: the body as it is, the answer as it is
    const std::string head = post_head(d_.base_path, "/messages", fixed_headers_, r.parsed->stream,
                                       r.messages_body.size(), r.request_id, r.traceparent);
    co_return co_await post(pool_, head, r.messages_body, r.parsed->stream, sink);
  }
  auto body = wire::messages_request(*r.parsed, d_.model, d_.default_max_tokens);
  if (!body) {
    // Never sent: the client's request has no Anthropic translation (400
    // naming the field), reported as the refusal it is, with no upstream status.
    UpstreamReply reply;
    reply.transport_error = body.error();
    co_return reply;
  }
  const bool stream = r.parsed->stream;
  const std::string head =
      post_head(d_.base_path, "/messages", fixed_headers_, stream, body->size(), r.request_id, r.traceparent);
  const std::int64_t created = static_cast<std::int64_t>(std::time(nullptr));
  MessagesStream translation(created);
  UpstreamReply reply = co_await post(pool_, head, *body, stream, sink, &translation);
  if (reply.streamed) {
    if (const std::string& s = translation.translator().unknown_stop_reason(); !s.empty())
      note_unknown_stop_reason(d_.id, s);
    co_return reply;
  }
  if (reply.transport_error) co_return reply;
  if (reply.status == 200) {
    std::string unknown;
    auto completion = wire::chat_completion(reply.body, created, &unknown);
    if (!unknown.empty()) note_unknown_stop_reason(d_.id, unknown);
    if (completion) {
      reply.body = std::move(*completion);
    } else {
      ApiError e = completion.error();
      e.message = fmt::format("upstream '{}': {}", d_.id, e.message);
      reply.transport_error = std::move(e);
    }
    co_return reply;
  }
  wire::TranslatedError e = wire::openai_error(reply.status, reply.body);
  reply.status = e.status;
  reply.body = std::move(e.body);
  co_return reply;
}

}  // namespace tg::upstream
