#include "tools/niah/task_grid.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/engine/generation.h"

namespace zigzag::niah {
namespace {

bool PoolsScores(KvPolicy policy) {
  return policy == KvPolicy::kSnapKv || policy == KvPolicy::kPyramidKv ||
         policy == KvPolicy::kZigZag;
}

std::string KernelColumn(const GridConfig& config) {
  return PoolsScores(config.params.policy) ? absl::StrCat(config.params.kernel) : "-";
}

}  // namespace

std::string CsvQuote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"')
      out += "\"\"";
    else if (c == '\n')
      out += "\\n";
    else
      out.push_back(c);
  }
  return out + "\"";
}

absl::StatusOr<std::vector<GridConfig>> BuildGridConfigs(const std::vector<std::string>& policies,
                                                         const std::vector<double>& budgets,
                                                         const std::vector<int32_t>& kernels,
                                                         const CompressionParams& base) {
  if (kernels.empty()) return absl::InvalidArgumentError("no kernel given");
  std::vector<GridConfig> configs;
  for (const std::string& name : policies) {
    absl::StatusOr<KvPolicy> policy = ParseKvPolicy(name);
    if (!policy.ok()) return policy.status();
    GridConfig config;
    config.params = base;
    config.params.policy = *policy;
    config.params.ratio.reset();
    config.params.tokens_per_layer.reset();
    if (*policy == KvPolicy::kFull) {
      config.label = "full";
      if (absl::Status valid = ValidateCompressionParams(config.params); !valid.ok()) return valid;
      configs.push_back(config);
      continue;
    }
    for (double budget : budgets) {
      config.params.ratio = budget;
      config.budget = budget;
      const std::vector<int32_t> own_kernels =
          PoolsScores(*policy) ? kernels : std::vector<int32_t>{base.kernel};
      for (int32_t kernel : own_kernels) {
        config.params.kernel = kernel;
        if (absl::Status valid = ValidateCompressionParams(config.params); !valid.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat(name, " at budget ", budget, " kernel ", kernel, ": ", valid.message()));
        }
        config.label = absl::StrCat(name, "@", budget);
        if (PoolsScores(*policy) && kernels.size() > 1)
          absl::StrAppend(&config.label, "/k", kernel);
        configs.push_back(config);
      }
    }
  }
  if (configs.empty()) return absl::InvalidArgumentError("no policy given");
  return configs;
}

void TaskGridTally::Add(const TaskPrompt& prompt, const GridConfig& config, bool correct,
                        double retained) {
  if (configs_.emplace(config.label, config).second) config_order_.push_back(config.label);
  Cell& cell = cells_[{prompt.task, config.label, prompt.length, prompt.depth}];
  cell.correct += correct ? 1 : 0;
  cell.total += 1;
  auto& [sum, count] = retained_[config.label];
  sum += retained;
  count += 1;
}

std::string TaskGridTally::CellsCsv() const {
  std::string out = "task,policy,budget,kernel,length,depth,correct,total,accuracy\n";
  for (const auto& [key, cell] : cells_) {
    const auto& [task, label, length, depth] = key;
    const GridConfig& config = configs_.at(label);
    absl::StrAppend(&out, task, ",", KvPolicyName(config.params.policy), ",", config.budget, ",",
                    KernelColumn(config), ",", length, ",", depth, ",", cell.correct, ",",
                    cell.total, ",",
                    absl::StrFormat("%.4f", static_cast<double>(cell.correct) / cell.total), "\n");
  }
  return out;
}

std::string TaskGridTally::SummaryMarkdown() const {
  std::set<std::string> tasks;
  std::set<int64_t> lengths;
  for (const auto& [key, cell] : cells_) {
    tasks.insert(std::get<0>(key));
    lengths.insert(std::get<2>(key));
  }
  std::string md;
  for (const std::string& task : tasks) {
    absl::StrAppend(&md, "### ", task, "\n\n| policy | budget | kernel | accuracy | correct |");
    for (int64_t length : lengths) absl::StrAppend(&md, " ", length, " |");
    md += "\n|---|---|---|---|---|";
    for (size_t i = 0; i < lengths.size(); ++i) md += "---|";
    md += "\n";
    for (const std::string& label : config_order_) {
      const GridConfig& config = configs_.at(label);
      Cell all;
      std::map<int64_t, Cell> by_length;
      for (const auto& [key, cell] : cells_) {
        if (std::get<0>(key) != task || std::get<1>(key) != label) continue;
        all.correct += cell.correct;
        all.total += cell.total;
        by_length[std::get<2>(key)].correct += cell.correct;
        by_length[std::get<2>(key)].total += cell.total;
      }
      if (all.total == 0) continue;
      absl::StrAppend(&md, "| ", KvPolicyName(config.params.policy), " | ",
                      config.params.policy == KvPolicy::kFull ? "-" : absl::StrCat(config.budget),
                      " | ", KernelColumn(config), " | ",
                      absl::StrFormat("%.1f%%", 100.0 * all.correct / all.total), " | ",
                      all.correct, "/", all.total, " |");
      for (int64_t length : lengths) {
        const auto it = by_length.find(length);
        absl::StrAppend(
            &md, " ",
            it == by_length.end()
                ? "-"
                : absl::StrFormat("%.0f%%", 100.0 * it->second.correct / it->second.total),
            " |");
      }
      md += "\n";
    }
    md += "\n";
  }
  md += "| configuration | mean retained KV |\n|---|---|\n";
  for (const std::string& label : config_order_) {
    const auto& [sum, count] = retained_.at(label);
    absl::StrAppend(&md, "| ", label, " | ", absl::StrFormat("%.3f", sum / count), " |\n");
  }
  return md;
}

absl::Status RunTaskGrid(LlamaModel& model, KvCache& cache, const Tokenizer& tokenizer,
                         const std::vector<TaskPrompt>& prompts,
                         const std::vector<GridConfig>& configs, const TaskGridOptions& options) {
  const int64_t context = model.config().max_context();
  const int64_t num_layers = model.config().num_layers;
  // Tokenize and bound every prompt before the first forward pass: a bad line fails in seconds.
  std::vector<std::vector<int32_t>> ids(prompts.size());
  for (size_t p = 0; p < prompts.size(); ++p) {
    const TaskPrompt& prompt = prompts[p];
    if (!prompt.prompt_ids.empty()) {
      ids[p] = prompt.prompt_ids;
    } else {
      absl::StatusOr<std::vector<int32_t>> encoded =
          tokenizer.Encode(prompt.prompt, /*add_special_tokens=*/true);
      if (!encoded.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("tasks file line ", prompt.line, ": ", encoded.status().message()));
      }
      ids[p] = std::move(*encoded);
    }
    const int64_t max_new =
        prompt.max_new_tokens > 0 ? prompt.max_new_tokens : options.default_max_new_tokens;
    if (static_cast<int64_t>(ids[p].size()) + max_new > context) {
      return absl::InvalidArgumentError(
          absl::StrCat("tasks file line ", prompt.line, ": ", ids[p].size(), " prompt tokens + ",
                       max_new, " answer tokens exceed the model's context of ", context));
    }
  }

  std::error_code error;
  std::filesystem::create_directories(options.out_dir, error);
  const std::filesystem::path out(options.out_dir);
  std::ofstream csv(out / "results.csv");
  if (!csv) return absl::InvalidArgumentError(absl::StrCat("cannot write to ", options.out_dir));
  csv << "task,length,prompt_tokens,depth,trial,policy,budget,kernel,correct,generated,answer,"
         "retained_fraction,kept_per_layer\n";

  TaskGridTally tally;
  const auto start = std::chrono::steady_clock::now();
  for (size_t p = 0; p < prompts.size(); ++p) {
    const TaskPrompt& prompt = prompts[p];
    std::vector<GenerationRequest> requests;
    for (const GridConfig& config : configs) {
      GenerationRequest& request = requests.emplace_back();
      request.prompt = ids[p];
      request.sampling.temperature = 0.0f;
      request.sampling.max_tokens =
          prompt.max_new_tokens > 0 ? prompt.max_new_tokens : options.default_max_new_tokens;
      request.compression = config.params;
    }
    absl::StatusOr<std::vector<GenerationResult>> results =
        GenerateFromSharedPrefill(model, cache, requests);
    if (!results.ok()) return results.status();
    int64_t correct_here = 0;
    for (size_t c = 0; c < configs.size(); ++c) {
      const GenerationResult& result = (*results)[c];
      absl::StatusOr<std::string> generated = tokenizer.Decode(result.tokens, true);
      if (!generated.ok()) return generated.status();
      const bool correct = IsCorrectTaskAnswer(*generated, prompt.answer);
      int64_t kept = 0;
      for (int64_t k : result.kv_stats.prompt_kept_per_layer) kept += k;
      const double retained =
          static_cast<double>(kept) / static_cast<double>(num_layers * ids[p].size());
      csv << prompt.task << ',' << prompt.length << ',' << ids[p].size() << ',' << prompt.depth
          << ',' << prompt.trial << ',' << KvPolicyName(configs[c].params.policy) << ','
          << configs[c].budget << ',' << KernelColumn(configs[c]) << ',' << (correct ? 1 : 0) << ','
          << CsvQuote(*generated) << ',' << CsvQuote(prompt.answer) << ',' << retained << ','
          << absl::StrJoin(result.kv_stats.prompt_kept_per_layer, ";") << '\n';
      tally.Add(prompt, configs[c], correct, retained);
      correct_here += correct;
    }
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("[%zu/%zu %.0fs] %s length %lld (%zu tokens) depth %.2f trial %lld: %lld/%zu\n",
                p + 1, prompts.size(), elapsed, prompt.task.c_str(),
                static_cast<long long>(prompt.length), ids[p].size(), prompt.depth,
                static_cast<long long>(prompt.trial), static_cast<long long>(correct_here),
                configs.size());
    std::fflush(stdout);
  }
  csv.close();
  if (!csv) return absl::InternalError(absl::StrCat("writing ", (out / "results.csv").string()));
  std::ofstream(out / "cells.csv") << tally.CellsCsv();
  const std::string md = tally.SummaryMarkdown();
  std::ofstream(out / "summary.md") << md;
  std::printf("\n%s", md.c_str());
  return absl::OkStatus();
}

}  // namespace zigzag::niah
