// Turning a zigzag.v1.GenerateRequest into the scheduler's EngineRequest: server defaults for
// unset fields, the server's limits, and validation whose INVALID_ARGUMENT messages name the
// proto field (e.g. "sampling_params.top_p must be in (0, 1] ..."). CheckRequestBounds is the
// cheap part that runs before any work; ToEngineRequest may tokenize. Callbacks, the deadline and
// a missing request_id are the caller's (the reactors').
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include "absl/status/statusor.h"
#include "core/compress/compression_params.h"
#include "core/model/model_config.h"
#include "core/scheduler/request.h"
#include "core/tokenizer/text_output.h"
#include "core/tokenizer/tokenizer.h"
#include "server/server_options.h"
#include "zigzag/v1/engine.pb.h"

namespace zigzag {

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

// Most stop strings a request may send, the longest, and their longest total.
inline constexpr int kMaxStopStrings = 16;
inline constexpr size_t kMaxStopStringBytes = 256;
inline constexpr size_t kMaxStopStringsTotalBytes = 1024;

// What the server bounds before it spends any work on a request.
struct RequestLimits {
  int64_t max_text_bytes = 0;     // `text` and Tokenize's `text` (--max-text-bytes)
  int64_t max_prompt_tokens = 0;  // `token_ids.ids` and Detokenize's ids: the model's context
};

// InvalidArgument naming `field` and the limit when `text` is over `max_bytes` bytes.
absl::Status CheckTextBytes(std::string_view text, int64_t max_bytes, const char* field);

// The checks that cost no more than reading the request's ids and short strings, run on gRPC's
// thread before anything is tokenized or queued: request_id (printable ASCII, bounded length),
// the byte size of `text`, the number of token ids, and the number, sizes and total size of the
// stop strings. InvalidArgument naming the field and the limit.
absl::Status CheckRequestBounds(const v1::GenerateRequest& request, const RequestLimits& limits);

// The scheduler's request and, when the server has a tokenizer, the request's text output (its
// stop strings are wired into request.text_stop).
struct ConvertedRequest {
  EngineRequest request;
  std::shared_ptr<TextOutput> text;  // null without a tokenizer
};

// Everything but request_id, deadline and the reactors' callbacks. `tokenizer` may be null.
// InvalidArgument naming the field for: no input, empty or invalid text, an empty prompt, a
// token id outside the vocabulary, bad sampling or compression fields, bad stop strings, prompt +
// max_tokens beyond the model's context, a request_id that ValidateRequestId refuses.
// FailedPrecondition for text input or stop strings without a tokenizer. It tokenizes `text`:
// bound the request with CheckRequestBounds first, and keep it off gRPC's threads.
absl::StatusOr<ConvertedRequest> ToEngineRequest(const v1::GenerateRequest& request,
                                                 const RequestDefaults& defaults,
                                                 const ModelConfig& config,
                                                 const Tokenizer* tokenizer);

// A float from the wire as the decimal number it was written as: 0.1f becomes 0.1, not
// 0.100000001490116, so that ratio * T rounds the way the client meant.
double FloatToDecimalDouble(float value);

}  // namespace zigzag
