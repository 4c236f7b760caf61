// bench_e2e: end-to-end figures of the engine on a generated checkpoint shaped like Llama-3-8B or
// Mistral-7B (random bf16 weights, written once into a cache folder and reused):
//   copy         the device-to-device copy rate (the roofline's denominator, same run)
//   prefill      prompt tokens/s for one sequence of each --prefill-tokens length
//   decode       decode tokens/s at each --decode-batches size, bytes read per step (weights +
//                KV) and the roofline fraction: (bytes / copy rate) / measured step time
//   concurrency  how many --concurrency-tokens sequences fit in --kv-gib of KV memory with
//                `full` and with `zigzag` at --zigzag-ratio (see RunConcurrency for the method)
// Prints Markdown to stdout and, with --json-out, writes every figure to a JSON file (rewritten
// after each stage, so a run cut short by a timeout keeps what it measured).
//
//   bench_e2e --model=llama3-8b --cache-dir=/tmp/zz-ckpt --json-out=llama.json     # GPU
//   bench_e2e --model=tiny --prefill-tokens=64 --decode-batches=1,2 --decode-context=32
//             --decode-steps=4 --concurrency-tokens=512                               # CPU smoke
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/bench_support.h"
#include "bench/model_presets.h"
#include "core/engine/prefill_compression.h"
#include "core/kv/kv_cache.h"
#include "core/model/llama_model.h"
#include "core/util/command_line.h"
#include "core/util/status_macros.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, model, "llama3-8b", "Checkpoint preset: llama3-8b, mistral-7b or tiny.");
ABSL_FLAG(int64_t, layers, 0, "Override the preset's layer count (0 = the real model's).");
ABSL_FLAG(std::string, cache_dir, "/tmp/zigzag-bench-checkpoints",
          "Folder holding generated checkpoints (one subfolder per preset), reused across runs.");
ABSL_FLAG(std::string, backend, "", "auto, cpu or cuda (default: $ZIGZAG_BENCH_BACKEND or auto).");
ABSL_FLAG(std::string, stages, "copy,prefill,decode,concurrency",
          "Comma-separated stages to run, in this order.");
ABSL_FLAG(bool, write_only, false, "Only make sure the checkpoint exists, then exit.");
ABSL_FLAG(std::string, prefill_tokens, "1024,4096", "Prompt lengths for the prefill stage.");
ABSL_FLAG(std::string, decode_batches, "1,8,32,64", "Batch sizes for the decode stage.");
ABSL_FLAG(int64_t, decode_context, 512, "Prompt tokens of every decoding sequence.");
ABSL_FLAG(int32_t, decode_steps, 32, "Timed decode steps per batch size (after 2 warm-up steps).");
ABSL_FLAG(double, kv_gib, 0.0, "KV pool size in GiB (0 = 16 on CUDA, 1 on the CPU).");
ABSL_FLAG(int32_t, block_size, 16, "KV block size in tokens.");
ABSL_FLAG(int64_t, concurrency_tokens, 16384, "Prompt length for the concurrency stage.");
ABSL_FLAG(double, zigzag_ratio, 0.2, "ZigZag budget as a fraction of the prompt.");
ABSL_FLAG(int64_t, copy_mib, 0, "Copy-rate buffer size in MiB (0 = 1024 on CUDA, 64 on the CPU).");
ABSL_FLAG(std::string, json_out, "", "Write the figures as JSON to this file.");

namespace zigzag::bench {
namespace {

using nlohmann::ordered_json;

struct Run {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<LlamaModel> model;
  std::unique_ptr<KvCache> cache;
  double copy_rate = 0.0;  // bytes (read + written) per second, 0 when not measured
  ordered_json json;
  std::string json_path;
};

void SaveJson(const Run& run) {
  if (run.json_path.empty()) return;
  std::ofstream out(run.json_path);
  out << run.json.dump(2) << "\n";
  if (!out.good()) std::fprintf(stderr, "bench_e2e: cannot write %s\n", run.json_path.c_str());
}

// Bytes of weights one decode step of `batch` tokens reads: every projection and norm of every
// layer, the final norm and the LM head once, and one embedding row per token.
int64_t DecodeWeightBytes(const ModelConfig& c, int64_t batch, DType dtype) {
  const int64_t d = c.hidden_size, f = c.intermediate_size;
  const int64_t q_dim = c.num_heads * c.head_dim, kv_dim = c.num_kv_heads * c.head_dim;
  int64_t per_layer = q_dim * d + 2 * kv_dim * d + d * q_dim + 3 * f * d + 2 * d;
  if (c.qkv_bias) per_layer += q_dim + 2 * kv_dim;
  const int64_t elements = c.num_layers * per_layer + d + c.vocab_size * d + batch * d;
  return elements * static_cast<int64_t>(DTypeSize(dtype));
}

absl::Status RunCopy(Run& run) {
  int64_t mib = absl::GetFlag(FLAGS_copy_mib);
  if (mib <= 0) mib = run.backend->device() == Device::kCuda ? 1024 : 64;
  ASSIGN_OR_RETURN(CopyRate rate, MeasureCopyRate(*run.backend, mib << 20, 20));
  run.copy_rate = rate.bytes_per_second;
  run.json["copy_rate"] = {{"GBps_read_plus_write", rate.bytes_per_second / 1e9},
                           {"method", rate.method}};
  std::printf("\n## Copy rate\n\n%.1f GB/s (read + written) — %s\n", rate.bytes_per_second / 1e9,
              rate.method.c_str());
  return absl::OkStatus();
}

// One forward over `prompts` (each a fresh sequence); returns the seconds it took. The sequences'
// blocks are released before returning.
absl::StatusOr<double> TimedPrefill(Run& run, const std::vector<std::vector<int32_t>>& prompts) {
  const int num_layers = static_cast<int>(run.model->config().num_layers);
  const int num_kv_heads = static_cast<int>(run.model->config().num_kv_heads);
  std::vector<SequenceKv> kvs;
  std::vector<ForwardSequence> batch;
  kvs.reserve(prompts.size());
  for (const auto& prompt : prompts) {
    kvs.emplace_back(&run.cache->pool(), num_layers, num_kv_heads);
    RETURN_IF_ERROR(kvs.back().AppendAllLayers(static_cast<int64_t>(prompt.size())));
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    batch.push_back(ForwardSequence{.tokens = prompts[i], .first_position = 0, .kv = &kvs[i]});
  }
  const double start = NowSeconds();
  RETURN_IF_ERROR(run.model->Forward(batch, run.cache.get()).status());  // logits on the host
  return NowSeconds() - start;
}

absl::Status RunPrefill(Run& run) {
  const ModelConfig& c = run.model->config();
  ASSIGN_OR_RETURN(std::vector<int64_t> lengths,
                   ParseIntList(absl::GetFlag(FLAGS_prefill_tokens), "--prefill-tokens"));
  // Warm-up: cuBLAS heuristics, workspace growth to the longest prompt.
  RETURN_IF_ERROR(TimedPrefill(run, {RandomTokens(*std::max_element(lengths.begin(), lengths.end()),
                                                  c.vocab_size, 1)})
                      .status());
  ordered_json rows = ordered_json::array();
  std::printf("\n## Prefill (one sequence, logits of the last token)\n\n");
  std::printf("| prompt tokens | seconds (best of 3) | tokens/s |\n| --- | --- | --- |\n");
  for (int64_t tokens : lengths) {
    double best = 1e30;
    for (int rep = 0; rep < 3; ++rep) {
      ASSIGN_OR_RETURN(double seconds,
                       TimedPrefill(run, {RandomTokens(tokens, c.vocab_size, 100 + rep)}));
      best = std::min(best, seconds);
    }
    rows.push_back({{"tokens", tokens}, {"seconds", best}, {"tokens_per_s", tokens / best}});
    std::printf("| %lld | %.4f | %.0f |\n", static_cast<long long>(tokens), best, tokens / best);
    std::fflush(stdout);
  }
  run.json["prefill"] = rows;
  return absl::OkStatus();
}

absl::StatusOr<ordered_json> DecodeOneBatch(Run& run, int64_t batch_size) {
  const ModelConfig& c = run.model->config();
  const int num_layers = static_cast<int>(c.num_layers);
  const int num_kv_heads = static_cast<int>(c.num_kv_heads);
  const int64_t context = absl::GetFlag(FLAGS_decode_context);
  const int32_t steps = absl::GetFlag(FLAGS_decode_steps);
  constexpr int kWarmSteps = 2;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<SequenceKv> kvs;
  std::vector<ForwardSequence> batch;
  kvs.reserve(static_cast<size_t>(batch_size));
  for (int64_t b = 0; b < batch_size; ++b) {
    prompts.push_back(RandomTokens(context, c.vocab_size, 1000 + static_cast<uint64_t>(b)));
    kvs.emplace_back(&run.cache->pool(), num_layers, num_kv_heads);
    RETURN_IF_ERROR(kvs.back().AppendAllLayers(context));
  }
  for (int64_t b = 0; b < batch_size; ++b) {
    batch.push_back(ForwardSequence{.tokens = prompts[b], .first_position = 0, .kv = &kvs[b]});
  }
  const double prefill_start = NowSeconds();
  RETURN_IF_ERROR(run.model->Forward(batch, run.cache.get()).status());
  const double prefill_seconds = NowSeconds() - prefill_start;

  // Every step feeds one fixed token per sequence: the engine's step cost without the sampler.
  const int32_t token = static_cast<int32_t>(c.vocab_size / 3);
  const int64_t kv_token_bytes = run.cache->layout().bytes_per_token_head();  // per stream
  double timed_seconds = 0.0;
  int64_t kv_bytes_read = 0;  // over the timed steps
  for (int32_t step = 0; step < kWarmSteps + steps; ++step) {
    batch.clear();
    int64_t step_kv_bytes = 0;
    for (int64_t b = 0; b < batch_size; ++b) {
      RETURN_IF_ERROR(kvs[b].AppendAllLayers(1));
      batch.push_back(
          ForwardSequence{.tokens = {&token, 1}, .first_position = context + step, .kv = &kvs[b]});
      step_kv_bytes += kvs[b].tokens_held() * kv_token_bytes;
    }
    const double start = NowSeconds();
    RETURN_IF_ERROR(run.model->Forward(batch, run.cache.get()).status());
    if (step >= kWarmSteps) {
      timed_seconds += NowSeconds() - start;
      kv_bytes_read += step_kv_bytes;
    }
  }
  const double step_seconds = timed_seconds / steps;
  const int64_t weight_bytes = DecodeWeightBytes(c, batch_size, run.backend->weight_dtype());
  const double step_bytes = static_cast<double>(weight_bytes) + kv_bytes_read / double(steps);
  ordered_json row = {{"batch", batch_size},
                      {"context", context},
                      {"steps", steps},
                      {"prefill_seconds", prefill_seconds},
                      {"step_ms", step_seconds * 1e3},
                      {"tokens_per_s", batch_size / step_seconds},
                      {"weight_bytes_per_step", weight_bytes},
                      {"kv_bytes_per_step", kv_bytes_read / steps},
                      {"bytes_per_token", step_bytes / batch_size}};
  if (run.copy_rate > 0) {
    const double floor_seconds = step_bytes / run.copy_rate;
    row["roofline_step_ms"] = floor_seconds * 1e3;
    row["roofline_pct"] = 100.0 * floor_seconds / step_seconds;
  }
  return row;
}

absl::Status RunDecode(Run& run) {
  ASSIGN_OR_RETURN(std::vector<int64_t> batches,
                   ParseIntList(absl::GetFlag(FLAGS_decode_batches), "--decode-batches"));
  std::printf(
      "\n## Decode (context %lld, %d timed steps; a step = Forward of one token per sequence, "
      "logits copied to the host, no sampler)\n\n",
      static_cast<long long>(absl::GetFlag(FLAGS_decode_context)),
      absl::GetFlag(FLAGS_decode_steps));
  std::printf(
      "| batch | step ms | tokens/s | bytes read / token (weights + KV) | roofline ms | "
      "%% of roofline |\n| --- | --- | --- | --- | --- | --- |\n");
  run.json["decode"] = ordered_json::array();
  for (int64_t batch : batches) {
    ASSIGN_OR_RETURN(ordered_json row, DecodeOneBatch(run, batch));
    const bool has_roofline = row.contains("roofline_pct");
    std::printf(
        "| %lld | %.2f | %.1f | %.3g | %s | %s |\n", static_cast<long long>(batch),
        row["step_ms"].get<double>(), row["tokens_per_s"].get<double>(),
        row["bytes_per_token"].get<double>(),
        has_roofline ? absl::StrFormat("%.2f", row["roofline_step_ms"].get<double>()).c_str() : "-",
        has_roofline ? absl::StrFormat("%.1f", row["roofline_pct"].get<double>()).c_str() : "-");
    std::fflush(stdout);
    run.json["decode"].push_back(row);
    SaveJson(run);
  }
  return absl::OkStatus();
}

// How many sequences of T tokens fit in the KV pool, with `full` and with `zigzag` at the given
// ratio. Method: one real T-token prompt is prefilled with the window summaries and compressed
// by PrefillCompression (plan + CompactKv on the device) exactly as the engine does; its
// per-layer kept lengths are its real footprint. Then the pool is filled with sequences of that
// footprint (SequenceKv::Append per layer, through the real BlockPool) until it refuses one,
// and likewise with uncompressed T-token sequences. Copies of the compressed footprint stand in
// for further real prefills (each would cost a full T-token prefill); with random weights the
// per-layer split varies between prompts but the total budget is fixed by the ratio.
absl::Status RunConcurrency(Run& run) {
  const ModelConfig& c = run.model->config();
  const int num_layers = static_cast<int>(c.num_layers);
  const int num_kv_heads = static_cast<int>(c.num_kv_heads);
  const int64_t tokens = absl::GetFlag(FLAGS_concurrency_tokens);
  BlockPool& pool = run.cache->pool();
  const int32_t free_at_start = pool.num_free();

  // full: uncompressed sequences until the pool refuses one.
  int64_t full_count = 0;
  int64_t full_blocks = 0;
  {
    std::vector<SequenceKv> held;
    while (true) {
      SequenceKv kv(&pool, num_layers, num_kv_heads);
      if (!kv.AppendAllLayers(tokens).ok()) break;
      full_blocks = kv.blocks_held();
      held.push_back(std::move(kv));
    }
    full_count = static_cast<int64_t>(held.size());
  }

  // zigzag: one real prefill + compression.
  CompressionParams params;
  params.policy = KvPolicy::kZigZag;
  params.ratio = absl::GetFlag(FLAGS_zigzag_ratio);
  ASSIGN_OR_RETURN(PrefillCompression compression,
                   PrefillCompression::Create(params, c, *run.backend, tokens));
  SequenceKv real(&pool, num_layers, num_kv_heads);
  RETURN_IF_ERROR(real.AppendAllLayers(tokens));
  const std::vector<int32_t> prompt = RandomTokens(tokens, c.vocab_size, 4242);
  ForwardSequence seq{.tokens = prompt,
                      .first_position = 0,
                      .kv = &real,
                      .window_mass = compression.window_mass(),
                      .window_begin = compression.window_begin()};
  const double prefill_start = NowSeconds();
  RETURN_IF_ERROR(run.model->Forward({&seq, 1}, run.cache.get()).status());
  const double prefill_seconds = NowSeconds() - prefill_start;
  KvStats stats;
  const double compress_start = NowSeconds();
  RETURN_IF_ERROR(compression.Apply(*run.backend, *run.cache, real, &stats).status());
  RETURN_IF_ERROR(run.backend->Synchronize());
  const double compress_seconds = NowSeconds() - compress_start;
  std::vector<int64_t> kept(static_cast<size_t>(num_layers) * num_kv_heads);  // per stream
  for (int l = 0; l < num_layers; ++l) {
    for (int g = 0; g < num_kv_heads; ++g) kept[l * num_kv_heads + g] = real.length(l, g);
  }
  const int64_t zigzag_blocks = real.blocks_held();
  int64_t zigzag_count = 1;
  {
    std::vector<SequenceKv> held;
    while (true) {
      SequenceKv copy(&pool, num_layers, num_kv_heads);
      bool fits = true;
      for (int l = 0; l < num_layers && fits; ++l) {
        for (int g = 0; g < num_kv_heads && fits; ++g) {
          fits = copy.Append(l, g, kept[l * num_kv_heads + g]).ok();
        }
      }
      if (!fits) break;
      held.push_back(std::move(copy));
    }
    zigzag_count += static_cast<int64_t>(held.size());
  }
  real.Release();

  int64_t kept_total = 0;
  for (int64_t k : kept) kept_total += k;
  const double ratio = full_count > 0 ? static_cast<double>(zigzag_count) / full_count : 0.0;
  run.json["concurrency"] = {
      {"tokens", tokens},
      {"kv_pool_bytes", run.cache->bytes_total()},
      {"pool_blocks", free_at_start},
      {"block_size", run.cache->layout().block_size},
      {"full_blocks_per_sequence", full_blocks},
      {"full_sequences", full_count},
      {"zigzag_ratio", params.ratio.value_or(0.0)},
      {"zigzag_blocks_per_sequence", zigzag_blocks},
      {"zigzag_kept_tokens_per_layer_head", kept},
      {"zigzag_retained_fraction",
       static_cast<double>(kept_total) / static_cast<double>(tokens * num_layers * num_kv_heads)},
      {"zigzag_sequences", zigzag_count},
      {"zigzag_over_full", ratio},
      {"prefill_seconds", prefill_seconds},
      {"prefill_tokens_per_s", tokens / prefill_seconds},
      {"compress_seconds", compress_seconds},
      {"method",
       "one real prefill + ZigZag compression (plan + CompactKv) of a random prompt; its per-layer "
       "kept lengths are copied into the pool through the BlockPool until it refuses one; full "
       "sequences are allocated the same way"}};
  std::printf("\n## Concurrent %lld-token sequences in %.2f GiB of KV memory\n\n",
              static_cast<long long>(tokens), run.cache->bytes_total() / double(1 << 30));
  std::printf("| policy | blocks / sequence | sequences that fit |\n| --- | --- | --- |\n");
  std::printf("| full | %lld | %lld |\n", static_cast<long long>(full_blocks),
              static_cast<long long>(full_count));
  std::printf("| zigzag %.0f%% | %lld | %lld |\n\n", 100.0 * params.ratio.value_or(0.0),
              static_cast<long long>(zigzag_blocks), static_cast<long long>(zigzag_count));
  std::printf(
      "zigzag / full = %.2fx. Prefill of the real %lld-token prompt: %.2f s (%.0f tokens/s),"
      " compression %.3f s.\nMethod: %s.\n",
      ratio, static_cast<long long>(tokens), prefill_seconds, tokens / prefill_seconds,
      compress_seconds, run.json["concurrency"]["method"].get<std::string>().c_str());
  return absl::OkStatus();
}

absl::Status Main() {
  Run run;
  run.json_path = absl::GetFlag(FLAGS_json_out);
  ASSIGN_OR_RETURN(ModelPreset preset,
                   FindModelPreset(absl::GetFlag(FLAGS_model), absl::GetFlag(FLAGS_layers)));
  const std::filesystem::path dir = PresetDir(absl::GetFlag(FLAGS_cache_dir), preset);
  ASSIGN_OR_RETURN(EnsuredCheckpoint checkpoint, EnsureCheckpoint(dir, preset));
  run.json["model"] = preset.name;
  run.json["checkpoint_dir"] = dir.string();
  run.json["checkpoint_bytes"] = checkpoint.bytes;
  run.json["checkpoint_written_seconds"] = checkpoint.written ? checkpoint.seconds : 0.0;
  std::printf("# bench_e2e: %s\n\ncheckpoint %s (%.2f GB, %s)\n", preset.name.c_str(),
              dir.string().c_str(), checkpoint.bytes / 1e9,
              checkpoint.written ? absl::StrCat("written in ", checkpoint.seconds, " s").c_str()
                                 : "reused from the cache");
  std::fflush(stdout);
  SaveJson(run);
  if (absl::GetFlag(FLAGS_write_only)) return absl::OkStatus();

  std::string backend_name = absl::GetFlag(FLAGS_backend);
  if (backend_name.empty()) backend_name = BackendNameFromEnv();
  ASSIGN_OR_RETURN(run.backend, CreateBenchBackend(backend_name, /*fp32=*/false));
  const std::vector<std::string> stages =
      absl::StrSplit(absl::GetFlag(FLAGS_stages), ',', absl::SkipWhitespace());
  const auto wants = [&](const char* stage) {
    return std::find(stages.begin(), stages.end(), stage) != stages.end();
  };
  for (const std::string& stage : stages) {
    if (stage != "copy" && stage != "prefill" && stage != "decode" && stage != "concurrency") {
      return absl::InvalidArgumentError(absl::StrCat(
          "--stages: unknown stage '", stage, "' (expected copy, prefill, decode, concurrency)"));
    }
  }
  // The copy rate first, while the device memory is still empty.
  if (wants("copy")) RETURN_IF_ERROR(RunCopy(run));
  SaveJson(run);

  const double load_start = NowSeconds();
  ASSIGN_OR_RETURN(run.model, LlamaModel::LoadFromDir(dir, run.backend.get()));
  const double load_seconds = NowSeconds() - load_start;
  double kv_gib = absl::GetFlag(FLAGS_kv_gib);
  if (kv_gib <= 0) kv_gib = run.backend->device() == Device::kCuda ? 16.0 : 1.0;
  ASSIGN_OR_RETURN(run.cache,
                   KvCache::CreateWithBytes(run.backend.get(),
                                            run.model->kv_layout(absl::GetFlag(FLAGS_block_size)),
                                            static_cast<int64_t>(kv_gib * (1 << 30))));
  const ModelConfig& c = run.model->config();
  run.json["backend"] = run.backend->name();
  run.json["dtype"] = DTypeName(run.backend->weight_dtype());
  run.json["load_seconds"] = load_seconds;
  run.json["kv_pool_bytes"] = run.cache->bytes_total();
  run.json["config"] = {
      {"architecture", c.architecture}, {"vocab", c.vocab_size},
      {"hidden", c.hidden_size},        {"intermediate", c.intermediate_size},
      {"layers", c.num_layers},         {"heads", c.num_heads},
      {"kv_heads", c.num_kv_heads},     {"head_dim", c.head_dim},
      {"rope_theta", c.rope_theta},     {"llama3_scaling", c.rope_scaling.has_value()}};
  std::printf("backend %s (%s), loaded in %.1f s; KV pool %.2f GiB (%d blocks of %d tokens)\n",
              run.backend->name(), DTypeName(run.backend->weight_dtype()), load_seconds,
              run.cache->bytes_total() / double(1 << 30), run.cache->pool().num_blocks(),
              run.cache->layout().block_size);
  std::fflush(stdout);
  SaveJson(run);

  if (wants("prefill")) RETURN_IF_ERROR(RunPrefill(run));
  SaveJson(run);
  if (wants("decode")) RETURN_IF_ERROR(RunDecode(run));
  SaveJson(run);
  if (wants("concurrency")) RETURN_IF_ERROR(RunConcurrency(run));
  SaveJson(run);
  return absl::OkStatus();
}

}  // namespace
}  // namespace zigzag::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "End-to-end engine benchmark on a generated Llama-3-8B / Mistral-7B shaped checkpoint.\n"
      "Usage: bench_e2e --model=llama3-8b|mistral-7b|tiny [--cache-dir=DIR] [--json-out=FILE]");
  const std::vector<std::string> positional = zigzag::ParseCommandLineAcceptingDashes(argc, argv);
  if (positional.size() > 1) {
    std::fprintf(stderr, "bench_e2e: unexpected argument '%s'\n", positional[1].c_str());
    return 2;
  }
  const absl::Status status = zigzag::bench::Main();
  if (!status.ok()) {
    std::fprintf(stderr, "bench_e2e: %s\n", std::string(status.ToString()).c_str());
    return 1;
  }
  return 0;
}
