// The C++ engine on the evaluation model (models/zigzag-eval) against the PyTorch model that
// trained it: greedy tokens and their logprobs for held-out prompts of every task at 512 and 2048
// tokens, recorded by tools/train_model/check_cpp.py --write-golden
// (tests/data/zigzag_eval_golden.txt). The recorded tokens are the PyTorch model's, right or wrong:
// this pins the engine, not the model.
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "core/engine/generation.h"
#include "core/kv/kv_cache.h"
#include "core/model/llama_model.h"
#include "gtest/gtest.h"
#include "kernels/backend_registry.h"
#include "tests/test_support.h"

namespace zigzag {
namespace {

const std::filesystem::path kSource = ZIGZAG_SOURCE_DIR;

struct GoldenCase {
  std::string label;
  std::vector<int32_t> prompt;
  std::vector<int32_t> tokens;
  std::vector<double> logprobs;
  double gap = 0;  // PyTorch's smallest top-1 - top-2 logprob gap over the generated tokens
};

// The file's "case / prompt / tokens / logprobs / gap" lines, one block per case.
std::vector<GoldenCase> ReadGolden(const std::filesystem::path& path) {
  std::vector<GoldenCase> cases;
  std::istringstream file(testing::ReadFile(path));
  std::string line;
  while (std::getline(file, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string key;
    fields >> key;
    if (key == "case") {
      std::getline(fields >> std::ws, cases.emplace_back().label);
      continue;
    }
    EXPECT_FALSE(cases.empty()) << "a '" << key << "' line before any case";
    if (cases.empty()) break;
    GoldenCase& c = cases.back();
    if (key == "prompt" || key == "tokens") {
      std::vector<int32_t>& ids = key == "prompt" ? c.prompt : c.tokens;
      for (int32_t id = 0; fields >> id;) ids.push_back(id);
    } else if (key == "logprobs") {
      for (double value = 0; fields >> value;) c.logprobs.push_back(value);
    } else if (key == "gap") {
      fields >> c.gap;
    }
    EXPECT_TRUE(fields.eof()) << c.label << ": unreadable '" << key << "' line";
  }
  return cases;
}

TEST(EvalModelTest, GreedyTokensAndLogprobsEqualThePyTorchModels) {
  const std::filesystem::path model_dir = kSource / "models" / "zigzag-eval";
  const std::vector<GoldenCase> cases =
      ReadGolden(kSource / "tests" / "data" / "zigzag_eval_golden.txt");
  ASSERT_EQ(cases.size(), 10u) << "five tasks at 512 and 2048 tokens";

  // Float32 weights (the bf16 checkpoint converted on load), as PyTorch computes: bf16 x bf16
  // products on AVX512_BF16 CPUs move logprobs by up to ~2e-2 (tools/train_model/README.md).
  BackendOptions options;
  options.cpu_weight_dtype = DType::kF32;
  auto backend = CreateBackend("cpu", options);
  ASSERT_TRUE(backend.ok()) << backend.status();
  auto model = LlamaModel::LoadFromDir(model_dir, backend->get());
  ASSERT_TRUE(model.ok()) << model.status();
  ASSERT_EQ((*model)->config().num_layers, 8);
  ASSERT_EQ((*model)->config().num_kv_heads, 4);
  auto cache = KvCache::CreateWithBytes(backend->get(), (*model)->kv_layout(16), 64 << 20);
  ASSERT_TRUE(cache.ok()) << cache.status();

  constexpr double kLogprobTolerance = 1e-3;  // measured: at most 2e-5 apart on these prompts
  for (const GoldenCase& c : cases) {
    SCOPED_TRACE(c.label);
    ASSERT_FALSE(c.prompt.empty());
    ASSERT_EQ(c.tokens.size(), c.logprobs.size());
    // A decisive reference: no greedy choice within 10x the tolerance of a tie.
    ASSERT_GT(c.gap, 10 * kLogprobTolerance);
    GenerationRequest request;
    request.prompt = c.prompt;
    request.sampling.temperature = 0.0f;
    request.sampling.max_tokens = static_cast<int32_t>(c.tokens.size());
    request.sampling.logprobs = true;
    auto results = GenerateBatch(**model, **cache, {&request, 1});
    ASSERT_TRUE(results.ok()) << results.status();
    const GenerationResult& result = (*results)[0];
    EXPECT_EQ(result.tokens, c.tokens);
    ASSERT_EQ(result.logprobs.size(), c.logprobs.size());
    for (size_t i = 0; i < c.logprobs.size(); ++i) {
      EXPECT_NEAR(result.logprobs[i], c.logprobs[i], kLogprobTolerance) << "token " << i;
    }
  }
  EXPECT_EQ((*cache)->pool().num_used(), 0);
}

}  // namespace
}  // namespace zigzag
