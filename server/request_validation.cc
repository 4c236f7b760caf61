#include "server/request_validation.h"

#include <charconv>
#include <cstdlib>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"

namespace zigzag {
namespace {

absl::Status Invalid(const std::string& message) { return absl::InvalidArgumentError(message); }

// Core validators name their fields without the proto message they sit in; add it.
absl::Status Prefixed(const absl::Status& status, const char* prefix) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(prefix, std::string(status.message())));
}

absl::StatusOr<int32_t> ToInt32(uint32_t value, const char* field) {
  if (value > static_cast<uint32_t>(std::numeric_limits<int32_t>::max())) {
    return Invalid(absl::StrCat(field, " = ", value, " is too large"));
  }
  return static_cast<int32_t>(value);
}

constexpr const char* kTokenizerLandsLater = "(the tokenizer lands with issue 6)";

}  // namespace

double FloatToDecimalDouble(float value) {
  // std::to_chars gives the shortest decimal that reads back as the same float.
  char buffer[64];
  const auto [end, error] = std::to_chars(buffer, buffer + sizeof(buffer) - 1, value);
  if (error != std::errc()) return static_cast<double>(value);
  *end = '\0';
  return std::strtod(buffer, nullptr);
}

absl::StatusOr<std::optional<KvPolicy>> FromProtoPolicy(int value) {
  switch (value) {
    case v1::KV_POLICY_UNSPECIFIED:
      return std::optional<KvPolicy>();
    case v1::KV_POLICY_FULL:
      return KvPolicy::kFull;
    case v1::KV_POLICY_STREAMING:
      return KvPolicy::kStreaming;
    case v1::KV_POLICY_SNAPKV:
      return KvPolicy::kSnapKv;
    case v1::KV_POLICY_PYRAMIDKV:
      return KvPolicy::kPyramidKv;
    case v1::KV_POLICY_ZIGZAG:
      return KvPolicy::kZigZag;
    default:
      break;
  }
  std::string accepted;
  for (int v = v1::KvPolicy_MIN; v <= v1::KvPolicy_MAX; ++v) {
    if (!v1::KvPolicy_IsValid(v)) continue;
    absl::StrAppend(&accepted, accepted.empty() ? "" : ", ",
                    v1::KvPolicy_Name(static_cast<v1::KvPolicy>(v)), " (", v, ")");
  }
  return Invalid(
      absl::StrCat("kv_compression.policy = ", value, " is not a KvPolicy; accepted: ", accepted));
}

absl::StatusOr<CompressionParams> ToCompressionParams(const v1::KvCompression& proto,
                                                      const CompressionParams& defaults) {
  CompressionParams params = defaults;
  ASSIGN_OR_RETURN(std::optional<KvPolicy> policy, FromProtoPolicy(proto.policy()));
  if (policy.has_value()) params.policy = *policy;
  switch (proto.budget_case()) {
    case v1::KvCompression::kTokensPerLayer:
      params.tokens_per_layer = proto.tokens_per_layer();
      params.ratio.reset();
      break;
    case v1::KvCompression::kRatio:
      params.ratio = FloatToDecimalDouble(proto.ratio());
      params.tokens_per_layer.reset();
      break;
    case v1::KvCompression::BUDGET_NOT_SET:
      break;
  }
  if (proto.has_window()) {
    ASSIGN_OR_RETURN(params.window, ToInt32(proto.window(), "kv_compression.window"));
  }
  if (proto.has_kernel()) {
    ASSIGN_OR_RETURN(params.kernel, ToInt32(proto.kernel(), "kv_compression.kernel"));
  }
  if (proto.has_tau()) params.tau = FloatToDecimalDouble(proto.tau());
  if (proto.has_rho()) params.rho = FloatToDecimalDouble(proto.rho());
  // Messages already name "kv_compression.<field>".
  RETURN_IF_ERROR(ValidateCompressionParams(params));
  return params;
}

absl::StatusOr<SamplingParams> ToSamplingParams(const v1::SamplingParams& proto,
                                                const RequestDefaults& defaults,
                                                int64_t vocab_size) {
  SamplingParams params;
  if (proto.has_temperature()) params.temperature = proto.temperature();
  if (proto.has_top_k()) params.top_k = proto.top_k();
  if (proto.has_top_p()) params.top_p = proto.top_p();
  if (proto.has_min_p()) params.min_p = proto.min_p();
  if (proto.has_repetition_penalty()) params.repetition_penalty = proto.repetition_penalty();
  if (proto.has_seed()) params.seed = proto.seed();
  params.max_tokens = defaults.default_max_tokens;
  if (proto.has_max_tokens()) {
    if (proto.max_tokens() > static_cast<uint32_t>(defaults.max_tokens_limit)) {
      return Invalid(absl::StrCat("sampling_params.max_tokens = ", proto.max_tokens(),
                                  " is above the server's limit of ", defaults.max_tokens_limit,
                                  " (--max-tokens-limit)"));
    }
    params.max_tokens = static_cast<int32_t>(proto.max_tokens());
  }
  if (proto.stop_size() > 0) {
    return Invalid(
        absl::StrCat("sampling_params.stop: stop strings need a tokenizer; use stop_token_ids ",
                     kTokenizerLandsLater));
  }
  params.stop_token_ids.assign(proto.stop_token_ids().begin(), proto.stop_token_ids().end());
  params.ignore_eos = proto.ignore_eos();
  params.logprobs = proto.logprobs();
  RETURN_IF_ERROR(Prefixed(ValidateSamplingParams(params, vocab_size), "sampling_params."));
  return params;
}

absl::StatusOr<EngineRequest> ToEngineRequest(const v1::GenerateRequest& request,
                                              const RequestDefaults& defaults,
                                              const ModelConfig& config) {
  if (request.request_id().size() > kMaxRequestIdLength) {
    return Invalid(absl::StrCat("request_id is ", request.request_id().size(),
                                " characters long; at most ", kMaxRequestIdLength,
                                " are accepted"));
  }
  EngineRequest engine_request;
  engine_request.request_id = request.request_id();
  switch (request.input_case()) {
    case v1::GenerateRequest::kText:
      return Invalid(absl::StrCat("text input needs a tokenizer; this server accepts token_ids ",
                                  kTokenizerLandsLater));
    case v1::GenerateRequest::INPUT_NOT_SET:
      return Invalid("input is not set: send the prompt as token_ids");
    case v1::GenerateRequest::kTokenIds:
      break;
  }
  const auto& ids = request.token_ids().ids();
  if (ids.empty()) return Invalid("token_ids.ids is empty: the prompt needs at least one token");
  for (int i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= config.vocab_size) {
      return Invalid(absl::StrCat("token_ids.ids[", i, "] = ", ids[i],
                                  " is outside the vocabulary [0, ", config.vocab_size, ")"));
    }
  }
  engine_request.prompt.assign(ids.begin(), ids.end());
  ASSIGN_OR_RETURN(engine_request.sampling,
                   ToSamplingParams(request.sampling_params(), defaults, config.vocab_size));
  ASSIGN_OR_RETURN(engine_request.compression,
                   ToCompressionParams(request.kv_compression(), defaults.compression));
  const int64_t needed = int64_t{ids.size()} + engine_request.sampling.max_tokens;
  if (needed > config.max_context()) {
    return Invalid(
        absl::StrCat("token_ids (", ids.size(), " tokens) + sampling_params.max_tokens (",
                     engine_request.sampling.max_tokens, ") = ", needed,
                     " exceeds the model's context of ", config.max_context(), " tokens"));
  }
  return engine_request;
}

}  // namespace zigzag
