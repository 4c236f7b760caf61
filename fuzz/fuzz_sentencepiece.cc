// libFuzzer target: a SentencePiece tokenizer.model through ParseSentencePieceModel (our own
// protobuf wire-format reader) and SentencePieceTokenizer::Create (piece table, byte pieces,
// precompiled charsmap), then encode and decode (tokenizer_checks.h).
// Input: the model's bytes. Generator mode (shaped_input.h): the rest of the input is the model;
// kManyEntries appends `size` extra pieces to it (a repeated field may be appended to a message),
// every other kind is the text to encode (a 1 MB whitespace run, a long run of one character).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "core/tokenizer/sentencepiece_model.h"
#include "core/tokenizer/sentencepiece_tokenizer.h"
#include "fuzz/fixed_models.h"
#include "fuzz/shaped_input.h"
#include "fuzz/tokenizer_checks.h"

namespace {

constexpr std::string_view kSamples[] = {
    "Hello world! It's 2024.",
    "  leading and  double  spaces \t\n\r end  ",
    "naïve café 日本語 😀 \xEF\xBC\xA1 \xE2\x85\xA0 <s> </s> <unk>",
    "\xE2\x96\x81\xE2\x96\x81 already escaped",
};

void AppendVarint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

// ModelProto field 1: SentencePiece { piece = 1; score = 2; type = 3 (NORMAL) }.
void AppendPiece(const std::string& piece, float score, std::string* out) {
  std::string body;
  body.push_back(0x0A);
  AppendVarint(piece.size(), &body);
  body += piece;
  body.push_back(0x15);
  uint32_t bits;
  static_assert(sizeof(bits) == sizeof(score));
  std::memcpy(&bits, &score, sizeof(bits));
  for (int i = 0; i < 4; ++i) body.push_back(static_cast<char>((bits >> (8 * i)) & 0xFF));
  body.push_back(0x18);
  body.push_back(0x01);
  out->push_back(0x0A);
  AppendVarint(body.size(), out);
  *out += body;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  zigzag::fuzz::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string model_bytes;
  std::string text;
  if (const auto header = zigzag::fuzz::ParseShapeHeader(input); header.has_value()) {
    model_bytes = std::string(header->rest);
    if (header->kind == zigzag::fuzz::ShapeKind::kManyEntries) {
      const uint32_t count = std::min<uint32_t>(header->size, 100000);
      for (uint32_t i = 0; i < count; ++i) {
        AppendPiece("\xE2\x96\x81p" + std::to_string(i), -static_cast<float>(i), &model_bytes);
      }
    } else {
      text = zigzag::fuzz::MakeShape(header->kind, header->variant, header->size, false);
    }
  } else {
    model_bytes = std::string(input);
  }

  absl::StatusOr<zigzag::SentencePieceModel> model = zigzag::ParseSentencePieceModel(model_bytes);
  if (!model.ok()) {
    if (model.status().message().empty()) std::abort();
    return 0;
  }
  absl::StatusOr<std::unique_ptr<zigzag::SentencePieceTokenizer>> tokenizer =
      zigzag::SentencePieceTokenizer::Create(*std::move(model), "tokenizer.model");
  if (!tokenizer.ok()) {
    if (tokenizer.status().message().empty()) std::abort();
    return 0;
  }
  if (!text.empty()) {
    zigzag::fuzz::CheckEncodeDecode(**tokenizer, text);
  } else {
    for (std::string_view sample : kSamples) zigzag::fuzz::CheckEncodeDecode(**tokenizer, sample);
  }
  zigzag::fuzz::CheckDecodeSweep(**tokenizer, 512);
  for (const auto& id :
       {(*tokenizer)->model_bos_id(), (*tokenizer)->model_eos_id(), (*tokenizer)->model_pad_id()}) {
    if (id.has_value() && (*id < 0 || *id >= (*tokenizer)->vocab_size())) std::abort();
  }
  return 0;
}
