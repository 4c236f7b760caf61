// Tests of core/tokenizer: our tokenizer.json BPE against @lenml/tokenizers (an independent
// JavaScript implementation) on Llama-3, Qwen3 and Llama-2 style tokenizers, our SentencePiece
// wrapper against spm_encode, special tokens from config files, errors, the incremental
// detokenizer and the stop-string matcher. The reference data is made by the ctest fixture
// tokenizer_reference (tests/tokenizer_reference/setup.cmake) in the build tree.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "core/tokenizer/incremental_detokenizer.h"
#include "core/tokenizer/stop_strings.h"
#include "core/tokenizer/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/test_support.h"

namespace zigzag {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Compiled-in paths (build and source tree), each overridable from the environment:
// bench/gpu/run.sh runs this binary from a bundle on a machine where those trees do not exist.
fs::path PathFromEnv(const char* variable, const char* built_in) {
  const char* env = std::getenv(variable);
  return fs::path(env != nullptr && *env != '\0' ? env : built_in);
}
fs::path DataDir() { return PathFromEnv("ZIGZAG_TOKENIZER_DATA", ZIGZAG_TOKENIZER_DATA_DIR); }
fs::path CorpusPath() { return PathFromEnv("ZIGZAG_TOKENIZER_CORPUS", ZIGZAG_TOKENIZER_CORPUS); }
fs::path SourceDir() { return PathFromEnv("ZIGZAG_SOURCE_DIR", ZIGZAG_SOURCE_DIR); }

// Fails (never skips) when the fixture has not produced the data.
fs::path RequireData(const std::string& relative) {
  const fs::path path = DataDir() / relative;
  EXPECT_TRUE(fs::exists(path)) << path << " is missing: run the ctest fixture "
                                << "tokenizer_reference_setup (ctest -R tokenizer) first";
  return path;
}

// An independent UTF-8 check for the streaming tests: true when `text` is well-formed.
bool IsWellFormedUtf8(const std::string& text) {
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > text.size()) return false;
    uint32_t cp = n == 1 ? c : c & (0x7F >> n);
    for (int k = 1; k < n; ++k) {
      const unsigned char d = static_cast<unsigned char>(text[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    static const uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

std::string ToString(const std::vector<int32_t>& ids) {
  std::ostringstream out;
  for (size_t i = 0; i < ids.size(); ++i) out << (i ? "," : "") << ids[i];
  return out.str();
}

std::unique_ptr<Tokenizer> Load(const fs::path& dir) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = LoadTokenizer(dir.string());
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? *std::move(tokenizer) : nullptr;
}

// Streams `ids` through an IncrementalDetokenizer and checks every chunk is well-formed UTF-8.
std::string Stream(const Tokenizer& tokenizer, const std::vector<int32_t>& prompt,
                   const std::vector<int32_t>& ids, bool skip_special,
                   int* held_back_calls = nullptr) {
  IncrementalDetokenizer detokenizer(tokenizer, prompt, skip_special);
  std::string all;
  for (int32_t id : ids) {
    absl::StatusOr<std::string> chunk = detokenizer.Append(id);
    EXPECT_TRUE(chunk.ok()) << chunk.status();
    if (!chunk.ok()) return all;
    EXPECT_TRUE(IsWellFormedUtf8(*chunk)) << "partial UTF-8 emitted after id " << id;
    if (chunk->empty() && held_back_calls != nullptr) ++*held_back_calls;
    all += *chunk;
  }
  const std::string rest = detokenizer.Flush();
  EXPECT_TRUE(IsWellFormedUtf8(rest));
  all += rest;
  EXPECT_EQ(all, detokenizer.text());
  return all;
}

// tokenizer.json vs @lenml/tokenizers ----------------------------------------------------------

class ReferenceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = RequireData(GetParam());
    const fs::path reference_path = RequireData(GetParam() + "/reference.json");
    ASSERT_TRUE(fs::exists(reference_path));
    reference_ = json::parse(testing::ReadFile(reference_path));
    tokenizer_ = Load(dir_);
    ASSERT_NE(tokenizer_, nullptr);
  }
  const json& entries() const { return reference_["entries"]; }
  static std::vector<int32_t> Ids(const json& array) { return array.get<std::vector<int32_t>>(); }

  fs::path dir_;
  json reference_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_P(ReferenceTest, EncodeMatchesReferenceOnEveryCorpusLine) {
  ASSERT_GT(entries().size(), 40u);
  int mismatches = 0;
  for (size_t i = 0; i < entries().size(); ++i) {
    const json& entry = entries()[i];
    const std::string text = entry["text"].get<std::string>();
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(text, false);
    ASSERT_TRUE(ids.ok()) << ids.status();
    const std::vector<int32_t> expected = Ids(entry["ids"]);
    if (*ids != expected && ++mismatches <= 5) {
      ADD_FAILURE() << GetParam() << " entry " << i << " '" << text.substr(0, 200)
                    << "'\n ours: " << ToString(*ids) << "\n  ref: " << ToString(expected);
    }
    absl::StatusOr<std::vector<int32_t>> with_special = tokenizer_->Encode(text, true);
    ASSERT_TRUE(with_special.ok());
    EXPECT_EQ(*with_special, Ids(entry["ids_special"])) << GetParam() << " entry " << i;
  }
  EXPECT_EQ(mismatches, 0);
}

TEST_P(ReferenceTest, DecodeMatchesReference) {
  for (size_t i = 0; i < entries().size(); ++i) {
    const json& entry = entries()[i];
    absl::StatusOr<std::string> text = tokenizer_->Decode(Ids(entry["ids"]), false);
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_EQ(*text, entry["decoded"].get<std::string>()) << GetParam() << " entry " << i;
  }
}

// Decode(Encode(x)) == x, except that Qwen normalizes to NFC (the reference's decoded text is the
// expectation there) and Llama-2's Prepend normalizer adds a "▁" after every special token.
TEST_P(ReferenceTest, RoundTrip) {
  for (size_t i = 0; i < entries().size(); ++i) {
    const json& entry = entries()[i];
    const std::string text = entry["text"].get<std::string>();
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(text, false);
    ASSERT_TRUE(ids.ok());
    bool has_special = false;
    for (int32_t id : *ids) has_special |= tokenizer_->IsSpecial(id);
    if (GetParam() == "llama2" && has_special) continue;
    const std::string expected = GetParam() == "qwen3" ? entry["decoded"].get<std::string>() : text;
    absl::StatusOr<std::string> decoded = tokenizer_->Decode(*ids, false);
    ASSERT_TRUE(decoded.ok());
    EXPECT_EQ(*decoded, expected) << GetParam() << " entry " << i;
  }
}

TEST_P(ReferenceTest, SkipSpecialTokensDropsThem) {
  const std::vector<int32_t>& eos = tokenizer_->special_tokens().eos_ids;
  ASSERT_FALSE(eos.empty());
  ASSERT_TRUE(tokenizer_->IsSpecial(eos[0]));
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode("Hello world", false);
  ASSERT_TRUE(ids.ok());
  std::vector<int32_t> with_eos = *ids;
  with_eos.push_back(eos[0]);
  EXPECT_EQ(*tokenizer_->Decode(with_eos, true), *tokenizer_->Decode(*ids, true));
  EXPECT_THAT(*tokenizer_->Decode(with_eos, false), HasSubstr(*tokenizer_->IdToToken(eos[0])));
}

TEST_P(ReferenceTest, IncrementalDetokenizerMatchesDecode) {
  for (size_t i = 0; i < entries().size(); ++i) {
    const std::vector<int32_t> ids = Ids(entries()[i]["ids"]);
    for (bool skip : {false, true}) {
      const std::string full = *tokenizer_->Decode(ids, skip);
      EXPECT_EQ(Stream(*tokenizer_, {}, ids, skip), full) << GetParam() << " entry " << i;
      // With the first half as the prompt: the stream is the rest of the text.
      const size_t half = ids.size() / 2;
      const std::vector<int32_t> prompt(ids.begin(), ids.begin() + half);
      const std::vector<int32_t> generated(ids.begin() + half, ids.end());
      const std::string prompt_text = *tokenizer_->Decode(prompt, skip);
      if (full.compare(0, prompt_text.size(), prompt_text) == 0 &&
          prompt_text.find("\xEF\xBF\xBD") == std::string::npos) {
        EXPECT_EQ(Stream(*tokenizer_, prompt, generated, skip), full.substr(prompt_text.size()))
            << GetParam() << " entry " << i << " skip " << skip;
      }
    }
  }
}

TEST_P(ReferenceTest, InvalidUtf8IsInvalidArgumentWithOffset) {
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(
      "abc\xff"
      "def",
      false);
  ASSERT_FALSE(ids.ok());
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ids.status().message(), HasSubstr("byte offset 3"));
  // A truncated 3-byte character at the end, and an encoded surrogate.
  EXPECT_THAT(tokenizer_->Encode("ok \xe4\xbd", false).status().message(),
              HasSubstr("byte offset 3"));
  EXPECT_EQ(tokenizer_->Encode("\xed\xa0\x80", false).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(ReferenceTest, OutOfRangeIdsAreInvalidArgument) {
  const int32_t size = tokenizer_->vocab_size();
  for (int32_t bad : {-1, size, size + 1000}) {
    absl::StatusOr<std::string> text = tokenizer_->Decode({1, bad}, false);
    ASSERT_FALSE(text.ok());
    EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(text.status().message(), HasSubstr("position 1"));
  }
  IncrementalDetokenizer detokenizer(*tokenizer_, {}, false);
  EXPECT_EQ(detokenizer.Append(size).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(ReferenceTest, LongInputsEncodeQuickly) {
  // A 100K+ character prompt, one 100K-letter word (a single BPE piece) and a run of spaces.
  std::string corpus = testing::ReadFile(CorpusPath());
  std::string big;
  while (big.size() < 120000) big += corpus;
  for (const std::string& text : {big, std::string(100000, 'a'), std::string(100000, ' ')}) {
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(text, false);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_LT(seconds, 20.0) << GetParam() << " took " << seconds << " s for " << text.size()
                             << " bytes";
    if (text != big) {
      EXPECT_EQ(*tokenizer_->Decode(*ids, false), text) << GetParam();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, ReferenceTest, ::testing::Values("llama3", "qwen3", "llama2"),
                         [](const auto& info) { return info.param; });

// Special tokens from the config files --------------------------------------------------------

TEST(SpecialTokensTest, FromShippedConfigs) {
  std::unique_ptr<Tokenizer> llama2 = Load(RequireData("llama2"));
  ASSERT_NE(llama2, nullptr);
  EXPECT_EQ(llama2->special_tokens().bos_id, 1);
  EXPECT_THAT(llama2->special_tokens().eos_ids, ElementsAre(2));
  EXPECT_TRUE(llama2->special_tokens().add_bos);
  EXPECT_FALSE(llama2->special_tokens().add_eos);
  EXPECT_EQ(llama2->Encode("Hi", true).value().front(), 1);

  std::unique_ptr<Tokenizer> qwen = Load(RequireData("qwen3"));
  ASSERT_NE(qwen, nullptr);
  EXPECT_EQ(qwen->special_tokens().bos_id, std::nullopt);  // "bos_token": null
  EXPECT_THAT(qwen->special_tokens().eos_ids, ElementsAre(*qwen->TokenToId("<|im_end|>")));
  EXPECT_EQ(qwen->special_tokens().pad_id, qwen->TokenToId("<|endoftext|>"));
  EXPECT_FALSE(qwen->special_tokens().add_bos);
  EXPECT_TRUE(qwen->IsSpecial(*qwen->TokenToId("<|im_start|>")));
  EXPECT_FALSE(qwen->IsSpecial(*qwen->TokenToId("Hello")));

  std::unique_ptr<Tokenizer> llama3 = Load(RequireData("llama3"));
  ASSERT_NE(llama3, nullptr);
  EXPECT_EQ(llama3->special_tokens().bos_id, 128000);
  EXPECT_THAT(llama3->special_tokens().eos_ids, ElementsAre(128001));
  // This copy's post_processor is ByteLevel only and its config has no add_bos_token.
  EXPECT_FALSE(llama3->special_tokens().add_bos);
}

TEST(SpecialTokensTest, GenerationConfigAndConfigJsonAddEosIds) {
  const fs::path dir = testing::MakeTempDir("tokenizer_config");
  fs::copy_file(RequireData("llama3/tokenizer.json"), dir / "tokenizer.json");
  testing::WriteFile(dir / "tokenizer_config.json",
                     R"({"bos_token": "<|begin_of_text|>", "add_bos_token": true,
                         "eos_token": {"__type": "AddedToken", "content": "<|eot_id|>"}})");
  testing::WriteFile(dir / "generation_config.json",
                     R"({"bos_token_id": 128000, "eos_token_id": [128001, 128009]})");
  testing::WriteFile(dir / "config.json", R"({"eos_token_id": 128008, "pad_token_id": 128004})");
  std::unique_ptr<Tokenizer> tokenizer = Load(dir);
  ASSERT_NE(tokenizer, nullptr);
  const SpecialTokens& special = tokenizer->special_tokens();
  EXPECT_EQ(special.bos_id, 128000);
  EXPECT_THAT(special.eos_ids, ElementsAre(128009, 128001, 128008));
  EXPECT_EQ(special.pad_id, 128004);
  EXPECT_TRUE(special.add_bos);
  EXPECT_THAT(*tokenizer->Encode("Hi", true), ElementsAre(128000, 13347));
  EXPECT_THAT(*tokenizer->Encode("Hi", false), ElementsAre(13347));

  // add_eos_token appends the first EOS; a token name missing from the vocabulary is an error.
  testing::WriteFile(dir / "tokenizer_config.json", R"({"add_eos_token": true})");
  tokenizer = Load(dir);
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_THAT(*tokenizer->Encode("Hi", true), ElementsAre(13347, 128001));
  testing::WriteFile(dir / "tokenizer_config.json", R"({"eos_token": "<|no_such_token|>"})");
  absl::StatusOr<std::unique_ptr<Tokenizer>> bad = LoadTokenizer(dir.string());
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("<|no_such_token|>"));
}

TEST(SpecialTokensTest, MissingTokenizerIsNotFound) {
  const fs::path dir = testing::MakeTempDir("no_tokenizer");
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = LoadTokenizer(dir.string());
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kNotFound);
}

// SentencePiece vs spm_encode --------------------------------------------------------------------

std::vector<std::string> CorpusLines() {
  std::istringstream in(testing::ReadFile(CorpusPath()));
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST(SentencePieceTest, EncodeMatchesSpmEncode) {
  std::unique_ptr<Tokenizer> tokenizer = Load(RequireData("spm"));
  ASSERT_NE(tokenizer, nullptr);
  const std::vector<std::string> lines = CorpusLines();
  std::istringstream reference(testing::ReadFile(RequireData("spm/ids.txt")));
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string row;
    ASSERT_TRUE(std::getline(reference, row)) << "ids.txt has fewer lines than the corpus";
    std::vector<int32_t> expected;
    std::istringstream numbers(row);
    for (int32_t id; numbers >> id;) expected.push_back(id);
    EXPECT_EQ(*tokenizer->Encode(lines[i], false), expected) << "line " << i << ": " << lines[i];
  }
}

TEST(SentencePieceTest, RoundTripSpecialTokensAndStreaming) {
  std::unique_ptr<Tokenizer> tokenizer = Load(RequireData("spm"));
  ASSERT_NE(tokenizer, nullptr);
  // spm_train's defaults: <unk>=0, <s>=1, </s>=2; no config files, so BOS is added by default.
  EXPECT_EQ(tokenizer->special_tokens().bos_id, 1);
  EXPECT_THAT(tokenizer->special_tokens().eos_ids, ElementsAre(2));
  EXPECT_TRUE(tokenizer->special_tokens().add_bos);
  EXPECT_TRUE(tokenizer->IsSpecial(1));
  EXPECT_FALSE(tokenizer->IsSpecial(0));
  EXPECT_TRUE(tokenizer->TokenToId("<0x41>").has_value());
  EXPECT_EQ(tokenizer->TokenToId("no such piece"), std::nullopt);
  int held_back = 0;
  for (const std::string& line : CorpusLines()) {
    const std::vector<int32_t> ids = *tokenizer->Encode(line, true);
    ASSERT_EQ(ids.front(), 1);
    EXPECT_EQ(*tokenizer->Decode(ids, true), line);
    EXPECT_EQ(*tokenizer->Decode(ids, false), "<s>" + (line.empty() ? "" : " " + line))
        << "control tokens are kept as text, followed by the text's leading space";
    EXPECT_EQ(Stream(*tokenizer, {}, ids, true, &held_back), line);
    EXPECT_EQ(Stream(*tokenizer, {ids.front()}, {ids.begin() + 1, ids.end()}, true), line);
  }
  EXPECT_GT(held_back, 0) << "byte-fallback characters should be held back until complete";
  EXPECT_EQ(tokenizer->Encode("\xc3", false).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(tokenizer->Decode({tokenizer->vocab_size()}, false).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SentencePieceTest, EmbeddedModelLoadsWhenPresent) {
  const fs::path dir = SourceDir() / "models" / "zigzag-tiny";
  if (!fs::exists(dir / "tokenizer.model") && !fs::exists(dir / "tokenizer.json")) {
    GTEST_SKIP() << dir << " has no tokenizer yet";
  }
  std::unique_ptr<Tokenizer> tokenizer = Load(dir);
  ASSERT_NE(tokenizer, nullptr);
  const std::string text = "The quick brown fox, caf\u00e9 \U0001F600 12345.";
  EXPECT_EQ(*tokenizer->Decode(*tokenizer->Encode(text, false), true), text);
}

// Streaming details on a real byte-fallback tokenizer ---------------------------------------------

TEST(IncrementalDetokenizerTest, HoldsBackSplitCharactersAndKeepsLeadingSpaces) {
  std::unique_ptr<Tokenizer> tokenizer = Load(RequireData("llama2"));
  ASSERT_NE(tokenizer, nullptr);
  // U+1F9A9 is not in the vocabulary: four <0xNN> tokens.
  const std::vector<int32_t> ids = *tokenizer->Encode("a \U0001F9A9 b", false);
  IncrementalDetokenizer detokenizer(*tokenizer, {}, true);
  std::vector<std::string> chunks;
  for (int32_t id : ids) chunks.push_back(*detokenizer.Append(id));
  chunks.push_back(detokenizer.Flush());
  EXPECT_EQ(detokenizer.text(), "a \U0001F9A9 b");
  int empty = 0;
  for (const std::string& chunk : chunks) empty += chunk.empty();
  EXPECT_GE(empty, 3) << "three of the four emoji bytes arrive before the character is complete";
  EXPECT_NE(std::find(chunks.begin(), chunks.end(), "\U0001F9A9"), chunks.end());
  // Leading spaces of later words survive (SentencePiece strips only the first).
  EXPECT_EQ(chunks[chunks.size() - 2], " b");
}

TEST(IncrementalDetokenizerTest, FlushEmitsIncompleteBytesAsReplacement) {
  std::unique_ptr<Tokenizer> tokenizer = Load(RequireData("llama2"));
  ASSERT_NE(tokenizer, nullptr);
  IncrementalDetokenizer detokenizer(*tokenizer, {}, true);
  EXPECT_EQ(*detokenizer.Append(*tokenizer->TokenToId("<0xF0>")), "");
  EXPECT_EQ(*detokenizer.Append(*tokenizer->TokenToId("<0x9F>")), "");
  EXPECT_EQ(detokenizer.Flush(), "\xEF\xBF\xBD");
}

TEST(IncrementalDetokenizerTest, IdsThatNeverSettleAreHeldBackAtMostSixteenAtATime) {
  // Invalid bytes end every window in U+FFFD; holding them back until a valid character came
  // widened the window on every Append (quadratic: a fuzzed stream of 8K ids timed out in CI).
  std::unique_ptr<Tokenizer> tokenizer = Load(RequireData("llama2"));
  ASSERT_NE(tokenizer, nullptr);
  const int32_t invalid = *tokenizer->TokenToId("<0xFF>");
  const std::vector<int32_t> ids(1000, invalid);
  IncrementalDetokenizer detokenizer(*tokenizer, {}, true);
  int empty_run = 0;
  int longest_empty_run = 0;
  for (int32_t id : ids) {
    const std::string chunk = *detokenizer.Append(id);
    EXPECT_TRUE(IsWellFormedUtf8(chunk));
    empty_run = chunk.empty() ? empty_run + 1 : 0;
    longest_empty_run = std::max(longest_empty_run, empty_run);
  }
  EXPECT_EQ(longest_empty_run, 15);  // the 16th pending id sends all but the last four out
  detokenizer.Flush();
  std::string expected;
  for (size_t i = 0; i < ids.size(); ++i) expected += "\xEF\xBF\xBD";
  EXPECT_EQ(detokenizer.text(), expected);
  EXPECT_EQ(detokenizer.text(), *tokenizer->Decode(ids, true));
}

TEST(IncrementalDetokenizerTest, ACharacterArrivingWhenTheBoundForcesTextOutStaysWhole) {
  // 14 invalid bytes, then U+1F9A9's four bytes: the bound is reached at the emoji's second
  // byte; the last four ids stay pending, so the emoji is not cut into U+FFFDs.
  std::unique_ptr<Tokenizer> tokenizer = Load(RequireData("llama2"));
  ASSERT_NE(tokenizer, nullptr);
  std::vector<int32_t> ids(14, *tokenizer->TokenToId("<0xFF>"));
  for (const char* byte : {"<0xF0>", "<0x9F>", "<0xA6>", "<0xA9>"}) {
    ids.push_back(*tokenizer->TokenToId(byte));
  }
  IncrementalDetokenizer detokenizer(*tokenizer, {}, true);
  std::vector<std::string> chunks;
  for (int32_t id : ids) chunks.push_back(*detokenizer.Append(id));
  chunks.push_back(detokenizer.Flush());
  std::string replacements;
  for (int i = 0; i < 14; ++i) replacements += "\xEF\xBF\xBD";
  EXPECT_EQ(detokenizer.text(), replacements + "\U0001F9A9");
  EXPECT_EQ(chunks[15], replacements.substr(0, 12 * 3)) << "forced out at the 16th id";
  EXPECT_EQ(chunks[17], replacements.substr(12 * 3) + "\U0001F9A9");
}

// Stop strings
// -------------------------------------------------------------------------------------

TEST(StopStringMatcherTest, StopStringSplitAcrossChunks) {
  StopStringMatcher matcher({"STOP"});
  EXPECT_EQ(matcher.Append("hello S").emit, "hello ");
  EXPECT_EQ(matcher.Append("T").emit, "");
  const StopStringMatcher::Result result = matcher.Append("OP and more");
  EXPECT_TRUE(result.stopped);
  EXPECT_EQ(result.emit, "");
  EXPECT_EQ(matcher.matched_stop(), "STOP");
  EXPECT_EQ(matcher.Flush(), "");
  EXPECT_TRUE(matcher.Append("x").stopped);
}

TEST(StopStringMatcherTest, FalseStartIsReleased) {
  StopStringMatcher matcher({"STOP"});
  EXPECT_EQ(matcher.Append("ST").emit, "");
  const StopStringMatcher::Result result = matcher.Append("ART ok");
  EXPECT_FALSE(result.stopped);
  EXPECT_EQ(result.emit, "START ok");
}

TEST(StopStringMatcherTest, EarliestOfSeveralStopsWins) {
  StopStringMatcher matcher({"world", "lo w", "\n\n"});
  EXPECT_EQ(matcher.Append("hel").emit, "he");  // "l" may start "lo w"
  const StopStringMatcher::Result result = matcher.Append("lo world\n\n");
  EXPECT_TRUE(result.stopped);
  EXPECT_EQ(result.emit, "l");  // "lo w" starts before "world"
  EXPECT_EQ(matcher.matched_stop(), "lo w");

  // Both "abcd" and "bc" complete in the same chunk; "abcd" starts earlier.
  StopStringMatcher overlapping({"bc", "abcd"});
  EXPECT_EQ(overlapping.Append("xab").emit, "x");
  const StopStringMatcher::Result second = overlapping.Append("cd");
  EXPECT_TRUE(second.stopped);
  EXPECT_EQ(second.emit, "");
  EXPECT_EQ(overlapping.matched_stop(), "abcd");
  // Text already emitted is never taken back: a stop found later only cuts the pending text.
  StopStringMatcher later({"bc"});
  EXPECT_EQ(later.Append("ab").emit, "a");
  const StopStringMatcher::Result third = later.Append("c!");
  EXPECT_TRUE(third.stopped);
  EXPECT_EQ(third.emit, "");
}

TEST(StopStringMatcherTest, NoStopFlushesEverything) {
  StopStringMatcher matcher({"</answer>", "\u00e9t\u00e9"});
  std::string out;
  for (const char* chunk : {"the answer is <", "/ans", " no", " \u00e9", "t"}) {
    const StopStringMatcher::Result result = matcher.Append(chunk);
    EXPECT_FALSE(result.stopped);
    out += result.emit;
  }
  out += matcher.Flush();
  EXPECT_EQ(out, "the answer is </ans no \u00e9t");
}

TEST(StopStringMatcherTest, NoStopsPassesTextThrough) {
  StopStringMatcher matcher({"", ""});
  EXPECT_EQ(matcher.Append("abc").emit, "abc");
  EXPECT_EQ(matcher.Flush(), "");
}

}  // namespace
}  // namespace zigzag
