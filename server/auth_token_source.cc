#include "server/auth_token_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace zigzag {
namespace {

// A bearer token is sent as "authorization: Bearer <token>": printable ASCII, no spaces.
absl::Status CheckTokenCharacters(std::string_view token, const std::string& source) {
  for (size_t i = 0; i < token.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(token[i]);
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": the token has byte 0x", absl::Hex(c, absl::kZeroPad2), " at offset ", i,
          "; a bearer token is printable ASCII without spaces (only one trailing newline is "
          "removed from a token file)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> ReadAuthTokenFile(const std::string& path,
                                              std::vector<std::string>* warnings) {
  const std::string where = absl::StrCat("--auth-token-file ", path);
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": cannot open: ", std::strerror(errno)));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(absl::StrCat(where, ": not a regular file"));
  }
  if (st.st_size > static_cast<off_t>(kMaxAuthTokenFileBytes)) {
    close(fd);
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": ", st.st_size, " bytes; a token file holds at most ", kMaxAuthTokenFileBytes));
  }
  std::string token(kMaxAuthTokenFileBytes + 1, '\0');
  size_t size = 0;
  while (size < token.size()) {
    const ssize_t n = read(fd, token.data() + size, token.size() - size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int saved = errno;
      close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": cannot read: ", std::strerror(saved)));
    }
    if (n == 0) break;
    size += static_cast<size_t>(n);
  }
  close(fd);
  if (size > kMaxAuthTokenFileBytes) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": more than ", kMaxAuthTokenFileBytes,
                                                   " bytes; a token file holds at most that"));
  }
  token.resize(size);
  if (!token.empty() && token.back() == '\n') token.pop_back();
  if (!token.empty() && token.back() == '\r') token.pop_back();
  if (token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        where,
        ": the file is empty; an empty token would turn authentication off. Put the token "
        "in the file, or drop the flag to serve without authentication"));
  }
  if (absl::Status status = CheckTokenCharacters(token, where); !status.ok()) return status;
  if ((st.st_mode & S_IROTH) != 0 && warnings != nullptr) {
    warnings->push_back(absl::StrCat(where, " is readable by every user (mode ",
                                     absl::StrFormat("%03o", st.st_mode & 0777),
                                     "); make it readable by the server's user or group only "
                                     "(e.g. chmod 0440)"));
  }
  return token;
}

absl::StatusOr<ResolvedAuthToken> ResolveAuthToken(const AuthTokenSources& sources) {
  ResolvedAuthToken resolved;
  if (sources.flag.has_value() && !sources.file.empty()) {
    return absl::InvalidArgumentError(
        "--auth-token and --auth-token-file were both given; use one (--auth-token-file keeps "
        "the token out of the process list)");
  }
  if (!sources.file.empty()) {
    absl::StatusOr<std::string> token = ReadAuthTokenFile(sources.file, &resolved.warnings);
    if (!token.ok()) return token.status();
    resolved.token = *std::move(token);
    resolved.source = absl::StrCat("--auth-token-file ", sources.file);
    return resolved;
  }
  if (sources.flag.has_value()) {
    if (sources.flag->empty()) {
      return absl::InvalidArgumentError(
          "--auth-token is set but empty; an empty token would turn authentication off. Give "
          "the token (better: --auth-token-file), or drop the flag to serve without "
          "authentication");
    }
    if (absl::Status status = CheckTokenCharacters(*sources.flag, "--auth-token"); !status.ok()) {
      return status;
    }
    resolved.token = *sources.flag;
    resolved.source = "--auth-token";
    resolved.warnings.push_back(
        "--auth-token puts the token in the process list (/proc/PID/cmdline) for every user to "
        "read; prefer --auth-token-file");
    return resolved;
  }
  if (sources.env.has_value()) {
    if (sources.env->empty()) {
      return absl::InvalidArgumentError(
          "$ZIGZAG_AUTH_TOKEN is set but empty; an empty token would turn authentication off. "
          "Set the token (better: --auth-token-file), or unset the variable to serve without "
          "authentication");
    }
    if (absl::Status status = CheckTokenCharacters(*sources.env, "$ZIGZAG_AUTH_TOKEN");
        !status.ok()) {
      return status;
    }
    resolved.token = *sources.env;
    resolved.source = "$ZIGZAG_AUTH_TOKEN";
  }
  return resolved;
}

}  // namespace zigzag
