// Bad input over a real gRPC channel: each field maps to INVALID_ARGUMENT with a message naming
// it, through Generate and GenerateStream alike, and no bad request leaks a block; request ids
// are printable ASCII (log safety), sizes are bounded before any work, unparseable messages name
// their type. Also: the message-size limit (RESOURCE_EXHAUSTED), bearer-token auth
// (UNAUTHENTICATED; health stays open), defaults for unset fields, and the server options' own
// validation.
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "server/grpc_status.h"
#include "server/liveness_self_check.h"
#include "server/log_text.h"
#include "server/request_validation.h"
#include "tests/server_test_support.h"
#include "tests/test_support.h"

namespace zigzag::testing {
namespace {

using ::testing::HasSubstr;

struct BadInput {
  const char* name;
  std::function<void(v1::GenerateRequest*)> mutate;  // applied to a valid greedy request
  grpc::StatusCode code;
  const char* message;  // a substring that names the field
};

// ctest names the cases by this.
void PrintTo(const BadInput& bad, std::ostream* os) { *os << bad.name; }

void SetIds(v1::GenerateRequest* r, std::vector<int32_t> ids) {
  r->mutable_token_ids()->mutable_ids()->Assign(ids.begin(), ids.end());
}

const BadInput kBadInputs[] = {
    {"NoInput", [](auto* r) { r->clear_input(); }, grpc::StatusCode::INVALID_ARGUMENT,
     "input is not set"},
    // The test model folder has no tokenizer.
    {"TextInputWithoutTokenizer", [](auto* r) { r->set_text("hello"); },
     grpc::StatusCode::FAILED_PRECONDITION, "text input needs a tokenizer"},
    {"EmptyTokenIds", [](auto* r) { SetIds(r, {}); }, grpc::StatusCode::INVALID_ARGUMENT,
     "token_ids.ids is empty"},
    {"TokenIdAboveVocab",
     [](auto* r) {
       SetIds(r, {5, 6, 256});
     },
     grpc::StatusCode::INVALID_ARGUMENT,
     "token_ids.ids[2] = 256 is outside the vocabulary [0, 256)"},
    {"NegativeTokenId", [](auto* r) { SetIds(r, {-1}); }, grpc::StatusCode::INVALID_ARGUMENT,
     "token_ids.ids[0] = -1 is outside the vocabulary"},
    {"PromptPlusMaxTokensBeyondContext",
     [](auto* r) {
       SetIds(r, RandomPrompt(1000, 1));
       r->mutable_sampling_params()->set_max_tokens(100);
     },
     grpc::StatusCode::INVALID_ARGUMENT,
     "token_ids (1000 tokens) + sampling_params.max_tokens (100) = 1100 exceeds the model's "
     "context of 1024 tokens"},
    {"NegativeTemperature", [](auto* r) { r->mutable_sampling_params()->set_temperature(-0.5f); },
     grpc::StatusCode::INVALID_ARGUMENT, "sampling_params.temperature must be"},
    {"NanTemperature",
     [](auto* r) {
       r->mutable_sampling_params()->set_temperature(std::numeric_limits<float>::quiet_NaN());
     },
     grpc::StatusCode::INVALID_ARGUMENT, "sampling_params.temperature must be"},
    {"TopPZero", [](auto* r) { r->mutable_sampling_params()->set_top_p(0.0f); },
     grpc::StatusCode::INVALID_ARGUMENT, "sampling_params.top_p must be in (0, 1]"},
    {"TopPAboveOne", [](auto* r) { r->mutable_sampling_params()->set_top_p(1.5f); },
     grpc::StatusCode::INVALID_ARGUMENT, "sampling_params.top_p must be in (0, 1]"},
    {"NegativeTopK", [](auto* r) { r->mutable_sampling_params()->set_top_k(-1); },
     grpc::StatusCode::INVALID_ARGUMENT, "sampling_params.top_k must be >= 0"},
    {"MinPAboveOne", [](auto* r) { r->mutable_sampling_params()->set_min_p(2.0f); },
     grpc::StatusCode::INVALID_ARGUMENT, "sampling_params.min_p must be in [0, 1]"},
    {"ZeroRepetitionPenalty",
     [](auto* r) { r->mutable_sampling_params()->set_repetition_penalty(0.0f); },
     grpc::StatusCode::INVALID_ARGUMENT, "sampling_params.repetition_penalty must be"},
    {"ZeroMaxTokens", [](auto* r) { r->mutable_sampling_params()->set_max_tokens(0); },
     grpc::StatusCode::INVALID_ARGUMENT, "sampling_params.max_tokens must be >= 1, got 0"},
    {"HugeMaxTokens", [](auto* r) { r->mutable_sampling_params()->set_max_tokens(4000000000u); },
     grpc::StatusCode::INVALID_ARGUMENT,
     "sampling_params.max_tokens = 4000000000 is above the server's limit of 512"},
    {"StopTokenOutsideVocab",
     [](auto* r) { r->mutable_sampling_params()->add_stop_token_ids(1000); },
     grpc::StatusCode::INVALID_ARGUMENT, "sampling_params.stop_token_ids[0] = 1000"},
    // std::string, not "\n": add_stop(const char*) makes gcc 12 -O3 warn falsely (-Wrestrict,
    // GCC bug 105329).
    {"StopStringsWithoutTokenizer",
     [](auto* r) { r->mutable_sampling_params()->add_stop(std::string("\n")); },
     grpc::StatusCode::FAILED_PRECONDITION, "sampling_params.stop needs a tokenizer"},
    {"BudgetBelowWindow",
     [](auto* r) {
       r->mutable_kv_compression()->set_policy(v1::KV_POLICY_SNAPKV);
       r->mutable_kv_compression()->set_window(16);
       r->mutable_kv_compression()->set_tokens_per_layer(8);
     },
     grpc::StatusCode::INVALID_ARGUMENT,
     "kv_compression.tokens_per_layer (8) is below the window (16)"},
    {"PolicyWithoutBudget",
     [](auto* r) { r->mutable_kv_compression()->set_policy(v1::KV_POLICY_ZIGZAG); },
     grpc::StatusCode::INVALID_ARGUMENT, "kv_compression.policy zigzag needs a budget"},
    {"RatioAboveOne",
     [](auto* r) {
       r->mutable_kv_compression()->set_policy(v1::KV_POLICY_PYRAMIDKV);
       r->mutable_kv_compression()->set_ratio(1.5f);
     },
     grpc::StatusCode::INVALID_ARGUMENT, "kv_compression.ratio must be in (0, 1]"},
    {"InvalidPolicyEnum",
     [](auto* r) { r->mutable_kv_compression()->set_policy(static_cast<v1::KvPolicy>(99)); },
     grpc::StatusCode::INVALID_ARGUMENT, "kv_compression.policy = 99 is not a KvPolicy"},
    {"ZeroWindow", [](auto* r) { r->mutable_kv_compression()->set_window(0); },
     grpc::StatusCode::INVALID_ARGUMENT, "kv_compression.window must be >= 1"},
    {"HugeWindow", [](auto* r) { r->mutable_kv_compression()->set_window(3000000000u); },
     grpc::StatusCode::INVALID_ARGUMENT, "kv_compression.window = 3000000000 is too large"},
    {"EvenKernel", [](auto* r) { r->mutable_kv_compression()->set_kernel(4); },
     grpc::StatusCode::INVALID_ARGUMENT, "kv_compression.kernel must be an odd number"},
    {"TauZero", [](auto* r) { r->mutable_kv_compression()->set_tau(0.0f); },
     grpc::StatusCode::INVALID_ARGUMENT, "kv_compression.tau must be in (0, 1]"},
    {"RhoAboveOne", [](auto* r) { r->mutable_kv_compression()->set_rho(1.5f); },
     grpc::StatusCode::INVALID_ARGUMENT, "kv_compression.rho must be in [0, 1]"},
    {"UnknownHeadBudgets",
     [](auto* r) {
       r->mutable_kv_compression()->set_head_budgets(static_cast<v1::HeadBudgets>(7));
     },
     grpc::StatusCode::INVALID_ARGUMENT, "kv_compression.head_budgets = 7 is not a HeadBudgets"},
    {"AlphaAboveOne", [](auto* r) { r->mutable_kv_compression()->set_alpha(1.5f); },
     grpc::StatusCode::INVALID_ARGUMENT, "kv_compression.alpha must be in [0, 1]"},
    {"LongRequestId", [](auto* r) { r->set_request_id(std::string(129, 'x')); },
     grpc::StatusCode::INVALID_ARGUMENT,
     "request_id is 129 characters long; at most 128 are accepted"},
    // Ids end up in log lines: a newline would forge one, an ANSI escape drive a terminal.
    {"RequestIdWithNewline", [](auto* r) { r->set_request_id("abc\n[info] forged"); },
     grpc::StatusCode::INVALID_ARGUMENT,
     "request_id has byte 0x0a at offset 3; only printable ASCII without spaces"},
    {"RequestIdWithAnsiEscape", [](auto* r) { r->set_request_id("\x1b[31mred"); },
     grpc::StatusCode::INVALID_ARGUMENT, "request_id has byte 0x1b at offset 0"},
    {"RequestIdWithSpace", [](auto* r) { r->set_request_id("my id"); },
     grpc::StatusCode::INVALID_ARGUMENT, "request_id has byte 0x20 at offset 2"},
    // Bounds checked before any work: 16 bytes per token of the 1024-token context. The test
    // model has no tokenizer, so the cap answers first.
    {"TextOverTheByteCap", [](auto* r) { r->set_text(std::string(16385, 'a')); },
     grpc::StatusCode::INVALID_ARGUMENT,
     "text is 16385 bytes; at most 16384 bytes are accepted (--max-text-bytes)"},
    {"MoreTokenIdsThanTheContext", [](auto* r) { SetIds(r, std::vector<int32_t>(1025, 5)); },
     grpc::StatusCode::INVALID_ARGUMENT,
     "token_ids.ids has 1025 ids; at most 1024 (the model's context) are accepted"},
    {"StopStringsOverTheirTotal",
     [](auto* r) {
       for (int i = 0; i < 5; ++i) r->mutable_sampling_params()->add_stop(std::string(256, 'x'));
     },
     grpc::StatusCode::INVALID_ARGUMENT,
     "sampling_params.stop totals 1280 bytes; at most 1024 are accepted"},
    {"TooManyStopStrings",
     [](auto* r) {
       // A std::string: gcc 12 -O3 reports a false -Wrestrict on add_stop("x") (GCC bug 105329).
       for (int i = 0; i < 17; ++i) r->mutable_sampling_params()->add_stop(std::string("x"));
     },
     grpc::StatusCode::INVALID_ARGUMENT, "sampling_params.stop has 17 strings; at most 16"},
};

class ServerBadInputTest : public ::testing::TestWithParam<BadInput> {
 protected:
  static void SetUpTestSuite() { server_ = StartServer(TestServerOptions()).release(); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(server_, nullptr); }
  static ZigzagServer* server_;
};

ZigzagServer* ServerBadInputTest::server_ = nullptr;

TEST_P(ServerBadInputTest, IsRefusedWithAMessageNamingTheField) {
  const BadInput& bad = GetParam();
  v1::GenerateRequest request = GreedyRequest({5, 6, 7}, 4);
  bad.mutate(&request);
  auto stub = NewStub(server_->port());
  {
    grpc::ClientContext context;
    v1::GenerateResponse response;
    const grpc::Status status = stub->Generate(&context, request, &response);
    EXPECT_EQ(status.error_code(), bad.code) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(bad.message));
  }
  {
    grpc::ClientContext context;
    const StreamResult stream = RunStream(*stub, request, &context);
    EXPECT_EQ(stream.status.error_code(), bad.code) << stream.status.error_message();
    EXPECT_THAT(stream.status.error_message(), HasSubstr(bad.message));
    EXPECT_EQ(stream.num_chunks, 0);
    EXPECT_FALSE(stream.complete.has_value());
  }
  // Nothing was queued or allocated, and the server still serves.
  EXPECT_TRUE(WaitForIdlePool(*server_));
  grpc::ClientContext context;
  v1::GenerateResponse response;
  EXPECT_TRUE(stub->Generate(&context, GreedyRequest({5, 6, 7}, 2), &response).ok());
  EXPECT_EQ(response.token_ids_size(), 2);
}

INSTANTIATE_TEST_SUITE_P(Table, ServerBadInputTest, ::testing::ValuesIn(kBadInputs),
                         [](const ::testing::TestParamInfo<BadInput>& info) {
                           return std::string(info.param.name);
                         });

TEST_F(ServerBadInputTest, UnparseableMessagesAreInvalidArgumentNamingTheMessageType) {
  // gRPC 1.51 answers these UNIMPLEMENTED with an empty message; the interceptor names the type.
  const auto call = [&](const std::string& method, const std::string& bytes) {
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    grpc::GenericStub stub(Connect(server_->port()));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kServerHangGuard);
    std::mutex mu;
    std::condition_variable cv;
    std::optional<grpc::Status> result;
    stub.UnaryCall(&context, method, grpc::StubOptions(), &request, &response,
                   [&](grpc::Status status) {
                     std::lock_guard<std::mutex> lock(mu);
                     result = std::move(status);
                     cv.notify_all();
                   });
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return result.has_value(); });
    return *result;
  };
  // Field 15, wire type 7: no such wire type.
  grpc::Status status = call("/zigzag.v1.Engine/Generate", "\x7f\xff\xff");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("not a valid zigzag.v1.GenerateRequest"));
  // A proto3 string that is not UTF-8 fails parsing too (protobuf logs that on its own).
  v1::TokenizeRequest tokenize;
  tokenize.set_text("caf\xc3");
  status = call("/zigzag.v1.Engine/Tokenize", tokenize.SerializePartialAsString());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("not a valid zigzag.v1.TokenizeRequest"));
  // What is not ours keeps gRPC's own answer.
  status = call("/zigzag.v1.Engine/NoSuchMethod", "");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  // A well-formed message still gets the service's own errors.
  v1::AbortRequest abort;
  status = call("/zigzag.v1.Engine/Abort", abort.SerializeAsString());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("request_id is empty"));
}

TEST_F(ServerBadInputTest, AbortRefusesUnprintableIdsAndLogsEscapeClientStrings) {
  auto stub = NewStub(server_->port());
  v1::AbortRequest abort;
  abort.set_request_id("x\r\n[error] forged");
  grpc::ClientContext context;
  v1::AbortResponse found;
  const grpc::Status status = stub->Abort(&context, abort, &found);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("request_id has byte 0x0d at offset 1"));

  EXPECT_EQ(ForLog("id\n[info] forged \x1b[2J"), "id\\n[info] forged \\x1b[2J");
  EXPECT_EQ(ForLog(std::string(200, 'a'), 4), "aaaa...(200 bytes)");
  EXPECT_EQ(ForLog("caf\xc3\xa9"), "caf\\xc3\\xa9");
}

// A server with a 64 KiB message limit and a bearer token.
class ServerRestrictedTest : public ::testing::Test {
 protected:
  static constexpr char kToken[] = "s3cret-token";
  static void SetUpTestSuite() {
    ServerOptions options = TestServerOptions();
    options.max_message_bytes = 64 << 10;
    options.auth_token = kToken;
    server_ = StartServer(std::move(options)).release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(server_, nullptr); }
  static ZigzagServer* server_;
};

ZigzagServer* ServerRestrictedTest::server_ = nullptr;

TEST_F(ServerRestrictedTest, OversizedMessageIsResourceExhausted) {
  // 40000 ids of two varint bytes each: about 80 KB, above the 64 KiB limit.
  v1::GenerateRequest request = GreedyRequest(std::vector<int32_t>(40000, 200), 1);
  auto stub = NewStub(server_->port());
  grpc::ClientContext context;
  context.AddMetadata("authorization", std::string("Bearer ") + kToken);
  v1::GenerateResponse response;
  const grpc::Status status = stub->Generate(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("larger than max"));
  EXPECT_TRUE(WaitForIdlePool(*server_));
}

TEST_F(ServerRestrictedTest, MissingOrWrongTokenIsUnauthenticated) {
  auto stub = NewStub(server_->port());
  const v1::GenerateRequest request = GreedyRequest({5, 6, 7}, 2);
  const auto call = [&](const char* authorization) {
    grpc::ClientContext context;
    if (authorization != nullptr) context.AddMetadata("authorization", authorization);
    v1::GenerateResponse response;
    return stub->Generate(&context, request, &response);
  };
  grpc::Status status = call(nullptr);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(status.error_message(), HasSubstr("missing \"authorization: Bearer <token>\""));
  status = call("Bearer wrong");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(status.error_message(), HasSubstr("not valid"));
  status = call("Basic czNjcmV0");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(status.error_message(), HasSubstr("must be \"Bearer <token>\""));
  EXPECT_TRUE(call((std::string("Bearer ") + kToken).c_str()).ok());

  grpc::ClientContext stream_context;
  const StreamResult stream = RunStream(*stub, request, &stream_context);
  EXPECT_EQ(stream.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  grpc::ClientContext info_context;
  v1::GetServerInfoResponse info;
  EXPECT_EQ(stub->GetServerInfo(&info_context, {}, &info).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  grpc::ClientContext abort_context;
  v1::AbortResponse aborted;
  v1::AbortRequest abort_request;
  abort_request.set_request_id("x");
  EXPECT_EQ(stub->Abort(&abort_context, abort_request, &aborted).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(ServerRestrictedTest, HealthNeedsNoToken) {
  EXPECT_EQ(HealthCheck(server_->port(), "").value_or(-1), 1);
  EXPECT_EQ(HealthCheck(server_->port(), kEngineServiceName).value_or(-1), 1);
}

// TLS with a throw-away self-signed certificate (made by the openssl command when present).
TEST(ServerTlsTest, TlsClientsAreServedAndPlaintextClientsAreNot) {
  if (std::system("openssl version > /dev/null 2>&1") != 0) {
    GTEST_SKIP() << "the openssl command is not installed; cannot make a test certificate";
  }
  const std::filesystem::path dir = MakeTempDir("server-tls");
  const std::string cert = (dir / "cert.pem").string();
  const std::string key = (dir / "key.pem").string();
  const std::string command =
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
      "-addext subjectAltName=DNS:localhost -keyout " +
      key + " -out " + cert + " > /dev/null 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;

  ServerOptions options = TestServerOptions();
  options.tls_cert_file = cert;
  options.tls_key_file = key;
  std::unique_ptr<ZigzagServer> server = StartServer(std::move(options));
  ASSERT_NE(server, nullptr);

  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ReadFile(cert);
  grpc::ChannelArguments arguments;
  arguments.SetSslTargetNameOverride("localhost");
  auto secure = v1::Engine::NewStub(grpc::CreateCustomChannel(
      absl::StrCat("127.0.0.1:", server->port()), grpc::SslCredentials(ssl), arguments));
  grpc::ClientContext context;
  v1::GenerateResponse response;
  const grpc::Status status = secure->Generate(&context, GreedyRequest({5, 6, 7}, 3), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.token_ids_size(), 3);

  auto plaintext = NewStub(server->port());
  grpc::ClientContext plain_context;
  plain_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  EXPECT_EQ(
      plaintext->Generate(&plain_context, GreedyRequest({5, 6, 7}, 3), &response).error_code(),
      grpc::StatusCode::UNAVAILABLE);

  // The liveness self-check speaks TLS to a TLS server (without checking its own certificate),
  // and a plaintext check of the same port fails.
  SelfCheckOptions check;
  check.target = absl::StrCat("127.0.0.1:", server->port());
  check.tls = true;
  EXPECT_TRUE(LivenessSelfCheck::CheckOnce(check).ok()) << LivenessSelfCheck::CheckOnce(check);
  check.tls = false;
  EXPECT_FALSE(LivenessSelfCheck::CheckOnce(check).ok());
}

TEST(GrpcStatusTest, CoreCodesMapOneToOneAndKeepTheMessage) {
  const std::vector<std::pair<absl::Status, grpc::StatusCode>> pairs = {
      {absl::InvalidArgumentError("a"), grpc::StatusCode::INVALID_ARGUMENT},
      {absl::ResourceExhaustedError("b"), grpc::StatusCode::RESOURCE_EXHAUSTED},
      {absl::DeadlineExceededError("c"), grpc::StatusCode::DEADLINE_EXCEEDED},
      {absl::CancelledError("d"), grpc::StatusCode::CANCELLED},
      {absl::UnavailableError("e"), grpc::StatusCode::UNAVAILABLE},
      {absl::UnauthenticatedError("f"), grpc::StatusCode::UNAUTHENTICATED},
      {absl::AlreadyExistsError("g"), grpc::StatusCode::ALREADY_EXISTS},
      {absl::FailedPreconditionError("h"), grpc::StatusCode::FAILED_PRECONDITION},
      {absl::InternalError("i"), grpc::StatusCode::INTERNAL},
      {absl::UnimplementedError("j"), grpc::StatusCode::UNIMPLEMENTED},
      {absl::NotFoundError("k"), grpc::StatusCode::NOT_FOUND},
  };
  for (const auto& [core, code] : pairs) {
    const grpc::Status status = ToGrpcStatus(core);
    EXPECT_EQ(status.error_code(), code) << core;
    EXPECT_EQ(status.error_message(), std::string(core.message()));
    EXPECT_EQ(FromGrpcStatus(status), core);
  }
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  EXPECT_EQ(ToGrpcStatus(absl::Status(static_cast<absl::StatusCode>(99), "odd")).error_code(),
            grpc::StatusCode::UNKNOWN);
  EXPECT_STREQ(GrpcCodeName(grpc::StatusCode::RESOURCE_EXHAUSTED), "RESOURCE_EXHAUSTED");
}

// Conversion without a server: what unset fields become.
TEST(RequestConversionTest, UnsetFieldsTakeTheServerDefaults) {
  ModelConfig config;
  config.vocab_size = 100;
  config.max_position_embeddings = 512;
  config.num_layers = 2;
  RequestDefaults defaults;
  defaults.default_max_tokens = 7;
  defaults.compression.policy = KvPolicy::kSnapKv;
  defaults.compression.ratio = 0.5;
  defaults.compression.window = 4;

  v1::GenerateRequest request;
  request.mutable_token_ids()->add_ids(3);
  absl::StatusOr<ConvertedRequest> converted =
      ToEngineRequest(request, defaults, config, /*tokenizer=*/nullptr);
  ASSERT_TRUE(converted.ok()) << converted.status();
  EXPECT_EQ(converted->text, nullptr);
  EXPECT_FALSE(static_cast<bool>(converted->request.text_stop));
  EXPECT_EQ(converted->request.sampling.max_tokens, 7);
  EXPECT_EQ(converted->request.sampling.temperature, 1.0f);
  EXPECT_FALSE(converted->request.sampling.seed.has_value());
  EXPECT_EQ(converted->request.compression.policy, KvPolicy::kSnapKv);
  EXPECT_EQ(converted->request.compression.ratio, 0.5);
  EXPECT_EQ(converted->request.compression.window, 4);

  // A request's own budget replaces the default one (tokens instead of a ratio).
  request.mutable_kv_compression()->set_policy(v1::KV_POLICY_ZIGZAG);
  request.mutable_kv_compression()->set_tokens_per_layer(20);
  request.mutable_sampling_params()->set_temperature(0.0f);
  converted = ToEngineRequest(request, defaults, config, /*tokenizer=*/nullptr);
  ASSERT_TRUE(converted.ok()) << converted.status();
  EXPECT_EQ(converted->request.compression.policy, KvPolicy::kZigZag);
  EXPECT_EQ(converted->request.compression.tokens_per_layer, 20);
  EXPECT_FALSE(converted->request.compression.ratio.has_value());
  EXPECT_EQ(converted->request.sampling.temperature, 0.0f);
}

TEST(RequestConversionTest, FloatRatiosKeepTheirDecimalValue) {
  // 0.1f is 0.100000001490116...; ceil(that * 30) would be 4, the client meant 3.
  EXPECT_EQ(FloatToDecimalDouble(0.1f), 0.1);
  EXPECT_EQ(FloatToDecimalDouble(0.25f), 0.25);
  EXPECT_EQ(FloatToDecimalDouble(0.3f), 0.3);
  v1::KvCompression proto;
  proto.set_policy(v1::KV_POLICY_SNAPKV);
  proto.set_ratio(0.1f);
  proto.set_window(1);
  absl::StatusOr<CompressionParams> params = ToCompressionParams(proto, CompressionParams{});
  ASSERT_TRUE(params.ok()) << params.status();
  EXPECT_EQ(AverageBudget(*params, 30), 3);
}

TEST(ServerOptionsTest, BadOptionsNameTheirFlag) {
  ServerOptions options = TestServerOptions();
  EXPECT_TRUE(ValidateServerOptions(options).ok());
  const auto message = [](ServerOptions o) {
    return std::string(ValidateServerOptions(o).message());
  };
  ServerOptions o = options;
  o.model_dir.clear();
  EXPECT_THAT(message(o), HasSubstr("--model is required"));
  o = options;
  o.tls_cert_file = "/some/cert.pem";
  EXPECT_THAT(message(o), HasSubstr("--tls-cert and --tls-key go together"));
  o = options;
  o.defaults.default_max_tokens = 1000;
  EXPECT_THAT(message(o), HasSubstr("--default-max-tokens must be in [1, --max-tokens-limit=512]"));
  o = options;
  o.defaults.compression.policy = KvPolicy::kZigZag;
  EXPECT_THAT(message(o), HasSubstr("default KV compression (--kv-* flags) is invalid"));
  o = options;
  o.block_size = 0;
  EXPECT_THAT(message(o), HasSubstr("--block-size must be >= 1"));
  o = options;
  o.max_message_bytes = 10;
  EXPECT_THAT(message(o), HasSubstr("--max-message-bytes"));
  o = options;
  o.max_text_bytes = o.max_message_bytes + 1;
  EXPECT_THAT(message(o), HasSubstr("--max-text-bytes must be in [0, --max-message-bytes="));
  o = options;
  o.tokenizer_threads = 0;
  EXPECT_THAT(message(o), HasSubstr("--tokenizer-threads must be in [1, 64], got 0"));
  o = options;
  o.tokenizer_queue = 0;
  EXPECT_THAT(message(o), HasSubstr("--tokenizer-queue must be in [1, 65536], got 0"));
  o = options;
  o.max_connections = 0;
  EXPECT_THAT(message(o), HasSubstr("--max-connections must be >= 1, got 0"));
  o = options;
  o.self_check_failures = 0;
  EXPECT_THAT(message(o), HasSubstr("--self-check-failures must be >= 1, got 0"));
}

TEST(ServerOptionsTest, UnreadableTlsFilesAndBusyPortsAreReported) {
  ServerOptions options = TestServerOptions();
  options.tls_cert_file = "/nonexistent/cert.pem";
  options.tls_key_file = "/nonexistent/key.pem";
  absl::StatusOr<std::unique_ptr<ZigzagServer>> server = ZigzagServer::Start(options);
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(std::string(server.status().message()), HasSubstr("--tls-cert: cannot read"));

  std::unique_ptr<ZigzagServer> first = StartServer(TestServerOptions());
  ASSERT_NE(first, nullptr);
  ServerOptions same_port = TestServerOptions();
  same_port.port = first->port();
  server = ZigzagServer::Start(same_port);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(server.status().message()), HasSubstr("cannot listen on 127.0.0.1:"));
}

}  // namespace
}  // namespace zigzag::testing
