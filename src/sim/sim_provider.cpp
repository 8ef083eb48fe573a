#include "sim/sim_provider.h"

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

  std::vector<std::string> chunks = responder_.stream_chunks(p, g, req.request_id, created);
  const std::size_t n_choices = g.choices.size();
  const bool chat = p.endpoint == api::Endpoint::kChatCompletions;
  const std::size_t lead = chat ? n_choices : 0;  // role chunks go out with the first token
  try {
    timer.expires_at(start + model_.time_to_first_token(g.prompt_tokens));
    co_await timer.async_wait(net::use_awaitable);
    co_await sink.open();
    reply.streamed = true;
    // Token i of every choice is due at ttft + i * itl (absolute, so no drift).
    std::size_t k = 0;
    for (; k < lead; ++k) co_await sink.event(chunks[k]);
    for (std::size_t i = 0; i < longest; ++i) {
      if (i > 0) {
        timer.expires_at(start + model_.time_to_first_token(g.prompt_tokens) +
                         model_.inter_token() * static_cast<std::int64_t>(i));
        co_await timer.async_wait(net::use_awaitable);
      }
      for (std::size_t c = 0; c < n_choices; ++c)
        if (i < g.choices[c].size()) co_await sink.event(chunks[k++]);
    }
    for (; k < chunks.size(); ++k) co_await sink.event(chunks[k]);
    co_await sink.event("[DONE]");
  } catch (const boost::system::system_error& e) {
    if (e.code() == net::error::operation_aborted) cancelled_streams.fetch_add(1, std::memory_order_relaxed);
    throw;
  }
  co_return reply;
}

}  // namespace tg::sim
