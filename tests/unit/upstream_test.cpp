// OpenAIProvider against a scripted loopback HTTP/1.1 upstream on the same
// io_context: the exact request the gateway sends, replies passed back as
// they came (whole, as an error, or event by event), transport failures
// mapped to precise errors, the one transparent retry of a dead pooled
// connection, and cancellation that leaves no connection behind.
#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/parse.hpp>
#include <fmt/format.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/request.h"
#include "io/deadlines.h"
#include "upstream/openai_provider.h"

namespace tg::upstream {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

using Request = http::request<http::string_body>;

// What the scripted upstream does with one request on a connection; it
// returns whether to keep the connection for another request.
using Script = std::function<net::awaitable<bool>(tcp::socket&, const Request&)>;

// A loopback upstream: accepts connections, reads requests with Beast,
// records them, and answers each with the script. Lives on the test's
// io_context; its state is shared with its coroutines, which may outlive it.
struct FakeUpstream {
  struct State {
    explicit State(net::io_context& ioc) : acceptor(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0)) {}
    tcp::acceptor acceptor;
    Script script;
    std::vector<Request> requests;
    int connections = 0;
    int closed_by_gateway = 0;  // connections the gateway closed while a request was open (answer_nothing)
  };
  std::shared_ptr<State> st;

  explicit FakeUpstream(net::io_context& ioc) : st(std::make_shared<State>(ioc)) {
    net::co_spawn(ioc, accept_loop(st), net::detached);
  }
  ~FakeUpstream() {
    boost::system::error_code ec;
    st->acceptor.close(ec);
  }
  std::uint16_t port() const { return st->acceptor.local_endpoint().port(); }

  static net::awaitable<void> accept_loop(std::shared_ptr<State> st) {
    for (;;) {
      auto [ec, sock] = co_await st->acceptor.async_accept(net::as_tuple(net::use_awaitable));
      if (ec) co_return;
      ++st->connections;
      net::co_spawn(st->acceptor.get_executor(), serve(st, std::move(sock)), net::detached);
    }
  }

  static net::awaitable<void> serve(std::shared_ptr<State> st, tcp::socket sock) {
    beast::flat_buffer buf;
    for (;;) {
      Request req;
      auto [ec, n] = co_await http::async_read(sock, buf, req, net::as_tuple(net::use_awaitable));
      if (ec) co_return;
      st->requests.push_back(req);
      bool keep = false;
      Script script = st->script;  // a test may replace it while this one runs
      try {
        keep = co_await script(sock, st->requests.back());
      } catch (const std::exception&) {
        keep = false;
      }
      if (!keep) {
        boost::system::error_code ignored;
        sock.shutdown(tcp::socket::shutdown_both, ignored);
        sock.close(ignored);
        co_return;
      }
    }
  }
};

// (Callers pass named strings: GCC 12 mishandles temporaries inside co_await.)
net::awaitable<void> write(tcp::socket& s, const std::string& bytes) {
  co_await net::async_write(s, net::buffer(bytes), net::use_awaitable);
}

net::awaitable<void> sleep_for(std::chrono::milliseconds d) {
  net::steady_timer t(co_await net::this_coro::executor);
  t.expires_after(d);
  co_await t.async_wait(net::use_awaitable);
}

// A complete response with a Content-Length body; keep-alive.
Script reply(int status, std::string content_type, std::string body) {
  return [=](tcp::socket& s, const Request&) -> net::awaitable<bool> {
    const std::string response = fmt::format("HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n{}",
                                             status, content_type, body.size(), body);
    co_await write(s, response);
    co_return true;
  };
}

// Reads until the gateway closes the connection, answering nothing, and
// counts the close in `closed`.
net::awaitable<bool> answer_nothing(tcp::socket& s, int& closed) {
  char c[64];
  for (;;) {
    auto [ec, n] = co_await s.async_read_some(net::buffer(c), net::as_tuple(net::use_awaitable));
    if (ec) {
      ++closed;
      co_return false;
    }
  }
}

std::string chunk(std::string_view data) { return fmt::format("{:x}\r\n{}\r\n", data.size(), data); }

const std::string kStreamHead = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
const std::string kLastChunk = "0\r\n\r\n";
const std::string kFirstEvent = chunk("data: {\"n\":1}\n\n");
const std::string kEmptyObject = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";

struct RecordingSink final : StreamSink {
  int opens = 0;
  int events_before_open = 0;
  std::vector<std::string> events;
  net::awaitable<void> open() override {
    ++opens;
    co_return;
  }
  net::awaitable<void> event(std::string_view data) override {
    if (opens == 0) ++events_before_open;
    events.emplace_back(data);
    co_return;
  }
};

// The outcome of one send(), filled in by its completion handler.
struct Outcome {
  bool done = false;
  std::optional<UpstreamReply> reply;
  std::exception_ptr error;
};

class OpenAIProviderTest : public ::testing::Test {
 protected:
  OpenAIProviderTest() : sweeper(ioc.get_executor()), upstream(ioc) {
    sweeper.start();
    d.id = "up";
    d.provider = ProviderKind::kOpenAI;
    d.model = "upstream-model-v2";
    d.scheme = "http";
    d.host = "127.0.0.1";
    d.port = upstream.port();
    d.base_path = "/v1";
    d.api_key = "sk-upstream-secret";
    d.connect_timeout = 300ms;
    d.read_timeout = 200ms;
  }
  ~OpenAIProviderTest() override {
    sweeper.stop();
    ioc.stop();
  }

  OpenAIProvider& provider() {
    if (!provider_) provider_ = std::make_unique<OpenAIProvider>(ioc.get_executor(), d, nullptr, sweeper);
    return *provider_;
  }

  api::ParsedRequest parse(std::string_view body) {
    auto r = api::parse_request(api::Endpoint::kChatCompletions, body);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? *r : api::ParsedRequest{};
  }

  // Starts send(); the outcome fills in as the io_context runs.
  std::shared_ptr<Outcome> start(const UpstreamRequest& r, StreamSink& sink,
                                 net::cancellation_slot slot = net::cancellation_slot()) {
    auto out = std::make_shared<Outcome>();
    net::co_spawn(ioc, provider().send(r, sink),
                  net::bind_cancellation_slot(slot, [out](std::exception_ptr e, UpstreamReply reply) {
                    out->done = true;
                    out->error = e;
                    if (!e) out->reply = std::move(reply);
                  }));
    return out;
  }

  // Runs the io_context until `pred` holds; false after `limit`.
  bool run_until(const std::function<bool()>& pred, std::chrono::milliseconds limit = 900ms) {
    const auto end = Clock::now() + limit;
    while (!pred()) {
      if (Clock::now() > end) return false;
      if (ioc.stopped()) ioc.restart();
      ioc.run_one_for(5ms);
    }
    return true;
  }

  UpstreamReply send(const UpstreamRequest& r, StreamSink& sink) {
    auto out = start(r, sink);
    EXPECT_TRUE(run_until([&] { return out->done; })) << "send() did not complete";
    if (out->error) {
      try {
        std::rethrow_exception(out->error);
      } catch (const std::exception& e) {
        ADD_FAILURE() << "send() threw: " << e.what();
      }
    }
    return out->reply.value_or(UpstreamReply{});
  }

  net::io_context ioc;
  io::DeadlineSweeper sweeper;
  FakeUpstream upstream;
  DeploymentConfig d;
  std::unique_ptr<OpenAIProvider> provider_;
};

const char* kChat = R"({"model":"alias-chat","messages":[{"role":"user","content":"Say hi"}],"max_tokens":5,)"
                    R"("x_vendor_field":{"kept":true}})";

TEST_F(OpenAIProviderTest, SendsExactlyTheRequestTheDeploymentDescribes) {
  upstream.st->script = reply(200, "application/json", R"({"id":"c1","object":"chat.completion"})");
  api::ParsedRequest p = parse(kChat);
  UpstreamRequest r{&p, "req_0123456789abcdefghij", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"};
  RecordingSink sink;
  send(r, sink);

  ASSERT_EQ(upstream.st->requests.size(), 1u);
  const Request& got = upstream.st->requests[0];
  EXPECT_EQ(got.method(), http::verb::post);
  EXPECT_EQ(got.target(), "/v1/chat/completions");
  EXPECT_EQ(got.version(), 11);
  EXPECT_EQ(got[http::field::host], fmt::format("127.0.0.1:{}", d.port));
  EXPECT_EQ(got[http::field::authorization], "Bearer sk-upstream-secret");
  EXPECT_EQ(got[http::field::content_type], "application/json");
  EXPECT_EQ(got[http::field::accept], "application/json");
  EXPECT_EQ(got[http::field::content_length], std::to_string(got.body().size()));
  EXPECT_EQ(got.count(http::field::transfer_encoding), 0u);
  EXPECT_EQ(got["x-request-id"], "req_0123456789abcdefghij");
  EXPECT_EQ(got["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");

  const json::object body = json::parse(got.body()).as_object();
  EXPECT_EQ(body.at("model"), "upstream-model-v2") << "the alias is rewritten to the deployment's model";
  EXPECT_EQ(body.at("messages"), json::parse(R"([{"role":"user","content":"Say hi"}])"));
  EXPECT_EQ(body.at("max_tokens"), 5);
  EXPECT_EQ(body.at("x_vendor_field"), json::parse(R"({"kept":true})")) << "unknown fields are forwarded";
  EXPECT_FALSE(body.contains("stream_options"));
  EXPECT_FALSE(body.contains("stream"));
}

TEST_F(OpenAIProviderTest, NoAuthorizationWithoutAKeyAndNoTraceparentThatCouldSplitTheHead) {
  d.api_key.clear();
  upstream.st->script = reply(200, "application/json", "{}");
  api::ParsedRequest p = parse(kChat);
  UpstreamRequest r{&p, "req_1", "00-abc\r\nx-injected: yes"};
  RecordingSink sink;
  send(r, sink);
  ASSERT_EQ(upstream.st->requests.size(), 1u);
  const Request& got = upstream.st->requests[0];
  EXPECT_EQ(got.count(http::field::authorization), 0u);
  EXPECT_EQ(got.count("traceparent"), 0u);
  EXPECT_EQ(got.count("x-injected"), 0u);
  UpstreamRequest plain{&p, "req_2", ""};
  send(plain, sink);
  ASSERT_EQ(upstream.st->requests.size(), 2u);
  EXPECT_EQ(upstream.st->requests[1].count("traceparent"), 0u);
}

TEST_F(OpenAIProviderTest, AStreamForcesUsageOnAndAsksForEvents) {
  upstream.st->script = reply(200, "text/event-stream", "data: [DONE]\n\n");
  api::ParsedRequest p = parse(R"({"model":"alias-chat","messages":[{"role":"user","content":"hi"}],"stream":true,)"
                               R"("stream_options":{"include_usage":false}})");
  UpstreamRequest r{&p, "req_s", ""};
  RecordingSink sink;
  send(r, sink);
  ASSERT_EQ(upstream.st->requests.size(), 1u);
  const Request& got = upstream.st->requests[0];
  EXPECT_EQ(got[http::field::accept], "text/event-stream");
  const json::object body = json::parse(got.body()).as_object();
  EXPECT_EQ(body.at("model"), "upstream-model-v2");
  EXPECT_EQ(body.at("stream"), true);
  EXPECT_EQ(body.at("stream_options"), json::parse(R"({"include_usage":true})"))
      << "the gateway must always learn the real usage";
}

TEST_F(OpenAIProviderTest, APlainReplyIsReturnedWholeAndItsConnectionPooled) {
  const std::string answer = R"({"id":"c1","object":"chat.completion","choices":[]})";
  upstream.st->script = reply(200, "application/json", answer);
  api::ParsedRequest p = parse(kChat);
  UpstreamRequest r{&p, "req_1", ""};
  RecordingSink sink;
  UpstreamReply got = send(r, sink);
  EXPECT_EQ(got.status, 200);
  EXPECT_EQ(got.body, answer);
  EXPECT_FALSE(got.streamed);
  EXPECT_FALSE(got.transport_error);
  EXPECT_EQ(sink.opens, 0);
  EXPECT_EQ(provider().pool().idle_count(), 1u);
  // The next request reuses it.
  got = send(r, sink);
  EXPECT_EQ(got.body, answer);
  EXPECT_EQ(upstream.st->connections, 1);
  EXPECT_EQ(provider().pool().dialed(), 1u);
}

TEST_F(OpenAIProviderTest, AnErrorReplyIsPassedBackWithItsStatusAndBodyEvenForAStream) {
  const std::string error = R"({"error":{"message":"slow down","type":"rate_limit_error","code":"rate_limited"}})";
  upstream.st->script = reply(429, "application/json", error);
  api::ParsedRequest p = parse(kChat);
  UpstreamRequest r{&p, "req_1", ""};
  RecordingSink sink;
  UpstreamReply got = send(r, sink);
  EXPECT_EQ(got.status, 429);
  EXPECT_EQ(got.body, error);
  EXPECT_FALSE(got.transport_error);

  // A stream refused before it began is an error body, never events.
  upstream.st->script = reply(503, "application/json", error);
  api::ParsedRequest s = parse(R"({"model":"alias-chat","messages":[{"role":"user","content":"hi"}],"stream":true})");
  UpstreamRequest rs{&s, "req_2", ""};
  got = send(rs, sink);
  EXPECT_EQ(got.status, 503);
  EXPECT_EQ(got.body, error);
  EXPECT_FALSE(got.streamed);
  EXPECT_EQ(sink.opens, 0);
  EXPECT_TRUE(sink.events.empty());
}

TEST_F(OpenAIProviderTest, AStreamReachesTheSinkEventByEventEndingWithDone) {
  // The upstream sends each event only after the sink has the one before:
  // a provider that buffered the reply would stall it.
  RecordingSink sink;
  bool stalled = false;
  const std::vector<std::string> events{R"({"choices":[{"delta":{"content":"Hel"}}]})",
                                        R"({"choices":[{"delta":{"content":"lo"}}]})",
                                        R"({"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}})", "[DONE]"};
  upstream.st->script = [&](tcp::socket& s, const Request&) -> net::awaitable<bool> {
    co_await write(s, kStreamHead);
    for (std::size_t i = 0; i < events.size(); ++i) {
      // One event split over two chunks, to be reassembled by the parser.
      const std::string frame = "data: " + events[i] + "\n\n";
      const std::string first = chunk(frame.substr(0, frame.size() / 2)), second = chunk(frame.substr(frame.size() / 2));
      co_await write(s, first);
      co_await write(s, second);
      const auto end = Clock::now() + 500ms;
      while (sink.events.size() < i + 1 && Clock::now() < end) co_await sleep_for(2ms);
      if (sink.events.size() < i + 1) stalled = true;
    }
    co_await write(s, kLastChunk);
    co_return true;
  };
  api::ParsedRequest p = parse(R"({"model":"alias-chat","messages":[{"role":"user","content":"hi"}],"stream":true})");
  UpstreamRequest r{&p, "req_1", ""};
  UpstreamReply got = send(r, sink);
  // A provider that holds events back until more of the reply arrives
  // stalls this upstream until the read timeout ends the exchange.
  EXPECT_FALSE(got.transport_error) << "events held back: " << sink.events.size() << " of " << events.size()
                                    << " delivered, then: " << got.transport_error->message;
  EXPECT_FALSE(stalled) << "an event was held back until more of the reply arrived";
  EXPECT_EQ(got.status, 200);
  EXPECT_TRUE(got.streamed);
  EXPECT_TRUE(got.body.empty());
  EXPECT_EQ(sink.opens, 1);
  EXPECT_EQ(sink.events_before_open, 0);
  EXPECT_EQ(sink.events, events);
  EXPECT_EQ(provider().pool().idle_count(), 1u) << "a complete chunked stream leaves a reusable connection";
}

TEST_F(OpenAIProviderTest, TheReadTimeoutIsSilenceNotTheLengthOfAStream) {
  // An event every 60 ms for 480 ms, with a read timeout of 200 ms: the
  // upstream is never silent that long, so the stream must not time out.
  upstream.st->script = [](tcp::socket& s, const Request&) -> net::awaitable<bool> {
    co_await write(s, kStreamHead);
    for (int i = 0; i < 8; ++i) {
      co_await write(s, kFirstEvent);
      co_await sleep_for(60ms);
    }
    const std::string done = chunk("data: [DONE]\n\n");
    co_await write(s, done);
    co_await write(s, kLastChunk);
    co_return true;
  };
  api::ParsedRequest p = parse(R"({"model":"alias-chat","messages":[{"role":"user","content":"hi"}],"stream":true})");
  UpstreamRequest r{&p, "req_1", ""};
  RecordingSink sink;
  UpstreamReply got = send(r, sink);
  EXPECT_FALSE(got.transport_error) << got.transport_error->message;
  EXPECT_EQ(sink.events.size(), 9u);
}

TEST_F(OpenAIProviderTest, ARefusedConnectionIsATransportError) {
  std::uint16_t dead_port;
  {
    tcp::acceptor a(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
    dead_port = a.local_endpoint().port();
  }  // closed: nothing listens there now
  d.port = dead_port;
  api::ParsedRequest p = parse(kChat);
  UpstreamRequest r{&p, "req_1", ""};
  RecordingSink sink;
  UpstreamReply got = send(r, sink);
  EXPECT_EQ(got.status, 0);
  ASSERT_TRUE(got.transport_error);
  EXPECT_EQ(got.transport_error->status, 502);
  EXPECT_EQ(got.transport_error->code, "upstream_unavailable");
  EXPECT_NE(got.transport_error->message.find(fmt::format("upstream 'up' (http://127.0.0.1:{}) is unreachable", dead_port)),
            std::string::npos)
      << got.transport_error->message;
}

TEST_F(OpenAIProviderTest, SilenceLongerThanTheReadTimeoutIsATransportErrorAndTheConnectionIsClosed) {
  upstream.st->script = [st = upstream.st.get()](tcp::socket& s, const Request&) -> net::awaitable<bool> {
    const bool keep = co_await answer_nothing(s, st->closed_by_gateway);
    co_return keep;
  };
  api::ParsedRequest p = parse(kChat);
  UpstreamRequest r{&p, "req_1", ""};
  RecordingSink sink;
  const auto t0 = Clock::now();
  UpstreamReply got = send(r, sink);
  const auto took = Clock::now() - t0;
  EXPECT_EQ(got.status, 0);
  ASSERT_TRUE(got.transport_error);
  EXPECT_EQ(got.transport_error->status, 504);
  EXPECT_EQ(got.transport_error->code, "upstream_timeout");
  EXPECT_NE(got.transport_error->message.find("sent nothing for 200 ms (read timeout)"), std::string::npos)
      << got.transport_error->message;
  EXPECT_GE(took, 200ms);
  EXPECT_LT(took, 600ms);
  EXPECT_EQ(provider().pool().idle_count(), 0u);
  EXPECT_TRUE(run_until([&] { return upstream.st->closed_by_gateway == 1; }))
      << "the timed-out connection stays open: " << upstream.st->connections << " connection(s), "
      << upstream.st->closed_by_gateway << " closed";
  EXPECT_EQ(upstream.st->requests.size(), 1u) << "a request that may have been processed is never retried";
}

TEST_F(OpenAIProviderTest, ADeadPooledConnectionIsRetriedOnceOnAFreshOne) {
  // The first exchange ends cleanly with keep-alive; then the upstream drops
  // the idle connection (as servers do at their idle timeout).
  upstream.st->script = [](tcp::socket& s, const Request&) -> net::awaitable<bool> {
    co_await write(s, kEmptyObject);
    co_return false;  // close after answering, without saying so
  };
  api::ParsedRequest p = parse(kChat);
  UpstreamRequest r{&p, "req_1", ""};
  RecordingSink sink;
  UpstreamReply got = send(r, sink);
  ASSERT_EQ(got.status, 200);
  ASSERT_EQ(provider().pool().idle_count(), 1u);
  ASSERT_TRUE(run_until([&] { return upstream.st->requests.size() == 1 && upstream.st->connections == 1; }));
  // Let the upstream's FIN arrive before the pooled connection is reused.
  run_until([] { return false; }, 30ms);

  upstream.st->script = reply(200, "application/json", R"({"second":true})");
  got = send(r, sink);
  EXPECT_EQ(got.status, 200);
  EXPECT_EQ(got.body, R"({"second":true})");
  EXPECT_FALSE(got.transport_error);
  EXPECT_EQ(provider().pool().dialed(), 2u);
  EXPECT_EQ(upstream.st->connections, 2);
  EXPECT_EQ(upstream.st->requests.size(), 2u) << "the retry sends the request once more, not twice";
}

TEST_F(OpenAIProviderTest, ACancelledStreamThrowsOperationAbortedAndItsConnectionIsNotPooled) {
  RecordingSink sink;
  bool first_sent = false;
  upstream.st->script = [&first_sent, st = upstream.st.get()](tcp::socket& s, const Request&) -> net::awaitable<bool> {
    co_await write(s, kStreamHead);
    co_await write(s, kFirstEvent);
    first_sent = true;
    const bool keep = co_await answer_nothing(s, st->closed_by_gateway);  // then silence, until the gateway hangs up
    co_return keep;
  };
  d.read_timeout = 5000ms;  // only the cancellation can end this exchange in time
  api::ParsedRequest p = parse(R"({"model":"alias-chat","messages":[{"role":"user","content":"hi"}],"stream":true})");
  UpstreamRequest r{&p, "req_1", ""};
  net::cancellation_signal cancel;
  auto out = start(r, sink, cancel.slot());
  // Mid-stream: the head and an event are on the wire (whether the event has
  // reached the sink yet is the streaming test's business).
  ASSERT_TRUE(run_until([&] { return first_sent; }));
  run_until([] { return false; }, 20ms);
  ASSERT_FALSE(out->done);
  EXPECT_EQ(sink.opens, 1);
  cancel.emit(net::cancellation_type::terminal);  // the client went away
  ASSERT_TRUE(run_until([&] { return out->done; }));
  ASSERT_TRUE(out->error) << "a cancelled send() must throw, not return a reply";
  try {
    std::rethrow_exception(out->error);
  } catch (const boost::system::system_error& e) {
    EXPECT_EQ(e.code(), net::error::operation_aborted) << e.code().message();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "unexpected exception: " << e.what();
  }
  EXPECT_EQ(provider().pool().idle_count(), 0u);
  EXPECT_TRUE(run_until([&] { return upstream.st->closed_by_gateway == 1; }, 500ms))
      << "the cancelled exchange's connection was not closed";
}

}  // namespace
}  // namespace tg::upstream
