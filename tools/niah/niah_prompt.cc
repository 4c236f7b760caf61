#include "tools/niah/niah_prompt.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace zigzag::niah {
namespace {

absl::Status AddWordsOfFile(const std::filesystem::path& path, std::vector<std::string>* words) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return absl::InvalidArgumentError(absl::StrCat("cannot read haystack file ", path.string()));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  std::string word;
  for (const char c : buffer.str()) {
    const unsigned char byte = static_cast<unsigned char>(c);
    if (byte >= 0x80) continue;  // ASCII only, as in training
    if (std::isspace(byte)) {
      if (!word.empty()) words->push_back(std::move(word));
      word.clear();
    } else {
      word.push_back(c);
    }
  }
  if (!word.empty()) words->push_back(std::move(word));
  return absl::OkStatus();
}

std::string Join(const std::vector<std::string>& words, int64_t first, int64_t count) {
  std::string out;
  const int64_t n = static_cast<int64_t>(words.size());
  for (int64_t i = 0; i < count; ++i) {
    if (i > 0) out.push_back(' ');
    out += words[(first + i) % n];
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> LoadHaystackWords(const std::vector<std::string>& paths,
                                                           int stride, int offset) {
  if (stride < 1 || offset < 0 || offset >= stride) {
    return absl::InvalidArgumentError(absl::StrCat("haystack stride ", stride, " and offset ",
                                                   offset,
                                                   ": need stride >= 1 and 0 <= offset < stride"));
  }
  std::vector<std::string> words;
  for (const std::string& path : paths) {
    std::error_code error;
    if (std::filesystem::is_directory(path, error)) {
      std::vector<std::filesystem::path> files;
      for (const auto& entry : std::filesystem::directory_iterator(path, error)) {
        if (entry.path().extension() == ".txt") files.push_back(entry.path());
      }
      std::sort(files.begin(), files.end());  // byte order, as Python's sorted()
      for (size_t i = 0; i < files.size(); ++i) {
        if (static_cast<int>(i % stride) == offset) {
          if (absl::Status s = AddWordsOfFile(files[i], &words); !s.ok()) return s;
        }
      }
    } else if (absl::Status s = AddWordsOfFile(path, &words); !s.ok()) {
      return s;
    }
  }
  if (words.empty()) return absl::InvalidArgumentError("the haystack files hold no words");
  return words;
}

absl::StatusOr<NiahPrompt> BuildNiahPrompt(const Tokenizer& tokenizer,
                                           const std::vector<std::string>& words,
                                           const NiahFormat& format, const std::string& passkey,
                                           int64_t first_word, double depth, int64_t max_tokens) {
  if (!(depth >= 0.0 && depth <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("depth ", depth, " is outside [0, 1]"));
  }
  if (words.empty()) return absl::InvalidArgumentError("the haystack is empty");
  const std::string needle = absl::StrReplaceAll(format.needle, {{"{}", passkey}});
  const int64_t n = static_cast<int64_t>(words.size());
  first_word = ((first_word % n) + n) % n;

  // The prompt with `count` haystack words, as the Python trainer joins it.
  auto build = [&](int64_t count) -> absl::StatusOr<NiahPrompt> {
    NiahPrompt prompt;
    prompt.haystack_words = count;
    prompt.words_before_needle = static_cast<int64_t>(std::llround(depth * count));
    std::vector<std::string> parts = {
        Join(words, first_word, prompt.words_before_needle), needle,
        Join(words, first_word + prompt.words_before_needle, count - prompt.words_before_needle),
        format.question};
    for (const std::string& part : parts) {
      if (part.empty()) continue;
      if (!prompt.text.empty()) prompt.text.push_back(' ');
      prompt.text += part;
    }
    absl::StatusOr<std::vector<int32_t>> ids =
        tokenizer.Encode(prompt.text, /*add_special_tokens=*/true);
    if (!ids.ok()) return ids.status();
    prompt.ids = std::move(*ids);
    return prompt;
  };

  absl::StatusOr<NiahPrompt> best = build(0);
  if (!best.ok()) return best.status();
  if (static_cast<int64_t>(best->ids.size()) > max_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("a budget of ", max_tokens,
                                                   " tokens does not even hold the needle and "
                                                   "the question (",
                                                   best->ids.size(), " tokens)"));
  }
  // Tokens grow with words (monotonic in practice): binary search the most words that fit.
  int64_t low = 0;
  int64_t high = std::min<int64_t>(max_tokens, 1 << 22);
  while (low < high) {
    const int64_t mid = low + (high - low + 1) / 2;
    absl::StatusOr<NiahPrompt> candidate = build(mid);
    if (!candidate.ok()) return candidate.status();
    if (static_cast<int64_t>(candidate->ids.size()) <= max_tokens) {
      low = mid;
      best = std::move(candidate);
    } else {
      high = mid - 1;
    }
  }
  return best;
}

bool IsCorrectAnswer(const std::string& generated_text, const std::string& passkey) {
  size_t begin = 0;
  while (begin < generated_text.size() &&
         !std::isdigit(static_cast<unsigned char>(generated_text[begin]))) {
    ++begin;
  }
  size_t end = begin;
  while (end < generated_text.size() &&
         std::isdigit(static_cast<unsigned char>(generated_text[end]))) {
    ++end;
  }
  return end > begin && generated_text.compare(begin, end - begin, passkey) == 0;
}

}  // namespace zigzag::niah
