// The evaluation grid of zigzag-niah: the (policy, budget, kernel) configurations, the run of every
// tasks-file prompt under all of them from one shared prefill, and the accuracy tally per cell
// (task x configuration x length x depth) with its CSV and Markdown outputs. Reading the tasks file
// is task_file.h; the classic passkey grid (prompts built from a haystack) stays in niah_main.cc.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/compress/compression_params.h"
#include "core/kv/kv_cache.h"
#include "core/model/llama_model.h"
#include "core/tokenizer/tokenizer.h"
#include "tools/niah/task_file.h"

namespace zigzag::niah {

struct GridConfig {
  CompressionParams params;
  double budget = 1.0;  // ratio of the prompt kept (1 for full)
  std::string label;    // "full", "streaming@0.2", "zigzag@0.2/k13"
};

// Every policy at every budget and, for the policies that pool scores (snapkv, pyramidkv, zigzag),
// every kernel; full once, streaming once per budget (no kernel). `base` gives window, tau, rho
// and the rest. Labels carry "/k<kernel>" only when more than one kernel is asked for.
// InvalidArgument for an unknown policy, no kernel, or parameters that do not validate (naming the
// budget or kernel).
// A CSV field: quoted, inner quotes doubled, newlines written as \n (answers may hold either).
std::string CsvQuote(std::string_view text);

absl::StatusOr<std::vector<GridConfig>> BuildGridConfigs(const std::vector<std::string>& policies,
                                                         const std::vector<double>& budgets,
                                                         const std::vector<int32_t>& kernels,
                                                         const CompressionParams& base);

// Correct / total per cell, and the mean retained KV fraction per configuration.
class TaskGridTally {
 public:
  void Add(const TaskPrompt& prompt, const GridConfig& config, bool correct, double retained);
  // task,policy,budget,kernel,length,depth,correct,total,accuracy (one row per cell, sorted).
  std::string CellsCsv() const;
  // Per task: one row per configuration, accuracy overall and per length.
  std::string SummaryMarkdown() const;

 private:
  struct Cell {
    int64_t correct = 0;
    int64_t total = 0;
  };
  // (task, config label, length, depth)
  std::map<std::tuple<std::string, std::string, int64_t, double>, Cell> cells_;
  std::map<std::string, GridConfig> configs_;  // by label
  std::vector<std::string> config_order_;
  std::map<std::string, std::pair<double, int64_t>> retained_;  // label -> (sum, count)
};

struct TaskGridOptions {
  int32_t default_max_new_tokens = 8;  // for prompts without max_new_tokens
  std::string out_dir;                 // results.csv, cells.csv, summary.md
};

// Runs every prompt under every configuration (GenerateFromSharedPrefill, greedy), scores with
// IsCorrectTaskAnswer and writes results.csv (one row per prompt and configuration), cells.csv and
// summary.md into out_dir. InvalidArgument naming the prompt's line when it does not fit the
// model's context with its answer tokens; the engine's errors otherwise.
absl::Status RunTaskGrid(LlamaModel& model, KvCache& cache, const Tokenizer& tokenizer,
                         const std::vector<TaskPrompt>& prompts,
                         const std::vector<GridConfig>& configs, const TaskGridOptions& options);

}  // namespace zigzag::niah
