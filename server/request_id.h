// Request ids: the ones the server makes (128 bits from the kernel's CSPRNG, hex-encoded, so that
// no client can guess another's id and Abort it) and the rules a client-chosen id must follow
// (printable ASCII, bounded length, so that ids are safe to log). Knows nothing of the scheduler.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace zigzag {

// Longest request_id a client may send.
inline constexpr size_t kMaxRequestIdLength = 128;

// 32 lowercase hex digits: 128 bits from getrandom(2). Internal when the kernel refuses, which
// only happens on kernels older than Linux 3.17.
absl::StatusOr<std::string> NewRequestId();

// InvalidArgument naming `field` unless `id` is 1 to kMaxRequestIdLength characters, each
// printable ASCII without space (0x21 to 0x7e). An empty id is left to the caller (Generate
// picks one; Abort refuses it).
absl::Status ValidateRequestId(std::string_view id, const char* field);

}  // namespace zigzag
