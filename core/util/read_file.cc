#include "core/util/read_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace zigzag {

absl::StatusOr<std::string> ReadFileToString(const std::filesystem::path& path, size_t max_bytes) {
  const std::string name = path.string();
  const int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    const std::string message = absl::StrCat("cannot open ", name, ": ", std::strerror(error));
    if (error == ENOENT) return absl::NotFoundError(message);
    return absl::UnavailableError(message);
  }
  std::string bytes;
  char buffer[1 << 16];
  absl::Status status;
  while (true) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      status =
          absl::UnavailableError(absl::StrCat("cannot read ", name, ": ", std::strerror(errno)));
      break;
    }
    if (n == 0) break;
    // Checked before appending: a file past the cap costs at most one more buffer.
    if (static_cast<size_t>(n) > max_bytes - bytes.size()) {
      status = absl::InvalidArgumentError(absl::StrCat(name, " is larger than the limit of ",
                                                       max_bytes, " bytes for this kind of file"));
      break;
    }
    bytes.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  if (!status.ok()) return status;
  return bytes;
}

}  // namespace zigzag
