// Text through the gRPC service, on a model folder with a SentencePiece tokenizer trained here
// (Debian's libsentencepiece trainer) next to a random checkpoint of the same vocabulary. The
// references are independent paths: the tokenizer called directly (Encode / whole-sequence
// Decode) and the same request sent as token ids. Covers text in and out, streamed text adding up
// to the final text, stop strings (generation and text end at the earliest match), Tokenize and
// Detokenize, and what each bad text input gets.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include "absl/strings/str_cat.h"

#include "core/tokenizer/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server_test_support.h"
#include "tests/test_support.h"

namespace zigzag::testing {
namespace {

using ::testing::HasSubstr;

constexpr int kVocab = 320;

// English-like sentences with accents, CJK and emoji, so that byte-fallback pieces exist and a
// random model's output splits multi-byte characters across tokens.
std::string Corpus() {
  const std::vector<std::string> words = {
      "the",  "cache", "keeps", "every", "layer",  "budget", "token", "café", "naïve", "über",
      "数据", "模型",  "🙂",  "🚀",     "zigzag", "memory", "saved", "42",   "2025",  "passkey"};
  std::mt19937 rng(7);
  std::string text;
  for (int line = 0; line < 400; ++line) {
    for (int w = 0; w < 12; ++w) {
      if (w > 0) text += ' ';
      text += words[rng() % words.size()];
    }
    text += ".\n";
  }
  return text;
}

const std::filesystem::path& TextModelDir() {
  static const std::filesystem::path* dir = [] {
    auto* path = new std::filesystem::path(MakeTempDir("text-model"));
    RandomCheckpointSpec spec = ServerTestSpec();
    spec.vocab_size = kVocab;
    EXPECT_TRUE(WriteRandomCheckpoint(*path, spec).ok());
    const std::filesystem::path corpus = *path / "corpus.txt";
    WriteFile(corpus, Corpus());
    // Debian's spm_train (package sentencepiece), run as its own process.
    const std::string command = absl::StrCat(
        "spm_train --input=", corpus.string(), " --model_prefix=", (*path / "tokenizer").string(),
        " --vocab_size=", kVocab,
        " --model_type=bpe --byte_fallback=true --split_digits=true --character_coverage=1.0 "
        "--unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1 --minloglevel=2 > /dev/null 2>&1");
    EXPECT_EQ(std::system(command.c_str()), 0) << command;
    WriteFile(*path / "tokenizer_config.json",
              R"({"add_bos_token": true, "add_eos_token": false, "bos_token": "<s>",
                  "eos_token": "</s>", "unk_token": "<unk>"})");
    return path;
  }();
  return *dir;
}

class ServerTextTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tokenizer = LoadTokenizer(TextModelDir().string());
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = std::move(*tokenizer);
    ASSERT_EQ(tokenizer_->vocab_size(), kVocab);
    ServerOptions options = TestServerOptions();
    options.model_dir = TextModelDir().string();
    server_ = StartServer(options);
    ASSERT_NE(server_, nullptr);
    stub_ = NewStub(server_->port());
  }

  v1::GenerateRequest TextRequest(const std::string& text, uint32_t max_tokens) {
    v1::GenerateRequest request;
    request.set_text(text);
    request.mutable_sampling_params()->set_temperature(0.0f);
    request.mutable_sampling_params()->set_max_tokens(max_tokens);
    request.mutable_sampling_params()->set_ignore_eos(true);
    return request;
  }

  grpc::Status Generate(const v1::GenerateRequest& request, v1::GenerateResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kServerHangGuard);
    return stub_->Generate(&context, request, response);
  }

  std::string Decode(const google::protobuf::RepeatedField<int32_t>& ids) {
    auto text = tokenizer_->Decode(std::vector<int32_t>(ids.begin(), ids.end()), true);
    EXPECT_TRUE(text.ok()) << text.status();
    return text.value_or("");
  }

  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<ZigzagServer> server_;
  std::unique_ptr<v1::Engine::Stub> stub_;
};

TEST_F(ServerTextTest, TextInAndOutMatchesTheTokenizerAndTheIdsRequest) {
  const std::string prompt = "the zigzag cache keeps 42 café 模型 🙂 every layer";
  v1::GenerateResponse by_text;
  ASSERT_TRUE(Generate(TextRequest(prompt, 40), &by_text).ok());
  auto ids = tokenizer_->Encode(prompt, /*add_special_tokens=*/true);
  ASSERT_TRUE(ids.ok());
  ASSERT_EQ((*ids)[0], 1);  // BOS from tokenizer_config.json
  EXPECT_EQ(by_text.usage().prompt_tokens(), ids->size());
  EXPECT_EQ(by_text.token_ids_size(), 40);
  EXPECT_EQ(by_text.text(), Decode(by_text.token_ids()));
  EXPECT_FALSE(by_text.text().empty());

  v1::GenerateResponse by_ids;
  ASSERT_TRUE(Generate(GreedyRequest(*ids, 40), &by_ids).ok());
  EXPECT_THAT(by_ids.token_ids(), ::testing::ElementsAreArray(by_text.token_ids()));
  EXPECT_EQ(by_ids.text(), by_text.text());  // ids in, text out too

  // Without special tokens the prompt loses its BOS.
  v1::GenerateRequest no_bos = TextRequest(prompt, 4);
  no_bos.set_add_special_tokens(false);
  v1::GenerateResponse response;
  ASSERT_TRUE(Generate(no_bos, &response).ok());
  EXPECT_EQ(response.usage().prompt_tokens(), ids->size() - 1);
}

TEST_F(ServerTextTest, StreamedTextAddsUpToTheFinalText) {
  for (uint64_t seed : {1, 2, 3}) {
    v1::GenerateRequest request = TextRequest("数据 über naïve 🚀 memory saved", 60);
    request.mutable_sampling_params()->set_temperature(1.0f);
    request.mutable_sampling_params()->set_seed(seed);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kServerHangGuard);
    std::unique_ptr<grpc::ClientReader<v1::GenerateStreamResponse>> reader =
        stub_->GenerateStream(&context, request);
    v1::GenerateStreamResponse message;
    std::string streamed;
    std::optional<v1::GenerateResponse> complete;
    while (reader->Read(&message)) {
      if (message.has_chunk()) {
        streamed += message.chunk().text();
      } else {
        complete = message.complete();
      }
    }
    ASSERT_TRUE(reader->Finish().ok());
    ASSERT_TRUE(complete.has_value());
    EXPECT_EQ(streamed, complete->text()) << "seed " << seed;
    EXPECT_EQ(complete->text(), Decode(complete->token_ids())) << "seed " << seed;
  }
}

TEST_F(ServerTextTest, StopStringEndsGenerationAndTheTextBeforeIt) {
  const std::string prompt = "every layer budget token";
  v1::GenerateResponse free_run;
  ASSERT_TRUE(Generate(TextRequest(prompt, 60), &free_run).ok());
  const std::string full = free_run.text();
  ASSERT_GT(full.size(), 20u);
  // A stop string taken from the middle of the free-run text (cut at a character boundary).
  auto next_char = [&full](size_t i) {
    ++i;
    while (i < full.size() && (static_cast<unsigned char>(full[i]) & 0xC0) == 0x80) ++i;
    return i;
  };
  size_t begin = full.size() / 2;
  while (begin < full.size() && (static_cast<unsigned char>(full[begin]) & 0xC0) == 0x80) ++begin;
  ASSERT_LT(begin, full.size());
  const std::string stop = full.substr(begin, next_char(next_char(begin)) - begin);
  const size_t first = full.find(stop);
  ASSERT_NE(first, std::string::npos);

  v1::GenerateRequest request = TextRequest(prompt, 60);
  request.mutable_sampling_params()->add_stop(stop);
  request.mutable_sampling_params()->add_stop("this string never appears \x01");
  v1::GenerateResponse stopped;
  ASSERT_TRUE(Generate(request, &stopped).ok());
  EXPECT_EQ(stopped.finish_reason(), v1::FINISH_REASON_STOP);
  EXPECT_EQ(stopped.text(), full.substr(0, first)) << "stop '" << stop << "'";
  ASSERT_LE(stopped.token_ids_size(), free_run.token_ids_size());
  for (int i = 0; i < stopped.token_ids_size(); ++i) {
    EXPECT_EQ(stopped.token_ids(i), free_run.token_ids(i));
  }
  // It stopped at the token that completed the stop string, not later.
  const std::string through_stop = Decode(stopped.token_ids());
  EXPECT_NE(through_stop.find(stop), std::string::npos);
  std::vector<int32_t> one_less(stopped.token_ids().begin(), stopped.token_ids().end() - 1);
  EXPECT_EQ(tokenizer_->Decode(one_less, true)->find(stop), std::string::npos);

  // Streamed, the stop string never reaches the client.
  grpc::ClientContext context;
  StreamResult stream = RunStream(*stub_, request, &context);
  ASSERT_TRUE(stream.status.ok());
  ASSERT_TRUE(stream.complete.has_value());
  EXPECT_EQ(stream.complete->text(), stopped.text());
}

TEST_F(ServerTextTest, TokenizeAndDetokenizeUseTheModelsTokenizer) {
  v1::TokenizeRequest tokenize;
  tokenize.set_text("café 🙂 42");
  tokenize.set_add_special_tokens(true);
  v1::TokenizeResponse ids;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->Tokenize(&context, tokenize, &ids).ok());
  }
  EXPECT_THAT(ids.token_ids(),
              ::testing::ElementsAreArray(*tokenizer_->Encode("café 🙂 42", true)));
  v1::DetokenizeRequest detokenize;
  detokenize.mutable_token_ids()->CopyFrom(ids.token_ids());
  detokenize.set_skip_special_tokens(true);
  v1::DetokenizeResponse text;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->Detokenize(&context, detokenize, &text).ok());
  }
  EXPECT_EQ(text.text(), "café 🙂 42");

  detokenize.add_token_ids(kVocab);
  grpc::ClientContext context;
  const grpc::Status bad = stub_->Detokenize(&context, detokenize, &text);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(bad.error_message(), HasSubstr("token_ids: "));

  v1::GetModelInfoResponse info;
  grpc::ClientContext info_context;
  ASSERT_TRUE(stub_->GetModelInfo(&info_context, {}, &info).ok());
  EXPECT_EQ(info.tokenizer(), "tokenizer.model");
}

TEST_F(ServerTextTest, BadTextInputsGetInvalidArgumentNamingTheField) {
  struct Case {
    std::function<void(v1::GenerateRequest*)> mutate;
    const char* message;
  };
  const std::vector<Case> cases = {
      {[](auto* r) { r->set_text(""); }, "text is empty"},
      {[](auto* r) { r->set_text(std::string(5000, 'a') + " the"); },
       "exceeds the model's context of 1024 tokens"},
      {[](auto* r) { r->mutable_sampling_params()->add_stop(""); },
       "sampling_params.stop[0] is 0 bytes long"},
      {[](auto* r) { r->mutable_sampling_params()->add_stop(std::string(257, 'x')); },
       "sampling_params.stop[0] is 257 bytes long"},
      {[](auto* r) {
         // std::string, not "s": add_stop(const char*) makes gcc 12 -O3 warn falsely
         // (-Wrestrict, GCC bug 105329).
         for (int i = 0; i < 17; ++i) r->mutable_sampling_params()->add_stop(std::string("s"));
       },
       "sampling_params.stop has 17 strings; at most 16"},
  };
  for (const Case& c : cases) {
    v1::GenerateRequest request = TextRequest("the cache", 4);
    c.mutate(&request);
    v1::GenerateResponse response;
    const grpc::Status status = Generate(request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.message;
    EXPECT_THAT(status.error_message(), HasSubstr(c.message));
  }
  // Nothing was left behind in the KV pool.
  v1::GetServerInfoResponse info;
  grpc::ClientContext context;
  ASSERT_TRUE(stub_->GetServerInfo(&context, {}, &info).ok());
  EXPECT_EQ(info.kv_blocks_used(), 0);
}

}  // namespace
}  // namespace zigzag::testing
