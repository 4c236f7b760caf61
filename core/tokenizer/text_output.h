// TextOutput: one request's generated text on a server with a tokenizer. It detokenizes each new
// token incrementally (never splitting a UTF-8 character), applies the request's stop strings
// (the text ends before the earliest match, as in vLLM) and hands out new text for streaming.
// Token ids, stop token ids and finishing the request stay the engine's business.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "core/tokenizer/incremental_detokenizer.h"
#include "core/tokenizer/stop_strings.h"
#include "core/tokenizer/tokenizer.h"

namespace zigzag {

class TextOutput {
 public:
  // `prompt`: the prompt's ids (its tail is context for the first token's leading space).
  TextOutput(const Tokenizer& tokenizer, const std::vector<int32_t>& prompt,
             std::vector<std::string> stop_strings, bool skip_special_tokens);

  // Once per generated token, in order (the request's TextStopCheck, on the worker thread).
  // True once a stop string has appeared; later tokens add no text.
  bool OnToken(int32_t token);

  // The text produced since the previous call, safe to send: nothing that could still turn out
  // to be the start of a stop string.
  std::string TakeNewText();

  // After the last token: releases held-back text and returns the request's whole text.
  std::string Finish();

  bool stopped() const;

 private:
  void AddText(const std::string& text);  // mu_ held

  mutable std::mutex mu_;
  IncrementalDetokenizer detokenizer_;
  StopStringMatcher stops_;
  std::string text_;  // everything released so far
  size_t taken_ = 0;  // prefix of text_ already handed out by TakeNewText
  bool stopped_ = false;
  bool finished_ = false;
};

}  // namespace zigzag
