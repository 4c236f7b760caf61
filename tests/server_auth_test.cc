// Where the bearer token comes from: --auth-token-file (one trailing newline removed; empty,
// unreadable, oversized or non-printable refused; world-readable warned about), --auth-token and
// $ZIGZAG_AUTH_TOKEN, where a source that is set but empty is an error instead of "no auth".
// The zigzag-server binary itself exits non-zero with a clear message for each such start-up.
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/auth_token_source.h"
#include "tests/test_support.h"

namespace zigzag::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::string TokenFile(const std::string& bytes, mode_t mode = 0600) {
  static const std::filesystem::path dir = MakeTempDir("auth-token");
  static int count = 0;
  const std::filesystem::path path = dir / ("token" + std::to_string(++count));
  WriteFile(path, bytes);
  chmod(path.c_str(), mode);
  return path.string();
}

std::string Message(const absl::Status& status) { return std::string(status.message()); }

TEST(AuthTokenFileTest, OneTrailingNewlineIsRemoved) {
  std::vector<std::string> warnings;
  EXPECT_EQ(ReadAuthTokenFile(TokenFile("s3cret\n"), &warnings).value_or("?"), "s3cret");
  EXPECT_EQ(ReadAuthTokenFile(TokenFile("s3cret\r\n"), &warnings).value_or("?"), "s3cret");
  EXPECT_EQ(ReadAuthTokenFile(TokenFile("s3cret"), &warnings).value_or("?"), "s3cret");
  EXPECT_THAT(warnings, IsEmpty());
}

TEST(AuthTokenFileTest, EmptyUnreadableOversizedOrOddFilesAreRefusedNamingTheFile) {
  const std::string empty = TokenFile("");
  absl::StatusOr<std::string> token = ReadAuthTokenFile(empty, nullptr);
  EXPECT_EQ(token.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(token.status()), HasSubstr("--auth-token-file " + empty));
  EXPECT_THAT(Message(token.status()), HasSubstr("the file is empty"));
  EXPECT_THAT(Message(ReadAuthTokenFile(TokenFile("\n"), nullptr).status()),
              HasSubstr("the file is empty"));
  EXPECT_THAT(Message(ReadAuthTokenFile("/nonexistent/token", nullptr).status()),
              HasSubstr("--auth-token-file /nonexistent/token: cannot open"));
  EXPECT_THAT(Message(ReadAuthTokenFile("/tmp", nullptr).status()),
              HasSubstr("not a regular file"));
  EXPECT_THAT(Message(ReadAuthTokenFile(TokenFile(std::string(5000, 'a')), nullptr).status()),
              HasSubstr("5000 bytes; a token file holds at most 4096"));
  // Two newlines: the second one would be part of the token, and can never match a header.
  EXPECT_THAT(Message(ReadAuthTokenFile(TokenFile("s3cret\n\n"), nullptr).status()),
              HasSubstr("byte 0x0a at offset 6"));
  EXPECT_THAT(Message(ReadAuthTokenFile(TokenFile("two words"), nullptr).status()),
              HasSubstr("byte 0x20 at offset 3"));
}

TEST(AuthTokenFileTest, AWorldReadableFileIsUsedWithAWarning) {
  std::vector<std::string> warnings;
  const std::string path = TokenFile("s3cret\n", 0644);
  EXPECT_EQ(ReadAuthTokenFile(path, &warnings).value_or("?"), "s3cret");
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_THAT(warnings[0], HasSubstr(path + " is readable by every user (mode 644)"));
}

TEST(AuthTokenSourcesTest, SetButEmptyIsAnErrorNeverAuthOff) {
  absl::StatusOr<ResolvedAuthToken> token = ResolveAuthToken({.flag = ""});
  EXPECT_EQ(token.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(token.status()), HasSubstr("--auth-token is set but empty"));
  token = ResolveAuthToken({.env = ""});
  EXPECT_EQ(token.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(token.status()), HasSubstr("$ZIGZAG_AUTH_TOKEN is set but empty"));
  token = ResolveAuthToken({.file = TokenFile("")});
  EXPECT_THAT(Message(token.status()), HasSubstr("the file is empty"));
  token = ResolveAuthToken({.flag = "a", .file = TokenFile("b")});
  EXPECT_THAT(Message(token.status()), HasSubstr("--auth-token and --auth-token-file were both"));
}

TEST(AuthTokenSourcesTest, FlagsComeBeforeTheEnvironmentAndNothingMeansNoAuth) {
  absl::StatusOr<ResolvedAuthToken> token = ResolveAuthToken({});
  ASSERT_TRUE(token.ok());
  EXPECT_EQ(token->token, "");
  EXPECT_EQ(token->source, "");
  token = ResolveAuthToken({.env = "from-env"});
  ASSERT_TRUE(token.ok());
  EXPECT_EQ(token->token, "from-env");
  EXPECT_EQ(token->source, "$ZIGZAG_AUTH_TOKEN");
  const std::string file = TokenFile("from-file\n");
  token = ResolveAuthToken({.file = file, .env = "from-env"});
  ASSERT_TRUE(token.ok());
  EXPECT_EQ(token->token, "from-file");
  EXPECT_EQ(token->source, "--auth-token-file " + file);
  EXPECT_THAT(token->warnings, IsEmpty());
  token = ResolveAuthToken({.flag = "from-flag", .env = "from-env"});
  ASSERT_TRUE(token.ok());
  EXPECT_EQ(token->token, "from-flag");
  // A token on the command line is readable in /proc/PID/cmdline by every user.
  EXPECT_THAT(token->warnings, ElementsAre(HasSubstr("prefer --auth-token-file")));
}

// The binary's exit status and its stderr, run through /bin/sh.
std::pair<int, std::string> RunServer(const std::string& environment, const std::string& args) {
  const std::string command =
      "env -u ZIGZAG_AUTH_TOKEN " + environment + " " ZIGZAG_SERVER_BINARY " " + args + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  std::string output;
  char buffer[4096];
  for (size_t n; (n = fread(buffer, 1, sizeof(buffer), pipe)) > 0;) output.append(buffer, n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

TEST(ServerBinaryAuthTest, AnEmptyTokenStopsStartUpWithAClearMessage) {
  // --model is missing too: the token is checked first, before anything is loaded.
  auto [code, output] = RunServer("", "--auth-token=");
  EXPECT_EQ(code, 2);
  EXPECT_THAT(output, HasSubstr("--auth-token is set but empty"));
  std::tie(code, output) = RunServer("", "--auth-token ''");
  EXPECT_EQ(code, 2);
  EXPECT_THAT(output, HasSubstr("--auth-token is set but empty"));
  std::tie(code, output) = RunServer("ZIGZAG_AUTH_TOKEN=", "");
  EXPECT_EQ(code, 2);
  EXPECT_THAT(output, HasSubstr("$ZIGZAG_AUTH_TOKEN is set but empty"));
  std::tie(code, output) = RunServer("", "--auth-token-file=" + TokenFile(""));
  EXPECT_EQ(code, 2);
  EXPECT_THAT(output, HasSubstr("the file is empty"));
  // A good token file gets past the token: the next complaint is the missing --model.
  std::tie(code, output) = RunServer("", "--auth-token-file=" + TokenFile("s3cret\n"));
  EXPECT_EQ(code, 2);
  EXPECT_THAT(output, HasSubstr("--model is required"));
}

}  // namespace
}  // namespace zigzag::testing
