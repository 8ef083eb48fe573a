// Responder: how the request path writes its answer on the client's
// connection. server::Session implements it; stage tests use a recording
// fake. It only writes bytes: settling is the path's own explicit step
// (server/request_path.cpp), taken before the last bytes are written.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <string>
#include <string_view>

#include "server/exchange.h"

namespace tg::server {

class Responder {
 public:
  virtual ~Responder() = default;
  // One whole response: status line, Content-Type, x-request-id,
  // Content-Length, Connection, x.extra_headers, `extra_headers` ("Name:
  // value\r\n" lines), body. Sets x.status. A failed write sets x.client_gone.
  // Arguments are lvalues on purpose: GCC 12 may destroy temporaries inside a
  // co_await expression twice.
  virtual boost::asio::awaitable<void> send(Exchange& x, int status, std::string_view content_type,
                                            const std::string& body, const std::string& extra_headers) = 0;
  // A chunked text/event-stream response: head (status 200), chunks, end.
  // Write failures throw upstream::ClientGone.
  virtual boost::asio::awaitable<void> begin_stream(Exchange& x) = 0;
  virtual boost::asio::awaitable<void> stream_chunk(Exchange& x, std::string_view bytes) = 0;
  virtual boost::asio::awaitable<void> end_stream(Exchange& x) = 0;
  // While a request waits (queue, upstream): a client that closes its
  // connection cancels (terminal) what the request coroutine awaits.
  virtual void watch_disconnect() = 0;
  virtual void stop_watching() = 0;
  // The connection closes after this response.
  virtual void close_after_response() = 0;
  // Scratch memory for one request's JSON (requests on a connection are sequential).
  virtual unsigned char* json_arena() = 0;
  static constexpr std::size_t kJsonArenaBytes = 16 * 1024;
};

}  // namespace tg::server
