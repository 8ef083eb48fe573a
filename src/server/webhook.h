// Webhook: fire-and-forget HTTP POSTs of JSON alerts (budget soft
// thresholds) to operator-configured http:// URLs. Sends run on the admin
// thread, never on a request worker, with a 5 s deadline each; failures are
// logged, never retried, never block or fail a request. Thread-safe.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <string>

namespace tg::server {

class Webhook {
 public:
  explicit Webhook(boost::asio::any_io_executor ex) : ex_(std::move(ex)) {}
  void post(std::string url, std::string json_body);

 private:
  boost::asio::any_io_executor ex_;
};

}  // namespace tg::server
