// StopStringMatcher: finds the earliest stop string in streamed text and holds back any tail that
// could still become one, so no part of a stop string is ever sent. The stop string itself is
// excluded from the output (vLLM's default). Knows nothing of tokens or stop token ids.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace zigzag {

class StopStringMatcher {
 public:
  // Empty stop strings are ignored.
  explicit StopStringMatcher(std::vector<std::string> stops);

  struct Result {
    std::string emit;  // text safe to send now (the text before the stop string when stopped)
    bool stopped = false;
  };
  // Feeds the next chunk of text. After a stop, further calls return {"", true}.
  Result Append(std::string_view new_text);
  // The held-back text at the end when no stop matched ("" after a stop).
  std::string Flush();

  bool stopped() const { return stopped_; }
  // The stop string that matched ("" before a stop).
  const std::string& matched_stop() const { return matched_stop_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;  // held back: a possible beginning of a stop string
  bool stopped_ = false;
  std::string matched_stop_;
};

}  // namespace zigzag
