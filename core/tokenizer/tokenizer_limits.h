// The bounds the tokenizer loaders and Encode put on their inputs, in one place: a model folder
// or a request that goes past one gets a Status naming the limit instead of memory or time
// without bound. Real tokenizers sit far inside every one of them (Llama-3: 128,256 ids, 9 MB of
// tokenizer.json; Qwen3: 151,669 ids; Gemma: 262,144 ids).
#pragma once

#include <cstddef>
#include <cstdint>

namespace zigzag {

// Every token id (vocabulary, added tokens, SentencePiece pieces, special-token ids in the config
// files) must be below this. The id tables are sized by the largest id, so that also caps them.
inline constexpr int64_t kMaxTokenId = (int64_t{1} << 22) - 1;  // 4,194,303

// The largest id may leave at most this many ids unused, besides half of the table: a handful of
// entries with id 4,000,000 must not make a 4M-entry table.
inline constexpr int64_t kMaxUnusedIdSlack = 1024;

// File sizes read into memory by LoadTokenizer.
inline constexpr size_t kMaxTokenizerFileBytes = size_t{256} << 20;   // tokenizer.json / .model
inline constexpr size_t kMaxTokenizerConfigBytes = size_t{32} << 20;  // *_config.json, config.json

// A normalizer's output may be at most this many times the size of its input, plus
// kNormalizerSlackBytes: real ones grow text a few times at most (Llama-2's " " -> "▁" triples a
// run of spaces, NFKC turns U+FDFA's 3 bytes into 33). Beyond it Encode returns
// InvalidArgument instead of building the text (ten chained Replace rules that each double it).
inline constexpr size_t kMaxNormalizerGrowth = 16;
inline constexpr size_t kNormalizerSlackBytes = 4096;

// Limit on the output of one normalizer or decoder step for an input of `input_bytes`.
inline constexpr size_t NormalizedByteLimit(size_t input_bytes) {
  return input_bytes * kMaxNormalizerGrowth + kNormalizerSlackBytes;
}

}  // namespace zigzag
