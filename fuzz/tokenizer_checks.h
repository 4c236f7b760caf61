// Encode/decode checks for any loaded Tokenizer that abort (a libFuzzer finding) when a
// documented guarantee fails: ids in [0, vocab_size), decoded text valid UTF-8, errors with a
// message. Knows nothing of where the tokenizer came from.
#pragma once

#include <cstdint>
#include <string_view>

#include "core/tokenizer/tokenizer.h"

namespace zigzag::fuzz {

// Aborts unless `text` is well-formed UTF-8 (an independent check, not core's own validator).
void RequireUtf8(std::string_view text);

// Encodes `text` with and without special tokens and decodes the ids back (both skip modes; the
// first 16384 ids).
void CheckEncodeDecode(const Tokenizer& tokenizer, std::string_view text);

// Decodes ids [0, min(vocab_size, limit)) one by one and together, and the ids just outside the
// vocabulary (which must be InvalidArgument); IdToToken / TokenToId on each.
void CheckDecodeSweep(const Tokenizer& tokenizer, int32_t limit);

}  // namespace zigzag::fuzz
