// The evaluation tasks file (JSONL written by tools/train_model/make_eval_tasks.py): one prompt per
// line with its task, length, depth, trial and expected answer; reading it with every input
// bounded, and scoring a generation against an answer. Running the model and the grid is not here
// (task_grid.h); building prompts from a haystack is niah_prompt.h.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace zigzag::niah {

struct TaskPrompt {
  std::string task;  // e.g. "passkey", "vartrack": [a-z0-9_-], at most 64 bytes
  int64_t length = 0;
  double depth = 0;
  int64_t trial = 0;
  std::string prompt;               // the text (may be empty when prompt_ids is given)
  std::vector<int32_t> prompt_ids;  // BOS + ids; empty: tokenize `prompt`
  std::string answer;               // e.g. " 12345, 67890." (see IsCorrectTaskAnswer)
  int32_t max_new_tokens = 0;       // 0: the caller's default
  int64_t line = 0;                 // 1-based line in the file, for messages
};

struct TaskFileLimits {
  int64_t max_line_bytes = 1 << 20;  // a 4K-token prompt with its ids is about 40 KB
  int64_t max_prompts = 100000;
  int64_t max_prompt_ids = 1 << 17;  // callers pass the model's context
  int32_t max_new_tokens = 256;
  int64_t vocab_size = 0;  // > 0: every prompt id must be below it
};

// Parses one line. InvalidArgument naming the field: not a JSON object; `task` (string, non-empty,
// [a-z0-9_-], <= 64 bytes), `length` (integer >= 1), `depth` (number in [0, 1]), `trial` (integer
// >= 0), `answer` (string with something besides spaces and a final '.') missing or of the wrong
// type; neither a non-empty `prompt` (string) nor `prompt_ids` (array of integers in [0, vocab) and
// at most max_prompt_ids of them); `max_new_tokens` (optional) outside [1, max_new_tokens]. Other
// fields (e.g. prompt_tokens) are ignored.
absl::StatusOr<TaskPrompt> ParseTaskLine(std::string_view line, const TaskFileLimits& limits);

// Every prompt of the file, in order; blank lines are skipped. InvalidArgument with the file and
// line number: unreadable file, a line over max_line_bytes (rejected without reading it whole),
// more than max_prompts prompts, no prompt at all, or ParseTaskLine's errors.
absl::StatusOr<std::vector<TaskPrompt>> ReadTaskFile(const std::string& path,
                                                     const TaskFileLimits& limits);

// The scoring rule of tools/train_model/tasks.py (is_correct): with leading spaces dropped from
// both and the answer's final '.' dropped, the generation starts with the answer and the next
// character, if any, is neither a letter nor a digit (so " 12345" passes for " 12345." but
// " 123456" does not; a generation cut off by max tokens right after the answer still passes).
bool IsCorrectTaskAnswer(std::string_view generated, std::string_view answer);

}  // namespace zigzag::niah
