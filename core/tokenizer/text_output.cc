#include "core/tokenizer/text_output.h"

#include <algorithm>
#include <utility>

#include "spdlog/spdlog.h"

namespace zigzag {
namespace {

// Prompt tokens kept as context: enough for the decoder's leading-space and byte-merging rules.
constexpr size_t kPromptContext = 8;

std::vector<int32_t> PromptTail(const std::vector<int32_t>& prompt) {
  const size_t keep = std::min(prompt.size(), kPromptContext);
  return std::vector<int32_t>(prompt.end() - keep, prompt.end());
}

}  // namespace

TextOutput::TextOutput(const Tokenizer& tokenizer, const std::vector<int32_t>& prompt,
                       std::vector<std::string> stop_strings, bool skip_special_tokens)
    : detokenizer_(tokenizer, PromptTail(prompt), skip_special_tokens),
      stops_(std::move(stop_strings)) {}

void TextOutput::AddText(const std::string& text) {
  if (stopped_ || text.empty()) return;
  StopStringMatcher::Result result = stops_.Append(text);
  text_ += result.emit;
  stopped_ = result.stopped;
}

bool TextOutput::OnToken(int32_t token) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopped_ || finished_) return stopped_;
  absl::StatusOr<std::string> text = detokenizer_.Append(token);
  if (!text.ok()) {
    // A model whose vocabulary is larger than its tokenizer's can sample an id with no text.
    spdlog::debug("no text for token {}: {}", token, std::string(text.status().message()));
    return false;
  }
  AddText(*text);
  return stopped_;
}

std::string TextOutput::TakeNewText() {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out = text_.substr(taken_);
  taken_ = text_.size();
  return out;
}

std::string TextOutput::Finish() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!finished_) {
    finished_ = true;
    if (!stopped_) {
      AddText(detokenizer_.Flush());
      if (!stopped_) text_ += stops_.Flush();
    }
  }
  return text_;
}

bool TextOutput::stopped() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stopped_;
}

}  // namespace zigzag
