#include "server/request_validation.h"

#include <charconv>
#include <cstdlib>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"
#include "server/request_id.h"
#include "server/tokenizer_calls.h"

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

absl::Status NoTokenizer(const char* what) {
  return absl::FailedPreconditionError(
      absl::StrCat(what,
                   " needs a tokenizer, and this model folder has none (no tokenizer.json or "
                   "tokenizer.model): send token_ids and stop_token_ids"));
}

absl::Status CheckStopStringSizes(const v1::SamplingParams& proto) {
  if (proto.stop_size() > kMaxStopStrings) {
    return Invalid(absl::StrCat("sampling_params.stop has ", proto.stop_size(),
                                " strings; at most ", kMaxStopStrings, " are accepted"));
  }
  size_t total = 0;
  for (int i = 0; i < proto.stop_size(); ++i) {
    const size_t size = proto.stop(i).size();
    if (size == 0 || size > kMaxStopStringBytes) {
      return Invalid(absl::StrCat("sampling_params.stop[", i, "] is ", size,
                                  " bytes long; each must be 1 to ", kMaxStopStringBytes));
    }
    total += size;
  }
  if (total > kMaxStopStringsTotalBytes) {
    return Invalid(absl::StrCat("sampling_params.stop totals ", total, " bytes; at most ",
                                kMaxStopStringsTotalBytes, " are accepted"));
  }
  return absl::OkStatus();
}

absl::Status ValidateStopStrings(const v1::SamplingParams& proto, const Tokenizer* tokenizer) {
  if (proto.stop_size() == 0) return absl::OkStatus();
  if (tokenizer == nullptr) return NoTokenizer("sampling_params.stop");
  return CheckStopStringSizes(proto);
}

}  // namespace

absl::Status CheckTextBytes(std::string_view text, int64_t max_bytes, const char* field) {
  if (static_cast<int64_t>(text.size()) <= max_bytes) return absl::OkStatus();
  return Invalid(absl::StrCat(field, " is ", text.size(), " bytes; at most ", max_bytes,
                              " bytes are accepted (--max-text-bytes)"));
}

absl::Status CheckRequestBounds(const v1::GenerateRequest& request, const RequestLimits& limits) {
  RETURN_IF_ERROR(ValidateRequestId(request.request_id(), "request_id"));
  if (request.input_case() == v1::GenerateRequest::kText) {
    RETURN_IF_ERROR(CheckTextBytes(request.text(), limits.max_text_bytes, "text"));
  }
  if (request.input_case() == v1::GenerateRequest::kTokenIds &&
      request.token_ids().ids_size() > limits.max_prompt_tokens) {
    return Invalid(absl::StrCat("token_ids.ids has ", request.token_ids().ids_size(),
                                " ids; at most ", limits.max_prompt_tokens,
                                " (the model's context) are accepted"));
  }
  return CheckStopStringSizes(request.sampling_params());
}

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
  switch (proto.head_budgets()) {
    case v1::HEAD_BUDGETS_UNSPECIFIED:
      break;
    case v1::HEAD_BUDGETS_UNIFORM:
      params.head_budgets = HeadBudgets::kUniform;
      break;
    case v1::HEAD_BUDGETS_ADAPTIVE:
      params.head_budgets = HeadBudgets::kAdaptive;
      break;
    default:
      return Invalid(absl::StrCat("kv_compression.head_budgets = ", proto.head_budgets(),
                                  " is not a HeadBudgets; accepted: HEAD_BUDGETS_UNIFORM (1), "
                                  "HEAD_BUDGETS_ADAPTIVE (2)"));
  }
  if (proto.has_alpha()) params.alpha = FloatToDecimalDouble(proto.alpha());
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
  params.stop_token_ids.assign(proto.stop_token_ids().begin(), proto.stop_token_ids().end());
  params.ignore_eos = proto.ignore_eos();
  params.logprobs = proto.logprobs();
  RETURN_IF_ERROR(Prefixed(ValidateSamplingParams(params, vocab_size), "sampling_params."));
  return params;
}

absl::StatusOr<ConvertedRequest> ToEngineRequest(const v1::GenerateRequest& request,
                                                 const RequestDefaults& defaults,
                                                 const ModelConfig& config,
                                                 const Tokenizer* tokenizer) {
  RETURN_IF_ERROR(ValidateRequestId(request.request_id(), "request_id"));
  ConvertedRequest converted;
  EngineRequest& engine_request = converted.request;
  engine_request.request_id = request.request_id();
  const char* input_name = "token_ids";
  switch (request.input_case()) {
    case v1::GenerateRequest::kText: {
      input_name = "text";
      if (tokenizer == nullptr) return NoTokenizer("text input");
      if (request.text().empty()) return Invalid("text is empty: the prompt needs some text");
      const bool add_special_tokens =
          !request.has_add_special_tokens() || request.add_special_tokens();
      absl::StatusOr<std::vector<int32_t>> ids =
          EncodeField(*tokenizer, request.text(), add_special_tokens, "text");
      if (!ids.ok()) return ids.status();
      if (ids->empty()) return Invalid("text encodes to no tokens");
      for (size_t i = 0; i < ids->size(); ++i) {
        if ((*ids)[i] >= config.vocab_size) {
          return Invalid(absl::StrCat("text: token ", i, " has id ", (*ids)[i],
                                      ", outside the model's vocabulary of ", config.vocab_size,
                                      " (the tokenizer does not match the model)"));
        }
      }
      engine_request.prompt = std::move(*ids);
      break;
    }
    case v1::GenerateRequest::INPUT_NOT_SET:
      return Invalid("input is not set: send the prompt as text or token_ids");
    case v1::GenerateRequest::kTokenIds: {
      const auto& ids = request.token_ids().ids();
      if (ids.empty()) {
        return Invalid("token_ids.ids is empty: the prompt needs at least one token");
      }
      for (int i = 0; i < ids.size(); ++i) {
        if (ids[i] < 0 || ids[i] >= config.vocab_size) {
          return Invalid(absl::StrCat("token_ids.ids[", i, "] = ", ids[i],
                                      " is outside the vocabulary [0, ", config.vocab_size, ")"));
        }
      }
      engine_request.prompt.assign(ids.begin(), ids.end());
      break;
    }
  }
  ASSIGN_OR_RETURN(engine_request.sampling,
                   ToSamplingParams(request.sampling_params(), defaults, config.vocab_size));
  RETURN_IF_ERROR(ValidateStopStrings(request.sampling_params(), tokenizer));
  ASSIGN_OR_RETURN(engine_request.compression,
                   ToCompressionParams(request.kv_compression(), defaults.compression));
  const int64_t prompt_tokens = static_cast<int64_t>(engine_request.prompt.size());
  const int64_t needed = prompt_tokens + engine_request.sampling.max_tokens;
  if (needed > config.max_context()) {
    return Invalid(
        absl::StrCat(input_name, " (", prompt_tokens, " tokens) + sampling_params.max_tokens (",
                     engine_request.sampling.max_tokens, ") = ", needed,
                     " exceeds the model's context of ", config.max_context(), " tokens"));
  }
  if (tokenizer != nullptr) {
    const v1::SamplingParams& sampling = request.sampling_params();
    converted.text = std::make_shared<TextOutput>(
        *tokenizer, engine_request.prompt,
        std::vector<std::string>(sampling.stop().begin(), sampling.stop().end()),
        !sampling.has_skip_special_tokens() || sampling.skip_special_tokens());
    // Every token goes through the text output (for the streamed text); it only ever says stop
    // when the request has stop strings.
    engine_request.text_stop = [text = converted.text](int32_t token) {
      return text->OnToken(token);
    };
  }
  return converted;
}

}  // namespace zigzag
