// libFuzzer target: text encode and streamed detokenization as a request sees them. A fixed
// tokenizer (fixed_models.h) encodes fuzzed text; the ids (mixed with fuzzed ids, some outside
// the vocabulary) go through TextOutput (IncrementalDetokenizer + StopStringMatcher, with fuzzed
// stop strings) token by token, and through a bare IncrementalDetokenizer.
// Checked: every streamed chunk is valid UTF-8; the chunks add up to Finish()'s text; the text
// never contains a stop string; without stop strings nothing stops.
// Input (FuzzedDataProvider): tokenizer, skip_special_tokens, stop strings, prompt ids, then
// steps; a generator byte may add a megabyte whitespace run or long text to the encoded text.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/tokenizer/incremental_detokenizer.h"
#include "core/tokenizer/text_output.h"
#include "core/tokenizer/utf8.h"
#include "fuzz/fixed_models.h"
#include "fuzz/shaped_input.h"
#include "fuzz/tokenizer_checks.h"

namespace {

using zigzag::fuzz::RequireUtf8;

constexpr size_t kMaxGeneratedIds = 8192;

int32_t ConsumeId(FuzzedDataProvider& in, int32_t vocab) {
  // Mostly ids of the vocabulary, sometimes just outside it or anywhere.
  switch (in.ConsumeIntegralInRange<int>(0, 7)) {
    case 0:
      return in.ConsumeIntegral<int32_t>();
    case 1:
      return in.PickValueInArray({-1, vocab, vocab + 1, INT32_MAX, INT32_MIN});
    default:
      return in.ConsumeIntegralInRange<int32_t>(0, vocab - 1);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  zigzag::fuzz::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const zigzag::Tokenizer& tokenizer =
      zigzag::fuzz::GetFixedTokenizer(static_cast<zigzag::fuzz::FixedTokenizer>(
          in.ConsumeIntegralInRange<int>(0, zigzag::fuzz::kNumFixedTokenizers - 1)));
  const int32_t vocab = tokenizer.vocab_size();
  const bool skip_special = in.ConsumeBool();

  std::vector<std::string> stops(in.ConsumeIntegralInRange<size_t>(0, 4));
  // Valid UTF-8 only, as on the server: proto3 strings are checked when a request is parsed.
  for (std::string& stop : stops) stop = zigzag::Utf8Lossy(in.ConsumeRandomLengthString(16));
  std::vector<int32_t> prompt(in.ConsumeIntegralInRange<size_t>(0, 12));
  for (int32_t& id : prompt) id = ConsumeId(in, vocab);

  // The text to encode: fuzzed, optionally followed by a generated shape.
  std::string text = in.ConsumeRandomLengthString(2048);
  if (in.ConsumeIntegralInRange<int>(0, 15) == 0) {
    const auto kind = static_cast<zigzag::fuzz::ShapeKind>(
        in.ConsumeIntegralInRange<int>(0, static_cast<int>(zigzag::fuzz::ShapeKind::kCount) - 1));
    const uint8_t variant = in.ConsumeIntegral<uint8_t>();
    const uint32_t length = in.ConsumeIntegralInRange<uint32_t>(0, 1 << 20);
    text += zigzag::fuzz::MakeShape(kind, variant, length, /*json=*/false);
  }
  std::vector<int32_t> generated;
  absl::StatusOr<std::vector<int32_t>> encoded = tokenizer.Encode(text, in.ConsumeBool());
  if (encoded.ok()) {
    for (int32_t id : *encoded) {
      if (id < 0 || id >= vocab) std::abort();
    }
    generated = *std::move(encoded);
  } else if (encoded.status().message().empty()) {
    std::abort();
  }
  // A request streams at most max_tokens ids (the server's limit is 4096 by default); a
  // megabyte of text encodes to far more, and streaming those is not a request's work.
  if (generated.size() > kMaxGeneratedIds) generated.resize(kMaxGeneratedIds);
  // Fuzzed ids inserted at fuzzed places (at most 256 in all).
  for (int extra = in.ConsumeIntegralInRange<int>(0, 255); extra > 0 && in.remaining_bytes() > 0;
       --extra) {
    const size_t at = in.ConsumeIntegralInRange<size_t>(0, generated.size());
    generated.insert(generated.begin() + static_cast<std::ptrdiff_t>(at), ConsumeId(in, vocab));
  }

  zigzag::TextOutput output(tokenizer, prompt, stops, skip_special);
  zigzag::IncrementalDetokenizer detokenizer(tokenizer, prompt, skip_special);
  std::string streamed;
  std::string detokenized;
  for (size_t i = 0; i < generated.size(); ++i) {
    const bool stopped = output.OnToken(generated[i]);
    if (stopped && !output.stopped()) std::abort();
    if (i % 3 == 0) {
      const std::string chunk = output.TakeNewText();
      RequireUtf8(chunk);
      streamed += chunk;
    }
    absl::StatusOr<std::string> piece = detokenizer.Append(generated[i]);
    const bool in_vocab = generated[i] >= 0 && generated[i] < vocab;
    if (piece.ok() != in_vocab) std::abort();  // out-of-vocabulary ids, and only they, fail
    if (piece.ok()) {
      RequireUtf8(*piece);
      detokenized += *piece;
    }
  }
  const std::string rest = detokenizer.Flush();
  RequireUtf8(rest);
  detokenized += rest;
  if (detokenized != detokenizer.text()) std::abort();

  const std::string last = output.TakeNewText();
  RequireUtf8(last);
  streamed += last;
  const std::string all = output.Finish();
  RequireUtf8(all);
  const std::string tail = output.TakeNewText();
  streamed += tail;
  if (streamed != all) std::abort();
  bool any_stop = false;
  for (const std::string& stop : stops) {
    if (stop.empty()) continue;
    any_stop = true;
    if (all.find(stop) != std::string::npos) std::abort();
  }
  if (!any_stop && output.stopped()) std::abort();
  return 0;
}
