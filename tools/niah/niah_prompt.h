// Needle-in-a-haystack prompts: the haystack (plain-text files, cleaned to ASCII words), a passkey
// sentence inserted at a depth, the question at the end, tokenized as one string so that the
// prompt has a given number of tokens; and the scoring of an answer. The format is the one the
// embedded model was trained on (tools/train_model/niah_data.py). Running the model is not here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tokenizer/tokenizer.h"

namespace zigzag::niah {

struct NiahFormat {
  std::string needle = "The secret passkey is {}. Remember it.";  // {} = the passkey
  std::string question = "What is the secret passkey? The secret passkey is";
};

// The words of the files, in order: non-ASCII bytes dropped, whitespace runs split on. Files may
// be named directly or as directories (their *.txt files in byte order, of which those with index
// i % stride == offset are taken). InvalidArgument when a file cannot be read or no word is left.
absl::StatusOr<std::vector<std::string>> LoadHaystackWords(const std::vector<std::string>& paths,
                                                           int stride, int offset);

struct NiahPrompt {
  std::vector<int32_t> ids;  // BOS (when the tokenizer adds one) + the prompt
  std::string text;
  int64_t haystack_words = 0;
  int64_t words_before_needle = 0;
};

// The longest prompt of at most `max_tokens` tokens made of haystack words from `first_word`
// (wrapping around), with the needle after round(depth * words) of them. InvalidArgument for a
// depth outside [0, 1], an empty haystack, or a budget that not even the needle and the question
// fit in.
absl::StatusOr<NiahPrompt> BuildNiahPrompt(const Tokenizer& tokenizer,
                                           const std::vector<std::string>& words,
                                           const NiahFormat& format, const std::string& passkey,
                                           int64_t first_word, double depth, int64_t max_tokens);

// Whether the generated text answers `passkey`: its first run of digits is exactly the passkey.
bool IsCorrectAnswer(const std::string& generated_text, const std::string& passkey);

}  // namespace zigzag::niah
