// ApiError is an error a client sees: an HTTP status plus the fields of
// OpenAI's error body {"error":{"message","type","param","code"}}.
// Expected<T> carries either a value or an ApiError; stages of the request
// path return it so that every rejection names its field, limit or scope.
// Plain values: copyable, no shared state, safe to use from any thread.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace tg {

struct ApiError {
  int status = 500;
  std::string type;     // OpenAI error type: invalid_request_error, authentication_error, ...
  std::string code;     // machine-readable: model_not_found, invalid_json, ...
  std::string message;  // what went wrong and what to do, for a human
  std::string param;    // the offending request field, empty when none
  int retry_after_s = -1;  // >= 0: sent as Retry-After
  std::string headers;     // more response header lines ("Name: value\r\n" each), e.g. rate-limit state
};

// Constructors for the error classes the gateway emits. Each REQUIRES a
// message that says what to do, not only what failed.
ApiError invalid_request(std::string message, std::string param = {},
                         std::string code = "invalid_request");
ApiError authentication_error(std::string message, std::string code = "invalid_api_key");
ApiError permission_error(std::string message, std::string code = "permission_denied");
ApiError not_found(std::string message, std::string code, std::string param = {});
ApiError upstream_error(int status, std::string message, std::string code);
ApiError server_error(std::string message, std::string code = "internal_error");

template <class T>
class Expected {
 public:
  Expected(T value) : v_(std::move(value)) {}          // NOLINT: implicit by design
  Expected(ApiError error) : v_(std::move(error)) {}   // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const ApiError& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, ApiError> v_;
};

}  // namespace tg
