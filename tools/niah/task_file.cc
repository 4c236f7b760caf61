#include "tools/niah/task_file.h"

#include <cctype>
#include <fstream>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace zigzag::niah {
namespace {

using nlohmann::json;

constexpr size_t kMaxTaskName = 64;

absl::Status FieldError(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("field '", field, "' ", what));
}

// The integer at `key`, or an error naming it. JSON numbers with a fraction, strings, booleans and
// integers beyond int64 are refused.
absl::StatusOr<int64_t> IntegerField(const json& object, const char* key) {
  const auto it = object.find(key);
  if (it == object.end()) return FieldError(key, "is missing");
  if (it->is_number_unsigned()) {
    const uint64_t value = it->get<uint64_t>();
    if (value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return FieldError(key, "is too large");
    }
    return static_cast<int64_t>(value);
  }
  if (it->is_number_integer()) return it->get<int64_t>();
  return FieldError(key, absl::StrCat("must be an integer, got ", it->type_name()));
}

absl::StatusOr<std::string> StringField(const json& object, const char* key) {
  const auto it = object.find(key);
  if (it == object.end()) return FieldError(key, "is missing");
  if (!it->is_string()) {
    return FieldError(key, absl::StrCat("must be a string, got ", it->type_name()));
  }
  return it->get<std::string>();
}

std::string_view AnswerCore(std::string_view answer) {
  while (!answer.empty() && answer.front() == ' ') answer.remove_prefix(1);
  if (!answer.empty() && answer.back() == '.') answer.remove_suffix(1);
  return answer;
}

absl::StatusOr<TaskPrompt> ParseObject(const json& object, const TaskFileLimits& limits) {
  if (!object.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("a line must be a JSON object, got ", object.type_name()));
  }
  TaskPrompt out;
  absl::StatusOr<std::string> task = StringField(object, "task");
  if (!task.ok()) return task.status();
  if (task->empty() || task->size() > kMaxTaskName) {
    return FieldError("task", absl::StrCat("must have 1 to ", kMaxTaskName, " bytes"));
  }
  for (const char c : *task) {
    if (!(std::islower(static_cast<unsigned char>(c)) ||
          std::isdigit(static_cast<unsigned char>(c)) || c == '_' || c == '-')) {
      return FieldError("task", "may hold only [a-z0-9_-]");
    }
  }
  out.task = std::move(*task);

  absl::StatusOr<int64_t> length = IntegerField(object, "length");
  if (!length.ok()) return length.status();
  if (*length < 1) return FieldError("length", absl::StrCat("must be >= 1, got ", *length));
  out.length = *length;

  const auto depth = object.find("depth");
  if (depth == object.end()) return FieldError("depth", "is missing");
  if (!depth->is_number()) {
    return FieldError("depth", absl::StrCat("must be a number, got ", depth->type_name()));
  }
  out.depth = depth->get<double>();
  if (!(out.depth >= 0.0 && out.depth <= 1.0)) {
    return FieldError("depth", absl::StrCat("must be in [0, 1], got ", out.depth));
  }

  absl::StatusOr<int64_t> trial = IntegerField(object, "trial");
  if (!trial.ok()) return trial.status();
  if (*trial < 0) return FieldError("trial", absl::StrCat("must be >= 0, got ", *trial));
  out.trial = *trial;

  absl::StatusOr<std::string> answer = StringField(object, "answer");
  if (!answer.ok()) return answer.status();
  if (AnswerCore(*answer).empty()) {
    return FieldError("answer", "holds nothing to match (only spaces and '.')");
  }
  out.answer = std::move(*answer);

  if (object.contains("prompt")) {
    absl::StatusOr<std::string> prompt = StringField(object, "prompt");
    if (!prompt.ok()) return prompt.status();
    out.prompt = std::move(*prompt);
  }
  if (const auto ids = object.find("prompt_ids"); ids != object.end()) {
    if (!ids->is_array()) {
      return FieldError("prompt_ids", absl::StrCat("must be an array, got ", ids->type_name()));
    }
    if (static_cast<int64_t>(ids->size()) > limits.max_prompt_ids) {
      return FieldError("prompt_ids",
                        absl::StrCat("has ", ids->size(), " ids, more than the limit of ",
                                     limits.max_prompt_ids));
    }
    const int64_t upper =
        limits.vocab_size > 0 ? limits.vocab_size : std::numeric_limits<int32_t>::max();
    out.prompt_ids.reserve(ids->size());
    for (size_t i = 0; i < ids->size(); ++i) {
      const json& id = (*ids)[i];
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= upper ||
          (id.is_number_unsigned() && id.get<uint64_t>() >= static_cast<uint64_t>(upper))) {
        return FieldError("prompt_ids", absl::StrCat("element ", i, " is not an integer id in [0, ",
                                                     upper, "): ", id.dump()));
      }
      out.prompt_ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
    }
  }
  if (out.prompt.empty() && out.prompt_ids.empty()) {
    return absl::InvalidArgumentError(
        "field 'prompt' (text) or 'prompt_ids' (ids) must be given and non-empty");
  }

  if (object.contains("max_new_tokens")) {
    absl::StatusOr<int64_t> max_new = IntegerField(object, "max_new_tokens");
    if (!max_new.ok()) return max_new.status();
    if (*max_new < 1 || *max_new > limits.max_new_tokens) {
      return FieldError("max_new_tokens", absl::StrCat("must be in [1, ", limits.max_new_tokens,
                                                       "], got ", *max_new));
    }
    out.max_new_tokens = static_cast<int32_t>(*max_new);
  }
  return out;
}

}  // namespace

absl::StatusOr<TaskPrompt> ParseTaskLine(std::string_view line, const TaskFileLimits& limits) {
  if (static_cast<int64_t>(line.size()) > limits.max_line_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("line of ", line.size(), " bytes, over the limit of ", limits.max_line_bytes));
  }
  // nlohmann's parser without exceptions; the catch is for anything else it might throw (a
  // library error must become a Status, never escape).
  try {
    const json object = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (object.is_discarded()) return absl::InvalidArgumentError("not valid JSON");
    return ParseObject(object, limits);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("not a valid task line: ", e.what()));
  }
}

absl::StatusOr<std::vector<TaskPrompt>> ReadTaskFile(const std::string& path,
                                                     const TaskFileLimits& limits) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read tasks file ", path));
  std::vector<TaskPrompt> prompts;
  std::string line;
  int64_t line_number = 0;
  std::streambuf* buffer = in.rdbuf();
  while (true) {
    // One line, read a character at a time so that an oversize line is refused once it passes the
    // limit, not after it was buffered whole.
    line.clear();
    int c = buffer->sbumpc();
    if (c == std::char_traits<char>::eof()) break;
    ++line_number;
    while (c != std::char_traits<char>::eof() && c != '\n') {
      if (static_cast<int64_t>(line.size()) >= limits.max_line_bytes) {
        return absl::InvalidArgumentError(absl::StrCat("tasks file ", path, " line ", line_number,
                                                       ": longer than the limit of ",
                                                       limits.max_line_bytes, " bytes"));
      }
      line.push_back(static_cast<char>(c));
      c = buffer->sbumpc();
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    if (static_cast<int64_t>(prompts.size()) >= limits.max_prompts) {
      return absl::InvalidArgumentError(absl::StrCat("tasks file ", path, " line ", line_number,
                                                     ": more than the limit of ",
                                                     limits.max_prompts, " prompts"));
    }
    absl::StatusOr<TaskPrompt> prompt = ParseTaskLine(line, limits);
    if (!prompt.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("tasks file ", path, " line ", line_number,
                                                     ": ", prompt.status().message()));
    }
    prompt->line = line_number;
    prompts.push_back(std::move(*prompt));
  }
  if (prompts.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("tasks file ", path, " holds no prompts"));
  }
  return prompts;
}

bool IsCorrectTaskAnswer(std::string_view generated, std::string_view answer) {
  const std::string_view core = AnswerCore(answer);
  while (!generated.empty() && generated.front() == ' ') generated.remove_prefix(1);
  if (core.empty() || generated.substr(0, core.size()) != core) return false;
  if (generated.size() == core.size()) return true;
  return !std::isalnum(static_cast<unsigned char>(generated[core.size()]));
}

}  // namespace zigzag::niah
