// libFuzzer target: zigzag.v1.GenerateRequest -> ToEngineRequest (server/request_validation.*)
// against models/zigzag-tiny's config and one of the fixed tokenizers (or none), as the
// reactors call it. An accepted request must hold what the scheduler relies on (a non-empty
// prompt of vocabulary ids, prompt + max_tokens within the context, valid sampling and
// compression fields); a rejected one must be INVALID_ARGUMENT or FAILED_PRECONDITION with a
// message. Input: byte 0 picks the tokenizer (bits 0-1: none, byte-level, metaspace,
// SentencePiece) and the form (bit 2): the rest is either protobuf wire bytes, or a structured
// request built field by field with FuzzedDataProvider (edge floats, out-of-enum policies,
// overlong ids and stop strings, a generated megabyte whitespace run as text), which byte
// mutation of wire bytes rarely reaches.
#include <fuzzer/FuzzedDataProvider.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>

#include "core/compress/compression_params.h"
#include "core/tokenizer/utf8.h"
#include "fuzz/fixed_models.h"
#include "fuzz/shaped_input.h"
#include "server/request_id.h"
#include "server/request_validation.h"

namespace {

float ConsumeEdgeFloat(FuzzedDataProvider& in) {
  if (in.ConsumeBool()) return in.ConsumeFloatingPoint<float>();
  return in.PickValueInArray<float>(
      {0.0f, -0.0f, 1.0f, 0.5f, 0.1f, 1e-45f, 1e-7f, -1.0f, 2.0f, 1.0000001f, 0.99999994f,
       std::numeric_limits<float>::max(), std::numeric_limits<float>::infinity(),
       -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()});
}

uint32_t ConsumeEdgeU32(FuzzedDataProvider& in) {
  if (in.ConsumeBool()) return in.ConsumeIntegralInRange<uint32_t>(0, 5000);
  return in.PickValueInArray<uint32_t>(
      {0u, 1u, 2u, 3u, 31u, 32u, 4095u, 4096u, 4097u, 2147483647u, 2147483648u, 4294967295u});
}

int32_t ConsumeEdgeId(FuzzedDataProvider& in) {
  if (in.ConsumeBool()) return in.ConsumeIntegralInRange<int32_t>(0, 4095);
  return in.PickValueInArray<int32_t>({-1, 0, 1, 2, 4095, 4096, std::numeric_limits<int32_t>::max(),
                                       std::numeric_limits<int32_t>::min()});
}

std::string ConsumeText(FuzzedDataProvider& in) {
  std::string text = in.ConsumeRandomLengthString(512);
  if (in.ConsumeIntegralInRange<int>(0, 7) == 0) {
    const auto kind = static_cast<zigzag::fuzz::ShapeKind>(
        in.ConsumeIntegralInRange<int>(0, static_cast<int>(zigzag::fuzz::ShapeKind::kCount) - 1));
    const uint8_t variant = in.ConsumeIntegral<uint8_t>();
    text += zigzag::fuzz::MakeShape(kind, variant, in.ConsumeIntegralInRange<uint32_t>(0, 1 << 20),
                                    /*json=*/false);
  }
  return text;
}

void BuildStructured(FuzzedDataProvider& in, zigzag::v1::GenerateRequest* request) {
  if (in.ConsumeBool()) {
    request->set_request_id(in.ConsumeBool()
                                ? in.ConsumeRandomLengthString(32)
                                : std::string(in.ConsumeIntegralInRange<size_t>(250, 300), 'r'));
  }
  switch (in.ConsumeIntegralInRange<int>(0, 2)) {
    case 0:
      request->set_text(ConsumeText(in));
      break;
    case 1: {
      auto* ids = request->mutable_token_ids();
      for (size_t n = in.ConsumeIntegralInRange<size_t>(0, 64); n > 0; --n) {
        ids->add_ids(ConsumeEdgeId(in));
      }
      if (in.ConsumeIntegralInRange<int>(0, 15) == 0) {
        // A prompt longer than the context.
        for (int i = 0; i < 4100; ++i) ids->add_ids(i % 4096);
      }
      break;
    }
    default:
      break;  // no input
  }
  if (in.ConsumeBool()) request->set_add_special_tokens(in.ConsumeBool());

  if (in.ConsumeBool()) {
    zigzag::v1::SamplingParams* s = request->mutable_sampling_params();
    if (in.ConsumeBool()) s->set_temperature(ConsumeEdgeFloat(in));
    if (in.ConsumeBool()) s->set_top_k(static_cast<int32_t>(ConsumeEdgeU32(in)));
    if (in.ConsumeBool()) s->set_top_p(ConsumeEdgeFloat(in));
    if (in.ConsumeBool()) s->set_min_p(ConsumeEdgeFloat(in));
    if (in.ConsumeBool()) s->set_repetition_penalty(ConsumeEdgeFloat(in));
    if (in.ConsumeBool()) s->set_seed(in.ConsumeIntegral<uint64_t>());
    if (in.ConsumeBool()) s->set_max_tokens(ConsumeEdgeU32(in));
    for (size_t n = in.ConsumeIntegralInRange<size_t>(0, 18); n > 0; --n) {
      // proto3 strings are valid UTF-8 once parsed from the wire.
      std::string stop = in.ConsumeBool()
                             ? in.ConsumeRandomLengthString(8)
                             : std::string(in.ConsumeIntegralInRange<size_t>(0, 300), 's');
      s->add_stop(zigzag::Utf8Lossy(stop));
    }
    for (size_t n = in.ConsumeIntegralInRange<size_t>(0, 4); n > 0; --n) {
      s->add_stop_token_ids(ConsumeEdgeId(in));
    }
    s->set_ignore_eos(in.ConsumeBool());
    s->set_logprobs(in.ConsumeBool());
    if (in.ConsumeBool()) s->set_skip_special_tokens(in.ConsumeBool());
  }

  if (in.ConsumeBool()) {
    zigzag::v1::KvCompression* c = request->mutable_kv_compression();
    c->set_policy(static_cast<zigzag::v1::KvPolicy>(
        in.ConsumeBool() ? in.ConsumeIntegralInRange<int>(0, 6) : in.ConsumeIntegral<int>()));
    switch (in.ConsumeIntegralInRange<int>(0, 2)) {
      case 0:
        c->set_tokens_per_layer(ConsumeEdgeU32(in));
        break;
      case 1:
        c->set_ratio(ConsumeEdgeFloat(in));
        break;
      default:
        break;
    }
    if (in.ConsumeBool()) c->set_window(ConsumeEdgeU32(in));
    if (in.ConsumeBool()) c->set_kernel(ConsumeEdgeU32(in));
    if (in.ConsumeBool()) c->set_tau(ConsumeEdgeFloat(in));
    if (in.ConsumeBool()) c->set_rho(ConsumeEdgeFloat(in));
    if (in.ConsumeBool())
      c->set_head_budgets(static_cast<zigzag::v1::HeadBudgets>(in.ConsumeIntegral<int>()));
    if (in.ConsumeBool()) c->set_alpha(ConsumeEdgeFloat(in));
  }
}

void CheckAccepted(const zigzag::ConvertedRequest& converted, const zigzag::ModelConfig& config,
                   const zigzag::RequestDefaults& defaults, bool has_tokenizer) {
  const zigzag::EngineRequest& r = converted.request;
  if (r.prompt.empty() || r.request_id.size() > zigzag::kMaxRequestIdLength) std::abort();
  for (int32_t id : r.prompt) {
    if (id < 0 || id >= config.vocab_size) std::abort();
  }
  const zigzag::SamplingParams& s = r.sampling;
  if (s.max_tokens < 1 || s.max_tokens > defaults.max_tokens_limit) std::abort();
  if (static_cast<int64_t>(r.prompt.size()) + s.max_tokens > config.max_context()) std::abort();
  if (!(s.temperature >= 0) || s.top_k < 0 || !(s.top_p > 0 && s.top_p <= 1) ||
      !(s.min_p >= 0 && s.min_p <= 1) || !(s.repetition_penalty > 0)) {
    std::abort();
  }
  for (int32_t id : s.stop_token_ids) {
    if (id < 0 || id >= config.vocab_size) std::abort();
  }
  if (!zigzag::ValidateCompressionParams(r.compression).ok()) std::abort();
  const int64_t budget =
      zigzag::AverageBudget(r.compression, static_cast<int64_t>(r.prompt.size()));
  if (budget < 1) std::abort();
  if ((converted.text != nullptr) != has_tokenizer || (r.text_stop == nullptr) != !has_tokenizer) {
    std::abort();
  }
  if (converted.text != nullptr) {
    // The worker's side: a few tokens through the request's text output.
    for (size_t i = 0; i < r.prompt.size() && i < 8; ++i) r.text_stop(r.prompt[i]);
    (void)converted.text->TakeNewText();
    (void)converted.text->Finish();
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  zigzag::fuzz::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  const zigzag::Tokenizer* tokenizer = nullptr;
  if ((mode & 3) != 0) {
    tokenizer =
        &zigzag::fuzz::GetFixedTokenizer(static_cast<zigzag::fuzz::FixedTokenizer>((mode & 3) - 1));
  }
  zigzag::v1::GenerateRequest request;
  if ((mode & 4) == 0) {
    if (!request.ParseFromArray(data + 1, static_cast<int>(size - 1))) return 0;
  } else {
    FuzzedDataProvider in(data + 1, size - 1);
    BuildStructured(in, &request);
  }
  static const zigzag::RequestDefaults kDefaults;
  const zigzag::ModelConfig& config = zigzag::fuzz::TinyModelConfig();
  absl::StatusOr<zigzag::ConvertedRequest> converted =
      zigzag::ToEngineRequest(request, kDefaults, config, tokenizer);
  if (!converted.ok()) {
    const absl::StatusCode code = converted.status().code();
    if ((code != absl::StatusCode::kInvalidArgument &&
         code != absl::StatusCode::kFailedPrecondition) ||
        converted.status().message().empty()) {
      std::abort();
    }
    return 0;
  }
  CheckAccepted(*converted, config, kDefaults, tokenizer != nullptr);
  return 0;
}
