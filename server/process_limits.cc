#include "server/process_limits.h"

#include <sys/resource.h>

#include <cerrno>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"

namespace zigzag {
namespace {

int64_t AsInt64(rlim_t value) {
  return value == RLIM_INFINITY || value > static_cast<rlim_t>(std::numeric_limits<int64_t>::max())
             ? std::numeric_limits<int64_t>::max()
             : static_cast<int64_t>(value);
}

}  // namespace

absl::StatusOr<OpenFileLimit> RaiseOpenFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return absl::InternalError(
        absl::StrCat("getrlimit(RLIMIT_NOFILE) failed: ", std::strerror(errno)));
  }
  OpenFileLimit result;
  result.soft_before = AsInt64(limit.rlim_cur);
  result.hard = AsInt64(limit.rlim_max);
  if (limit.rlim_cur != limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) != 0) {
      return absl::InternalError(absl::StrCat("setrlimit(RLIMIT_NOFILE, ", result.hard,
                                              ") failed: ", std::strerror(errno)));
    }
  }
  result.soft = result.hard;
  return result;
}

int64_t OpenFileSoftLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return -1;
  return AsInt64(limit.rlim_cur);
}

}  // namespace zigzag
