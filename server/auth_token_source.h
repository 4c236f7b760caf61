// Where zigzag-server's bearer token comes from: --auth-token-file (preferred: a flag's value is
// visible to every user in /proc/PID/cmdline), --auth-token or $ZIGZAG_AUTH_TOKEN. A source that
// is set but empty is an error, never "authentication off". It reads files; it does not check
// calls (auth.h does).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace zigzag {

// Longest token file accepted (a bearer token is a few dozen bytes).
inline constexpr size_t kMaxAuthTokenFileBytes = 4096;

struct AuthTokenSources {
  std::optional<std::string> flag;  // --auth-token, when given on the command line
  std::string file;                 // --auth-token-file; empty = not given
  std::optional<std::string> env;   // $ZIGZAG_AUTH_TOKEN, when set
};

struct ResolvedAuthToken {
  std::string token;   // empty: authentication is off (no source was set)
  std::string source;  // "--auth-token-file PATH", "--auth-token", "$ZIGZAG_AUTH_TOKEN" or ""
  std::vector<std::string> warnings;  // for the log: a world-readable file, a token on argv
};

// The token file's content without one trailing newline ("\n" or "\r\n"). InvalidArgument naming
// the flag and the path for a file that cannot be read, is larger than kMaxAuthTokenFileBytes, is
// empty, or holds anything but printable ASCII without spaces. `warnings` gets a line when the
// file is readable by every user.
absl::StatusOr<std::string> ReadAuthTokenFile(const std::string& path,
                                              std::vector<std::string>* warnings);

// The token from at most one of --auth-token and --auth-token-file, else $ZIGZAG_AUTH_TOKEN.
// InvalidArgument naming the source when both flags are given or the chosen one is set but
// empty (or holds a character that cannot be in a bearer token).
absl::StatusOr<ResolvedAuthToken> ResolveAuthToken(const AuthTokenSources& sources);

}  // namespace zigzag
