// The process's open-file limit (RLIMIT_NOFILE): raising the soft limit to the hard one at
// start-up, since every gRPC connection holds a descriptor and gRPC's own listener stops for good
// when accept() runs out of them. Knows nothing of gRPC.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"

namespace zigzag {

struct OpenFileLimit {
  int64_t soft_before = 0;
  int64_t soft = 0;  // now
  int64_t hard = 0;
};

// Raises the soft limit to the hard limit (never lowers it). Internal when getrlimit or
// setrlimit fails.
absl::StatusOr<OpenFileLimit> RaiseOpenFileLimit();

// The current soft limit; -1 when it cannot be read.
int64_t OpenFileSoftLimit();

}  // namespace zigzag
