// Keep-alive connections to one upstream origin (scheme, host, port), owned
// by one worker thread. acquire() hands out an idle connection or dials a new
// one (connect timeout, TLS with SNI and certificate verification); a Lease
// returns its connection to the pool only when the exchange ended cleanly and
// the upstream allows keep-alive, otherwise the connection is closed. Not
// thread-safe: use from the owning thread's io_context only.
//
// post() is one HTTP POST over a pool with the policy every HTTP provider
// shares (OpenAIProvider, AnthropicProvider): read timeouts, one transparent
// retry when a reused keep-alive connection turns out to be dead before any
// response byte arrived (the request cannot have been processed), precise
// transport errors, cancellation, and streamed replies pushed to the sink as
// they arrive, optionally translated event by event.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <array>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "api/sse.h"
#include "core/config.h"
#include "io/deadlines.h"
#include "upstream/provider.h"

namespace tg::upstream {

struct Connection {
  using Plain = boost::beast::tcp_stream;
  using Tls = boost::beast::ssl_stream<boost::beast::tcp_stream>;
  std::variant<std::unique_ptr<Plain>, std::unique_ptr<Tls>> stream;
  boost::beast::flat_buffer buffer;  // bytes read past the last response stay here
  std::array<char, 16 * 1024> chunk;  // response body bytes, handed on as they arrive
  std::chrono::steady_clock::time_point idle_since;
  std::uint64_t uses = 0;
  std::unique_ptr<io::Deadline> deadline;  // on the lowest socket; declared after the stream

  boost::beast::tcp_stream& lowest();
};

class HttpPool {
 public:
  // REQUIRES: `d` outlives the pool; `tls` is non-null when d.scheme is https.
  HttpPool(boost::asio::any_io_executor ex, const DeploymentConfig& d, boost::asio::ssl::context* tls,
           io::DeadlineSweeper& deadlines);
  HttpPool(const HttpPool&) = delete;
  HttpPool& operator=(const HttpPool&) = delete;

  class Lease {
   public:
    Lease() = default;
    Lease(HttpPool* pool, std::unique_ptr<Connection> c, bool reused)
        : pool_(pool), conn_(std::move(c)), reused_(reused) {}
    Lease(Lease&&) = default;
    Lease& operator=(Lease&&) = default;
    ~Lease() = default;  // a connection not given back is closed with it
    Connection& operator*() { return *conn_; }
    Connection* operator->() { return conn_.get(); }
    bool reused() const { return reused_; }
    // Back to the pool for the next request (only after a complete exchange).
    void give_back();

   private:
    HttpPool* pool_ = nullptr;
    std::unique_ptr<Connection> conn_;
    bool reused_ = false;
  };

  // An idle connection, or a new one. Throws system_error on failure: the
  // caller maps it to a precise upstream error.
  boost::asio::awaitable<Lease> acquire(bool fresh_only = false);

  const DeploymentConfig& deployment() const { return d_; }
  std::size_t idle_count() const { return idle_.size(); }
  // The last dial() failed because connect_timeout passed.
  bool last_dial_timed_out() const { return last_dial_timed_out_; }
  std::uint64_t dialed() const { return dialed_; }

 private:
  boost::asio::awaitable<std::unique_ptr<Connection>> dial();
  void release(std::unique_ptr<Connection> c);

  boost::asio::any_io_executor ex_;
  const DeploymentConfig& d_;
  boost::asio::ssl::context* tls_;
  io::DeadlineSweeper& deadlines_;
  bool last_dial_timed_out_ = false;
  boost::asio::ip::tcp::resolver resolver_;
  std::vector<std::unique_ptr<Connection>> idle_;
  std::uint64_t dialed_ = 0;
  static constexpr std::chrono::seconds kMaxIdle{30};
};

// Turns a streamed reply's SSE events into the data payloads its sink gets
// (an upstream that speaks another protocol). One per reply.
class StreamTranslation {
 public:
  virtual ~StreamTranslation() = default;
  // One upstream event; appends the payloads to pass on to `out`.
  virtual void event(api::SseEvent& e, std::vector<std::string>& out) = 0;
  // The reply's body ended cleanly; appends any last payloads.
  virtual void end(std::vector<std::string>& out) = 0;
};

// The head of a POST to base_path + endpoint: `fixed_headers` ("Name:
// value\r\n" lines built once per deployment), Accept by `stream`,
// Content-Length, x-request-id, and a traceparent when given (dropped when
// over 512 bytes or holding CR/LF).
std::string post_head(std::string_view base_path, std::string_view endpoint, std::string_view fixed_headers,
                      bool stream, std::size_t body_bytes, std::string_view request_id, std::string_view traceparent);

// Host, User-Agent and Content-Type for the deployment's origin.
std::string origin_headers(const DeploymentConfig& d);

// Sends head + body over `pool` and reads the reply (see the top of this
// file). A 200 text/event-stream reply to a `want_stream` request goes to
// `sink` (open(), then each event's data, or what `translation` makes of the
// events); any other reply is returned whole (at most 64 MiB). Transport
// failures come back as transport_error, never thrown; a cancelled send
// (client gone) throws operation_aborted, and ClientGone passes through.
boost::asio::awaitable<UpstreamReply> post(HttpPool& pool, const std::string& head, const std::string& body,
                                           bool want_stream, StreamSink& sink,
                                           StreamTranslation* translation = nullptr);

}  // namespace tg::upstream
