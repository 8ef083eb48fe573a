#include "sim/sim_provider.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>
#include <chrono>

namespace tg::sim {
namespace net = boost::asio;

std::atomic<std::uint64_t> SimProvider::cancelled_streams{0};

net::awaitable<upstream::UpstreamReply> SimProvider::send(const upstream::UpstreamRequest& req,
                                                          upstream::StreamSink& sink) {
  if (engine_) co_return co_await send_batched(req, sink);
  auto ex = co_await net::this_coro::executor;
  net::steady_timer timer(ex);
  const auto start = std::chrono::steady_clock::now();
  const std::int64_t created =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  const api::ParsedRequest& p = *req.parsed;
  upstream::UpstreamReply reply;
  reply.status = 200;

  if (p.endpoint == api::Endpoint::kEmbeddings) {
    timer.expires_at(start + model_.time_to_first_token(Responder::count_prompt_tokens(p)));
    co_await timer.async_wait(net::use_awaitable);
    reply.body = responder_.embeddings_body(p);
    co_return reply;
  }

  Generation g = responder_.generate(p);
  std::size_t longest = 0;
  for (const auto& c : g.choices) longest = std::max(longest, c.size());
  if (!p.stream) {
    timer.expires_at(start + model_.total(g.prompt_tokens, longest));
    co_await timer.async_wait(net::use_awaitable);
    reply.body = responder_.completion_body(p, g, req.request_id, created);
    co_return reply;
  }

  // Token i of every choice is due at ttft + i * itl (absolute, so no drift).
  const auto first = start + model_.time_to_first_token(g.prompt_tokens);
  const TokenReady token_ready = [&](std::size_t i) -> net::awaitable<void> {
    timer.expires_at(first + model_.inter_token() * static_cast<std::int64_t>(i));
    co_await timer.async_wait(net::use_awaitable);
  };
  co_await stream_out(req, g, created, sink, reply, token_ready);
  co_return reply;
}

net::awaitable<void> SimProvider::stream_out(const upstream::UpstreamRequest& req, const Generation& g,
                                            std::int64_t created, upstream::StreamSink& sink,
                                            upstream::UpstreamReply& reply, const TokenReady& token_ready) {
  const api::ParsedRequest& p = *req.parsed;
  std::vector<std::string> chunks = responder_.stream_chunks(p, g, req.request_id, created);
  const std::size_t n_choices = g.choices.size();
  std::size_t longest = 0;
  for (const auto& c : g.choices) longest = std::max(longest, c.size());
  const std::size_t lead = p.endpoint == api::Endpoint::kChatCompletions ? n_choices : 0;  // role chunks
  try {
    co_await token_ready(0);
    co_await sink.open();
    reply.streamed = true;
    std::size_t k = 0;
    for (; k < lead; ++k) co_await sink.event(chunks[k]);  // with the first token
    for (std::size_t i = 0; i < longest; ++i) {
      if (i > 0) co_await token_ready(i);
      for (std::size_t c = 0; c < n_choices; ++c)
        if (i < g.choices[c].size()) co_await sink.event(chunks[k++]);
    }
    for (; k < chunks.size(); ++k) co_await sink.event(chunks[k]);
    co_await sink.event("[DONE]");
  } catch (const boost::system::system_error& e) {
    if (e.code() == net::error::operation_aborted) cancelled_streams.fetch_add(1, std::memory_order_relaxed);
    throw;
  }
}

namespace {

// One request's view of the shared engine, touched only on its worker
// thread: the engine thread posts each step's event here and wakes the
// request's coroutine by cancelling its timer.
struct Progress {
  explicit Progress(const net::any_io_executor& ex) : wake(ex) {}
  net::steady_timer wake;
  std::int64_t tokens = 0;
  bool finished = false;
};

// Removes the request from the engine on every early exit (client gone,
// a write failed), so its KV is freed at once.
struct EngineTicket {
  EngineHost& host;
  std::uint64_t id = 0;
  bool done = false;
  ~EngineTicket() {
    if (!done && id) host.cancel(id);
  }
};

}  // namespace

net::awaitable<upstream::UpstreamReply> SimProvider::send_batched(const upstream::UpstreamRequest& req,
                                                                  upstream::StreamSink& sink) {
  auto ex = co_await net::this_coro::executor;
  const std::int64_t created =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  const api::ParsedRequest& p = *req.parsed;
  upstream::UpstreamReply reply;
  reply.status = 200;
  const bool embeddings = p.endpoint == api::Endpoint::kEmbeddings;
  Generation g;
  std::size_t longest = 0;
  std::int64_t prompt_tokens = 0;
  if (embeddings) {
    prompt_tokens = static_cast<std::int64_t>(Responder::count_prompt_tokens(p));
  } else {
    g = responder_.generate(p);
    for (const auto& c : g.choices) longest = std::max(longest, c.size());
    prompt_tokens = static_cast<std::int64_t>(g.prompt_tokens);
  }
  // An embedding is a prefill whose one sampled token is thrown away.
  const std::int64_t output = embeddings ? 1 : std::max<std::int64_t>(1, static_cast<std::int64_t>(longest));

  auto progress = std::make_shared<Progress>(ex);
  EngineTicket ticket{*engine_};
  ticket.id = engine_->submit(prompt_tokens, output, [progress, ex](const TokenEvent& ev) {
    net::post(ex, [progress, ev] {
      progress->tokens += ev.tokens;
      progress->finished = progress->finished || ev.finished;
      progress->wake.cancel();
    });
  });
  // Waits until the engine has produced more than `seen` tokens (or finished).
  auto wait_past = [&](std::int64_t seen) -> net::awaitable<void> {
    while (!progress->finished && progress->tokens <= seen) {
      progress->wake.expires_at(net::steady_timer::time_point::max());
      co_await progress->wake.async_wait(net::as_tuple(net::use_awaitable));
      auto cs = co_await net::this_coro::cancellation_state;
      if (cs.cancelled() != net::cancellation_type::none)
        throw boost::system::system_error(net::error::operation_aborted);
    }
  };
  if (embeddings || !p.stream) {
    while (!progress->finished) co_await wait_past(progress->tokens);
    ticket.done = true;
    reply.body = embeddings ? responder_.embeddings_body(p) : responder_.completion_body(p, g, req.request_id, created);
    co_return reply;
  }
  const TokenReady token_ready = [&](std::size_t i) -> net::awaitable<void> {
    if (static_cast<std::int64_t>(i) >= progress->tokens) co_await wait_past(static_cast<std::int64_t>(i));
  };
  co_await stream_out(req, g, created, sink, reply, token_ready);
  ticket.done = progress->finished;
  co_return reply;
}

}  // namespace tg::sim
