// bench_dump_logits: runs one prompt through the engine and writes every prompt position's logits
// (float32) and a greedy continuation, for bench/gpu/compare_transformers.py to check against
// Hugging Face transformers on the same checkpoint folder.
//
//   bench_dump_logits --model-dir=DIR --out-prefix=/tmp/ours [--prompt-len=32] [--backend=cuda]
// writes /tmp/ours.json (prompt ids, shape, greedy tokens, backend) and /tmp/ours.logits.f32
// (row-major [prompt_len, vocab] float32, little-endian).
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "bench/bench_support.h"
#include "core/engine/generation.h"
#include "core/kv/kv_cache.h"
#include "core/model/llama_model.h"
#include "core/util/command_line.h"
#include "core/util/status_macros.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, model_dir, "", "Hugging Face checkpoint folder. Required.");
ABSL_FLAG(std::string, out_prefix, "", "Output prefix: PREFIX.json and PREFIX.logits.f32.");
ABSL_FLAG(std::string, backend, "", "auto, cpu or cuda (default: $ZIGZAG_BENCH_BACKEND or auto).");
ABSL_FLAG(bool, fp32, false, "CUDA: float32 weights and activations instead of bf16.");
ABSL_FLAG(int64_t, prompt_len, 32, "Random prompt length (ignored with --prompt-ids).");
ABSL_FLAG(std::string, prompt_ids, "", "Comma-separated prompt token ids instead of random ones.");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the random prompt.");
ABSL_FLAG(int32_t, greedy_tokens, 16, "Greedy continuation length (0 = none).");

namespace zigzag::bench {
namespace {

absl::Status Main() {
  const std::string model_dir = absl::GetFlag(FLAGS_model_dir);
  const std::string prefix = absl::GetFlag(FLAGS_out_prefix);
  if (model_dir.empty()) return absl::InvalidArgumentError("--model-dir is required");
  if (prefix.empty()) return absl::InvalidArgumentError("--out-prefix is required");
  std::string backend_name = absl::GetFlag(FLAGS_backend);
  if (backend_name.empty()) backend_name = BackendNameFromEnv();
  ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend,
                   CreateBenchBackend(backend_name, absl::GetFlag(FLAGS_fp32)));
  ASSIGN_OR_RETURN(std::unique_ptr<LlamaModel> model,
                   LlamaModel::LoadFromDir(model_dir, backend.get()));
  const ModelConfig& c = model->config();
  ASSIGN_OR_RETURN(std::unique_ptr<KvCache> cache,
                   KvCache::CreateWithBytes(backend.get(), model->kv_layout(16), int64_t{1} << 28));

  std::vector<int32_t> prompt;
  if (!absl::GetFlag(FLAGS_prompt_ids).empty()) {
    ASSIGN_OR_RETURN(std::vector<int64_t> ids,
                     ParseIntList(absl::GetFlag(FLAGS_prompt_ids), "--prompt-ids"));
    for (int64_t id : ids) prompt.push_back(static_cast<int32_t>(id));
  } else {
    if (absl::GetFlag(FLAGS_prompt_len) < 1) {
      return absl::InvalidArgumentError("--prompt-len must be >= 1");
    }
    prompt = RandomTokens(absl::GetFlag(FLAGS_prompt_len), c.vocab_size, absl::GetFlag(FLAGS_seed));
  }

  // Every prompt position's logits, as transformers' forward returns them.
  std::vector<float> logits;
  {
    SequenceKv kv(&cache->pool(), static_cast<int>(c.num_layers), static_cast<int>(c.num_kv_heads));
    RETURN_IF_ERROR(kv.AppendAllLayers(static_cast<int64_t>(prompt.size())));
    ForwardSequence seq{.tokens = prompt, .first_position = 0, .kv = &kv, .all_logits = true};
    ASSIGN_OR_RETURN(logits, model->Forward({&seq, 1}, cache.get()));
  }
  const std::string logits_path = prefix + ".logits.f32";
  {
    std::ofstream out(logits_path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(logits.data()),
              static_cast<std::streamsize>(logits.size() * sizeof(float)));
    if (!out.good()) return absl::UnavailableError(absl::StrCat("cannot write ", logits_path));
  }

  std::vector<int32_t> greedy;
  if (absl::GetFlag(FLAGS_greedy_tokens) > 0) {
    GenerationRequest request;
    request.prompt = prompt;
    request.sampling.temperature = 0.0f;
    request.sampling.max_tokens = absl::GetFlag(FLAGS_greedy_tokens);
    request.sampling.ignore_eos = true;
    ASSIGN_OR_RETURN(std::vector<GenerationResult> results,
                     GenerateBatch(*model, *cache, {&request, 1}));
    greedy = results[0].tokens;
  }

  nlohmann::ordered_json meta = {{"model_dir", model_dir},
                                 {"backend", backend->name()},
                                 {"dtype", DTypeName(backend->activation_dtype())},
                                 {"prompt_ids", prompt},
                                 {"rows", prompt.size()},
                                 {"vocab", c.vocab_size},
                                 {"logits_file", logits_path},
                                 {"greedy_tokens", greedy}};
  const std::string meta_path = prefix + ".json";
  std::ofstream out(meta_path);
  out << meta.dump(2) << "\n";
  if (!out.good()) return absl::UnavailableError(absl::StrCat("cannot write ", meta_path));
  std::printf("bench_dump_logits: %zu x %lld logits (%s, %s) -> %s\n", prompt.size(),
              static_cast<long long>(c.vocab_size), backend->name(),
              DTypeName(backend->activation_dtype()), logits_path.c_str());
  return absl::OkStatus();
}

}  // namespace
}  // namespace zigzag::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Writes our logits for one prompt, for comparison with Hugging Face transformers.\n"
      "Usage: bench_dump_logits --model-dir=DIR --out-prefix=PREFIX [--prompt-len=N]");
  const std::vector<std::string> positional = zigzag::ParseCommandLineAcceptingDashes(argc, argv);
  if (positional.size() > 1) {
    std::fprintf(stderr, "bench_dump_logits: unexpected argument '%s'\n", positional[1].c_str());
    return 2;
  }
  const absl::Status status = zigzag::bench::Main();
  if (!status.ok()) {
    std::fprintf(stderr, "bench_dump_logits: %s\n", std::string(status.ToString()).c_str());
    return 1;
  }
  return 0;
}
