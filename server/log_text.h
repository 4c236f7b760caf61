// Client-supplied strings made safe for a log line: control characters (newlines, ANSI escapes)
// and non-ASCII bytes are C-escaped, so that no client can forge a log line or drive a terminal,
// and long strings are cut. Use it on every client string a log call prints; it does not log.
#pragma once

#include <cstddef>
#include <string>
#include "absl/strings/string_view.h"

namespace zigzag {

// `text` with every byte outside printable ASCII written as \n, \t, \x1b, ... and quotes and
// backslashes escaped; longer than `max_bytes`: the first `max_bytes` bytes, then
// "...(N bytes)".
std::string ForLog(absl::string_view text, size_t max_bytes = 128);

}  // namespace zigzag
