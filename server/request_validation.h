// Turning a zigzag.v1.GenerateRequest into the scheduler's EngineRequest: server defaults for
// unset fields, the server's limits, and validation whose INVALID_ARGUMENT messages name the
// proto field (e.g. "sampling_params.top_p must be in (0, 1] ..."). Callbacks, the deadline and
// a missing request_id are the caller's (the reactors').
#pragma once

#include <memory>
#include <optional>

#include "absl/status/statusor.h"
#include "core/compress/compression_params.h"
#include "core/model/model_config.h"
#include "core/scheduler/request.h"
#include "core/tokenizer/text_output.h"
#include "core/tokenizer/tokenizer.h"
#include "server/server_options.h"
#include "zigzag/v1/engine.pb.h"

namespace zigzag {

// Longest request_id the server accepts.
inline constexpr size_t kMaxRequestIdLength = 256;

// The scheduler's policy for a proto enum value; nullopt for KV_POLICY_UNSPECIFIED.
// InvalidArgument naming kv_compression.policy for a value outside the enum.
absl::StatusOr<std::optional<KvPolicy>> FromProtoPolicy(int value);

// The request's compression fields over `defaults`, validated.
absl::StatusOr<CompressionParams> ToCompressionParams(const v1::KvCompression& proto,
                                                      const CompressionParams& defaults);

// The request's sampling fields over the server defaults, validated against the model's
// vocabulary and the server's max_tokens limit.
absl::StatusOr<SamplingParams> ToSamplingParams(const v1::SamplingParams& proto,
                                                const RequestDefaults& defaults,
                                                int64_t vocab_size);

// Most stop strings a request may send, and the longest.
inline constexpr int kMaxStopStrings = 16;
inline constexpr size_t kMaxStopStringBytes = 256;

// The scheduler's request and, when the server has a tokenizer, the request's text output (its
// stop strings are wired into request.text_stop).
struct ConvertedRequest {
  EngineRequest request;
  std::shared_ptr<TextOutput> text;  // null without a tokenizer
};

// Everything but request_id, deadline and the reactors' callbacks. `tokenizer` may be null.
// InvalidArgument naming the field for: no input, empty or invalid text, an empty prompt, a
// token id outside the vocabulary, bad sampling or compression fields, bad stop strings, prompt +
// max_tokens beyond the model's context, an overlong request_id. FailedPrecondition for text
// input or stop strings without a tokenizer.
absl::StatusOr<ConvertedRequest> ToEngineRequest(const v1::GenerateRequest& request,
                                                 const RequestDefaults& defaults,
                                                 const ModelConfig& config,
                                                 const Tokenizer* tokenizer);

// A float from the wire as the decimal number it was written as: 0.1f becomes 0.1, not
// 0.100000001490116, so that ratio * T rounds the way the client meant.
double FloatToDecimalDouble(float value);

}  // namespace zigzag
