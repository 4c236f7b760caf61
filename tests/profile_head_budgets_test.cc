// zigzag-profile's per-head budgets (issue 12): the binary runs on the shipped tiny checkpoint
// (models/zigzag-tiny: 4 layers, 2 KV heads) and its CSV's snapkv_heads / pyramidkv_heads /
// zigzag_heads columns are checked against hand-computed layer budgets and an independent, naive
// AdaKV split (ZIGZAG.md section 8: full sorts, no selection tricks) of scores from this test's own
// prefill; plus the invariants (per layer the heads sum to G x B_l, each head within [w_eff, T]),
// the flags' defaults and their errors.
#include <sys/wait.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/compress/compression_params.h"
#include "core/compress/policy.h"
#include "core/engine/prefill_compression.h"
#include "core/kv/kv_cache.h"
#include "core/kv/sequence_kv.h"
#include "core/model/llama_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/backend_registry.h"
#include "tests/test_support.h"

namespace zigzag {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kPromptTokens = 160;
constexpr int32_t kWindow = 32;         // the tool's default --kv-window
constexpr int64_t kAverageBudget = 48;  // --kv-budget
constexpr int kLayers = 4;              // models/zigzag-tiny
constexpr int kKvHeads = 2;

std::string ModelDir() { return std::string(ZIGZAG_SOURCE_DIR) + "/models/zigzag-tiny"; }

std::vector<int32_t> Prompt() {
  std::mt19937_64 rng(160);
  std::vector<int32_t> ids(kPromptTokens);
  for (int32_t& id : ids) id = static_cast<int32_t>(3 + rng() % 4093);  // past BOS/EOS, < 4096
  return ids;
}

struct ProfileRun {
  int exit_code = -1;
  std::string output;
};

// Runs zigzag-profile on the tiny checkpoint and the prompt above (as a file) with `flags`;
// `streams` is "2>/dev/null" (stdout only) or "2>&1".
ProfileRun RunProfile(const std::string& flags, const std::string& streams) {
  static const std::string prompt_file = [] {
    const std::string path = (testing::MakeTempDir("profile_heads") / "prompt.txt").string();
    testing::WriteFile(path, absl::StrJoin(Prompt(), " ") + "\n");
    return path;
  }();
  const std::string command = absl::StrCat(
      ZIGZAG_PROFILE_BINARY, " --model=", ModelDir(), " --prompt-file=", prompt_file,
      " --kv-budget=", kAverageBudget, " --backend=cpu --threads=1 ", flags, " ", streams);
  ProfileRun run;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return run;
  char buffer[4096];
  for (size_t n; (n = fread(buffer, 1, sizeof(buffer), pipe)) > 0;) run.output.append(buffer, n);
  const int status = pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

// The CSV (--csv=-) as column name -> one cell per layer.
std::map<std::string, std::vector<std::string>> ParseCsv(const std::string& csv) {
  std::vector<std::string> lines = absl::StrSplit(csv, '\n', absl::SkipEmpty());
  std::map<std::string, std::vector<std::string>> columns;
  if (lines.empty()) return columns;
  const std::vector<std::string> names = absl::StrSplit(lines[0], ',');
  for (size_t r = 1; r < lines.size(); ++r) {
    const std::vector<std::string> cells = absl::StrSplit(lines[r], ',');
    EXPECT_EQ(cells.size(), names.size()) << lines[r];
    for (size_t c = 0; c < names.size() && c < cells.size(); ++c) {
      columns[names[c]].push_back(cells[c]);
    }
  }
  return columns;
}

std::vector<int64_t> Integers(const std::vector<std::string>& cells) {
  std::vector<int64_t> out;
  for (const std::string& cell : cells) {
    int64_t v = -1;
    EXPECT_TRUE(absl::SimpleAtoi(cell, &v)) << cell;
    out.push_back(v);
  }
  return out;
}

// "35/61" -> {35, 61}.
std::vector<int64_t> HeadCounts(const std::string& cell) {
  return Integers(absl::StrSplit(cell, '/'));
}

// Naive AdaKV split (ZIGZAG.md section 8) of one layer's pooled scores [G][T - w_eff]: every head
// keeps the window, its own top f by score (ties: lower position), then the G (m - f) best of all
// heads' remaining (head, position) pairs (ties: lower head, then lower position). Full sorts; the
// counts per head are returned.
std::vector<int64_t> NaiveAdaptiveCounts(const std::vector<std::vector<float>>& scores,
                                         int64_t budget, int64_t floor_tokens) {
  const int64_t m = budget - kWindow;
  struct Pair {
    float score;
    int64_t head, position;
  };
  std::vector<int64_t> counts(scores.size(), kWindow + floor_tokens);
  std::vector<Pair> rest;
  for (size_t g = 0; g < scores.size(); ++g) {
    std::vector<Pair> head;
    for (size_t j = 0; j < scores[g].size(); ++j) {
      head.push_back({scores[g][j], static_cast<int64_t>(g), static_cast<int64_t>(j)});
    }
    std::sort(head.begin(), head.end(), [](const Pair& a, const Pair& b) {
      return a.score != b.score ? a.score > b.score : a.position < b.position;
    });
    rest.insert(rest.end(), head.begin() + floor_tokens, head.end());
  }
  std::sort(rest.begin(), rest.end(), [](const Pair& a, const Pair& b) {
    if (a.score != b.score) return a.score > b.score;
    return a.head != b.head ? a.head < b.head : a.position < b.position;
  });
  const int64_t shared = static_cast<int64_t>(scores.size()) * (m - floor_tokens);
  for (int64_t r = 0; r < shared; ++r) ++counts[rest[r].head];
  return counts;
}

class ProfileHeadBudgetsTest : public ::testing::Test {
 protected:
  // The window summary of the prompt's prefill, measured here with the library (CPU backend, one
  // thread, as the runs above), for the naive split's scores.
  static void SetUpTestSuite() {
    BackendOptions options;
    options.num_threads = 1;
    auto backend = CreateBackend("cpu", options);
    ASSERT_TRUE(backend.ok()) << backend.status();
    auto model = LlamaModel::LoadFromDir(ModelDir(), backend->get());
    ASSERT_TRUE(model.ok()) << model.status();
    ASSERT_EQ((*model)->config().num_layers, kLayers);
    ASSERT_EQ((*model)->config().num_kv_heads, kKvHeads);
    const KvLayout layout = (*model)->kv_layout(16);
    auto cache = KvCache::Create(backend->get(), layout,
                                 static_cast<int32_t>(layout.BlocksForTokensAllStreams(160)));
    ASSERT_TRUE(cache.ok()) << cache.status();
    CompressionParams params;
    params.policy = KvPolicy::kSnapKv;
    params.tokens_per_layer = kAverageBudget;
    auto compression =
        PrefillCompression::Create(params, (*model)->config(), **backend, kPromptTokens);
    ASSERT_TRUE(compression.ok()) << compression.status();
    SequenceKv kv(&(*cache)->pool(), kLayers, kKvHeads);
    ASSERT_TRUE(kv.AppendAllLayers(kPromptTokens).ok());
    const std::vector<int32_t> prompt = Prompt();
    const ForwardSequence sequence{.tokens = prompt,
                                   .kv = &kv,
                                   .window_mass = compression->window_mass(),
                                   .window_begin = compression->window_begin()};
    ASSERT_TRUE((*model)->Forward({&sequence, 1}, cache->get()).ok());
    auto summary = compression->ReadSummary(**backend);
    ASSERT_TRUE(summary.ok()) << summary.status();
    for (int l = 0; l < kLayers; ++l) {
      scores_.push_back(TokenScores(summary->window_mass[l], summary->num_heads, kKvHeads,
                                    kPromptTokens, kWindow, /*kernel=*/7));
    }
  }
  static void TearDownTestSuite() { scores_.clear(); }

  // [L][G][T - w_eff] pooled scores.
  static std::vector<std::vector<std::vector<float>>> scores_;
};

std::vector<std::vector<std::vector<float>>> ProfileHeadBudgetsTest::scores_;

// Layer budgets at B_avg = 48, w_eff = 32, T = 160, by hand: snapkv keeps 48 everywhere;
// pyramidkv has m = 16, min = 0.8, max = 31.2, B_l = 32 + round(31.2 - l * 30.4 / 3) =
// 63, 53, 43, 33; zigzag depends on the measured LMBA but sums to 4 x 48 and keeps the floor
// max(0.2 x 48, 32) = 32.
void ExpectLayerBudgets(std::map<std::string, std::vector<std::string>>& csv) {
  EXPECT_EQ(Integers(csv["snapkv"]), std::vector<int64_t>(kLayers, kAverageBudget));
  EXPECT_EQ(Integers(csv["pyramidkv"]), (std::vector<int64_t>{63, 53, 43, 33}));
  const std::vector<int64_t> zigzag = Integers(csv["zigzag"]);
  int64_t sum = 0;
  for (int64_t b : zigzag) {
    EXPECT_GE(b, kWindow);
    EXPECT_LE(b, kPromptTokens);
    sum += b;
  }
  EXPECT_EQ(sum, kLayers * kAverageBudget);
}

TEST_F(ProfileHeadBudgetsTest, DefaultIsUniformEveryHeadKeepsTheLayerBudget) {
  const ProfileRun run = RunProfile("--csv=-", "2>/dev/null");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  auto csv = ParseCsv(run.output);
  ASSERT_EQ(csv["layer"].size(), static_cast<size_t>(kLayers)) << run.output;
  ExpectLayerBudgets(csv);
  for (const char* policy : {"snapkv", "pyramidkv", "zigzag"}) {
    SCOPED_TRACE(policy);
    const std::vector<std::string>& heads = csv[absl::StrCat(policy, "_heads")];
    ASSERT_EQ(heads.size(), static_cast<size_t>(kLayers));
    for (int l = 0; l < kLayers; ++l) {
      EXPECT_EQ(heads[l], absl::StrCat(csv[policy][l], "/", csv[policy][l])) << "layer " << l;
    }
  }
  // The settings (on stderr with --csv=-) name the split and the default alpha.
  const ProfileRun table = RunProfile("", "2>&1");
  ASSERT_EQ(table.exit_code, 0) << table.output;
  EXPECT_THAT(table.output, HasSubstr("# head_budgets: uniform alpha: 0.2\n"));
  EXPECT_THAT(table.output, HasSubstr("snapkv_heads  pyramidkv_heads  zigzag_heads"));
  EXPECT_THAT(table.output, HasSubstr("48/48"));
}

TEST_F(ProfileHeadBudgetsTest, AdaptiveHeadBudgetsMatchANaiveAdaKvSplit) {
  // alpha 0.2 (the default) and 0.5; 1.0 keeps every head at B_l (the floor is the whole budget).
  for (const auto& [alpha_flag, alpha] : std::vector<std::pair<std::string, double>>{
           {"", 0.2}, {"--kv-alpha=0.5", 0.5}, {"--kv-alpha=1", 1.0}}) {
    SCOPED_TRACE(absl::StrCat("alpha ", alpha));
    const ProfileRun run =
        RunProfile("--kv-head-budgets=adaptive --csv=- " + alpha_flag, "2>/dev/null");
    ASSERT_EQ(run.exit_code, 0) << run.output;
    auto csv = ParseCsv(run.output);
    ASSERT_EQ(csv["layer"].size(), static_cast<size_t>(kLayers)) << run.output;
    ExpectLayerBudgets(csv);
    bool heads_differ = false;
    for (const char* policy : {"snapkv", "pyramidkv", "zigzag"}) {
      SCOPED_TRACE(policy);
      const std::vector<int64_t> budgets = Integers(csv[policy]);
      const std::vector<std::string>& cells = csv[absl::StrCat(policy, "_heads")];
      ASSERT_EQ(cells.size(), static_cast<size_t>(kLayers));
      for (int l = 0; l < kLayers; ++l) {
        SCOPED_TRACE(absl::StrCat("layer ", l, ": ", cells[l]));
        const std::vector<int64_t> counts = HeadCounts(cells[l]);
        ASSERT_EQ(counts.size(), static_cast<size_t>(kKvHeads));
        // f = floor(alpha (B_l - w_eff)), by hand in integers for these alphas.
        const int64_t m = budgets[l] - kWindow;
        const int64_t floor_tokens = alpha == 0.2 ? m / 5 : alpha == 0.5 ? m / 2 : m;
        int64_t sum = 0;
        for (int64_t count : counts) {
          EXPECT_GE(count, kWindow + floor_tokens);
          EXPECT_LE(count, kPromptTokens);
          sum += count;
        }
        EXPECT_EQ(sum, kKvHeads * budgets[l]);
        EXPECT_EQ(counts, NaiveAdaptiveCounts(scores_[l], budgets[l], floor_tokens));
        if (counts[0] != counts[1]) heads_differ = true;
      }
    }
    // Below alpha 1 the tiny model's heads split unevenly somewhere, else this proves little.
    EXPECT_EQ(heads_differ, alpha < 1.0);
  }
}

TEST_F(ProfileHeadBudgetsTest, TheTableShowsTheSameHeadBudgetsAsTheCsv) {
  const ProfileRun csv_run = RunProfile("--kv-head-budgets=adaptive --csv=-", "2>/dev/null");
  ASSERT_EQ(csv_run.exit_code, 0) << csv_run.output;
  auto csv = ParseCsv(csv_run.output);
  const ProfileRun table = RunProfile("--kv-head-budgets=adaptive", "2>&1");
  ASSERT_EQ(table.exit_code, 0) << table.output;
  EXPECT_THAT(table.output, HasSubstr("# head_budgets: adaptive alpha: 0.2\n"));
  // Every layer's row ends with its three head cells, as in the CSV.
  const std::vector<std::string> lines = absl::StrSplit(table.output, '\n');
  for (int l = 0; l < kLayers; ++l) {
    const std::string tail = absl::StrCat(csv["snapkv_heads"][l], "  ", csv["pyramidkv_heads"][l],
                                          "  ", csv["zigzag_heads"][l]);
    bool found = false;
    for (const std::string& line : lines) {
      std::vector<std::string> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (words.size() > 3 && words[0] == absl::StrCat(l) &&
          absl::StrJoin(words.end() - 3, words.end(), "  ") == tail) {
        found = true;
      }
    }
    EXPECT_TRUE(found) << "layer " << l << " row ending '" << tail << "' in\n" << table.output;
  }
}

TEST_F(ProfileHeadBudgetsTest, BadHeadSplitFlagsExitTwoNamingTheFlag) {
  ProfileRun run = RunProfile("--kv-head-budgets=bogus", "2>&1");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.output, HasSubstr("--kv-head-budgets"));
  EXPECT_THAT(run.output, HasSubstr("uniform, adaptive"));
  run = RunProfile("--kv-head-budgets=adaptive --kv-alpha=1.5", "2>&1");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.output, HasSubstr("alpha must be in [0, 1], got 1.5"));
  EXPECT_THAT(run.output, HasSubstr("alpha = --kv-alpha"));
  run = RunProfile("--kv-alpha=-0.1", "2>&1");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.output, HasSubstr("--kv-alpha"));
}

}  // namespace
}  // namespace zigzag
