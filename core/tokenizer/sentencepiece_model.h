// SentencePieceModel: the contents of a SentencePiece `tokenizer.model` file (a serialized
// sentencepiece.ModelProto), decoded by hand from the protobuf wire format so that no protobuf
// library is linked. Holds only the fields the tokenizer uses; encoding lives elsewhere.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tokenizer/tokenizer_limits.h"

namespace zigzag {

struct SentencePieceModel {
  // ModelProto.SentencePiece.Type.
  enum class PieceType : int32_t {
    kNormal = 1,
    kUnknown = 2,
    kControl = 3,
    kUserDefined = 4,
    kUnused = 5,
    kByte = 6,
  };
  // TrainerSpec.ModelType.
  enum class ModelType : int32_t { kUnigram = 1, kBpe = 2, kWord = 3, kChar = 4 };

  struct Piece {
    std::string piece;
    float score = 0.0f;
    PieceType type = PieceType::kNormal;
  };

  std::vector<Piece> pieces;  // ModelProto field 1; the index is the id

  // TrainerSpec (ModelProto field 2); proto2 defaults when absent.
  ModelType model_type = ModelType::kUnigram;  // 3
  bool treat_whitespace_as_suffix = false;     // 24
  bool byte_fallback = false;                  // 35
  std::string unk_piece = "<unk>";             // 45
  std::string bos_piece = "<s>";               // 46
  std::string eos_piece = "</s>";              // 47
  std::string pad_piece = "<pad>";             // 48
  std::string unk_surface = " \xE2\x81\x87 ";  // 44, " ⁇ "

  // NormalizerSpec (ModelProto field 3).
  std::string normalizer_name;           // 1
  std::string precompiled_charsmap;      // 2
  bool add_dummy_prefix = true;          // 3
  bool remove_extra_whitespaces = true;  // 4
  bool escape_whitespaces = true;        // 5

  // NormalizerSpec of the denormalizer (ModelProto field 5); empty when absent.
  std::string denormalizer_name;
  std::string denormalizer_charsmap;
};

// Bounds on what a model file may hold: as many pieces as ids (kMaxTokenId, tokenizer_limits.h),
// each at most this long (SentencePiece's own pieces are at most 16 characters; user-defined ones
// a few dozen bytes).
inline constexpr size_t kMaxSentencePieces = static_cast<size_t>(kMaxTokenId) + 1;
inline constexpr size_t kMaxSentencePieceBytes = 1024;

// The limits ParseSentencePieceModel applies; tests lower them to exercise them cheaply.
struct SentencePieceLimits {
  size_t max_pieces = kMaxSentencePieces;
  size_t max_piece_bytes = kMaxSentencePieceBytes;
};

const char* PieceTypeName(SentencePieceModel::PieceType type);
const char* ModelTypeName(SentencePieceModel::ModelType type);

// Parses a serialized ModelProto. InvalidArgument (naming the field and byte offset) for a
// truncated or malformed message (a varint past 64 bits, a length past the end), an unknown piece
// or model type, a non-finite score, or more or longer pieces than the limits above. Unknown
// fields are skipped.
absl::StatusOr<SentencePieceModel> ParseSentencePieceModel(
    std::string_view bytes, const SentencePieceLimits& limits = SentencePieceLimits());

// Reads and parses `path`: NotFound when it cannot be opened, InvalidArgument naming the path when
// it is not a valid model or is larger than kMaxTokenizerFileBytes.
absl::StatusOr<SentencePieceModel> ReadSentencePieceModel(const std::string& path);

}  // namespace zigzag
