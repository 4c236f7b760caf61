#include "fuzz/tokenizer_checks.h"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/types/span.h"

namespace zigzag::fuzz {
namespace {

constexpr size_t kMaxDecodeIds = 16384;

}  // namespace

void RequireUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    const int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > text.size()) std::abort();
    uint32_t cp = n == 1 ? c : c & (0x7F >> n);
    for (int k = 1; k < n; ++k) {
      const auto d = static_cast<unsigned char>(text[i + k]);
      if ((d & 0xC0) != 0x80) std::abort();
      cp = (cp << 6) | (d & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) std::abort();
    i += n;
  }
}

void CheckEncodeDecode(const Tokenizer& tokenizer, std::string_view text) {
  const int32_t vocab = tokenizer.vocab_size();
  for (const bool add_special : {false, true}) {
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(text, add_special);
    if (!ids.ok()) {
      if (ids.status().message().empty()) std::abort();
      continue;
    }
    for (int32_t id : *ids) {
      if (id < 0 || id >= vocab) std::abort();
    }
    // Decoding is checked on a request-sized prefix: a megabyte of text encodes to ~1M ids, and
    // no request holds that many (contexts are a few thousand tokens).
    const absl::Span<const int32_t> prefix =
        absl::MakeConstSpan(*ids).first(std::min<size_t>(ids->size(), kMaxDecodeIds));
    for (const bool skip : {false, true}) {
      absl::StatusOr<std::string> decoded = tokenizer.Decode(prefix, skip);
      if (!decoded.ok()) std::abort();  // ids from Encode are in the vocabulary
      RequireUtf8(*decoded);
    }
  }
}

void CheckDecodeSweep(const Tokenizer& tokenizer, int32_t limit) {
  const int32_t vocab = tokenizer.vocab_size();
  const int32_t count = std::min(vocab, limit);
  std::vector<int32_t> all;
  for (int32_t id = 0; id < count; ++id) {
    all.push_back(id);
    absl::StatusOr<std::string> one = tokenizer.Decode({id}, /*skip_special_tokens=*/false);
    if (!one.ok()) std::abort();
    RequireUtf8(*one);
    const std::optional<std::string> piece = tokenizer.IdToToken(id);
    if (piece.has_value() && !tokenizer.TokenToId(*piece).has_value()) std::abort();
    (void)tokenizer.IsSpecial(id);
  }
  for (const bool skip : {false, true}) {
    absl::StatusOr<std::string> text = tokenizer.Decode(all, skip);
    if (!text.ok()) std::abort();
    RequireUtf8(*text);
  }
  for (const int32_t bad : {-1, vocab}) {
    absl::StatusOr<std::string> text = tokenizer.Decode({bad}, false);
    if (text.ok() || text.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
    if (tokenizer.IdToToken(bad).has_value() || tokenizer.IsSpecial(bad)) std::abort();
  }
}

}  // namespace zigzag::fuzz
