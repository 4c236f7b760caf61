// zigzag-generate: runs one prompt (token ids) through a Hugging Face model folder and prints
// the generated token ids. The offline path of the engine, without the server.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/engine/generation.h"
#include "core/kv/kv_cache.h"
#include "core/model/llama_model.h"
#include "core/tokenizer/text_output.h"
#include "core/tokenizer/tokenizer.h"
#include "core/util/command_line.h"
#include "kernels/backend_registry.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, model, "", "Hugging Face model folder (config.json + *.safetensors)");
ABSL_FLAG(std::string, prompt, "", "Prompt text (needs the model folder's tokenizer)");
ABSL_FLAG(std::string, prompt_file, "", "Read the prompt text from this file");
ABSL_FLAG(std::string, prompt_ids, "", "Prompt as comma-separated token ids, e.g. 1,2,3");
ABSL_FLAG(std::string, stop, "", "A stop string (C escapes allowed); the text ends before it");
ABSL_FLAG(int32_t, max_tokens, 16, "Maximum tokens to generate");
ABSL_FLAG(float, temperature, 0.0f, "Sampling temperature; 0 = greedy");
ABSL_FLAG(int32_t, top_k, 0, "Top-k; 0 = off");
ABSL_FLAG(float, top_p, 1.0f, "Top-p in (0, 1]; 1 = off");
ABSL_FLAG(float, min_p, 0.0f, "Min-p in [0, 1]; 0 = off");
ABSL_FLAG(float, repetition_penalty, 1.0f, "Repetition penalty (HF definition); 1 = off");
ABSL_FLAG(int64_t, seed, -1, "Random seed; -1 = random");
ABSL_FLAG(std::string, stop_token_ids, "", "Comma-separated token ids that end generation");
ABSL_FLAG(bool, ignore_eos, false, "Keep generating after the model's EOS token");
ABSL_FLAG(bool, logprobs, false, "Print the log-probability of each generated token");
ABSL_FLAG(std::string, kv_policy, "full",
          "KV compression policy: full, streaming, snapkv, pyramidkv or zigzag");
ABSL_FLAG(int64_t, kv_budget, 0, "Average KV budget in tokens per layer (window included)");
ABSL_FLAG(double, kv_ratio, 0.0, "Average KV budget as a fraction of the prompt, in (0, 1]");
ABSL_FLAG(int32_t, kv_window, 32, "Observation window (last prompt tokens always kept)");
ABSL_FLAG(int32_t, kv_kernel, 7, "Max-pool kernel for token scores (odd)");
ABSL_FLAG(double, kv_tau, 0.9, "ZigZag: attention mass a layer's minimum budget must keep");
ABSL_FLAG(double, kv_rho, 0.2, "ZigZag: per-layer floor as a fraction of the average budget");
ABSL_FLAG(std::string, kv_head_budgets, "uniform",
          "Split of a layer's budget across its KV heads: uniform or adaptive (AdaKV)");
ABSL_FLAG(double, kv_alpha, 0.2, "Adaptive head split: per-head floor, fraction of B_l - window");
ABSL_FLAG(std::string, backend, "auto", "Backend: auto, cpu or cuda");
ABSL_FLAG(int32_t, threads, 0, "CPU backend threads; 0 = all cores");
ABSL_FLAG(
    std::string, cpu_weight_dtype, "auto",
    "CPU backend weight dtype: auto (the checkpoint's: bf16/f16 stay 16-bit), f32, bf16, f16");
ABSL_FLAG(int32_t, block_size, 16, "KV cache block size in tokens");
ABSL_FLAG(int64_t, kv_memory_mb, 256, "KV cache memory in MiB");

namespace {

bool ParseIds(const std::string& text, const char* flag, std::vector<int32_t>* out) {
  out->clear();
  if (text.empty()) return true;
  for (absl::string_view piece : absl::StrSplit(text, ',')) {
    int32_t id;
    if (!absl::SimpleAtoi(piece, &id)) {
      std::fprintf(stderr, "zigzag-generate: --%s: '%s' is not an integer token id\n", flag,
                   std::string(piece).c_str());
      return false;
    }
    out->push_back(id);
  }
  return true;
}

void PrintKvStats(const zigzag::KvStats& stats) {
  const zigzag::CompressionParams& p = stats.params;
  std::printf(
      "kv_policy: %s compressed: %s average_budget: %lld window: %d kernel: %d tau: %g "
      "rho: %g\n",
      zigzag::KvPolicyName(p.policy), stats.compressed ? "yes" : "no",
      static_cast<long long>(stats.average_budget), stats.window, p.kernel, p.tau, p.rho);
  std::printf("kv_head_budgets: %s alpha: %g\n",
              zigzag::HeadBudgetsName(zigzag::EffectiveHeadBudgets(p)), p.alpha);
  std::printf("kv_kept_prompt_tokens_per_layer: %s\n",
              absl::StrJoin(stats.prompt_kept_per_layer, ",").c_str());
  // Layer-major: layer 0's KV heads, then layer 1's, ...
  std::vector<int64_t> per_head;
  for (const std::vector<int64_t>& heads : stats.prompt_kept_per_head) {
    per_head.insert(per_head.end(), heads.begin(), heads.end());
  }
  std::printf("kv_kept_prompt_tokens_per_head: %s\n", absl::StrJoin(per_head, ",").c_str());
  std::printf(
      "kv_full_bytes: %lld kv_retained_bytes: %lld kv_full_block_bytes: %lld "
      "kv_retained_block_bytes: %lld kv_saved_bytes: %lld kv_retained_ratio: %.4f "
      "kv_blocks_held: %lld\n",
      static_cast<long long>(stats.full_kv_bytes), static_cast<long long>(stats.retained_kv_bytes),
      static_cast<long long>(stats.full_kv_block_bytes),
      static_cast<long long>(stats.retained_kv_block_bytes),
      static_cast<long long>(stats.saved_kv_bytes), stats.retained_ratio,
      static_cast<long long>(stats.blocks_held));
}

int Fail(const char* what, const absl::Status& status) {
  std::fprintf(stderr, "zigzag-generate: %s: %s\n", what, status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Generates tokens for a prompt of token ids.\n"
      "  zigzag-generate --model DIR --prompt-ids 1,2,3 --max-tokens 16 [sampling flags]");
  const std::vector<std::string> positional = zigzag::ParseCommandLineAcceptingDashes(argc, argv);
  if (positional.size() > 1) {
    std::fprintf(stderr, "zigzag-generate: unexpected argument '%s'\n", positional[1].c_str());
    return 2;
  }
  spdlog::set_level(spdlog::level::warn);

  const std::string model_dir = absl::GetFlag(FLAGS_model);
  if (model_dir.empty()) {
    std::fprintf(stderr, "zigzag-generate: --model is required (a Hugging Face model folder)\n");
    return 2;
  }
  zigzag::GenerationRequest request;
  if (!ParseIds(absl::GetFlag(FLAGS_prompt_ids), "prompt-ids", &request.prompt)) return 2;
  std::string prompt_text = absl::GetFlag(FLAGS_prompt);
  const std::string prompt_file = absl::GetFlag(FLAGS_prompt_file);
  if (!request.prompt.empty() + !prompt_text.empty() + !prompt_file.empty() != 1) {
    std::fprintf(stderr,
                 "zigzag-generate: give exactly one of --prompt TEXT, --prompt-file FILE or "
                 "--prompt-ids 1,2,3\n");
    return 2;
  }
  if (!prompt_file.empty()) {
    std::ifstream in(prompt_file, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "zigzag-generate: --prompt-file: cannot read %s\n", prompt_file.c_str());
      return 2;
    }
    std::ostringstream content;
    content << in.rdbuf();
    prompt_text = content.str();
  }
  std::string stop_string;
  if (!absl::GetFlag(FLAGS_stop).empty()) {
    std::string error;
    if (!absl::CUnescape(absl::GetFlag(FLAGS_stop), &stop_string, &error)) {
      std::fprintf(stderr, "zigzag-generate: --stop: %s\n", error.c_str());
      return 2;
    }
  }
  zigzag::SamplingParams& sampling = request.sampling;
  sampling.max_tokens = absl::GetFlag(FLAGS_max_tokens);
  sampling.temperature = absl::GetFlag(FLAGS_temperature);
  sampling.top_k = absl::GetFlag(FLAGS_top_k);
  sampling.top_p = absl::GetFlag(FLAGS_top_p);
  sampling.min_p = absl::GetFlag(FLAGS_min_p);
  sampling.repetition_penalty = absl::GetFlag(FLAGS_repetition_penalty);
  if (absl::GetFlag(FLAGS_seed) >= 0)
    sampling.seed = static_cast<uint64_t>(absl::GetFlag(FLAGS_seed));
  if (!ParseIds(absl::GetFlag(FLAGS_stop_token_ids), "stop-token-ids", &sampling.stop_token_ids)) {
    return 2;
  }
  sampling.ignore_eos = absl::GetFlag(FLAGS_ignore_eos);
  sampling.logprobs = absl::GetFlag(FLAGS_logprobs);
  auto policy = zigzag::ParseKvPolicy(absl::GetFlag(FLAGS_kv_policy));
  if (!policy.ok()) return Fail("--kv-policy", policy.status());
  zigzag::CompressionParams& compression = request.compression;
  compression.policy = *policy;
  if (absl::GetFlag(FLAGS_kv_budget) != 0)
    compression.tokens_per_layer = absl::GetFlag(FLAGS_kv_budget);
  if (absl::GetFlag(FLAGS_kv_ratio) != 0.0) compression.ratio = absl::GetFlag(FLAGS_kv_ratio);
  compression.window = absl::GetFlag(FLAGS_kv_window);
  compression.kernel = absl::GetFlag(FLAGS_kv_kernel);
  compression.tau = absl::GetFlag(FLAGS_kv_tau);
  compression.rho = absl::GetFlag(FLAGS_kv_rho);
  auto head_budgets = zigzag::ParseHeadBudgets(absl::GetFlag(FLAGS_kv_head_budgets));
  if (!head_budgets.ok()) return Fail("--kv-head-budgets", head_budgets.status());
  compression.head_budgets = *head_budgets;
  compression.alpha = absl::GetFlag(FLAGS_kv_alpha);
  if (absl::GetFlag(FLAGS_block_size) < 1 || absl::GetFlag(FLAGS_kv_memory_mb) < 1) {
    std::fprintf(stderr, "zigzag-generate: --block-size and --kv-memory-mb must be >= 1\n");
    return 2;
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
  // The tokenizer is optional for id prompts; text prompts and stop strings need it.
  std::unique_ptr<zigzag::Tokenizer> tokenizer;
  if (auto loaded = zigzag::LoadTokenizer(model_dir); loaded.ok()) {
    tokenizer = std::move(*loaded);
  } else if (!prompt_text.empty() || !stop_string.empty() ||
             loaded.status().code() != absl::StatusCode::kNotFound) {
    return Fail("loading the tokenizer", loaded.status());
  }
  if (!prompt_text.empty()) {
    auto ids = tokenizer->Encode(prompt_text, /*add_special_tokens=*/true);
    if (!ids.ok()) return Fail("--prompt", ids.status());
    request.prompt = std::move(*ids);
  }
  std::shared_ptr<zigzag::TextOutput> text_output;
  if (tokenizer != nullptr) {
    text_output = std::make_shared<zigzag::TextOutput>(
        *tokenizer, request.prompt,
        stop_string.empty() ? std::vector<std::string>{} : std::vector<std::string>{stop_string},
        /*skip_special_tokens=*/true);
    request.text_stop = [text_output](int32_t token) { return text_output->OnToken(token); };
  }
  auto cache = zigzag::KvCache::CreateWithBytes(
      backend->get(), (*model)->kv_layout(absl::GetFlag(FLAGS_block_size)),
      absl::GetFlag(FLAGS_kv_memory_mb) << 20);
  if (!cache.ok()) return Fail("KV cache", cache.status());

  // The first token comes out of the prefill; the time it is accepted splits prefill from decode
  // (bench/peers compares both phases with llama.cpp). The stop check sees every token first.
  std::optional<std::chrono::steady_clock::time_point> first_token_time;
  request.text_stop = [&first_token_time, inner = request.text_stop](int32_t token) {
    if (!first_token_time.has_value()) first_token_time = std::chrono::steady_clock::now();
    return inner ? inner(token) : false;
  };
  const auto start = std::chrono::steady_clock::now();
  auto results = zigzag::GenerateBatch(**model, **cache, {&request, 1});
  if (!results.ok()) return Fail("generation", results.status());
  const auto end = std::chrono::steady_clock::now();
  const double seconds = std::chrono::duration<double>(end - start).count();
  const zigzag::GenerationResult& result = (*results)[0];

  std::printf("tokens: %s\n", absl::StrJoin(result.tokens, ",").c_str());
  if (text_output != nullptr) {
    std::printf("text: %s\n", absl::CEscape(text_output->Finish()).c_str());
  }
  if (sampling.logprobs) std::printf("logprobs: %s\n", absl::StrJoin(result.logprobs, ",").c_str());
  std::printf("finish_reason: %s\n", zigzag::FinishReasonName(result.finish_reason));
  std::printf("prompt_tokens: %zu generated_tokens: %zu seconds: %.3f backend: %s\n",
              request.prompt.size(), result.tokens.size(), seconds, (*backend)->name());
  if (first_token_time.has_value()) {
    std::printf("prefill_seconds: %.6f decode_seconds: %.6f\n",
                std::chrono::duration<double>(*first_token_time - start).count(),
                std::chrono::duration<double>(end - *first_token_time).count());
  }
  PrintKvStats(result.kv_stats);
  return 0;
}
