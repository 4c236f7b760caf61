// zigzag-profile: runs one prompt (token ids) through a model and prints, per layer, what ZigZagKV
// measures (LMBA, ZIGZAG.md section 3), what the layer's output needs (LMBO, section 7), the
// budget each policy would give it at the requested average budget, and how each scoring policy's
// layer budget splits across the layer's KV heads (uniform or adaptive, section 8). Analysis only:
// it serves nothing and compresses nothing.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/compress/compression_params.h"
#include "core/compress/lmbo.h"
#include "core/compress/policy.h"
#include "core/kv/kv_cache.h"
#include "core/kv/sequence_kv.h"
#include "core/model/checkpoint.h"
#include "core/model/llama_model.h"
#include "core/util/command_line.h"
#include "core/util/status_macros.h"
#include "kernels/backend_registry.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, model, "", "Hugging Face model folder (config.json + *.safetensors)");
ABSL_FLAG(std::string, prompt_file, "",
          "File of prompt token ids separated by commas and/or whitespace. Token ids only: there "
          "is no text tokenizer yet");
ABSL_FLAG(std::string, prompt_ids, "", "Prompt as comma-separated token ids (instead of a file)");
ABSL_FLAG(int64_t, kv_budget, 0, "Average KV budget B_avg in tokens per layer (window included)");
ABSL_FLAG(double, kv_ratio, 0.0, "Average KV budget as a fraction of the prompt, in (0, 1]");
ABSL_FLAG(int32_t, kv_window, 32, "Observation window w (last prompt tokens always kept)");
ABSL_FLAG(int32_t, kv_kernel, 7, "Max-pool kernel for token scores (odd)");
ABSL_FLAG(double, kv_tau, 0.9, "LMBA: attention mass a layer's minimum budget must keep");
ABSL_FLAG(double, kv_rho, 0.2, "ZigZag: per-layer floor as a fraction of the average budget");
ABSL_FLAG(std::string, kv_head_budgets, "uniform",
          "Split of a layer's budget across its KV heads: uniform or adaptive (AdaKV)");
ABSL_FLAG(double, kv_alpha, 0.2, "Adaptive head split: per-head floor, fraction of B_l - window");
ABSL_FLAG(double, lmbo_tau, 0.99, "LMBO: mean output cosine a layer's budget must reach, (0, 1]");
ABSL_FLAG(
    std::string, csv, "",
    "Also write the table as CSV to this file; '-' = CSV alone on stdout (settings on stderr)");
ABSL_FLAG(std::string, backend, "auto", "Backend: auto, cpu or cuda");
ABSL_FLAG(int32_t, threads, 0, "CPU backend threads; 0 = all cores");
ABSL_FLAG(
    std::string, cpu_weight_dtype, "auto",
    "CPU backend weight dtype: auto (the checkpoint's: bf16/f16 stay 16-bit), f32, bf16, f16");
ABSL_FLAG(int32_t, block_size, 16, "KV cache block size in tokens");

namespace {

constexpr const char* kProgram = "zigzag-profile";

// The policies the table compares, in column order.
const zigzag::KvPolicy kPolicies[] = {zigzag::KvPolicy::kStreaming, zigzag::KvPolicy::kSnapKv,
                                      zigzag::KvPolicy::kPyramidKv, zigzag::KvPolicy::kZigZag};

// Whether a policy scores tokens and so splits its layer budgets by --kv-head-budgets (streaming
// keeps the same positions in every head: EffectiveHeadBudgets).
bool SplitsAcrossHeads(zigzag::KvPolicy policy) {
  return policy == zigzag::KvPolicy::kSnapKv || policy == zigzag::KvPolicy::kPyramidKv ||
         policy == zigzag::KvPolicy::kZigZag;
}

// Token ids separated by commas and/or whitespace. `source` names where they came from.
absl::StatusOr<std::vector<int32_t>> ParseTokenIds(const std::string& text,
                                                   const std::string& source) {
  std::vector<int32_t> ids;
  for (absl::string_view piece : absl::StrSplit(text, absl::ByAnyChar(", \t\r\n"))) {
    if (piece.empty()) continue;
    int32_t id;
    if (!absl::SimpleAtoi(piece, &id)) {
      std::string shown(piece.substr(0, 40));
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": entry ", ids.size() + 1, " ('", shown, "') is not a token id. ", kProgram,
          " reads token ids separated by commas or whitespace; there is no text tokenizer yet, "
          "so tokenize text elsewhere first"));
    }
    ids.push_back(id);
  }
  if (ids.empty()) return absl::InvalidArgumentError(absl::StrCat(source, ": holds no token ids"));
  return ids;
}

absl::StatusOr<std::vector<int32_t>> ReadPrompt() {
  const std::string file = absl::GetFlag(FLAGS_prompt_file);
  const std::string inline_ids = absl::GetFlag(FLAGS_prompt_ids);
  if (file.empty() == inline_ids.empty()) {
    return absl::InvalidArgumentError(
        "give exactly one of --prompt-file F (token ids) or --prompt-ids 1,2,3");
  }
  if (!inline_ids.empty()) return ParseTokenIds(inline_ids, "--prompt-ids");
  std::ifstream in(file, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("--prompt-file ", file, ": cannot be read"));
  std::stringstream text;
  text << in.rdbuf();
  return ParseTokenIds(text.str(), absl::StrCat("--prompt-file ", file));
}

absl::StatusOr<zigzag::CompressionParams> ReadCompressionParams() {
  zigzag::CompressionParams params;
  params.policy = zigzag::KvPolicy::kZigZag;
  const int64_t budget = absl::GetFlag(FLAGS_kv_budget);
  const double ratio = absl::GetFlag(FLAGS_kv_ratio);
  if ((budget != 0) == (ratio != 0.0)) {
    return absl::InvalidArgumentError("give exactly one of --kv-budget N or --kv-ratio R");
  }
  if (budget < 0) {
    return absl::InvalidArgumentError(absl::StrCat("--kv-budget must be >= 1, got ", budget));
  }
  if (budget != 0) params.tokens_per_layer = budget;
  if (ratio != 0.0) params.ratio = ratio;
  params.window = absl::GetFlag(FLAGS_kv_window);
  params.kernel = absl::GetFlag(FLAGS_kv_kernel);
  params.tau = absl::GetFlag(FLAGS_kv_tau);
  params.rho = absl::GetFlag(FLAGS_kv_rho);
  absl::StatusOr<zigzag::HeadBudgets> head_budgets =
      zigzag::ParseHeadBudgets(absl::GetFlag(FLAGS_kv_head_budgets));
  if (!head_budgets.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--kv-head-budgets: ", head_budgets.status().message()));
  }
  params.head_budgets = *head_budgets;
  params.alpha = absl::GetFlag(FLAGS_kv_alpha);
  // Every compared policy must accept the flags (streaming also needs room beside its sinks).
  absl::Status valid;
  for (zigzag::KvPolicy policy : kPolicies) {
    zigzag::CompressionParams policy_params = params;
    policy_params.policy = policy;
    valid = zigzag::ValidateCompressionParams(policy_params);
    if (!valid.ok()) break;
  }
  if (!valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        valid.message(),
        " (flags: tokens_per_layer = --kv-budget, ratio = --kv-ratio, window = --kv-window, "
        "kernel = --kv-kernel, tau = --kv-tau, rho = --kv-rho, alpha = --kv-alpha)"));
  }
  const double lmbo_tau = absl::GetFlag(FLAGS_lmbo_tau);
  if (!(lmbo_tau > 0.0 && lmbo_tau <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("--lmbo-tau must be in (0, 1], got ", lmbo_tau));
  }
  return params;
}

// Keys and values [T][G][d] of one layer of a sequence, read block by block from the pool (a
// block holds one KV head's K and V of block_size tokens).
absl::Status ReadLayerKv(zigzag::Backend& backend, zigzag::KvCache& cache,
                         const zigzag::SequenceKv& kv, int layer, int64_t tokens,
                         std::vector<float>* keys, std::vector<float>* values) {
  const zigzag::KvLayout& layout = cache.layout();
  const int64_t block_size = layout.block_size;
  const int64_t heads = layout.num_kv_heads;
  const int64_t d = layout.head_dim;
  keys->resize(static_cast<size_t>(tokens * heads * d));
  values->resize(keys->size());
  std::vector<float> block(static_cast<size_t>(2 * block_size * d));
  for (int64_t g = 0; g < heads; ++g) {
    for (int64_t first = 0; first < tokens; first += block_size) {
      const int32_t block_id = kv.blocks(layer, static_cast<int>(g))[first / block_size];
      RETURN_IF_ERROR(backend.CopyToHost(cache.pool_tensor().Rows(block_id, 1), block));
      for (int64_t offset = 0; offset < block_size && first + offset < tokens; ++offset) {
        const float* key = block.data() + offset * d;
        const float* value = block.data() + (block_size + offset) * d;
        const int64_t at = ((first + offset) * heads + g) * d;
        std::copy(key, key + d, keys->data() + at);
        std::copy(value, value + d, values->data() + at);
      }
    }
  }
  return absl::OkStatus();
}

struct LayerProfile {
  double lmba = 0.0;
  int64_t lmbo = 0;
};

struct Profile {
  int64_t prompt_tokens = 0;
  int32_t window = 0;  // w_eff
  int64_t average_budget = 0;
  bool compressed = false;
  std::vector<int64_t> lmbo_grid;
  std::vector<LayerProfile> layers;
  // Per policy (streaming, snapkv, pyramidkv, zigzag), per layer.
  std::vector<std::vector<int64_t>> budgets;
  // Per policy that splits across heads (snapkv, pyramidkv, zigzag), per layer, per KV head: the
  // tokens each KV head would keep (the plan's head_counts; B_l in every head when T <= B_avg).
  std::vector<std::vector<std::vector<int64_t>>> head_budgets;
  double prefill_seconds = 0.0, lmbo_seconds = 0.0;
};

absl::StatusOr<Profile> RunProfile(zigzag::LlamaModel& model, zigzag::Backend& backend,
                                   const std::vector<int32_t>& prompt,
                                   const zigzag::CompressionParams& params, double lmbo_tau,
                                   int32_t block_size) {
  const zigzag::ModelConfig& config = model.config();
  const int64_t tokens = static_cast<int64_t>(prompt.size());
  const int num_layers = static_cast<int>(config.num_layers);
  Profile profile;
  profile.prompt_tokens = tokens;
  profile.window = static_cast<int32_t>(std::min<int64_t>(params.window, tokens));
  profile.average_budget = zigzag::AverageBudget(params, tokens);
  profile.compressed = tokens > profile.average_budget;

  // One prefill into a cache just big enough, measuring the window summaries and queries.
  ASSIGN_OR_RETURN(
      std::unique_ptr<zigzag::KvCache> cache,
      zigzag::KvCache::Create(
          &backend, model.kv_layout(block_size),
          static_cast<int32_t>(model.kv_layout(block_size).BlocksForTokensAllStreams(tokens))));
  zigzag::SequenceKv kv(&cache->pool(), num_layers, static_cast<int>(config.num_kv_heads));
  RETURN_IF_ERROR(kv.AppendAllLayers(tokens));
  std::vector<zigzag::Tensor> mass_tensors;
  for (int l = 0; l < num_layers; ++l) {
    ASSIGN_OR_RETURN(zigzag::Tensor mass,
                     backend.AllocateZeros(zigzag::DType::kF32, {config.num_heads, tokens}));
    mass_tensors.push_back(std::move(mass));
  }
  std::vector<float> window_queries;
  zigzag::ForwardSequence sequence{.tokens = prompt,
                                   .first_position = 0,
                                   .kv = &kv,
                                   .window_mass = mass_tensors,
                                   .window_begin = static_cast<int32_t>(tokens - profile.window),
                                   .captured_window_queries = &window_queries};
  auto start = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(model.Forward({&sequence, 1}, cache.get()).status());
  zigzag::WindowSummary summary{.num_layers = num_layers,
                                .prompt_tokens = tokens,
                                .window = profile.window,
                                .num_heads = static_cast<int32_t>(config.num_heads),
                                .num_kv_heads = static_cast<int32_t>(config.num_kv_heads)};
  for (const zigzag::Tensor& mass : mass_tensors) {
    std::vector<float>& host = summary.window_mass.emplace_back(mass.numel());
    RETURN_IF_ERROR(backend.CopyToHost(mass, host));
  }
  profile.prefill_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // Budgets exactly as the engine would plan them, (ours) rules included.
  for (zigzag::KvPolicy policy : kPolicies) {
    zigzag::CompressionParams policy_params = params;
    policy_params.policy = policy;
    ASSIGN_OR_RETURN(zigzag::CompressionPlan plan, zigzag::PlanCompression(policy_params, summary));
    if (SplitsAcrossHeads(policy)) {
      std::vector<std::vector<int64_t>>& heads = profile.head_budgets.emplace_back();
      for (int l = 0; l < num_layers; ++l) {
        // An uncompressed plan has no head counts: every head keeps the whole prompt.
        heads.push_back(plan.head_counts.empty()
                            ? std::vector<int64_t>(config.num_kv_heads, plan.budgets[l])
                            : plan.head_counts[l]);
      }
    }
    profile.budgets.push_back(plan.budgets);
  }

  start = std::chrono::steady_clock::now();
  profile.lmbo_grid = zigzag::OutputBudgetGrid(tokens, profile.window);
  const size_t layer_queries =
      static_cast<size_t>(int64_t{profile.window} * config.num_heads * config.head_dim);
  std::vector<float> keys, values;
  for (int l = 0; l < num_layers; ++l) {
    LayerProfile& layer = profile.layers.emplace_back();
    layer.lmba = zigzag::LayerMinimumBudget(summary.window_mass[l], summary.num_heads, tokens,
                                            profile.window, params.tau);
    RETURN_IF_ERROR(ReadLayerKv(backend, *cache, kv, l, tokens, &keys, &values));
    const zigzag::LayerAttentionSample sample{
        .prompt_tokens = tokens,
        .window = profile.window,
        .num_heads = summary.num_heads,
        .num_kv_heads = summary.num_kv_heads,
        .head_dim = static_cast<int32_t>(config.head_dim),
        .window_queries =
            std::span<const float>(window_queries).subspan(l * layer_queries, layer_queries),
        .keys = keys,
        .values = values,
        .window_mass = summary.window_mass[l]};
    ASSIGN_OR_RETURN(zigzag::LayerOutputBudget output,
                     zigzag::MeasureLayerOutputBudget(sample, params.kernel, lmbo_tau));
    layer.lmbo = output.lmbo;
  }
  profile.lmbo_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return profile;
}

std::vector<std::string> ColumnNames() {
  std::vector<std::string> names = {"layer", "lmba", "lmbo"};
  for (zigzag::KvPolicy policy : kPolicies) names.push_back(zigzag::KvPolicyName(policy));
  for (zigzag::KvPolicy policy : kPolicies) {
    if (SplitsAcrossHeads(policy)) {
      names.push_back(absl::StrCat(zigzag::KvPolicyName(policy), "_heads"));
    }
  }
  return names;
}

// One layer's per-KV-head budgets, head 0 first, joined by '/' (no comma: one CSV field).
std::string HeadCell(const std::vector<int64_t>& heads) { return absl::StrJoin(heads, "/"); }

std::string Csv(const Profile& profile) {
  std::string out = absl::StrJoin(ColumnNames(), ",") + "\n";
  for (size_t l = 0; l < profile.layers.size(); ++l) {
    absl::StrAppend(&out, l, ",", absl::StrFormat("%.4f", profile.layers[l].lmba), ",",
                    profile.layers[l].lmbo);
    for (const std::vector<int64_t>& budgets : profile.budgets)
      absl::StrAppend(&out, ",", budgets[l]);
    for (const auto& heads : profile.head_budgets) absl::StrAppend(&out, ",", HeadCell(heads[l]));
    out += "\n";
  }
  return out;
}

std::string Table(const Profile& profile) {
  std::vector<std::vector<std::string>> rows = {ColumnNames()};
  std::vector<int64_t> totals(profile.budgets.size(), 0);
  double lmba_total = 0.0;
  for (size_t l = 0; l < profile.layers.size(); ++l) {
    std::vector<std::string>& row = rows.emplace_back();
    row.push_back(absl::StrCat(l));
    row.push_back(absl::StrFormat("%.2f", profile.layers[l].lmba));
    row.push_back(absl::StrCat(profile.layers[l].lmbo));
    lmba_total += profile.layers[l].lmba;
    for (size_t p = 0; p < profile.budgets.size(); ++p) {
      row.push_back(absl::StrCat(profile.budgets[p][l]));
      totals[p] += profile.budgets[p][l];
    }
    for (const auto& heads : profile.head_budgets) row.push_back(HeadCell(heads[l]));
  }
  std::vector<std::string>& total = rows.emplace_back();
  total = {"total", absl::StrFormat("%.2f", lmba_total), "-"};
  for (int64_t t : totals) total.push_back(absl::StrCat(t));
  // Per KV head over all layers: what each head index holds in all.
  for (const auto& heads : profile.head_budgets) {
    std::vector<int64_t> per_head(heads.empty() ? 0 : heads[0].size(), 0);
    for (const std::vector<int64_t>& layer : heads) {
      for (size_t g = 0; g < layer.size() && g < per_head.size(); ++g) per_head[g] += layer[g];
    }
    total.push_back(HeadCell(per_head));
  }

  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  std::string out;
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size(); ++c) {
      if (c > 0) out += "  ";
      out += std::string(width[c] - row[c].size(), ' ') + row[c];
    }
    out += "\n";
  }
  return out;
}

std::string Header(const Profile& profile, const zigzag::ModelConfig& config,
                   const zigzag::CompressionParams& params, double lmbo_tau,
                   const std::string& model_dir, const char* backend) {
  std::string out;
  absl::StrAppend(&out, "# model: ", model_dir, " (", config.num_layers, " layers, heads ",
                  config.num_heads, "/", config.num_kv_heads, ", head_dim ", config.head_dim,
                  ") backend: ", backend, "\n");
  absl::StrAppend(&out, "# prompt_tokens: ", profile.prompt_tokens, " window: ", profile.window,
                  " kernel: ", params.kernel, " tau: ", params.tau, " rho: ", params.rho,
                  " lmbo_tau: ", lmbo_tau, "\n");
  absl::StrAppend(&out, "# head_budgets: ", zigzag::HeadBudgetsName(params.head_budgets),
                  " alpha: ", params.alpha, "\n");
  absl::StrAppend(
      &out, "# average_budget: ", profile.average_budget,
      params.ratio ? absl::StrCat(" (ratio ", *params.ratio, ")") : std::string(),
      " compressed: ", profile.compressed ? "yes" : "no (T <= B_avg: every layer keeps T)", "\n");
  absl::StrAppend(&out,
                  "# lmba: mean over heads of the fewest tokens holding tau of the window's "
                  "attention (ZIGZAG.md 3)\n",
                  "# lmbo: smallest budget on {", absl::StrJoin(profile.lmbo_grid, ","),
                  "} whose SnapKV selection keeps the window's mean output cosine >= lmbo_tau "
                  "(ZIGZAG.md 7)\n",
                  "# streaming..zigzag: tokens each policy would keep per layer at this budget\n",
                  "# snapkv_heads..zigzag_heads: tokens each KV head of the layer would keep under "
                  "the head split (head 0/head 1/...; ZIGZAG.md 8), summing to ",
                  config.num_kv_heads, " x the layer's budget\n");
  absl::StrAppend(&out, "# seconds: prefill ", absl::StrFormat("%.3f", profile.prefill_seconds),
                  " lmbo ", absl::StrFormat("%.3f", profile.lmbo_seconds), "\n");
  return out;
}

int Fail(const char* what, const absl::Status& status, int code = 1) {
  std::fprintf(stderr, "%s: %s: %s\n", kProgram, what, std::string(status.message()).c_str());
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Prints, per layer, LMBA (ZIGZAG.md section 3), LMBO (section 7) and the budgets the\n"
      "streaming, snapkv, pyramidkv and zigzag policies would assign at the requested budget,\n"
      "and how the scoring policies split each layer's budget across its KV heads.\n"
      "The prompt is token ids (there is no text tokenizer yet).\n"
      "  zigzag-profile --model DIR --prompt-file IDS.txt (--kv-budget N | --kv-ratio R)\n"
      "      [--kv-window 32 --kv-kernel 7 --kv-tau 0.9 --kv-rho 0.2 --lmbo-tau 0.99]\n"
      "      [--kv-head-budgets uniform|adaptive --kv-alpha 0.2]\n"
      "      [--csv OUT.csv | --csv -] [--backend auto|cpu|cuda]");
  const std::vector<std::string> positional = zigzag::ParseCommandLineAcceptingDashes(argc, argv);
  if (positional.size() > 1) {
    std::fprintf(stderr, "%s: unexpected argument '%s'\n", kProgram, positional[1].c_str());
    return 2;
  }
  spdlog::set_level(spdlog::level::warn);

  const std::string model_dir = absl::GetFlag(FLAGS_model);
  if (model_dir.empty()) {
    std::fprintf(stderr, "%s: --model is required (a Hugging Face model folder)\n", kProgram);
    return 2;
  }
  auto prompt = ReadPrompt();
  if (!prompt.ok()) return Fail("prompt", prompt.status(), 2);
  auto params = ReadCompressionParams();
  if (!params.ok()) return Fail("compression flags", params.status(), 2);
  const double lmbo_tau = absl::GetFlag(FLAGS_lmbo_tau);
  const int32_t block_size = absl::GetFlag(FLAGS_block_size);
  if (block_size < 1) {
    std::fprintf(stderr, "%s: --block-size must be >= 1, got %d\n", kProgram, block_size);
    return 2;
  }
  const std::string csv_path = absl::GetFlag(FLAGS_csv);
  // Opened before the work so that a bad path fails at once.
  std::ofstream csv_file;
  if (!csv_path.empty() && csv_path != "-") {
    csv_file.open(csv_path, std::ios::binary | std::ios::trunc);
    if (!csv_file) {
      std::fprintf(stderr, "%s: --csv %s: cannot be written\n", kProgram, csv_path.c_str());
      return 2;
    }
  }

  auto checkpoint = zigzag::Checkpoint::Open(model_dir);
  if (!checkpoint.ok()) return Fail("loading the model", checkpoint.status());
  auto checkpoint_dtype = (*checkpoint)->WeightDtype();
  if (!checkpoint_dtype.ok()) return Fail("loading the model", checkpoint_dtype.status());
  zigzag::BackendOptions options;
  options.num_threads = absl::GetFlag(FLAGS_threads);
  auto weight_dtype =
      zigzag::ResolveCpuWeightDtype(absl::GetFlag(FLAGS_cpu_weight_dtype), *checkpoint_dtype);
  if (!weight_dtype.ok()) return Fail("--cpu-weight-dtype", weight_dtype.status());
  options.cpu_weight_dtype = *weight_dtype;
  auto backend = zigzag::CreateBackend(absl::GetFlag(FLAGS_backend), options);
  if (!backend.ok()) return Fail("backend", backend.status());
  auto model = zigzag::LlamaModel::Load(**checkpoint, backend->get());
  if (!model.ok()) return Fail("loading the model", model.status());
  const zigzag::ModelConfig& config = (*model)->config();
  for (size_t i = 0; i < prompt->size(); ++i) {
    const int32_t id = (*prompt)[i];
    if (id < 0 || id >= config.vocab_size) {
      std::fprintf(stderr, "%s: prompt token %zu has id %d, outside the vocabulary [0, %lld)\n",
                   kProgram, i, id, static_cast<long long>(config.vocab_size));
      return 2;
    }
  }
  if (static_cast<int64_t>(prompt->size()) > config.max_context()) {
    std::fprintf(stderr, "%s: the prompt of %zu tokens exceeds the model's context of %lld\n",
                 kProgram, prompt->size(), static_cast<long long>(config.max_context()));
    return 2;
  }

  auto profile = RunProfile(**model, **backend, *prompt, *params, lmbo_tau, block_size);
  if (!profile.ok()) return Fail("profiling", profile.status());
  const std::string header =
      Header(*profile, config, *params, lmbo_tau, model_dir, (*backend)->name());
  if (csv_path == "-") {
    // stdout stays machine-readable; the settings go to stderr.
    std::fputs(header.c_str(), stderr);
    std::fputs(Csv(*profile).c_str(), stdout);
    return 0;
  }
  std::fputs(header.c_str(), stdout);
  std::fputs(Table(*profile).c_str(), stdout);
  if (csv_file.is_open()) {
    csv_file << Csv(*profile);
    csv_file.close();
    if (!csv_file) {
      std::fprintf(stderr, "%s: --csv %s: cannot be written\n", kProgram, csv_path.c_str());
      return 1;
    }
  }
  return 0;
}
