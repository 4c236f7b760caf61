// The server end to end over a real gRPC channel: unary and streamed generation give the tokens,
// logprobs and KvStats the offline engine (GenerateBatch, the request alone) gives; 16 concurrent
// requests give what each gives alone (up to float noise and a near-tie it may flip); model and
// server info; health; request ids (128 random bits, hex).
#include <algorithm>
#include <set>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/request_id.h"
#include "tests/server_test_support.h"

namespace zigzag::testing {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

class ServerGenerateTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = StartServer(TestServerOptions()).release();
    reference_ = new EngineReference();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete reference_;
    server_ = nullptr;
    reference_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(server_, nullptr); }

  static v1::GenerateResponse Generate(const v1::GenerateRequest& request) {
    auto stub = NewStub(server_->port());
    grpc::ClientContext context;
    v1::GenerateResponse response;
    const grpc::Status status = stub->Generate(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  static ZigzagServer* server_;
  static EngineReference* reference_;
};

ZigzagServer* ServerGenerateTest::server_ = nullptr;
EngineReference* ServerGenerateTest::reference_ = nullptr;

void ExpectKvStatsEqual(const v1::KvStats& got, const KvStats& want, v1::KvPolicy policy) {
  EXPECT_EQ(got.policy(), policy);
  EXPECT_EQ(got.window(), static_cast<uint32_t>(want.params.window));
  EXPECT_EQ(got.kernel(), static_cast<uint32_t>(want.params.kernel));
  EXPECT_FLOAT_EQ(got.tau(), static_cast<float>(want.params.tau));
  EXPECT_FLOAT_EQ(got.rho(), static_cast<float>(want.params.rho));
  EXPECT_EQ(got.compressed(), want.compressed);
  EXPECT_EQ(got.average_budget(), want.average_budget);
  EXPECT_EQ(got.effective_window(), want.window);
  EXPECT_EQ(got.prompt_tokens(), want.prompt_tokens);
  EXPECT_THAT(got.prompt_kept_per_layer(), ElementsAreArray(want.prompt_kept_per_layer));
  std::vector<int64_t> want_per_head;  // layer-major
  for (const std::vector<int64_t>& heads : want.prompt_kept_per_head) {
    want_per_head.insert(want_per_head.end(), heads.begin(), heads.end());
  }
  EXPECT_THAT(got.prompt_kept_per_head(), ElementsAreArray(want_per_head));
  EXPECT_EQ(got.appended_tokens(), want.appended_tokens);
  EXPECT_EQ(got.full_kv_bytes(), want.full_kv_bytes);
  EXPECT_EQ(got.retained_kv_bytes(), want.retained_kv_bytes);
  EXPECT_EQ(got.full_kv_block_bytes(), want.full_kv_block_bytes);
  EXPECT_EQ(got.retained_kv_block_bytes(), want.retained_kv_block_bytes);
  EXPECT_EQ(got.saved_kv_bytes(), want.saved_kv_bytes);
  EXPECT_DOUBLE_EQ(got.retained_ratio(), want.retained_ratio);
  EXPECT_EQ(got.blocks_held(), want.blocks_held);
  EXPECT_EQ(got.num_preemptions(), 0);
}

TEST_F(ServerGenerateTest, UnaryAndStreamGiveTheEnginesTokensAndLogprobs) {
  for (const auto& [length, max_tokens] :
       std::vector<std::pair<size_t, uint32_t>>{{1, 1}, {7, 12}, {40, 20}, {130, 9}}) {
    SCOPED_TRACE(::testing::Message() << "prompt " << length << " max_tokens " << max_tokens);
    v1::GenerateRequest request = GreedyRequest(RandomPrompt(length, length), max_tokens);
    request.mutable_sampling_params()->set_logprobs(true);
    const GenerationResult want = reference_->Generate(request);
    ASSERT_EQ(want.tokens.size(), max_tokens);

    const v1::GenerateResponse unary = Generate(request);
    EXPECT_THAT(unary.token_ids(), ElementsAreArray(want.tokens));
    ASSERT_EQ(unary.logprobs_size(), static_cast<int>(want.logprobs.size()));
    for (int i = 0; i < unary.logprobs_size(); ++i) {
      EXPECT_NEAR(unary.logprobs(i), want.logprobs[i], 1e-5) << "token " << i;
    }
    EXPECT_EQ(unary.finish_reason(), v1::FINISH_REASON_LENGTH);
    EXPECT_EQ(unary.usage().prompt_tokens(), length);
    EXPECT_EQ(unary.usage().completion_tokens(), max_tokens);
    EXPECT_GE(unary.timings().e2e_seconds(), unary.timings().ttft_seconds());

    auto stub = NewStub(server_->port());
    grpc::ClientContext context;
    const StreamResult stream = RunStream(*stub, request, &context);
    ASSERT_TRUE(stream.status.ok()) << stream.status.error_message();
    EXPECT_GE(stream.num_chunks, 1);
    EXPECT_THAT(stream.chunk_tokens, ElementsAreArray(want.tokens));
    ASSERT_TRUE(stream.complete.has_value());
    EXPECT_THAT(stream.complete->token_ids(), ElementsAreArray(want.tokens));
    EXPECT_THAT(stream.chunk_logprobs, ElementsAreArray(unary.logprobs()));
    EXPECT_EQ(stream.complete->finish_reason(), v1::FINISH_REASON_LENGTH);
  }
}

TEST_F(ServerGenerateTest, KvStatsMatchTheEngineForEveryPolicy) {
  struct Case {
    const char* name;
    v1::KvPolicy policy;
    std::optional<uint32_t> tokens;
    std::optional<float> ratio;
  };
  const std::vector<Case> cases = {
      {"full", v1::KV_POLICY_FULL, {}, {}},
      {"streaming", v1::KV_POLICY_STREAMING, 40u, {}},
      {"snapkv", v1::KV_POLICY_SNAPKV, 48u, {}},
      {"pyramidkv", v1::KV_POLICY_PYRAMIDKV, {}, 0.25f},
      {"zigzag tokens", v1::KV_POLICY_ZIGZAG, 40u, {}},
      {"zigzag ratio", v1::KV_POLICY_ZIGZAG, {}, 0.3f},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::GenerateRequest request = GreedyRequest(RandomPrompt(150, 3), 10);
    v1::KvCompression* kv = request.mutable_kv_compression();
    kv->set_policy(c.policy);
    kv->set_window(16);
    if (c.tokens) kv->set_tokens_per_layer(*c.tokens);
    if (c.ratio) kv->set_ratio(*c.ratio);
    const GenerationResult want = reference_->Generate(request);
    const v1::GenerateResponse got = Generate(request);
    EXPECT_THAT(got.token_ids(), ElementsAreArray(want.tokens));
    ExpectKvStatsEqual(got.kv_stats(), want.kv_stats, c.policy);
    if (c.policy != v1::KV_POLICY_FULL) {
      EXPECT_TRUE(got.kv_stats().compressed());
      EXPECT_GT(got.kv_stats().saved_kv_bytes(), 0);
      EXPECT_LT(got.kv_stats().retained_ratio(), 1.0);
    }
    EXPECT_EQ(got.kv_stats().has_tokens_per_layer(), c.tokens.has_value());
    EXPECT_EQ(got.kv_stats().has_ratio(), c.ratio.has_value());
  }
  EXPECT_TRUE(WaitForIdlePool(*server_));
}

// head_budgets = ADAPTIVE reaches the planner: the response reports the split, and the heads of a
// layer keep different counts that add up to G times the layer's budget (ZIGZAG.md section 8).
TEST_F(ServerGenerateTest, AdaptiveHeadBudgetsSplitEachLayerAcrossItsHeads) {
  for (const v1::KvPolicy policy :
       {v1::KV_POLICY_SNAPKV, v1::KV_POLICY_PYRAMIDKV, v1::KV_POLICY_ZIGZAG}) {
    SCOPED_TRACE(v1::KvPolicy_Name(policy));
    v1::GenerateRequest request = GreedyRequest(RandomPrompt(150, 5), 10);
    v1::KvCompression* kv = request.mutable_kv_compression();
    kv->set_policy(policy);
    kv->set_window(16);
    kv->set_tokens_per_layer(40);
    kv->set_head_budgets(v1::HEAD_BUDGETS_ADAPTIVE);
    kv->set_alpha(0.1f);
    const GenerationResult want = reference_->Generate(request);
    const v1::GenerateResponse got = Generate(request);
    EXPECT_THAT(got.token_ids(), ElementsAreArray(want.tokens));
    ExpectKvStatsEqual(got.kv_stats(), want.kv_stats, policy);
    const v1::KvStats& stats = got.kv_stats();
    EXPECT_EQ(stats.head_budgets(), v1::HEAD_BUDGETS_ADAPTIVE);
    EXPECT_FLOAT_EQ(stats.alpha(), 0.1f);
    const int g = stats.num_kv_heads();
    ASSERT_EQ(g, 2);  // the test model: 2 KV heads
    const int layers = stats.prompt_kept_per_layer_size();
    ASSERT_EQ(stats.prompt_kept_per_head_size(), layers * g);
    bool some_layer_unequal = false;
    for (int l = 0; l < layers; ++l) {
      int64_t sum = 0;
      for (int h = 0; h < g; ++h) sum += stats.prompt_kept_per_head(l * g + h);
      // Exact: the split hands out G * B_l slots (B_l = 40 for snapkv, window 16 kept by every
      // head).
      if (policy == v1::KV_POLICY_SNAPKV) {
        EXPECT_EQ(sum, g * 40) << "layer " << l;
      }
      for (int h = 0; h < g; ++h) EXPECT_GE(stats.prompt_kept_per_head(l * g + h), 16);
      some_layer_unequal |=
          stats.prompt_kept_per_head(l * g) != stats.prompt_kept_per_head(l * g + 1);
    }
    EXPECT_TRUE(some_layer_unequal) << "an adaptive split of random scores should differ per head";
  }
  EXPECT_TRUE(WaitForIdlePool(*server_));
}

// A request's tokens and logprobs (unary or streamed).
struct Answer {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
};

// What batching may change: which matmul kernel a row goes through (oneDNN from 32 rows on, ours
// below; kernels/cpu/cpu_backend.cc), so a request's logits in a batch can differ from its logits
// alone in the last bits, and greedy decoding can take the other token of a near-tie (CI hit one
// such tie). What it may not change: anything more. So together must equal alone token for token,
// logprobs within kLogprobTol, up to a first difference if there is one; there the token taken
// together must have been a near-tie (its logprob, the maximum of nearly the same distribution,
// equals the best logprob alone within kLogprobTol), and what follows is another continuation.
// Returns whether the two differ.
bool ExpectSameUpToNearTie(const Answer& together, const Answer& alone, int request) {
  constexpr float kLogprobTol = 1e-4f;
  EXPECT_EQ(together.tokens.size(), alone.tokens.size()) << "request " << request;
  EXPECT_EQ(together.logprobs.size(), together.tokens.size()) << "request " << request;
  EXPECT_EQ(alone.logprobs.size(), alone.tokens.size()) << "request " << request;
  const size_t n = std::min({together.tokens.size(), alone.tokens.size(), together.logprobs.size(),
                             alone.logprobs.size()});
  for (size_t j = 0; j < n; ++j) {
    EXPECT_NEAR(together.logprobs[j], alone.logprobs[j], kLogprobTol)
        << "request " << request << ", token " << j << ": together " << together.tokens[j]
        << ", alone " << alone.tokens[j];
    if (together.tokens[j] != alone.tokens[j]) return true;
  }
  return false;
}

TEST_F(ServerGenerateTest, SixteenConcurrentRequestsGiveWhatEachGivesAlone) {
  constexpr int kRequests = 16;
  std::vector<v1::GenerateRequest> requests;
  std::vector<Answer> alone;
  for (int i = 0; i < kRequests; ++i) {
    v1::GenerateRequest request =
        GreedyRequest(RandomPrompt(3 + 13 * i, 100 + i), static_cast<uint32_t>(1 + (i * 7) % 24));
    request.mutable_sampling_params()->set_logprobs(true);
    if (i % 3 == 1) {
      request.mutable_kv_compression()->set_policy(v1::KV_POLICY_ZIGZAG);
      request.mutable_kv_compression()->set_window(8);
      request.mutable_kv_compression()->set_ratio(0.5f);
    }
    const v1::GenerateResponse response = Generate(request);  // alone: one at a time
    // Alone, the server batches as the offline engine does: the same tokens, and logprobs within
    // the tolerance UnaryAndStreamGiveTheEnginesTokensAndLogprobs allows.
    const GenerationResult want = reference_->Generate(request);
    EXPECT_THAT(response.token_ids(), ElementsAreArray(want.tokens));
    ASSERT_EQ(response.logprobs_size(), static_cast<int>(want.logprobs.size()));
    for (int j = 0; j < response.logprobs_size(); ++j) {
      EXPECT_NEAR(response.logprobs(j), want.logprobs[j], 1e-5)
          << "request " << i << ", token " << j;
    }
    alone.push_back(Answer{{response.token_ids().begin(), response.token_ids().end()},
                           {response.logprobs().begin(), response.logprobs().end()}});
    requests.push_back(std::move(request));
  }

  std::vector<Answer> together(kRequests);
  std::vector<grpc::Status> statuses(kRequests);
  std::vector<std::thread> threads;
  for (int i = 0; i < kRequests; ++i) {
    threads.emplace_back([&, i] {
      auto stub = NewStub(server_->port());
      grpc::ClientContext context;
      if (i % 2 == 0) {
        v1::GenerateResponse response;
        statuses[i] = stub->Generate(&context, requests[i], &response);
        together[i].tokens.assign(response.token_ids().begin(), response.token_ids().end());
        together[i].logprobs.assign(response.logprobs().begin(), response.logprobs().end());
      } else {
        StreamResult result = RunStream(*stub, requests[i], &context);
        statuses[i] = result.status;
        together[i] = Answer{result.chunk_tokens, result.chunk_logprobs};
      }
    });
  }
  for (std::thread& t : threads) t.join();
  int differing = 0;
  for (int i = 0; i < kRequests; ++i) {
    EXPECT_TRUE(statuses[i].ok()) << i << ": " << statuses[i].error_message();
    differing += ExpectSameUpToNearTie(together[i], alone[i], i) ? 1 : 0;
  }
  // A near-tie within float noise is rare (one in hundreds of runs of all 16): two at once would
  // say something else is wrong.
  EXPECT_LE(differing, 1);
  EXPECT_TRUE(WaitForIdlePool(*server_));
}

TEST_F(ServerGenerateTest, SeededSamplingIsReproducibleAndMatchesTheEngine) {
  v1::GenerateRequest request = GreedyRequest(RandomPrompt(20, 9), 16);
  request.mutable_sampling_params()->set_temperature(0.9f);
  request.mutable_sampling_params()->set_top_p(0.95f);
  request.mutable_sampling_params()->set_seed(1234);
  const v1::GenerateResponse first = Generate(request);
  const v1::GenerateResponse second = Generate(request);
  EXPECT_THAT(second.token_ids(), ElementsAreArray(first.token_ids()));
  EXPECT_THAT(first.token_ids(), ElementsAreArray(reference_->Generate(request).tokens));
}

// Server-made ids are 128 random bits in hex, so that no client can guess (and Abort) another's
// request: the old "zz-<per-process prefix>-<counter>" ids all shared their first 16 characters.
bool IsHex128(const std::string& id) {
  return id.size() == 32 && id.find_first_not_of("0123456789abcdef") == std::string::npos;
}

TEST_F(ServerGenerateTest, ServerMakesUnguessable128BitIdsAndKeepsGivenOnes) {
  std::set<std::string> ids;
  std::set<std::string> prefixes;  // first 64 bits
  auto stub = NewStub(server_->port());
  for (int i = 0; i < 40; ++i) {
    const v1::GenerateRequest request = GreedyRequest({5, 6, 7}, 1);
    std::string id;
    if (i % 2 == 0) {
      id = Generate(request).request_id();
    } else {
      grpc::ClientContext context;
      const StreamResult result = RunStream(*stub, request, &context);
      ASSERT_TRUE(result.status.ok()) << result.status.error_message();
      ASSERT_TRUE(result.complete.has_value());
      id = result.complete->request_id();
    }
    EXPECT_TRUE(IsHex128(id)) << id;
    ids.insert(id);
    prefixes.insert(id.substr(0, 16));
  }
  EXPECT_EQ(ids.size(), 40u);
  EXPECT_EQ(prefixes.size(), 40u);
  v1::GenerateRequest named = GreedyRequest({5, 6, 7}, 1);
  named.set_request_id("my-request");
  EXPECT_EQ(Generate(named).request_id(), "my-request");
}

TEST(RequestIdTest, TenThousandIdsAreDistinct128BitHexWithDistinctPrefixes) {
  std::set<std::string> ids;
  std::set<std::string> prefixes;
  for (int i = 0; i < 10000; ++i) {
    absl::StatusOr<std::string> id = NewRequestId();
    ASSERT_TRUE(id.ok()) << id.status();
    ASSERT_TRUE(IsHex128(*id)) << *id;
    ids.insert(*id);
    prefixes.insert(id->substr(0, 16));
  }
  EXPECT_EQ(ids.size(), 10000u);
  // Two of 10,000 random 64-bit prefixes collide with probability ~3e-12.
  EXPECT_EQ(prefixes.size(), 10000u);
}

TEST_F(ServerGenerateTest, ModelAndServerInfo) {
  auto stub = NewStub(server_->port());
  {
    grpc::ClientContext context;
    v1::GetModelInfoResponse info;
    ASSERT_TRUE(stub->GetModelInfo(&context, {}, &info).ok());
    EXPECT_EQ(info.model_name(), "tiny");
    EXPECT_EQ(info.architecture(), "LlamaForCausalLM");
    EXPECT_EQ(info.vocab_size(), 256);
    EXPECT_EQ(info.num_layers(), 3);
    EXPECT_EQ(info.num_kv_heads(), 2);
    EXPECT_EQ(info.head_dim(), 16);
    EXPECT_EQ(info.max_context(), 1024);
    EXPECT_EQ(info.backend(), "cpu");
    EXPECT_EQ(info.kv_block_size(), 16u);
    // K and V x 16 tokens x 16 dims x 4 bytes: a block holds one KV head.
    EXPECT_EQ(info.kv_bytes_per_block(), 2 * 16 * 16 * 4);
    EXPECT_EQ(info.kv_num_blocks(), (4 << 20) / (2 * 16 * 16 * 4));
    EXPECT_EQ(info.default_kv_compression().policy(), v1::KV_POLICY_FULL);
    EXPECT_EQ(info.max_tokens_limit(), 512u);
    ASSERT_EQ(info.eos_token_ids_size(), 1);
    EXPECT_EQ(info.eos_token_ids(0), 2);
  }
  {
    ASSERT_TRUE(WaitForIdlePool(*server_));
    grpc::ClientContext context;
    v1::GetServerInfoResponse info;
    ASSERT_TRUE(stub->GetServerInfo(&context, {}, &info).ok());
    EXPECT_EQ(info.state(), v1::SERVER_STATE_SERVING);
    EXPECT_EQ(info.num_requests_running(), 0);
    EXPECT_EQ(info.num_requests_waiting(), 0);
    EXPECT_EQ(info.kv_blocks_total(), 2048);
    EXPECT_EQ(info.kv_blocks_free(), 2048);
    EXPECT_EQ(info.kv_blocks_used(), 0);
    EXPECT_EQ(info.max_waiting(), 64);
  }
}

TEST_F(ServerGenerateTest, HealthIsServingAndTokenizerCallsNeedATokenizer) {
  EXPECT_EQ(HealthCheck(server_->port(), "").value_or(-1), 1);
  EXPECT_EQ(HealthCheck(server_->port(), kEngineServiceName).value_or(-1), 1);
  EXPECT_EQ(HealthCheck(server_->port(), "no.such.Service").status().code(),
            absl::StatusCode::kNotFound);

  auto stub = NewStub(server_->port());
  grpc::ClientContext context;
  v1::TokenizeResponse tokens;
  const grpc::Status status = stub->Tokenize(&context, {}, &tokens);
  // The test model folder has no tokenizer.
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("Tokenize needs a tokenizer"));
  grpc::ClientContext context2;
  v1::DetokenizeResponse text;
  const grpc::Status detokenize = stub->Detokenize(&context2, {}, &text);
  EXPECT_EQ(detokenize.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(detokenize.error_message(), HasSubstr("Detokenize needs a tokenizer"));
}

}  // namespace
}  // namespace zigzag::testing
