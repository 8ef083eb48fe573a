#include "core/error.h"

namespace tg {

ApiError invalid_request(std::string message, std::string param, std::string code) {
  return {400, "invalid_request_error", std::move(code), std::move(message), std::move(param)};
}
ApiError authentication_error(std::string message, std::string code) {
  return {401, "authentication_error", std::move(code), std::move(message), {}};
}
ApiError permission_error(std::string message, std::string code) {
  return {403, "permission_error", std::move(code), std::move(message), {}};
}
ApiError not_found(std::string message, std::string code, std::string param) {
  return {404, "invalid_request_error", std::move(code), std::move(message), std::move(param)};
}
ApiError upstream_error(int status, std::string message, std::string code) {
  return {status, "upstream_error", std::move(code), std::move(message), {}};
}
ApiError server_error(std::string message, std::string code) {
  return {500, "server_error", std::move(code), std::move(message), {}};
}

}  // namespace tg
