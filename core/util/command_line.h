// Command-line parsing for our binaries: Abseil flags, accepting the dashed spelling of flag
// names (--prompt-ids) as well as Abseil's own (--prompt_ids). Header-only; defines no flags.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"

namespace zigzag {

// Rewrites the name part of every "--name[=value]" argument (up to a bare "--") so that '-'
// becomes '_', then runs absl::ParseCommandLine. Returns the positional arguments, argv[0] first.
// Unknown flags and bad values make Abseil print a message and exit(1), as for any Abseil binary.
inline std::vector<std::string> ParseCommandLineAcceptingDashes(int argc, char** argv) {
  // --help lists the flags our binaries define (in tools/ and server/); Abseil's default looks
  // for a source file named like the program, which "zigzag-generate" never matches.
  absl::FlagsUsageConfig usage_config;
  usage_config.contains_help_flags = [](absl::string_view path) {
    return absl::StrContains(path, "tools/") || absl::StrContains(path, "server/");
  };
  absl::SetFlagsUsageConfig(usage_config);
  static std::vector<std::string> args;  // ParseCommandLine keeps pointers into these
  args.assign(argv, argv + argc);
  for (size_t i = 1; i < args.size(); ++i) {
    std::string& arg = args[i];
    if (arg == "--") break;
    if (arg.size() < 3 || arg.compare(0, 2, "--") != 0) continue;
    const size_t name_end = std::min(arg.find('='), arg.size());
    std::replace(arg.begin() + 2, arg.begin() + static_cast<std::ptrdiff_t>(name_end), '-', '_');
  }
  std::vector<char*> pointers;
  for (std::string& arg : args) pointers.push_back(arg.data());
  std::vector<char*> positional =
      absl::ParseCommandLine(static_cast<int>(pointers.size()), pointers.data());
  return std::vector<std::string>(positional.begin(), positional.end());
}

}  // namespace zigzag
