#include "bench/model_presets.h"

#include <fstream>
#include <sstream>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "bench/bench_support.h"
#include "core/util/status_macros.h"

namespace zigzag::bench {
namespace {

constexpr char kStampFile[] = "zigzag_bench_spec.txt";

// Llama-3.1-8B: vocab 128256, hidden 4096, MLP 14336, 32 layers, 32/8 heads, rope theta 500000
// with llama3 scaling (factor 8, original context 8192), untied embeddings.
RandomCheckpointSpec Llama3_8B() {
  RandomCheckpointSpec spec;
  spec.architecture = "LlamaForCausalLM";
  spec.vocab_size = 128256;
  spec.hidden_size = 4096;
  spec.intermediate_size = 14336;
  spec.num_layers = 32;
  spec.num_heads = 32;
  spec.num_kv_heads = 8;
  spec.max_position_embeddings = 131072;
  spec.rope_theta = 500000.0;
  RopeScaling scaling;
  scaling.type = "llama3";
  scaling.factor = 8.0;
  scaling.low_freq_factor = 1.0;
  scaling.high_freq_factor = 4.0;
  scaling.original_max_position_embeddings = 8192;
  spec.rope_scaling = scaling;
  spec.rms_norm_eps = 1e-5;
  spec.dtype = DType::kBF16;
  spec.num_shards = 4;
  spec.seed = 8;
  spec.bos_token_id = 128000;
  spec.eos_token_id = 128001;
  return spec;
}

// Mistral-7B (v0.2 shape): vocab 32000, hidden 4096, MLP 14336, 32 layers, 32/8 heads, rope theta
// 1e6, no sliding window.
RandomCheckpointSpec Mistral7B() {
  RandomCheckpointSpec spec;
  spec.architecture = "MistralForCausalLM";
  spec.vocab_size = 32000;
  spec.hidden_size = 4096;
  spec.intermediate_size = 14336;
  spec.num_layers = 32;
  spec.num_heads = 32;
  spec.num_kv_heads = 8;
  spec.max_position_embeddings = 32768;
  spec.rope_theta = 1000000.0;
  spec.rms_norm_eps = 1e-5;
  spec.dtype = DType::kBF16;
  spec.num_shards = 3;
  spec.seed = 7;
  spec.bos_token_id = 1;
  spec.eos_token_id = 2;
  return spec;
}

// A Llama-3-shaped toy (llama3 rope scaling, GQA 4/2) for CPU smoke runs.
RandomCheckpointSpec Tiny() {
  RandomCheckpointSpec spec = Llama3_8B();
  spec.vocab_size = 512;
  spec.hidden_size = 128;
  spec.intermediate_size = 256;
  spec.num_layers = 2;
  spec.num_heads = 4;
  spec.num_kv_heads = 2;
  spec.max_position_embeddings = 32768;
  spec.num_shards = 1;
  spec.bos_token_id = 1;
  spec.eos_token_id = 2;
  return spec;
}

// Every field that changes the written bytes, one per line.
std::string DescribeSpec(const RandomCheckpointSpec& s) {
  std::ostringstream out;
  out << "architecture " << s.architecture << "\nvocab " << s.vocab_size << "\nhidden "
      << s.hidden_size << "\nintermediate " << s.intermediate_size << "\nlayers " << s.num_layers
      << "\nheads " << s.num_heads << "\nkv_heads " << s.num_kv_heads << "\nhead_dim "
      << (s.head_dim ? *s.head_dim : 0) << "\nmax_pos " << s.max_position_embeddings
      << "\nrope_theta " << s.rope_theta << "\nrope_scaling "
      << (s.rope_scaling
              ? absl::StrCat(s.rope_scaling->type, " ", s.rope_scaling->factor, " ",
                             s.rope_scaling->low_freq_factor, " ", s.rope_scaling->high_freq_factor,
                             " ", s.rope_scaling->original_max_position_embeddings)
              : "none")
      << "\nqkv_bias " << s.qkv_bias << "\ntie " << s.tie_word_embeddings << "\neps "
      << s.rms_norm_eps << "\ndtype " << DTypeName(s.dtype) << "\nshards " << s.num_shards
      << "\nseed " << s.seed << "\nscale " << s.weight_scale << "\nbos " << s.bos_token_id
      << "\neos " << s.eos_token_id << "\n";
  return out.str();
}

int64_t WeightFileBytes(const std::filesystem::path& dir) {
  int64_t total = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".safetensors") {
      total += static_cast<int64_t>(entry.file_size(ec));
    }
  }
  return total;
}

}  // namespace

std::vector<std::string> ModelPresetNames() { return {"llama3-8b", "mistral-7b", "tiny"}; }

absl::StatusOr<ModelPreset> FindModelPreset(const std::string& name, int64_t layers) {
  ModelPreset preset;
  preset.name = name;
  if (name == "llama3-8b") {
    preset.spec = Llama3_8B();
  } else if (name == "mistral-7b") {
    preset.spec = Mistral7B();
  } else if (name == "tiny") {
    preset.spec = Tiny();
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown model preset '", name,
                                                   "': expected one of ",
                                                   absl::StrJoin(ModelPresetNames(), ", ")));
  }
  if (layers < 0) return absl::InvalidArgumentError("layers must be >= 0 (0 = the preset's)");
  if (layers > 0 && layers != preset.spec.num_layers) {
    preset.spec.num_layers = layers;
    preset.spec.num_shards = 1;
    preset.name = absl::StrCat(name, "-", layers, "l");
  }
  return preset;
}

std::filesystem::path PresetDir(const std::filesystem::path& cache_dir, const ModelPreset& preset) {
  return cache_dir / preset.name;
}

absl::StatusOr<EnsuredCheckpoint> EnsureCheckpoint(const std::filesystem::path& dir,
                                                   const ModelPreset& preset) {
  EnsuredCheckpoint result;
  result.dir = dir;
  const std::string wanted = DescribeSpec(preset.spec);
  {
    std::ifstream stamp(dir / kStampFile);
    std::stringstream existing;
    existing << stamp.rdbuf();
    if (stamp.good() && existing.str() == wanted && std::filesystem::exists(dir / "config.json")) {
      result.bytes = WeightFileBytes(dir);
      return result;
    }
  }
  std::error_code ec;
  std::filesystem::remove(dir / kStampFile, ec);  // a half-written folder must not look valid
  const double start = NowSeconds();
  RETURN_IF_ERROR(WriteRandomCheckpoint(dir, preset.spec));
  result.seconds = NowSeconds() - start;
  result.written = true;
  std::ofstream stamp(dir / kStampFile);
  stamp << wanted;
  if (!stamp.good()) {
    return absl::UnavailableError(
        absl::StrCat("cannot write ", (dir / kStampFile).string(), " (checkpoint cache stamp)"));
  }
  result.bytes = WeightFileBytes(dir);
  return result;
}

}  // namespace zigzag::bench
