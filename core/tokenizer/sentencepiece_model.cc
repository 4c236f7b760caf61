#include "core/tokenizer/sentencepiece_model.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/tokenizer/tokenizer_limits.h"
#include "core/tokenizer/utf8.h"
#include "core/util/read_file.h"
#include "core/util/status_macros.h"

namespace zigzag {
namespace {

// Protobuf wire types.
enum WireType : uint32_t {
  kVarint = 0,
  kFixed64 = 1,
  kLengthDelimited = 2,
  kStartGroup = 3,
  kEndGroup = 4,
  kFixed32 = 5,
};

// One field as read from the wire: varint and fixed values in `number`, payloads in `bytes`.
struct Field {
  uint32_t field_number = 0;
  uint32_t wire_type = 0;
  uint64_t number = 0;
  std::string_view bytes;
};

// A cursor over one message's bytes. `base` is the message's offset in the file, for errors.
class WireReader {
 public:
  WireReader(std::string_view data, size_t base) : data_(data), base_(base) {}

  bool done() const { return pos_ >= data_.size(); }

  absl::Status Next(Field* field) {
    const size_t start = pos_;
    uint64_t key = 0;
    RETURN_IF_ERROR(ReadVarint(&key));
    field->field_number = static_cast<uint32_t>(key >> 3);
    field->wire_type = static_cast<uint32_t>(key & 7);
    if (field->field_number == 0 || (key >> 3) > 0x1FFFFFFF) {
      return Error(start, "invalid field number");
    }
    return ReadValue(field);
  }

  size_t offset() const { return base_ + pos_; }

 private:
  absl::Status Error(size_t at, std::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed protobuf at byte offset ", base_ + at, ": ", ToAbsl(what)));
  }

  absl::Status ReadVarint(uint64_t* value) {
    const size_t start = pos_;
    uint64_t result = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= data_.size()) return Error(start, "truncated varint");
      const uint8_t byte = static_cast<uint8_t>(data_[pos_++]);
      // The tenth byte holds bit 63 only: anything more does not fit in 64 bits.
      if (shift == 63 && byte > 1) return Error(start, "varint overflows 64 bits");
      result |= static_cast<uint64_t>(byte & 0x7F) << shift;
      if ((byte & 0x80) == 0) {
        *value = result;
        return absl::OkStatus();
      }
    }
    return Error(start, "varint longer than 10 bytes");
  }

  absl::Status ReadFixed(size_t size, uint64_t* value) {
    if (data_.size() - pos_ < size) return Error(pos_, "truncated fixed-width value");
    uint64_t result = 0;
    for (size_t i = 0; i < size; ++i) {
      result |= static_cast<uint64_t>(static_cast<uint8_t>(data_[pos_ + i])) << (8 * i);
    }
    pos_ += size;
    *value = result;
    return absl::OkStatus();
  }

  absl::Status ReadValue(Field* field) {
    switch (field->wire_type) {
      case kVarint:
        return ReadVarint(&field->number);
      case kFixed64:
        return ReadFixed(8, &field->number);
      case kFixed32:
        return ReadFixed(4, &field->number);
      case kLengthDelimited: {
        const size_t start = pos_;
        uint64_t length = 0;
        RETURN_IF_ERROR(ReadVarint(&length));
        if (length > data_.size() - pos_) {
          return Error(start, absl::StrCat("length ", length, " runs past the end of the data"));
        }
        field->bytes = data_.substr(pos_, length);
        pos_ += length;
        return absl::OkStatus();
      }
      case kStartGroup: {
        // Skips the group's fields up to the matching end-group tag.
        const size_t start = pos_;
        ++depth_;
        if (depth_ > 64) return Error(start, "groups nested too deeply");
        while (true) {
          if (done()) return Error(start, "unterminated group");
          Field inner;
          RETURN_IF_ERROR(Next(&inner));
          if (inner.wire_type == kEndGroup) {
            if (inner.field_number != field->field_number) {
              return Error(start, "mismatched end-group tag");
            }
            break;
          }
        }
        --depth_;
        return absl::OkStatus();
      }
      case kEndGroup:
        if (depth_ == 0) return Error(pos_, "unexpected end-group tag");
        return absl::OkStatus();
      default:
        return Error(pos_, absl::StrCat("invalid wire type ", field->wire_type));
    }
  }

  std::string_view data_;
  size_t base_;
  size_t pos_ = 0;
  int depth_ = 0;
};

// Offset of `inner` within `outer` (inner is a substring view of outer).
size_t OffsetIn(std::string_view outer, std::string_view inner) {
  return static_cast<size_t>(inner.data() - outer.data());
}

float FloatFromBits(uint64_t bits) {
  const uint32_t bits32 = static_cast<uint32_t>(bits);
  float value;
  std::memcpy(&value, &bits32, sizeof(value));
  return value;
}

// `index`: the piece's id, for errors ("pieces[5].type").
absl::Status ParsePiece(std::string_view bytes, size_t base, size_t index,
                        const SentencePieceLimits& limits, SentencePieceModel::Piece* piece) {
  WireReader reader(bytes, base);
  while (!reader.done()) {
    const size_t at = reader.offset();
    Field field;
    RETURN_IF_ERROR(reader.Next(&field));
    if (field.field_number == 1 && field.wire_type == kLengthDelimited) {
      if (field.bytes.size() > limits.max_piece_bytes) {
        return absl::InvalidArgumentError(absl::StrCat(
            "pieces[", index, "].piece at byte offset ", at, " is ", field.bytes.size(),
            " bytes long, more than the limit of ", limits.max_piece_bytes));
      }
      piece->piece = std::string(field.bytes);
    } else if (field.field_number == 2 && field.wire_type == kFixed32) {
      piece->score = FloatFromBits(field.number);
      // Scores order the merges: NaN or infinity would break the ordering.
      if (!std::isfinite(piece->score)) {
        return absl::InvalidArgumentError(absl::StrCat("pieces[", index, "].score at byte offset ",
                                                       at, " is not a finite number"));
      }
    } else if (field.field_number == 3 && field.wire_type == kVarint) {
      if (field.number < 1 || field.number > 6) {
        return absl::InvalidArgumentError(absl::StrCat(
            "pieces[", index, "].type: unknown piece type ", field.number, " at byte offset ", at));
      }
      piece->type = static_cast<SentencePieceModel::PieceType>(field.number);
    }
  }
  return absl::OkStatus();
}

absl::Status ParseTrainerSpec(std::string_view bytes, size_t base, SentencePieceModel* model) {
  WireReader reader(bytes, base);
  while (!reader.done()) {
    const size_t at = reader.offset();
    Field field;
    RETURN_IF_ERROR(reader.Next(&field));
    const bool varint = field.wire_type == kVarint;
    const bool string = field.wire_type == kLengthDelimited;
    switch (field.field_number) {
      case 3:
        if (varint) {
          if (field.number < 1 || field.number > 4) {
            return absl::InvalidArgumentError(
                absl::StrCat("trainer_spec.model_type: unknown model_type ", field.number,
                             " at byte offset ", at));
          }
          model->model_type = static_cast<SentencePieceModel::ModelType>(field.number);
        }
        break;
      case 24:
        if (varint) model->treat_whitespace_as_suffix = field.number != 0;
        break;
      case 35:
        if (varint) model->byte_fallback = field.number != 0;
        break;
      case 44:
        if (string) model->unk_surface = std::string(field.bytes);
        break;
      case 45:
        if (string) model->unk_piece = std::string(field.bytes);
        break;
      case 46:
        if (string) model->bos_piece = std::string(field.bytes);
        break;
      case 47:
        if (string) model->eos_piece = std::string(field.bytes);
        break;
      case 48:
        if (string) model->pad_piece = std::string(field.bytes);
        break;
      default:
        break;
    }
  }
  return absl::OkStatus();
}

struct NormalizerFields {
  std::string name;
  std::string charsmap;
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = true;
  bool escape_whitespaces = true;
};

absl::Status ParseNormalizerSpec(std::string_view bytes, size_t base, NormalizerFields* spec) {
  WireReader reader(bytes, base);
  while (!reader.done()) {
    Field field;
    RETURN_IF_ERROR(reader.Next(&field));
    const bool varint = field.wire_type == kVarint;
    const bool string = field.wire_type == kLengthDelimited;
    switch (field.field_number) {
      case 1:
        if (string) spec->name = std::string(field.bytes);
        break;
      case 2:
        if (string) spec->charsmap = std::string(field.bytes);
        break;
      case 3:
        if (varint) spec->add_dummy_prefix = field.number != 0;
        break;
      case 4:
        if (varint) spec->remove_extra_whitespaces = field.number != 0;
        break;
      case 5:
        if (varint) spec->escape_whitespaces = field.number != 0;
        break;
      default:
        break;
    }
  }
  return absl::OkStatus();
}

}  // namespace

const char* PieceTypeName(SentencePieceModel::PieceType type) {
  switch (type) {
    case SentencePieceModel::PieceType::kNormal:
      return "NORMAL";
    case SentencePieceModel::PieceType::kUnknown:
      return "UNKNOWN";
    case SentencePieceModel::PieceType::kControl:
      return "CONTROL";
    case SentencePieceModel::PieceType::kUserDefined:
      return "USER_DEFINED";
    case SentencePieceModel::PieceType::kUnused:
      return "UNUSED";
    case SentencePieceModel::PieceType::kByte:
      return "BYTE";
  }
  return "?";
}

const char* ModelTypeName(SentencePieceModel::ModelType type) {
  switch (type) {
    case SentencePieceModel::ModelType::kUnigram:
      return "UNIGRAM";
    case SentencePieceModel::ModelType::kBpe:
      return "BPE";
    case SentencePieceModel::ModelType::kWord:
      return "WORD";
    case SentencePieceModel::ModelType::kChar:
      return "CHAR";
  }
  return "?";
}

absl::StatusOr<SentencePieceModel> ParseSentencePieceModel(std::string_view bytes,
                                                           const SentencePieceLimits& limits) {
  SentencePieceModel model;
  // Protobuf merges repeated occurrences of a singular message field; so does this parser, by
  // parsing every occurrence into the same struct.
  NormalizerFields normalizer;
  NormalizerFields denormalizer;
  WireReader reader(bytes, 0);
  while (!reader.done()) {
    Field field;
    RETURN_IF_ERROR(reader.Next(&field));
    if (field.wire_type != kLengthDelimited) continue;
    const size_t base = OffsetIn(bytes, field.bytes);
    switch (field.field_number) {
      case 1: {
        if (model.pieces.size() >= limits.max_pieces) {
          return absl::InvalidArgumentError(absl::StrCat("pieces: more than ", limits.max_pieces,
                                                         " pieces (at byte offset ", base, ")"));
        }
        SentencePieceModel::Piece piece;
        RETURN_IF_ERROR(ParsePiece(field.bytes, base, model.pieces.size(), limits, &piece));
        model.pieces.push_back(std::move(piece));
        break;
      }
      case 2:
        RETURN_IF_ERROR(ParseTrainerSpec(field.bytes, base, &model));
        break;
      case 3:
        RETURN_IF_ERROR(ParseNormalizerSpec(field.bytes, base, &normalizer));
        break;
      case 5:
        RETURN_IF_ERROR(ParseNormalizerSpec(field.bytes, base, &denormalizer));
        break;
      default:
        break;
    }
  }
  model.normalizer_name = std::move(normalizer.name);
  model.precompiled_charsmap = std::move(normalizer.charsmap);
  model.add_dummy_prefix = normalizer.add_dummy_prefix;
  model.remove_extra_whitespaces = normalizer.remove_extra_whitespaces;
  model.escape_whitespaces = normalizer.escape_whitespaces;
  model.denormalizer_name = std::move(denormalizer.name);
  model.denormalizer_charsmap = std::move(denormalizer.charsmap);
  return model;
}

absl::StatusOr<SentencePieceModel> ReadSentencePieceModel(const std::string& path) {
  absl::StatusOr<std::string> read = ReadFileToString(path, kMaxTokenizerFileBytes);
  if (!read.ok()) {
    if (read.status().code() == absl::StatusCode::kUnavailable) {
      return absl::NotFoundError(
          absl::StrCat("cannot open SentencePiece model ", path, ": ", read.status().message()));
    }
    return read.status();
  }
  const std::string bytes = *std::move(read);
  absl::StatusOr<SentencePieceModel> model = ParseSentencePieceModel(bytes);
  if (!model.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a valid SentencePiece model: ", model.status().message()));
  }
  return model;
}

}  // namespace zigzag
