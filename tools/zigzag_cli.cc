// zigzag-cli: a command-line client of zigzag-server (zigzag.v1.Engine over gRPC).
//   zigzag-cli generate --target HOST:PORT --prompt-ids 1,2,3 [sampling and --kv-* flags]
//   zigzag-cli stream   ... (prints each chunk as it arrives, then the final response)
//   zigzag-cli info     (model and server load)
//   zigzag-cli abort --request-id ID
// Prints token ids, the finish reason, usage, timings and the request's KvStats.
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "core/util/command_line.h"
#include "core/util/status_macros.h"
#include "grpcpp/grpcpp.h"
#include "zigzag/v1/engine.grpc.pb.h"

ABSL_FLAG(std::string, target, "localhost:50051", "Server address HOST:PORT");
ABSL_FLAG(std::string, auth_token, "",
          "Bearer token; default: $ZIGZAG_AUTH_TOKEN (a flag shows in the process list: prefer "
          "--auth-token-file)");
ABSL_FLAG(std::string, auth_token_file, "",
          "File holding the bearer token (one trailing newline is removed)");
ABSL_FLAG(bool, tls, false, "Connect with TLS");
ABSL_FLAG(std::string, tls_ca, "", "PEM root certificates for --tls; default: the system's");
ABSL_FLAG(std::string, tls_server_name, "", "Override the TLS server name (e.g. for an IP)");
ABSL_FLAG(absl::Duration, timeout, absl::ZeroDuration(), "Call deadline, e.g. 30s; 0 = none");
ABSL_FLAG(std::string, request_id, "", "Request id (generate, stream, abort)");

ABSL_FLAG(std::string, prompt, "", "Prompt text (the server tokenizes it)");
ABSL_FLAG(std::string, prompt_file, "", "Read the prompt text from this file ('-' = stdin)");
ABSL_FLAG(std::string, prompt_ids, "", "Prompt as comma-separated token ids, e.g. 1,2,3");
ABSL_FLAG(std::string, stop, "",
          "A stop string (C escapes such as \\n allowed); the text ends before it");
ABSL_FLAG(std::string, text, "", "Text for the tokenize command");
ABSL_FLAG(std::string, ids, "", "Comma-separated token ids for the detokenize command");
// Sampling and KV fields are strings so that "unset" (empty: the server's default) differs
// from any value, including invalid ones the server should answer with INVALID_ARGUMENT.
ABSL_FLAG(std::string, max_tokens, "", "Maximum tokens to generate");
ABSL_FLAG(std::string, temperature, "", "Sampling temperature; 0 = greedy");
ABSL_FLAG(std::string, top_k, "", "Top-k; 0 = off");
ABSL_FLAG(std::string, top_p, "", "Top-p in (0, 1]");
ABSL_FLAG(std::string, min_p, "", "Min-p in [0, 1]");
ABSL_FLAG(std::string, repetition_penalty, "", "Repetition penalty; 1 = off");
ABSL_FLAG(std::string, seed, "", "Random seed");
ABSL_FLAG(std::string, stop_token_ids, "", "Comma-separated token ids that end generation");
ABSL_FLAG(bool, ignore_eos, false, "Keep generating after EOS");
ABSL_FLAG(bool, logprobs, false, "Return the log-probability of each token");
ABSL_FLAG(std::string, kv_policy, "", "full, streaming, snapkv, pyramidkv or zigzag");
ABSL_FLAG(std::string, kv_budget, "", "Average KV budget in tokens per layer");
ABSL_FLAG(std::string, kv_ratio, "", "Average KV budget as a fraction of the prompt");
ABSL_FLAG(std::string, kv_window, "", "Observation window");
ABSL_FLAG(std::string, kv_kernel, "", "Max-pool kernel (odd)");
ABSL_FLAG(std::string, kv_tau, "", "ZigZag attention-mass threshold");
ABSL_FLAG(std::string, kv_rho, "", "ZigZag per-layer floor");
ABSL_FLAG(std::string, kv_head_budgets, "",
          "uniform or adaptive (AdaKV head split); empty = server default");
ABSL_FLAG(std::string, kv_alpha, "", "Adaptive head split floor, [0, 1]");

namespace {

namespace v1 = zigzag::v1;

absl::Status UsageError(const std::string& message) { return absl::InvalidArgumentError(message); }

// Parses `text` as a T and passes it to `set`; does nothing for an empty text (flag not given).
template <typename T, typename Setter>
absl::Status SetIfGiven(const std::string& text, const char* flag, Setter set) {
  if (text.empty()) return absl::OkStatus();
  T value;
  bool ok;
  if constexpr (std::is_floating_point_v<T>) {
    double parsed;
    ok = absl::SimpleAtod(text, &parsed);
    value = static_cast<T>(parsed);
  } else {
    ok = absl::SimpleAtoi(text, &value);
  }
  if (!ok) return UsageError(absl::StrCat("--", flag, ": '", text, "' is not a number"));
  set(value);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> ParseIds(const std::string& text, const char* flag) {
  std::vector<int32_t> ids;
  if (text.empty()) return ids;
  for (absl::string_view piece : absl::StrSplit(text, ',')) {
    int32_t id;
    if (!absl::SimpleAtoi(piece, &id)) {
      return UsageError(
          absl::StrCat("--", flag, ": '", std::string(piece), "' is not an integer token id"));
    }
    ids.push_back(id);
  }
  return ids;
}

absl::StatusOr<v1::KvPolicy> ParsePolicy(const std::string& name) {
  if (name.empty()) return v1::KV_POLICY_UNSPECIFIED;
  v1::KvPolicy policy;
  std::string upper = "KV_POLICY_";
  for (char c : name) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (!v1::KvPolicy_Parse(upper, &policy)) {
    return UsageError(absl::StrCat("--kv-policy '", name,
                                   "' is unknown (full, streaming, snapkv, pyramidkv, zigzag)"));
  }
  return policy;
}

absl::StatusOr<v1::GenerateRequest> RequestFromFlags() {
  v1::GenerateRequest request;
  request.set_request_id(absl::GetFlag(FLAGS_request_id));
  ASSIGN_OR_RETURN(const std::vector<int32_t> prompt,
                   ParseIds(absl::GetFlag(FLAGS_prompt_ids), "prompt-ids"));
  const std::string& text = absl::GetFlag(FLAGS_prompt);
  const std::string& text_file = absl::GetFlag(FLAGS_prompt_file);
  const int inputs = !prompt.empty() + !text.empty() + !text_file.empty();
  if (inputs != 1) {
    return UsageError(
        "give exactly one of --prompt TEXT, --prompt-file FILE or --prompt-ids 1,2,3");
  }
  if (!prompt.empty()) {
    request.mutable_token_ids()->mutable_ids()->Add(prompt.begin(), prompt.end());
  } else if (!text.empty()) {
    request.set_text(text);
  } else {
    std::ifstream file_in;
    std::istream* in = &std::cin;
    if (text_file != "-") {
      file_in.open(text_file, std::ios::binary);
      if (!file_in) return UsageError(absl::StrCat("--prompt-file: cannot read ", text_file));
      in = &file_in;
    }
    std::ostringstream content;
    content << in->rdbuf();
    request.set_text(content.str());
  }

  v1::SamplingParams* s = request.mutable_sampling_params();
  // A negative max_tokens wraps to a huge one, which the server refuses with a clear message.
  RETURN_IF_ERROR(
      SetIfGiven<int64_t>(absl::GetFlag(FLAGS_max_tokens), "max-tokens",
                          [s](int64_t v) { s->set_max_tokens(static_cast<uint32_t>(v)); }));
  RETURN_IF_ERROR(SetIfGiven<float>(absl::GetFlag(FLAGS_temperature), "temperature",
                                    [s](float v) { s->set_temperature(v); }));
  RETURN_IF_ERROR(SetIfGiven<int32_t>(absl::GetFlag(FLAGS_top_k), "top-k",
                                      [s](int32_t v) { s->set_top_k(v); }));
  RETURN_IF_ERROR(
      SetIfGiven<float>(absl::GetFlag(FLAGS_top_p), "top-p", [s](float v) { s->set_top_p(v); }));
  RETURN_IF_ERROR(
      SetIfGiven<float>(absl::GetFlag(FLAGS_min_p), "min-p", [s](float v) { s->set_min_p(v); }));
  RETURN_IF_ERROR(SetIfGiven<float>(absl::GetFlag(FLAGS_repetition_penalty), "repetition-penalty",
                                    [s](float v) { s->set_repetition_penalty(v); }));
  RETURN_IF_ERROR(
      SetIfGiven<uint64_t>(absl::GetFlag(FLAGS_seed), "seed", [s](uint64_t v) { s->set_seed(v); }));
  ASSIGN_OR_RETURN(const std::vector<int32_t> stop,
                   ParseIds(absl::GetFlag(FLAGS_stop_token_ids), "stop-token-ids"));
  s->mutable_stop_token_ids()->Add(stop.begin(), stop.end());
  if (!absl::GetFlag(FLAGS_stop).empty()) {
    std::string unescaped;
    std::string error;
    if (!absl::CUnescape(absl::GetFlag(FLAGS_stop), &unescaped, &error)) {
      return UsageError(absl::StrCat("--stop: ", error));
    }
    s->add_stop(unescaped);
  }
  s->set_ignore_eos(absl::GetFlag(FLAGS_ignore_eos));
  s->set_logprobs(absl::GetFlag(FLAGS_logprobs));

  v1::KvCompression* kv = request.mutable_kv_compression();
  ASSIGN_OR_RETURN(const v1::KvPolicy policy, ParsePolicy(absl::GetFlag(FLAGS_kv_policy)));
  kv->set_policy(policy);
  RETURN_IF_ERROR(SetIfGiven<uint32_t>(absl::GetFlag(FLAGS_kv_budget), "kv-budget",
                                       [kv](uint32_t v) { kv->set_tokens_per_layer(v); }));
  RETURN_IF_ERROR(SetIfGiven<float>(absl::GetFlag(FLAGS_kv_ratio), "kv-ratio",
                                    [kv](float v) { kv->set_ratio(v); }));
  RETURN_IF_ERROR(SetIfGiven<uint32_t>(absl::GetFlag(FLAGS_kv_window), "kv-window",
                                       [kv](uint32_t v) { kv->set_window(v); }));
  RETURN_IF_ERROR(SetIfGiven<uint32_t>(absl::GetFlag(FLAGS_kv_kernel), "kv-kernel",
                                       [kv](uint32_t v) { kv->set_kernel(v); }));
  RETURN_IF_ERROR(
      SetIfGiven<float>(absl::GetFlag(FLAGS_kv_tau), "kv-tau", [kv](float v) { kv->set_tau(v); }));
  RETURN_IF_ERROR(
      SetIfGiven<float>(absl::GetFlag(FLAGS_kv_rho), "kv-rho", [kv](float v) { kv->set_rho(v); }));
  const std::string head_budgets = absl::GetFlag(FLAGS_kv_head_budgets);
  if (head_budgets == "uniform") {
    kv->set_head_budgets(v1::HEAD_BUDGETS_UNIFORM);
  } else if (head_budgets == "adaptive") {
    kv->set_head_budgets(v1::HEAD_BUDGETS_ADAPTIVE);
  } else if (!head_budgets.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--kv-head-budgets must be uniform or adaptive, got '", head_budgets, "'"));
  }
  RETURN_IF_ERROR(SetIfGiven<float>(absl::GetFlag(FLAGS_kv_alpha), "kv-alpha",
                                    [kv](float v) { kv->set_alpha(v); }));
  return request;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel() {
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  grpc::ChannelArguments arguments;
  if (absl::GetFlag(FLAGS_tls)) {
    grpc::SslCredentialsOptions ssl;
    if (const std::string ca = absl::GetFlag(FLAGS_tls_ca); !ca.empty()) {
      std::ifstream in(ca);
      if (!in) return UsageError(absl::StrCat("--tls-ca: cannot read ", ca));
      std::ostringstream text;
      text << in.rdbuf();
      ssl.pem_root_certs = text.str();
    }
    credentials = grpc::SslCredentials(ssl);
    if (const std::string name = absl::GetFlag(FLAGS_tls_server_name); !name.empty()) {
      arguments.SetSslTargetNameOverride(name);
    }
  }
  return grpc::CreateCustomChannel(absl::GetFlag(FLAGS_target), credentials, arguments);
}

// The bearer token: --auth-token-file, else --auth-token, else $ZIGZAG_AUTH_TOKEN; "" = none.
absl::StatusOr<std::string> AuthToken() {
  if (const std::string path = absl::GetFlag(FLAGS_auth_token_file); !path.empty()) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return UsageError(absl::StrCat("--auth-token-file: cannot read ", path));
    std::ostringstream text;
    text << in.rdbuf();
    std::string token = text.str();
    if (!token.empty() && token.back() == '\n') token.pop_back();
    if (!token.empty() && token.back() == '\r') token.pop_back();
    if (token.empty()) return UsageError(absl::StrCat("--auth-token-file: ", path, " is empty"));
    return token;
  }
  std::string token = absl::GetFlag(FLAGS_auth_token);
  if (token.empty()) {
    if (const char* env = std::getenv("ZIGZAG_AUTH_TOKEN"); env != nullptr) token = env;
  }
  return token;
}

void PrepareContext(grpc::ClientContext* context) {
  // main() checked that the token can be read.
  const std::string token = AuthToken().value_or("");
  if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
  const absl::Duration timeout = absl::GetFlag(FLAGS_timeout);
  if (timeout > absl::ZeroDuration()) {
    context->set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
  }
}

int ReportError(const grpc::Status& status) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  const int code = status.error_code();
  std::fprintf(stderr, "zigzag-cli: %s: %s\n", code >= 0 && code <= 16 ? kNames[code] : "?",
               status.error_message().c_str());
  return 1;
}

void PrintKvStats(const v1::KvStats& kv) {
  std::string budget = "-";
  if (kv.budget_case() == v1::KvStats::kTokensPerLayer) {
    budget = std::to_string(kv.tokens_per_layer()) + " tokens/layer";
  } else if (kv.budget_case() == v1::KvStats::kRatio) {
    budget = "ratio " + std::to_string(kv.ratio());
  }
  std::printf(
      "kv_policy: %s budget: %s compressed: %s average_budget: %lld window: %u kernel: %u "
      "tau: %g rho: %g\n",
      v1::KvPolicy_Name(kv.policy()).c_str(), budget.c_str(), kv.compressed() ? "yes" : "no",
      static_cast<long long>(kv.average_budget()), kv.window(), kv.kernel(), kv.tau(), kv.rho());
  std::printf("kv_head_budgets: %s alpha: %g\n",
              kv.head_budgets() == v1::HEAD_BUDGETS_ADAPTIVE ? "adaptive" : "uniform", kv.alpha());
  std::printf("kv_kept_prompt_tokens_per_layer: %s\n",
              absl::StrJoin(kv.prompt_kept_per_layer(), ",").c_str());
  std::printf("kv_kept_prompt_tokens_per_head: %s\n",
              absl::StrJoin(kv.prompt_kept_per_head(), ",").c_str());
  std::printf(
      "kv_full_bytes: %lld kv_retained_bytes: %lld kv_full_block_bytes: %lld "
      "kv_retained_block_bytes: %lld kv_saved_bytes: %lld kv_retained_ratio: %.4f "
      "kv_blocks_held: %lld preemptions: %lld\n",
      static_cast<long long>(kv.full_kv_bytes()), static_cast<long long>(kv.retained_kv_bytes()),
      static_cast<long long>(kv.full_kv_block_bytes()),
      static_cast<long long>(kv.retained_kv_block_bytes()),
      static_cast<long long>(kv.saved_kv_bytes()), kv.retained_ratio(),
      static_cast<long long>(kv.blocks_held()), static_cast<long long>(kv.num_preemptions()));
}

void PrintResponse(const v1::GenerateResponse& response) {
  std::printf("request_id: %s\n", response.request_id().c_str());
  std::printf("tokens: %s\n", absl::StrJoin(response.token_ids(), ",").c_str());
  std::printf("text: %s\n", absl::CEscape(response.text()).c_str());
  if (response.logprobs_size() > 0) {
    std::printf("logprobs: %s\n", absl::StrJoin(response.logprobs(), ",").c_str());
  }
  std::printf("finish_reason: %s\n", v1::FinishReason_Name(response.finish_reason()).c_str());
  std::printf("prompt_tokens: %u completion_tokens: %u\n", response.usage().prompt_tokens(),
              response.usage().completion_tokens());
  const v1::Timings& t = response.timings();
  std::printf("queue: %.4fs prefill: %.4fs decode: %.4fs ttft: %.4fs e2e: %.4fs\n",
              t.queue_seconds(), t.prefill_seconds(), t.decode_seconds(), t.ttft_seconds(),
              t.e2e_seconds());
  PrintKvStats(response.kv_stats());
}

int ReportUsage(const absl::Status& status) {
  std::fprintf(stderr, "zigzag-cli: %s\n", std::string(status.message()).c_str());
  return 2;
}

int RunGenerate(v1::Engine::Stub& stub) {
  const absl::StatusOr<v1::GenerateRequest> request = RequestFromFlags();
  if (!request.ok()) return ReportUsage(request.status());
  grpc::ClientContext context;
  PrepareContext(&context);
  v1::GenerateResponse response;
  const grpc::Status status = stub.Generate(&context, *request, &response);
  if (!status.ok()) return ReportError(status);
  PrintResponse(response);
  return 0;
}

int RunStream(v1::Engine::Stub& stub) {
  const absl::StatusOr<v1::GenerateRequest> request = RequestFromFlags();
  if (!request.ok()) return ReportUsage(request.status());
  grpc::ClientContext context;
  PrepareContext(&context);
  std::unique_ptr<grpc::ClientReader<v1::GenerateStreamResponse>> reader =
      stub.GenerateStream(&context, *request);
  v1::GenerateStreamResponse message;
  while (reader->Read(&message)) {
    if (message.has_chunk()) {
      std::printf("chunk: %s text: %s\n", absl::StrJoin(message.chunk().token_ids(), ",").c_str(),
                  absl::CEscape(message.chunk().text()).c_str());
      std::fflush(stdout);
    } else if (message.has_complete()) {
      PrintResponse(message.complete());
    }
  }
  const grpc::Status status = reader->Finish();
  return status.ok() ? 0 : ReportError(status);
}

int RunInfo(v1::Engine::Stub& stub) {
  grpc::ClientContext model_context;
  PrepareContext(&model_context);
  v1::GetModelInfoResponse model;
  grpc::Status status = stub.GetModelInfo(&model_context, {}, &model);
  if (!status.ok()) return ReportError(status);
  std::printf("%s", model.DebugString().c_str());
  grpc::ClientContext server_context;
  PrepareContext(&server_context);
  v1::GetServerInfoResponse server;
  status = stub.GetServerInfo(&server_context, {}, &server);
  if (!status.ok()) return ReportError(status);
  std::printf("%s", server.DebugString().c_str());
  return 0;
}

int RunTokenize(v1::Engine::Stub& stub) {
  v1::TokenizeRequest request;
  request.set_text(absl::GetFlag(FLAGS_text));
  request.set_add_special_tokens(true);
  grpc::ClientContext context;
  PrepareContext(&context);
  v1::TokenizeResponse response;
  const grpc::Status status = stub.Tokenize(&context, request, &response);
  if (!status.ok()) return ReportError(status);
  std::printf("tokens: %s\n", absl::StrJoin(response.token_ids(), ",").c_str());
  return 0;
}

int RunDetokenize(v1::Engine::Stub& stub) {
  const absl::StatusOr<std::vector<int32_t>> ids = ParseIds(absl::GetFlag(FLAGS_ids), "ids");
  if (!ids.ok()) return ReportUsage(ids.status());
  v1::DetokenizeRequest request;
  request.mutable_token_ids()->Add(ids->begin(), ids->end());
  request.set_skip_special_tokens(true);
  grpc::ClientContext context;
  PrepareContext(&context);
  v1::DetokenizeResponse response;
  const grpc::Status status = stub.Detokenize(&context, request, &response);
  if (!status.ok()) return ReportError(status);
  std::printf("text: %s\n", absl::CEscape(response.text()).c_str());
  return 0;
}

int RunAbort(v1::Engine::Stub& stub) {
  v1::AbortRequest request;
  request.set_request_id(absl::GetFlag(FLAGS_request_id));
  grpc::ClientContext context;
  PrepareContext(&context);
  v1::AbortResponse response;
  const grpc::Status status = stub.Abort(&context, request, &response);
  if (!status.ok()) return ReportError(status);
  std::printf("found: %s\n", response.found() ? "yes" : "no");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "A client of zigzag-server.\n"
      "  zigzag-cli generate|stream --target HOST:PORT --prompt TEXT | --prompt-file FILE | "
      "--prompt-ids 1,2,3 [--max-tokens N --temperature T --stop S ... --kv-policy zigzag "
      "--kv-ratio 0.25]\n"
      "  zigzag-cli tokenize --text TEXT | detokenize --ids 1,2,3\n"
      "  zigzag-cli info --target HOST:PORT\n"
      "  zigzag-cli abort --target HOST:PORT --request-id ID");
  const std::vector<std::string> positional = zigzag::ParseCommandLineAcceptingDashes(argc, argv);
  if (positional.size() != 2) {
    std::fprintf(stderr,
                 "zigzag-cli: expected one command: generate, stream, info, abort, tokenize or "
                 "detokenize\n");
    return 2;
  }
  const std::string& command = positional[1];
  if (const absl::StatusOr<std::string> token = AuthToken(); !token.ok()) {
    return ReportUsage(token.status());
  }
  const absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeChannel();
  if (!channel.ok()) return ReportUsage(channel.status());
  std::unique_ptr<v1::Engine::Stub> stub = v1::Engine::NewStub(*channel);
  if (command == "generate") return RunGenerate(*stub);
  if (command == "stream") return RunStream(*stub);
  if (command == "info") return RunInfo(*stub);
  if (command == "abort") return RunAbort(*stub);
  if (command == "tokenize") return RunTokenize(*stub);
  if (command == "detokenize") return RunDetokenize(*stub);
  std::fprintf(stderr,
               "zigzag-cli: unknown command '%s' (generate, stream, info, abort, tokenize, "
               "detokenize)\n",
               command.c_str());
  return 2;
}
