// The server's calls into a Tokenizer, in one place: encoding a request field's text and decoding
// a field's ids, with errors that name the field. Bounding the input and running off gRPC's
// threads are the callers' job (request_validation.h, tokenizer_pool.h).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/tokenizer/tokenizer.h"

namespace zigzag {

// Tokenizer::Encode; its errors prefixed with "<field>: ".
absl::StatusOr<std::vector<int32_t>> EncodeField(const Tokenizer& tokenizer, std::string_view text,
                                                 bool add_special_tokens, const char* field);

// Tokenizer::Decode; its errors prefixed with "<field>: ".
absl::StatusOr<std::string> DecodeField(const Tokenizer& tokenizer, absl::Span<const int32_t> ids,
                                        bool skip_special_tokens, const char* field);

}  // namespace zigzag
