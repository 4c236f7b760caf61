#include "server/request_id.h"

#include <sys/random.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace zigzag {

absl::StatusOr<std::string> NewRequestId() {
  std::array<unsigned char, 16> bytes;
  size_t filled = 0;
  while (filled < bytes.size()) {
    // Blocks only before the kernel's pool was first seeded (early boot), never afterwards.
    const ssize_t n = getrandom(bytes.data() + filled, bytes.size() - filled, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(
          absl::StrCat("getrandom() failed: ", std::strerror(errno), "; cannot make a request id"));
    }
    filled += static_cast<size_t>(n);
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

absl::Status ValidateRequestId(std::string_view id, const char* field) {
  if (id.size() > kMaxRequestIdLength) {
    return absl::InvalidArgumentError(absl::StrCat(field, " is ", id.size(),
                                                   " characters long; at most ",
                                                   kMaxRequestIdLength, " are accepted"));
  }
  for (size_t i = 0; i < id.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(id[i]);
    if (c < 0x21 || c > 0x7e) {
      // The byte is shown as a number: echoing it would defeat the point.
      return absl::InvalidArgumentError(
          absl::StrCat(field, " has byte 0x", absl::Hex(c, absl::kZeroPad2), " at offset ", i,
                       "; only printable ASCII without spaces (0x21 to 0x7e) is accepted"));
    }
  }
  return absl::OkStatus();
}

}  // namespace zigzag
