// The long-context task grid of zigzag-niah (tools/niah/task_file.h, task_grid.h): the tasks file
// reader against bad lines (each error names its field, line or limit), the scoring rule on
// hand-written cases (the same cases as tools/train_model/test_tasks.py), the policy x budget x
// kernel configurations, the per-cell tally against hand-counted values, and a small grid run of
// the embedded model (models/zigzag-tiny) on passkey prompts given as text and as ids.
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/model/llama_model.h"
#include "core/tokenizer/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/backend_registry.h"
#include "tests/test_support.h"
#include "tools/niah/niah_prompt.h"
#include "tools/niah/task_file.h"
#include "tools/niah/task_grid.h"

namespace zigzag::niah {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::string kModelDir = std::string(ZIGZAG_SOURCE_DIR) + "/models/zigzag-tiny";
const std::string kGood =
    R"({"task":"vartrack","length":4096,"depth":0.5,"trial":3,"prompt":"VAR AB = 1.",)"
    R"("prompt_ids":[1,5,7],"answer":" AB.","max_new_tokens":12,"prompt_tokens":3})";

std::string ErrorOf(std::string_view line, const TaskFileLimits& limits = {}) {
  absl::StatusOr<TaskPrompt> prompt = ParseTaskLine(line, limits);
  EXPECT_FALSE(prompt.ok()) << line;
  EXPECT_EQ(prompt.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(prompt.status().message());
}

// kGood with `field` replaced by `value` (raw JSON), or removed when value is empty.
std::string With(const std::string& field, const std::string& value) {
  std::string line = kGood;
  const std::string key = "\"" + field + "\":";
  const size_t at = line.find(key);
  EXPECT_NE(at, std::string::npos) << field;
  size_t end = at + key.size();
  int depth = 0;
  bool in_string = false;
  for (; end < line.size(); ++end) {
    const char c = line[end];
    if (in_string) {
      if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    if (c == '[') ++depth;
    if (c == ']') --depth;
    if ((c == ',' || c == '}') && depth == 0) break;
  }
  if (value.empty()) {
    const bool comma_after = line[end] == ',';
    return line.erase(at, end - at + (comma_after ? 1 : 0));
  }
  return line.replace(at + key.size(), end - at - key.size(), value);
}

TEST(TaskFileTest, ParsesEveryFieldOfAGoodLine) {
  absl::StatusOr<TaskPrompt> prompt = ParseTaskLine(kGood, {});
  ASSERT_TRUE(prompt.ok()) << prompt.status();
  EXPECT_EQ(prompt->task, "vartrack");
  EXPECT_EQ(prompt->length, 4096);
  EXPECT_EQ(prompt->depth, 0.5);
  EXPECT_EQ(prompt->trial, 3);
  EXPECT_EQ(prompt->prompt, "VAR AB = 1.");
  EXPECT_THAT(prompt->prompt_ids, ElementsAre(1, 5, 7));
  EXPECT_EQ(prompt->answer, " AB.");
  EXPECT_EQ(prompt->max_new_tokens, 12);
  // Optional fields: text only, ids only, no max_new_tokens (0: the caller's default).
  EXPECT_TRUE(ParseTaskLine(With("prompt_ids", ""), {}).ok());
  EXPECT_TRUE(ParseTaskLine(With("prompt", ""), {}).ok());
  EXPECT_EQ(ParseTaskLine(With("max_new_tokens", ""), {})->max_new_tokens, 0);
  EXPECT_EQ(ParseTaskLine(With("depth", "1"), {})->depth, 1.0);  // an integer is a number
}

TEST(TaskFileTest, MissingFieldsAreNamed) {
  for (const char* field : {"task", "length", "depth", "trial", "answer"}) {
    EXPECT_THAT(ErrorOf(With(field, "")),
                HasSubstr(std::string("field '") + field + "' is missing"));
  }
  const std::string neither =
      R"({"task":"passkey","length":100,"depth":0,"trial":0,"answer":" 12345."})";
  EXPECT_THAT(ErrorOf(neither),
              HasSubstr("'prompt' (text) or 'prompt_ids' (ids) must be given and non-empty"));
  EXPECT_THAT(ErrorOf(R"({"task":"passkey","length":100,"depth":0,"trial":0,"answer":" 1.",)"
                      R"("prompt":"","prompt_ids":[]})"),
              HasSubstr("must be given and non-empty"));
}

TEST(TaskFileTest, WrongTypesAndRangesAreNamed) {
  EXPECT_THAT(ErrorOf(With("task", "7")), HasSubstr("field 'task' must be a string, got number"));
  EXPECT_THAT(ErrorOf(With("task", "\"Var Track\"")), HasSubstr("field 'task' may hold only"));
  EXPECT_THAT(ErrorOf(With("task", "\"\"")), HasSubstr("field 'task' must have 1 to 64 bytes"));
  EXPECT_THAT(ErrorOf(With("length", "\"4096\"")),
              HasSubstr("field 'length' must be an integer, got string"));
  EXPECT_THAT(ErrorOf(With("length", "2.5")), HasSubstr("field 'length' must be an integer"));
  EXPECT_THAT(ErrorOf(With("length", "0")), HasSubstr("field 'length' must be >= 1, got 0"));
  EXPECT_THAT(ErrorOf(With("length", "18446744073709551615")),
              HasSubstr("field 'length' is too large"));
  EXPECT_THAT(ErrorOf(With("depth", "1.5")), HasSubstr("field 'depth' must be in [0, 1], got 1.5"));
  EXPECT_THAT(ErrorOf(With("depth", "null")),
              HasSubstr("field 'depth' must be a number, got null"));
  EXPECT_THAT(ErrorOf(With("trial", "-1")), HasSubstr("field 'trial' must be >= 0, got -1"));
  EXPECT_THAT(ErrorOf(With("answer", "[1]")), HasSubstr("field 'answer' must be a string"));
  EXPECT_THAT(ErrorOf(With("answer", "\" .\"")), HasSubstr("field 'answer' holds nothing"));
  EXPECT_THAT(ErrorOf(With("prompt", "{}")),
              HasSubstr("field 'prompt' must be a string, got object"));
  EXPECT_THAT(ErrorOf(With("prompt_ids", "\"1 5 7\"")),
              HasSubstr("field 'prompt_ids' must be an array, got string"));
  EXPECT_THAT(ErrorOf(With("prompt_ids", "[1,-5]")),
              HasSubstr("field 'prompt_ids' element 1 is not an integer id"));
  EXPECT_THAT(ErrorOf(With("prompt_ids", "[1,\"5\"]")), HasSubstr("element 1"));
  TaskFileLimits limits;
  limits.vocab_size = 6;
  EXPECT_THAT(ErrorOf(kGood, limits), HasSubstr("element 2 is not an integer id in [0, 6): 7"));
  limits = {};
  limits.max_prompt_ids = 2;
  EXPECT_THAT(ErrorOf(kGood, limits), HasSubstr("has 3 ids, more than the limit of 2"));
  EXPECT_THAT(ErrorOf(With("max_new_tokens", "0")),
              HasSubstr("field 'max_new_tokens' must be in [1, 256], got 0"));
  EXPECT_THAT(ErrorOf(With("max_new_tokens", "257")), HasSubstr("got 257"));
  EXPECT_THAT(ErrorOf("{\"task\": "), HasSubstr("not valid JSON"));
  EXPECT_THAT(ErrorOf("[1, 2]"), HasSubstr("must be a JSON object, got array"));
  limits = {};
  limits.max_line_bytes = 20;
  EXPECT_THAT(ErrorOf(kGood, limits), HasSubstr("over the limit of 20"));
}

class TaskFileReadTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& text) {
    const std::filesystem::path path = testing::MakeTempDir("tasks") / "tasks.jsonl";
    testing::WriteFile(path, text);
    return path.string();
  }
  std::string ErrorOfFile(const std::string& text, const TaskFileLimits& limits = {}) {
    absl::StatusOr<std::vector<TaskPrompt>> prompts = ReadTaskFile(Write(text), limits);
    EXPECT_FALSE(prompts.ok());
    EXPECT_EQ(prompts.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(prompts.status().message());
  }
};

TEST_F(TaskFileReadTest, ReadsLinesInOrderSkippingBlankOnes) {
  absl::StatusOr<std::vector<TaskPrompt>> prompts =
      ReadTaskFile(Write(kGood + "\n\n  \r\n" + With("trial", "4") + "\r\n"), {});
  ASSERT_TRUE(prompts.ok()) << prompts.status();
  ASSERT_EQ(prompts->size(), 2u);
  EXPECT_EQ((*prompts)[0].trial, 3);
  EXPECT_EQ((*prompts)[0].line, 1);
  EXPECT_EQ((*prompts)[1].trial, 4);
  EXPECT_EQ((*prompts)[1].line, 4);
}

TEST_F(TaskFileReadTest, BadFilesGetTheirLineAndLimit) {
  EXPECT_THAT(ErrorOfFile(kGood + "\n" + With("depth", "") + "\n"),
              HasSubstr("line 2: field 'depth' is missing"));
  EXPECT_THAT(ErrorOfFile(kGood + "\nnot json\n"), HasSubstr("line 2: not valid JSON"));
  EXPECT_THAT(ErrorOfFile(""), HasSubstr("holds no prompts"));
  EXPECT_THAT(ErrorOfFile("\n \n"), HasSubstr("holds no prompts"));
  TaskFileLimits limits;
  limits.max_line_bytes = 200;
  // An oversize line (2 MB, no newline) is refused at the limit, naming its line.
  EXPECT_THAT(ErrorOfFile(kGood + "\n" + std::string(2 << 20, 'x'), limits),
              HasSubstr("line 2: longer than the limit of 200 bytes"));
  limits = {};
  limits.max_prompts = 2;
  EXPECT_THAT(ErrorOfFile(kGood + "\n" + kGood + "\n" + kGood + "\n", limits),
              HasSubstr("line 3: more than the limit of 2 prompts"));
  absl::StatusOr<std::vector<TaskPrompt>> missing = ReadTaskFile("/no/such/tasks.jsonl", {});
  EXPECT_THAT(std::string(missing.status().message()),
              HasSubstr("cannot read tasks file /no/such/tasks.jsonl"));
}

TEST(TaskAnswerTest, ScoringRuleMatchesThePythonChecker) {
  EXPECT_TRUE(IsCorrectTaskAnswer("12345.", " 12345."));
  EXPECT_TRUE(IsCorrectTaskAnswer(" 12345", " 12345."));     // cut off by max tokens
  EXPECT_FALSE(IsCorrectTaskAnswer(" 123456.", " 12345."));  // a longer number is wrong
  EXPECT_FALSE(IsCorrectTaskAnswer(" 1234", " 12345."));
  EXPECT_FALSE(IsCorrectTaskAnswer("", " 12345."));
  EXPECT_FALSE(IsCorrectTaskAnswer(" 12345, 6789", " 12345, 67890."));
  EXPECT_TRUE(IsCorrectTaskAnswer(" 12345, 67890, and", " 12345, 67890."));
  EXPECT_TRUE(IsCorrectTaskAnswer(" AAAAA, BBBBB.", " AAAAA, BBBBB."));
  EXPECT_FALSE(IsCorrectTaskAnswer(" AAAAA, BBBBBX", " AAAAA, BBBBB."));
}

TEST(TaskGridTest, ConfigurationsCrossKernelsOnlyForScoringPolicies) {
  CompressionParams base;
  absl::StatusOr<std::vector<GridConfig>> configs =
      BuildGridConfigs({"full", "streaming", "snapkv", "zigzag"}, {0.1, 0.2}, {7, 13}, base);
  ASSERT_TRUE(configs.ok()) << configs.status();
  std::vector<std::string> labels;
  for (const GridConfig& config : *configs) labels.push_back(config.label);
  EXPECT_THAT(labels,
              ElementsAre("full", "streaming@0.1", "streaming@0.2", "snapkv@0.1/k7",
                          "snapkv@0.1/k13", "snapkv@0.2/k7", "snapkv@0.2/k13", "zigzag@0.1/k7",
                          "zigzag@0.1/k13", "zigzag@0.2/k7", "zigzag@0.2/k13"));
  EXPECT_EQ((*configs)[8].params.kernel, 13);
  EXPECT_EQ((*configs)[8].params.ratio, 0.1);
  EXPECT_FALSE((*configs)[0].params.ratio.has_value());
  // One kernel: labels as the passkey grid has always written them.
  configs = BuildGridConfigs({"zigzag"}, {0.2}, {7}, base);
  ASSERT_TRUE(configs.ok());
  EXPECT_EQ((*configs)[0].label, "zigzag@0.2");
  EXPECT_THAT(std::string(BuildGridConfigs({"zigzag"}, {0.2}, {8}, base).status().message()),
              HasSubstr("zigzag at budget 0.2 kernel 8"));
  EXPECT_THAT(std::string(BuildGridConfigs({"snapkv"}, {1.5}, {7}, base).status().message()),
              HasSubstr("budget 1.5"));
  EXPECT_FALSE(BuildGridConfigs({"h2o"}, {0.2}, {7}, base).ok());
  EXPECT_THAT(std::string(BuildGridConfigs({"full"}, {0.2}, {}, base).status().message()),
              HasSubstr("no kernel"));
}

TEST(TaskGridTest, TallyCountsEveryCell) {
  absl::StatusOr<std::vector<GridConfig>> configs =
      BuildGridConfigs({"full", "zigzag"}, {0.2}, {7, 13}, CompressionParams());
  ASSERT_TRUE(configs.ok());
  TaskPrompt a;
  a.task = "multikey";
  a.length = 1024;
  a.depth = 0.5;
  TaskPrompt b = a;
  b.task = "vartrack";
  TaskGridTally tally;
  // multikey: full 2/2; zigzag k7 1/2; zigzag k13 0/2. vartrack: full 1/1 only.
  for (int trial = 0; trial < 2; ++trial) {
    tally.Add(a, (*configs)[0], true, 1.0);
    tally.Add(a, (*configs)[1], trial == 0, 0.2);
    tally.Add(a, (*configs)[2], false, 0.3);
  }
  tally.Add(b, (*configs)[0], true, 1.0);
  EXPECT_EQ(tally.CellsCsv(),
            "task,policy,budget,kernel,length,depth,correct,total,accuracy\n"
            "multikey,full,1,-,1024,0.5,2,2,1.0000\n"
            "multikey,zigzag,0.2,13,1024,0.5,0,2,0.0000\n"
            "multikey,zigzag,0.2,7,1024,0.5,1,2,0.5000\n"
            "vartrack,full,1,-,1024,0.5,1,1,1.0000\n");
  const std::string md = tally.SummaryMarkdown();
  EXPECT_THAT(md, HasSubstr("### multikey"));
  EXPECT_THAT(md, HasSubstr("| zigzag | 0.2 | 7 | 50.0% | 1/2 | 50% |"));
  EXPECT_THAT(md, HasSubstr("| zigzag@0.2/k13 | 0.300 |"));
  EXPECT_THAT(md, HasSubstr("| full | 1.000 |"));
}

// The grid end to end on the embedded model: two held-out passkey prompts of 400 tokens (one given
// as text, one as ids), full and ZigZag at 40% with kernels 7 and 13 from one shared prefill.
TEST(TaskGridTest, RunsTheEmbeddedModelOnTextAndIdPrompts) {
  ASSERT_TRUE(std::filesystem::exists(kModelDir + "/config.json")) << kModelDir;
  auto tokenizer = LoadTokenizer(kModelDir);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  auto words = LoadHaystackWords({"/usr/share/doc/git/RelNotes"}, 8, 7);
  ASSERT_TRUE(words.ok()) << words.status();
  std::vector<TaskPrompt> prompts;
  for (const auto& [passkey, depth] :
       std::vector<std::pair<std::string, double>>{{"30417", 0.25}, {"77802", 0.75}}) {
    auto built = BuildNiahPrompt(**tokenizer, *words, NiahFormat(), passkey, 1000, depth, 400);
    ASSERT_TRUE(built.ok()) << built.status();
    TaskPrompt& prompt = prompts.emplace_back();
    prompt.task = "passkey";
    prompt.length = 400;
    prompt.depth = depth;
    prompt.answer = " " + passkey + ".";
    prompt.max_new_tokens = 8;
    prompt.line = static_cast<int64_t>(prompts.size());
    if (prompts.size() == 1) {
      prompt.prompt = built->text;
    } else {
      prompt.prompt_ids = built->ids;
    }
  }
  auto backend = CreateBackend("cpu");
  ASSERT_TRUE(backend.ok());
  auto model = LlamaModel::LoadFromDir(kModelDir, backend->get());
  ASSERT_TRUE(model.ok()) << model.status();
  auto cache = KvCache::CreateWithBytes(backend->get(), (*model)->kv_layout(16), 32 << 20);
  ASSERT_TRUE(cache.ok());
  absl::StatusOr<std::vector<GridConfig>> configs =
      BuildGridConfigs({"full", "zigzag"}, {0.4}, {7, 13}, CompressionParams());
  ASSERT_TRUE(configs.ok());
  TaskGridOptions options;
  options.out_dir = (testing::MakeTempDir("task_grid") / "out").string();
  absl::Status run = RunTaskGrid(**model, **cache, **tokenizer, prompts, *configs, options);
  ASSERT_TRUE(run.ok()) << run;
  std::ifstream cells_file(std::filesystem::path(options.out_dir) / "cells.csv");
  std::stringstream cells;
  cells << cells_file.rdbuf();
  // zigzag-tiny retrieves held-out passkeys at these lengths with a full cache (model card: 100%
  // up to 1K) and with ZigZag at 40% (niah_test); one cell per (config, depth).
  EXPECT_EQ(cells.str(),
            "task,policy,budget,kernel,length,depth,correct,total,accuracy\n"
            "passkey,full,1,-,400,0.25,1,1,1.0000\n"
            "passkey,full,1,-,400,0.75,1,1,1.0000\n"
            "passkey,zigzag,0.4,13,400,0.25,1,1,1.0000\n"
            "passkey,zigzag,0.4,13,400,0.75,1,1,1.0000\n"
            "passkey,zigzag,0.4,7,400,0.25,1,1,1.0000\n"
            "passkey,zigzag,0.4,7,400,0.75,1,1,1.0000\n");
  std::ifstream results_file(std::filesystem::path(options.out_dir) / "results.csv");
  std::string line;
  int rows = 0;
  while (std::getline(results_file, line)) ++rows;
  EXPECT_EQ(rows, 1 + 2 * 3);
  EXPECT_EQ((*cache)->pool().num_used(), 0);

  // A prompt that leaves no room for its answer in the model's context is refused before any
  // forward pass, naming its line.
  prompts[1].prompt_ids.assign(static_cast<size_t>((*model)->config().max_context()), 5);
  prompts[1].line = 7;
  run = RunTaskGrid(**model, **cache, **tokenizer, prompts, *configs, options);
  EXPECT_EQ(run.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(run.message()), HasSubstr("tasks file line 7: 4096 prompt tokens + 8"));
}

}  // namespace
}  // namespace zigzag::niah
