// ZZ_CHECK(cond) << "context": aborts with file, line and message when an invariant is broken.
// Debian's Abseil (20220623) has no absl/log, so this stands in for CHECK. Only for bugs in our
// own code; anything a caller or a user can cause returns an absl::Status instead.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace zigzag::internal {

class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* condition) {
    stream_ << file << ":" << line << ": check failed: " << condition << " ";
  }
  [[noreturn]] ~CheckFailure() {
    std::fprintf(stderr, "%s\n", stream_.str().c_str());
    std::fflush(stderr);
    std::abort();
  }
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

}  // namespace zigzag::internal

#define ZZ_CHECK(condition) \
  if (condition) {          \
  } else                    \
    ::zigzag::internal::CheckFailure(__FILE__, __LINE__, #condition).stream()

#define ZZ_CHECK_EQ(a, b) ZZ_CHECK((a) == (b)) << "(" << (a) << " vs " << (b) << ") "
