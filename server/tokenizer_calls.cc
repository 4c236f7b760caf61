#include "server/tokenizer_calls.h"

#include "absl/strings/str_cat.h"

namespace zigzag {
namespace {

absl::Status Prefixed(const absl::Status& status, const char* field) {
  return absl::Status(status.code(), absl::StrCat(field, ": ", std::string(status.message())));
}

}  // namespace

absl::StatusOr<std::vector<int32_t>> EncodeField(const Tokenizer& tokenizer, std::string_view text,
                                                 bool add_special_tokens, const char* field) {
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(text, add_special_tokens);
  if (!ids.ok()) return Prefixed(ids.status(), field);
  return ids;
}

absl::StatusOr<std::string> DecodeField(const Tokenizer& tokenizer, absl::Span<const int32_t> ids,
                                        bool skip_special_tokens, const char* field) {
  absl::StatusOr<std::string> text = tokenizer.Decode(ids, skip_special_tokens);
  if (!text.ok()) return Prefixed(text.status(), field);
  return text;
}

}  // namespace zigzag
