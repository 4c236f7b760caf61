// zigzag-make-checkpoint: writes a small random Llama / Mistral / Qwen2 checkpoint in the Hugging
// Face format (config.json, generation_config.json, safetensors, optional shards + index), for
// smoke tests and benchmarks. The weights are seeded: the same flags give the same bytes.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "core/model/checkpoint_writer.h"
#include "core/util/command_line.h"

ABSL_FLAG(std::string, out, "",
          "Folder to write the checkpoint into (created if missing). Required.");
ABSL_FLAG(std::string, arch, "llama", "Architecture: llama, mistral or qwen2.");
ABSL_FLAG(int64_t, vocab, 256, "vocab_size");
ABSL_FLAG(int64_t, hidden, 64, "hidden_size");
ABSL_FLAG(int64_t, intermediate, 128, "intermediate_size");
ABSL_FLAG(int64_t, layers, 2, "num_hidden_layers");
ABSL_FLAG(int64_t, heads, 4, "num_attention_heads");
ABSL_FLAG(int64_t, kv_heads, 2, "num_key_value_heads");
ABSL_FLAG(int64_t, head_dim, 0,
          "head_dim written to config.json; 0 = hidden / heads (not written).");
ABSL_FLAG(int64_t, max_pos, 2048, "max_position_embeddings");
ABSL_FLAG(double, rope_theta, 10000.0, "rope_theta");
ABSL_FLAG(bool, llama3_rope_scaling, false,
          "Add Llama 3.1 rope_scaling (factor 8, low 1, high 4, original context 8192).");
ABSL_FLAG(bool, tie_embeddings, false, "tie_word_embeddings: no lm_head.weight is written.");
ABSL_FLAG(bool, qkv_bias, false, "Llama attention_bias (Qwen2 always has q/k/v biases).");
ABSL_FLAG(std::string, dtype, "f32", "Weight dtype on disk: f32, bf16 or f16.");
ABSL_FLAG(int32_t, shards, 1, "Number of safetensors files; > 1 also writes the index.");
ABSL_FLAG(uint64_t, seed, 0, "Random seed for the weights.");
ABSL_FLAG(double, weight_scale, 0.0, "Matrix values uniform in +-scale; 0 = 1/sqrt(in_features).");

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "zigzag-make-checkpoint: %s\n", message.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Writes a random Hugging Face Llama-family checkpoint.\n"
      "Usage: zigzag-make-checkpoint --out DIR --arch llama|mistral|qwen2 [options]");
  const std::vector<std::string> positional = zigzag::ParseCommandLineAcceptingDashes(argc, argv);
  if (positional.size() > 1) return Fail("unexpected argument '" + positional[1] + "'");

  zigzag::RandomCheckpointSpec spec;
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) return Fail("--out DIR is required");

  const std::string arch = absl::GetFlag(FLAGS_arch);
  if (arch == "llama") {
    spec.architecture = "LlamaForCausalLM";
  } else if (arch == "mistral") {
    spec.architecture = "MistralForCausalLM";
  } else if (arch == "qwen2") {
    spec.architecture = "Qwen2ForCausalLM";
  } else {
    return Fail("--arch must be llama, mistral or qwen2, got '" + arch + "'");
  }

  const std::string dtype = absl::GetFlag(FLAGS_dtype);
  if (dtype == "f32") {
    spec.dtype = zigzag::DType::kF32;
  } else if (dtype == "bf16") {
    spec.dtype = zigzag::DType::kBF16;
  } else if (dtype == "f16") {
    spec.dtype = zigzag::DType::kF16;
  } else {
    return Fail("--dtype must be f32, bf16 or f16, got '" + dtype + "'");
  }

  spec.vocab_size = absl::GetFlag(FLAGS_vocab);
  spec.hidden_size = absl::GetFlag(FLAGS_hidden);
  spec.intermediate_size = absl::GetFlag(FLAGS_intermediate);
  spec.num_layers = absl::GetFlag(FLAGS_layers);
  spec.num_heads = absl::GetFlag(FLAGS_heads);
  spec.num_kv_heads = absl::GetFlag(FLAGS_kv_heads);
  const int64_t head_dim = absl::GetFlag(FLAGS_head_dim);
  if (head_dim < 0) return Fail("--head-dim must be >= 0");
  if (head_dim > 0) spec.head_dim = head_dim;
  spec.max_position_embeddings = absl::GetFlag(FLAGS_max_pos);
  spec.rope_theta = absl::GetFlag(FLAGS_rope_theta);
  if (absl::GetFlag(FLAGS_llama3_rope_scaling)) {
    zigzag::RopeScaling scaling;
    scaling.type = "llama3";
    scaling.factor = 8.0;
    scaling.low_freq_factor = 1.0;
    scaling.high_freq_factor = 4.0;
    scaling.original_max_position_embeddings = 8192;
    spec.rope_scaling = scaling;
  }
  spec.tie_word_embeddings = absl::GetFlag(FLAGS_tie_embeddings);
  spec.qkv_bias = absl::GetFlag(FLAGS_qkv_bias);
  spec.num_shards = absl::GetFlag(FLAGS_shards);
  spec.seed = absl::GetFlag(FLAGS_seed);
  spec.weight_scale = static_cast<float>(absl::GetFlag(FLAGS_weight_scale));

  const absl::Status status = zigzag::WriteRandomCheckpoint(out, spec);
  if (!status.ok()) return Fail(status.ToString());
  std::printf("wrote %s checkpoint (%s, %d shard%s) to %s\n", spec.architecture.c_str(),
              dtype.c_str(), spec.num_shards, spec.num_shards == 1 ? "" : "s", out.c_str());
  return 0;
}
