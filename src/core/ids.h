// Request ids: unique per process run and sortable by creation, 24 chars
// ("req_" + 20 lowercase base32 of time and a counter). Thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace tg {

std::string new_request_id();

// True when `s` is acceptable as a caller-supplied identifier (user ids,
// run ids, feature tags): 1..128 chars of [A-Za-z0-9._:@/-].
bool is_valid_external_id(std::string_view s);

}  // namespace tg
