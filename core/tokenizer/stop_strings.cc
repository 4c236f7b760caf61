#include "core/tokenizer/stop_strings.h"

#include <algorithm>
#include <utility>

namespace zigzag {

StopStringMatcher::StopStringMatcher(std::vector<std::string> stops) {
  for (std::string& stop : stops) {
    if (!stop.empty()) stops_.push_back(std::move(stop));
  }
}

StopStringMatcher::Result StopStringMatcher::Append(std::string_view new_text) {
  if (stopped_) return Result{"", true};
  pending_.append(new_text);
  // Earliest match wins; among stops starting at the same place, the shortest (the output is the
  // same either way). Earlier text was emitted only after it was known to start no stop string.
  size_t best = std::string::npos;
  for (const std::string& stop : stops_) {
    const size_t pos = pending_.find(stop);
    if (pos == std::string::npos) continue;
    if (pos < best || (pos == best && stop.size() < matched_stop_.size())) {
      best = pos;
      matched_stop_ = stop;
    }
  }
  if (best != std::string::npos) {
    stopped_ = true;
    Result result{pending_.substr(0, best), true};
    pending_.clear();
    return result;
  }
  // Hold back the longest tail that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const std::string& stop : stops_) {
    const size_t max_length = std::min(stop.size() - 1, pending_.size());
    for (size_t length = max_length; length > hold; --length) {
      if (pending_.compare(pending_.size() - length, length, stop, 0, length) == 0) {
        hold = length;
        break;
      }
    }
  }
  Result result{pending_.substr(0, pending_.size() - hold), false};
  pending_.erase(0, pending_.size() - hold);
  return result;
}

std::string StopStringMatcher::Flush() {
  std::string rest = std::move(pending_);
  pending_.clear();
  return rest;
}

}  // namespace zigzag
