// zigzag-niah: needle-in-a-haystack over a grid of prompt lengths x needle depths x trials, every
// KV policy, budget and kernel continued from one shared prefill per prompt
// (GenerateFromSharedPrefill). Writes results.csv (one row per prompt and policy), summary.md and
// summary.json to --out. With --tasks_file, the prompts are those of the file (the long-context
// tasks of tools/train_model/make_eval_tasks.py) and task_grid.h runs them instead.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/compress/compression_params.h"
#include "core/engine/generation.h"
#include "core/model/checkpoint.h"
#include "core/model/llama_model.h"
#include "core/tokenizer/tokenizer.h"
#include "core/util/command_line.h"
#include "kernels/backend_registry.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"
#include "tools/niah/niah_prompt.h"
#include "tools/niah/task_file.h"
#include "tools/niah/task_grid.h"

ABSL_FLAG(std::string, model, "", "Hugging Face model folder with a tokenizer");
ABSL_FLAG(std::string, haystack, "/usr/share/doc/git/RelNotes",
          "Comma-separated haystack files or directories (a directory's *.txt files)");
ABSL_FLAG(int32_t, haystack_stride, 8, "From directories, take every N-th file ...");
ABSL_FLAG(int32_t, haystack_offset, 7,
          "... starting at this index (8 and 7: the files the embedded model was not trained on)");
ABSL_FLAG(std::string, lengths, "1024,2048,3072,4000", "Prompt lengths in tokens (at most)");
ABSL_FLAG(std::string, depths, "0,0.25,0.5,0.75,1", "Needle depths in [0, 1]");
ABSL_FLAG(int32_t, trials, 2, "Prompts per (length, depth), each with its own passkey and text");
ABSL_FLAG(uint64_t, seed, 1, "Seed for passkeys and haystack offsets");
ABSL_FLAG(std::string, policies, "full,streaming,snapkv,pyramidkv,zigzag", "KV policies");
ABSL_FLAG(std::string, budgets, "0.05,0.1,0.2,0.4",
          "Average KV budgets as fractions of the prompt (for every policy but full)");
ABSL_FLAG(int32_t, kv_window, 32, "Observation window");
ABSL_FLAG(int32_t, kv_kernel, 7, "Max-pool kernel (when --kv_kernels is empty)");
ABSL_FLAG(std::string, kv_kernels, "",
          "Comma-separated max-pool kernels, each a grid column for snapkv, pyramidkv and zigzag");
ABSL_FLAG(std::string, tasks_file, "",
          "JSONL of task prompts (tools/train_model/make_eval_tasks.py) to run instead of the "
          "passkey grid; --lengths, --depths, --trials, --seed and --haystack* are then unused");
ABSL_FLAG(int64_t, tasks_max_line_bytes, 1 << 20, "Longest line accepted in --tasks_file");
ABSL_FLAG(double, kv_tau, 0.9, "ZigZag tau");
ABSL_FLAG(double, kv_rho, 0.2, "ZigZag rho");
ABSL_FLAG(std::string, kv_head_budgets, "uniform",
          "Head split of snapkv, pyramidkv and zigzag: uniform or adaptive (one split per run; "
          "run twice with different --out to compare)");
ABSL_FLAG(double, kv_alpha, 0.2, "Adaptive head split floor, [0, 1]");
ABSL_FLAG(int32_t, max_tokens, 8,
          "Tokens generated per answer (greedy); with --tasks_file, for lines without "
          "max_new_tokens");
ABSL_FLAG(std::string, backend, "auto", "Backend: auto, cpu or cuda");
ABSL_FLAG(int32_t, threads, 0, "CPU backend threads; 0 = all cores");
ABSL_FLAG(
    std::string, cpu_weight_dtype, "auto",
    "CPU backend weight dtype: auto (the checkpoint's: bf16/f16 stay 16-bit), f32, bf16, f16");
ABSL_FLAG(int64_t, kv_memory_mb, 512, "KV cache memory in MiB");
ABSL_FLAG(std::string, out, "", "Folder for results.csv, summary.md and summary.json");

namespace {

int Fail(const std::string& what, const absl::Status& status) {
  std::fprintf(stderr, "zigzag-niah: %s: %s\n", what.c_str(),
               std::string(status.message()).c_str());
  return 1;
}

template <typename T>
bool ParseList(const std::string& text, const char* flag, std::vector<T>* out) {
  for (absl::string_view piece : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    T value;
    bool ok;
    if constexpr (std::is_same_v<T, double>) {
      ok = absl::SimpleAtod(piece, &value);
    } else {
      ok = absl::SimpleAtoi(piece, &value);
    }
    if (!ok) {
      std::fprintf(stderr, "zigzag-niah: --%s: '%s' is not a number\n", flag,
                   std::string(piece).c_str());
      return false;
    }
    out->push_back(value);
  }
  if (out->empty()) {
    std::fprintf(stderr, "zigzag-niah: --%s is empty\n", flag);
    return false;
  }
  return true;
}

using Config = zigzag::niah::GridConfig;

// The kernel only matters to the policies that pool scores.
std::string KernelColumn(const Config& config) {
  const zigzag::KvPolicy policy = config.params.policy;
  return policy == zigzag::KvPolicy::kFull || policy == zigzag::KvPolicy::kStreaming
             ? "-"
             : absl::StrCat(config.params.kernel);
}

struct Tally {
  int64_t correct = 0;
  int64_t total = 0;
  double retained_sum = 0;
  std::map<int64_t, std::pair<int64_t, int64_t>> by_length;  // length -> (correct, total)
};

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Needle-in-a-haystack accuracy of every KV policy and budget.\n"
      "  zigzag-niah --model models/zigzag-tiny --out docs/results/niah [grid flags]");
  const std::vector<std::string> positional = zigzag::ParseCommandLineAcceptingDashes(argc, argv);
  if (positional.size() > 1) {
    std::fprintf(stderr, "zigzag-niah: unexpected argument '%s'\n", positional[1].c_str());
    return 2;
  }
  spdlog::set_level(spdlog::level::warn);
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  const std::string out_dir = absl::GetFlag(FLAGS_out);
  if (model_dir.empty() || out_dir.empty()) {
    std::fprintf(stderr, "zigzag-niah: --model and --out are required\n");
    return 2;
  }
  std::vector<int64_t> lengths;
  std::vector<double> depths;
  std::vector<double> budgets;
  if (!ParseList(absl::GetFlag(FLAGS_lengths), "lengths", &lengths) ||
      !ParseList(absl::GetFlag(FLAGS_depths), "depths", &depths) ||
      !ParseList(absl::GetFlag(FLAGS_budgets), "budgets", &budgets)) {
    return 2;
  }
  if (absl::GetFlag(FLAGS_trials) < 1 || absl::GetFlag(FLAGS_max_tokens) < 1) {
    std::fprintf(stderr, "zigzag-niah: --trials and --max-tokens must be >= 1\n");
    return 2;
  }

  std::vector<int32_t> kernels;
  if (absl::GetFlag(FLAGS_kv_kernels).empty()) {
    kernels.push_back(absl::GetFlag(FLAGS_kv_kernel));
  } else if (!ParseList(absl::GetFlag(FLAGS_kv_kernels), "kv_kernels", &kernels)) {
    return 2;
  }
  zigzag::CompressionParams base;
  base.window = absl::GetFlag(FLAGS_kv_window);
  base.kernel = kernels.front();
  base.tau = absl::GetFlag(FLAGS_kv_tau);
  base.rho = absl::GetFlag(FLAGS_kv_rho);
  absl::StatusOr<zigzag::HeadBudgets> head_budgets =
      zigzag::ParseHeadBudgets(absl::GetFlag(FLAGS_kv_head_budgets));
  if (!head_budgets.ok()) return Fail("--kv_head_budgets", head_budgets.status());
  base.head_budgets = *head_budgets;
  base.alpha = absl::GetFlag(FLAGS_kv_alpha);
  const std::vector<std::string> policies =
      absl::StrSplit(absl::GetFlag(FLAGS_policies), ',', absl::SkipEmpty());
  absl::StatusOr<std::vector<Config>> built =
      zigzag::niah::BuildGridConfigs(policies, budgets, kernels, base);
  if (!built.ok()) return Fail("--policies / --budgets / --kv_kernels", built.status());
  const std::vector<Config> configs = std::move(*built);
  const std::string tasks_file = absl::GetFlag(FLAGS_tasks_file);

  absl::StatusOr<std::vector<std::string>> words = std::vector<std::string>{};
  if (tasks_file.empty()) {
    std::vector<std::string> haystack_paths =
        absl::StrSplit(absl::GetFlag(FLAGS_haystack), ',', absl::SkipEmpty());
    words = zigzag::niah::LoadHaystackWords(haystack_paths, absl::GetFlag(FLAGS_haystack_stride),
                                            absl::GetFlag(FLAGS_haystack_offset));
    if (!words.ok()) return Fail("--haystack", words.status());
  }

  auto checkpoint = zigzag::Checkpoint::Open(model_dir);
  if (!checkpoint.ok()) return Fail("loading the model", checkpoint.status());
  auto checkpoint_dtype = (*checkpoint)->WeightDtype();
  if (!checkpoint_dtype.ok()) return Fail("loading the model", checkpoint_dtype.status());
  zigzag::BackendOptions backend_options;
  backend_options.num_threads = absl::GetFlag(FLAGS_threads);
  auto weight_dtype =
      zigzag::ResolveCpuWeightDtype(absl::GetFlag(FLAGS_cpu_weight_dtype), *checkpoint_dtype);
  if (!weight_dtype.ok()) return Fail("--cpu-weight-dtype", weight_dtype.status());
  backend_options.cpu_weight_dtype = *weight_dtype;
  auto backend = zigzag::CreateBackend(absl::GetFlag(FLAGS_backend), backend_options);
  if (!backend.ok()) return Fail("backend", backend.status());
  auto model = zigzag::LlamaModel::Load(**checkpoint, backend->get());
  if (!model.ok()) return Fail("loading the model", model.status());
  auto tokenizer = zigzag::LoadTokenizer(model_dir);
  if (!tokenizer.ok()) return Fail("loading the tokenizer", tokenizer.status());
  auto cache = zigzag::KvCache::CreateWithBytes(backend->get(), (*model)->kv_layout(16),
                                                absl::GetFlag(FLAGS_kv_memory_mb) << 20);
  if (!cache.ok()) return Fail("KV cache", cache.status());
  const int64_t max_tokens = absl::GetFlag(FLAGS_max_tokens);
  if (!tasks_file.empty()) {
    zigzag::niah::TaskFileLimits limits;
    limits.max_line_bytes = absl::GetFlag(FLAGS_tasks_max_line_bytes);
    limits.max_prompt_ids = (*model)->config().max_context();
    limits.vocab_size = (*model)->config().vocab_size;
    absl::StatusOr<std::vector<zigzag::niah::TaskPrompt>> prompts =
        zigzag::niah::ReadTaskFile(tasks_file, limits);
    if (!prompts.ok()) return Fail("--tasks_file", prompts.status());
    zigzag::niah::TaskGridOptions options;
    options.default_max_new_tokens = static_cast<int32_t>(max_tokens);
    options.out_dir = out_dir;
    absl::Status run =
        zigzag::niah::RunTaskGrid(**model, **cache, **tokenizer, *prompts, configs, options);
    if (!run.ok()) return Fail("task grid", run);
    return 0;
  }
  for (int64_t length : lengths) {
    if (length + max_tokens > (*model)->config().max_context()) {
      std::fprintf(stderr,
                   "zigzag-niah: --lengths: %lld tokens + %lld answer tokens exceed the model's "
                   "context of %lld\n",
                   static_cast<long long>(length), static_cast<long long>(max_tokens),
                   static_cast<long long>((*model)->config().max_context()));
      return 2;
    }
  }
  std::error_code error;
  std::filesystem::create_directories(out_dir, error);
  std::ofstream csv(std::filesystem::path(out_dir) / "results.csv");
  if (!csv) {
    std::fprintf(stderr, "zigzag-niah: cannot write to %s\n", out_dir.c_str());
    return 1;
  }
  csv << "length,prompt_tokens,depth,trial,passkey,policy,budget,correct,answer,"
         "retained_fraction,kept_per_layer,kernel\n";

  std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));
  std::map<std::string, Tally> tallies;
  const zigzag::niah::NiahFormat format;
  const int64_t num_layers = (*model)->config().num_layers;
  const auto start = std::chrono::steady_clock::now();
  int64_t prompts_done = 0;
  const int64_t prompts_total =
      static_cast<int64_t>(lengths.size() * depths.size()) * absl::GetFlag(FLAGS_trials);
  for (int64_t length : lengths) {
    for (double depth : depths) {
      for (int32_t trial = 0; trial < absl::GetFlag(FLAGS_trials); ++trial) {
        const std::string passkey = std::to_string(10000 + rng() % 90000);
        const int64_t first_word = static_cast<int64_t>(rng() % words->size());
        absl::StatusOr<zigzag::niah::NiahPrompt> prompt = zigzag::niah::BuildNiahPrompt(
            **tokenizer, *words, format, passkey, first_word, depth, length);
        if (!prompt.ok()) return Fail("building a prompt", prompt.status());
        std::vector<zigzag::GenerationRequest> requests;
        for (const Config& config : configs) {
          zigzag::GenerationRequest& request = requests.emplace_back();
          request.prompt = prompt->ids;
          request.sampling.temperature = 0.0f;
          request.sampling.max_tokens = static_cast<int32_t>(max_tokens);
          request.compression = config.params;
        }
        auto results = zigzag::GenerateFromSharedPrefill(**model, **cache, requests);
        if (!results.ok()) return Fail("generation", results.status());
        std::string line;
        for (size_t c = 0; c < configs.size(); ++c) {
          const zigzag::GenerationResult& result = (*results)[c];
          absl::StatusOr<std::string> answer = (*tokenizer)->Decode(result.tokens, true);
          if (!answer.ok()) return Fail("decoding an answer", answer.status());
          const bool correct = zigzag::niah::IsCorrectAnswer(*answer, passkey);
          int64_t kept = 0;
          for (int64_t k : result.kv_stats.prompt_kept_per_layer) kept += k;
          const double retained =
              static_cast<double>(kept) / static_cast<double>(num_layers * prompt->ids.size());
          csv << length << ',' << prompt->ids.size() << ',' << depth << ',' << trial << ','
              << passkey << ',' << zigzag::KvPolicyName(configs[c].params.policy) << ','
              << configs[c].budget << ',' << (correct ? 1 : 0) << ','
              << zigzag::niah::CsvQuote(*answer) << ',' << retained << ','
              << absl::StrJoin(result.kv_stats.prompt_kept_per_layer, ";") << ','
              << KernelColumn(configs[c]) << '\n';
          Tally& tally = tallies[configs[c].label];
          tally.correct += correct;
          tally.total += 1;
          tally.retained_sum += retained;
          tally.by_length[length].first += correct;
          tally.by_length[length].second += 1;
          absl::StrAppend(&line, " ", configs[c].label, correct ? "+" : "-");
        }
        ++prompts_done;
        const double elapsed =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::printf("[%lld/%lld %.0fs] length %lld (%zu tokens) depth %.2f trial %d:%s\n",
                    static_cast<long long>(prompts_done), static_cast<long long>(prompts_total),
                    elapsed, static_cast<long long>(length), prompt->ids.size(), depth, trial,
                    line.c_str());
        std::fflush(stdout);
      }
    }
  }
  csv.close();

  // Summary: accuracy and retained KV per configuration, accuracy per length.
  nlohmann::json json;
  std::string md = "| policy | budget | kernel | accuracy | correct | mean retained KV |";
  for (int64_t length : lengths) absl::StrAppend(&md, " ", length, " |");
  md += "\n|---|---|---|---|---|---|";
  for (size_t i = 0; i < lengths.size(); ++i) md += "---|";
  md += "\n";
  for (const Config& config : configs) {
    const Tally& tally = tallies[config.label];
    const double accuracy = static_cast<double>(tally.correct) / tally.total;
    const double retained = tally.retained_sum / tally.total;
    absl::StrAppend(
        &md, "| ", zigzag::KvPolicyName(config.params.policy), " | ",
        config.params.policy == zigzag::KvPolicy::kFull ? "-" : absl::StrCat(config.budget), " | ",
        KernelColumn(config), " | ", absl::StrFormat("%.1f%%", 100 * accuracy), " | ",
        tally.correct, "/", tally.total, " | ", absl::StrFormat("%.3f", retained), " |");
    nlohmann::json by_length;
    for (int64_t length : lengths) {
      const auto [correct, total] = tally.by_length.at(length);
      absl::StrAppend(&md, " ", absl::StrFormat("%.0f%%", 100.0 * correct / total), " |");
      by_length[std::to_string(length)] = static_cast<double>(correct) / total;
    }
    md += "\n";
    json["configs"].push_back({{"policy", zigzag::KvPolicyName(config.params.policy)},
                               {"budget", config.budget},
                               {"kernel", config.params.kernel},
                               {"accuracy", accuracy},
                               {"correct", tally.correct},
                               {"total", tally.total},
                               {"mean_retained_fraction", retained},
                               {"accuracy_by_length", by_length}});
  }
  json["lengths"] = lengths;
  json["depths"] = depths;
  json["trials"] = absl::GetFlag(FLAGS_trials);
  json["model"] = model_dir;
  json["backend"] = (*backend)->name();
  std::ofstream(std::filesystem::path(out_dir) / "summary.md") << md;
  std::ofstream(std::filesystem::path(out_dir) / "summary.json") << json.dump(2) << "\n";
  std::printf("\n%s", md.c_str());
  return 0;
}
