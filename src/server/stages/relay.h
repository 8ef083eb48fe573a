// relay: the upstream call. Sends the request to the routed deployment and,
// for a streamed reply, relays it to the client event by event as it
// arrives (never buffered whole), in the door's dialect: the response head
// goes out when the upstream accepts the stream; each event's usage, text
// and (for the cache) capture are learnt on the way; the stream's end is
// left to the path, which settles first. A non-streamed reply is returned
// whole. With a passed-through dialect, `messages_body` goes upstream as it
// is and the answer comes back as it is (usage learnt from its events). Throws upstream::ClientGone or system_error(operation_aborted)
// when the client leaves (the upstream call is then cancelled). Per worker.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <string>

#include "api/request.h"
#include "server/door.h"
#include "server/exchange.h"
#include "server/responder.h"
#include "upstream/provider.h"

namespace tg::server::stages {

class Relay {
 public:
  boost::asio::awaitable<upstream::UpstreamReply> run(Responder& out, Exchange& x, upstream::Provider& provider,
                                                      const api::ParsedRequest& r, const std::string& traceparent,
                                                      Dialect& dialect, const std::string& messages_body = {}) const;
};

// An Anthropic Messages request body as it goes to a Messages upstream:
// the client's, with `model` set to the deployment's and metadata.user_id to
// the attributed end user (when it claimed one). `body` was validated by the
// parse stage.
std::string messages_body_for(std::string_view body, const std::string& upstream_model, const std::string& user);

// The client's view of an upstream's non-2xx answer: an upstream that
// rejects the gateway's credentials is the operator's problem (502
// upstream_auth_error), any 5xx is a 502; other errors pass as they are.
ApiError upstream_status_error(int status, const std::string& body, const std::string& deployment);

}  // namespace tg::server::stages
