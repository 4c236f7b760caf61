// Encode and Decode under hostile text (issue 11, item 1): a 1 MB run of white space through the
// Llama-3 and Qwen3 tokenizer.json (ICU's backtracking stack used to overflow on their
// pre-tokenizer regex, and a ZZ_CHECK aborted the server) encodes to the ids of the same text cut
// by hand into pieces, each encoded by a tokenizer without any regex; segmenting long texts leaves
// the matches of normal text as ICU finds them in the whole text; a regex that gives up, or
// normalizer / decoder rules that blow the text up, give a Status. The real tokenizers come from
// the ctest fixture tokenizer_reference (see tokenizer_test.cc).
#include <unicode/regex.h>
#include <unicode/utext.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tokenizer/hf_tokenizer.h"
#include "core/tokenizer/icu_regex.h"
#include "core/tokenizer/incremental_detokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/hf_tokenizer_json.h"
#include "tests/test_support.h"

namespace zigzag {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::HasSubstr;

constexpr const char* kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwenPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

constexpr size_t kSegment = IcuRegex::kSegmentBytes;

fs::path DataDir() {
  if (const char* env = std::getenv("ZIGZAG_TOKENIZER_DATA")) return fs::path(env);
  return fs::path(ZIGZAG_TOKENIZER_DATA_DIR);
}

std::unique_ptr<HfTokenizer> ParseOrDie(const std::string& text, const std::string& source) {
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tokenizer = HfTokenizer::Parse(text, source);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? *std::move(tokenizer) : nullptr;
}

// Long white-space runs vs. the same text cut by hand -------------------------------------------

class LongWhitespaceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const fs::path path = DataDir() / GetParam() / "tokenizer.json";
    ASSERT_TRUE(fs::exists(path)) << path << " is missing: run the ctest fixture "
                                  << "tokenizer_reference_setup (ctest -R tokenizer) first";
    const std::string text = testing::ReadFile(path);
    tokenizer_ = ParseOrDie(text, path.string());
    ASSERT_NE(tokenizer_, nullptr);
    // The reference: the same vocabulary, merges and normalizer, but no regex at all: each piece
    // it is given stays one piece.
    json reference = json::parse(text);
    reference["pre_tokenizer"] = {
        {"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}};
    reference_ = ParseOrDie(reference.dump(), "reference tokenizer.json");
    ASSERT_NE(reference_, nullptr);
  }

  // The reference's ids for `pieces`, one after the other.
  std::vector<int32_t> ByHand(const std::vector<std::string>& pieces) const {
    std::vector<int32_t> ids;
    for (const std::string& piece : pieces) {
      absl::StatusOr<std::vector<int32_t>> piece_ids = reference_->Encode(piece, false);
      EXPECT_TRUE(piece_ids.ok()) << piece_ids.status();
      if (piece_ids.ok()) ids.insert(ids.end(), piece_ids->begin(), piece_ids->end());
    }
    return ids;
  }

  std::unique_ptr<HfTokenizer> tokenizer_;
  std::unique_ptr<HfTokenizer> reference_;
};

TEST_P(LongWhitespaceTest, OneMegabyteRunsEncodeAsTheirSegmentsWithoutCrashing) {
  constexpr size_t kRun = size_t{1} << 20;
  for (const std::string unit : {" ", "\n", " \t"}) {
    std::string text;
    while (text.size() < kRun) text += unit;
    // By hand: the pre-tokenizer regex matches a run of white space whole (`\s+(?!\S)` at the end
    // of the text, `\s*[\r\n]+` for newlines), and a text longer than kSegment is matched in
    // segments cut inside such a run every kSegment bytes (there is no space after a
    // non-space to cut at): the pieces are the run's consecutive 64 KB slices.
    std::vector<std::string> pieces;
    for (size_t begin = 0; begin < text.size(); begin += kSegment) {
      pieces.push_back(text.substr(begin, kSegment));
    }
    ASSERT_EQ(pieces.size(), 16u);
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(text, false);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(*ids, ByHand(pieces)) << "run of " << ::testing::PrintToString(unit);
    absl::StatusOr<std::string> decoded = tokenizer_->Decode(*ids, false);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_TRUE(*decoded == text) << "round trip of the run of " << ::testing::PrintToString(unit);
  }
}

TEST_P(LongWhitespaceTest, OneMegabyteRunBetweenWordsKeepsItsLastSpaceWithTheNextWord) {
  constexpr size_t kRun = size_t{1} << 20;
  const std::string text = "hello" + std::string(kRun, ' ') + "world";
  // By hand: segments end at kSegment, 2 kSegment, ..., 16 kSegment (the only space after a
  // non-space, at offset 5, is in the first segment's first half), then "    " + " world".
  // "hello" and the spaces after it share the first segment; as for a short run, the last space
  // goes with "world" (Llama-3's `[^\r\n\p{L}\p{N}]?\p{L}+`).
  std::vector<std::string> pieces = {"hello", std::string(kSegment - 5, ' ')};
  for (int i = 1; i < 16; ++i) pieces.push_back(std::string(kSegment, ' '));
  pieces.push_back(std::string(4, ' '));
  pieces.push_back(" world");
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(text, false);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, ByHand(pieces));
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, LongWhitespaceTest, ::testing::Values("llama3", "qwen3"),
                         [](const auto& info) { return info.param; });

// Segments vs. ICU on the whole text --------------------------------------------------------------

// ICU's own matches over the whole text, with no segments and no limits: the reference.
std::vector<std::pair<size_t, size_t>> WholeTextMatches(const std::string& pattern,
                                                        const std::string& text) {
  UErrorCode status = U_ZERO_ERROR;
  UParseError parse_error;
  std::unique_ptr<icu::RegexPattern> compiled(
      icu::RegexPattern::compile(icu::UnicodeString::fromUTF8(pattern), 0, parse_error, status));
  UText* utext = utext_openUTF8(nullptr, text.data(), static_cast<int64_t>(text.size()), &status);
  std::unique_ptr<icu::RegexMatcher> matcher(compiled->matcher(status));
  matcher->reset(utext);
  std::vector<std::pair<size_t, size_t>> matches;
  while (matcher->find(status) && U_SUCCESS(status)) {
    const auto begin = static_cast<size_t>(matcher->start64(status));
    const auto end = static_cast<size_t>(matcher->end64(status));
    if (end > begin) matches.emplace_back(begin, end);
  }
  EXPECT_TRUE(U_SUCCESS(status)) << u_errorName(status);
  matcher.reset();
  utext_close(utext);
  return matches;
}

TEST(IcuRegexSegmentsTest, NormalTextMatchesExactlyAsAWhole) {
  // ~300 KB of prose, code with indentation, numbers, contractions, CRLF and Unicode: five
  // segments, cut at spaces after words.
  const std::string paragraph =
      "It's 2024 and we'll ship v1.2.3 -- \"really\"?\r\n"
      "    def f(x):\n        return x**2  # squares\n\n\n"
      "Ünïcödé wörds, 日本語のテキスト, emoji 🙂🙂 and "
      "tabs\there.\u3000Ideographic "
      "space.\n"
      "Numbers: 1234567 89 0; punctuation!!! ... ??? (a) [b] {c}   \n  trailing   ";
  std::string text;
  while (text.size() < 300000) text += paragraph;
  ASSERT_EQ(RegexSegmentEnds(text, kSegment).size(), 5u);
  for (const char* pattern :
       {kLlama3Pattern, kQwenPattern, kGpt2Pattern, R"(\s+)", R"(\w+|[^\w\s]+)"}) {
    absl::StatusOr<IcuRegex> regex = IcuRegex::Compile(pattern);
    ASSERT_TRUE(regex.ok()) << regex.status();
    absl::StatusOr<std::vector<std::pair<size_t, size_t>>> matches = regex->FindAll(text);
    ASSERT_TRUE(matches.ok()) << matches.status();
    EXPECT_TRUE(*matches == WholeTextMatches(pattern, text)) << pattern;
  }
}

TEST(IcuRegexSegmentsTest, CutsAtSpacesAfterWordsElseAtCharacterBoundaries) {
  EXPECT_THAT(RegexSegmentEnds("short", 1 << 16), ::testing::ElementsAre(5u));
  // Segments of 8: "abcdef" ends at the space after 'f' (offset 6); "gh ijklm" has a space only
  // after offset 9, in its first half, so it is cut at 14, a plain character boundary.
  EXPECT_THAT(RegexSegmentEnds("abcdef gh ijklmnop", 8), ::testing::ElementsAre(6u, 14u, 18u));
  // A space after a space is no place to cut: "a" + 10 spaces is cut at 8 bytes.
  EXPECT_THAT(RegexSegmentEnds(std::string("a").append(10, ' '), 8),
              ::testing::ElementsAre(8u, 11u));
  // Ten "é" (2 bytes each) in segments of 5: never between a lead and a continuation byte.
  std::string accents;
  for (int i = 0; i < 10; ++i) accents += "\xC3\xA9";
  EXPECT_THAT(RegexSegmentEnds(accents, 5), ::testing::ElementsAre(4u, 8u, 12u, 16u, 20u));
}

// Limits: Status, never an abort ------------------------------------------------------------------

TEST(TokenizerLimitsTest, RegexThatGivesUpIsInvalidArgumentFromEncode) {
  // `(\s|x)+y` backtracks quadratically on white space that is not followed by "y": ICU stops
  // at its step limit (kTimeLimitSteps, a few seconds) and Encode reports it.
  json config = testing::ByteLevelTokenizerJson();
  const json split = {
      {"type", "Split"}, {"pattern", {{"Regex", R"((\s|x)+y)"}}}, {"behavior", "Isolated"}};
  config["pre_tokenizer"] = {{"type", "Sequence"},
                             {"pretokenizers", {split, config["pre_tokenizer"]}}};
  std::unique_ptr<HfTokenizer> tokenizer = ParseOrDie(config.dump(), "tokenizer.json");
  ASSERT_NE(tokenizer, nullptr);
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer->Encode(std::string(50000, ' '), false);
  ASSERT_FALSE(ids.ok());
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(ids.status().message()), HasSubstr("U_REGEX_TIME_OUT"));
  EXPECT_THAT(std::string(ids.status().message()), HasSubstr("(\\s|x)+y"));
  // The tokenizer stays usable: short texts need few steps.
  EXPECT_THAT(*tokenizer->Encode("  xy", false), ::testing::ElementsAre(' ', ' ', 'x', 'y'));
}

// Ten Replace rules that each turn every "a" into `content`.
json GrowingReplaceRules(const char* key, const std::string& content = "aa") {
  json rules = json::array();
  for (int i = 0; i < 10; ++i) {
    rules.push_back({{"type", "Replace"}, {"pattern", {{"String", "a"}}}, {"content", content}});
  }
  return {{"type", "Sequence"}, {key, rules}};
}

TEST(TokenizerLimitsTest, ChainedReplaceNormalizersCannotBlowUpTheText) {
  // Ten rules that each double the text would turn 1,000 bytes into 1,024,000 (1 MB into 1 GB).
  // The limit for a 1,000-byte section is 16 x 1,000 + 4,096 = 20,096 bytes: the fifth rule
  // (32,000 bytes) is refused.
  json config = testing::ByteLevelTokenizerJson();
  config["normalizer"] = GrowingReplaceRules("normalizers");
  std::unique_ptr<HfTokenizer> tokenizer = ParseOrDie(config.dump(), "tokenizer.json");
  ASSERT_NE(tokenizer, nullptr);
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer->Encode(std::string(1000, 'a'), false);
  ASSERT_FALSE(ids.ok());
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(ids.status().message()),
              HasSubstr("makes the 16000-byte text longer than the limit of 20096 bytes"));
  // Two doublings (4x) are within the limit: 1,000 "a" become 4,000 ids of 'a'.
  config["normalizer"]["normalizers"] =
      json::array({config["normalizer"]["normalizers"][0], config["normalizer"]["normalizers"][1]});
  tokenizer = ParseOrDie(config.dump(), "tokenizer.json");
  ASSERT_NE(tokenizer, nullptr);
  ids = tokenizer->Encode(std::string(1000, 'a'), false);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, std::vector<int32_t>(4000, 'a'));
}

TEST(TokenizerLimitsTest, LlamaTwoStyleSpaceReplacementStaysWithinTheLimit) {
  // " " -> "▁" triples a run of spaces (the real growth of Llama-2's normalizer): allowed.
  json config = testing::ByteLevelTokenizerJson();
  config["normalizer"] = {
      {"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}};
  std::unique_ptr<HfTokenizer> tokenizer = ParseOrDie(config.dump(), "tokenizer.json");
  ASSERT_NE(tokenizer, nullptr);
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer->Encode(std::string(100000, ' '), false);
  ASSERT_TRUE(ids.ok()) << ids.status();
  std::vector<int32_t> expected;
  for (int i = 0; i < 100000; ++i) expected.insert(expected.end(), {0xE2, 0x96, 0x81});
  EXPECT_EQ(*ids, expected);
}

TEST(TokenizerLimitsTest, ChainedReplaceDecodersCannotBlowUpTheText) {
  json config = testing::ByteLevelTokenizerJson();
  config["decoder"] = GrowingReplaceRules("decoders");
  std::unique_ptr<HfTokenizer> tokenizer = ParseOrDie(config.dump(), "tokenizer.json");
  ASSERT_NE(tokenizer, nullptr);
  absl::StatusOr<std::string> text = tokenizer->Decode(std::vector<int32_t>(1000, 'a'), false);
  ASSERT_FALSE(text.ok());
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(text.status().message()), HasSubstr("limit of 20096 bytes"));
}

TEST(TokenizerLimitsTest, IncrementalDetokenizerReportsADecoderLimitInsteadOfAborting) {
  // Ten rules that each make 16 "a" of one: the window of one token (limit 16 + 4,096 bytes)
  // fails at the fourth rule (65,536 bytes). Append used to ZZ_CHECK the Decode.
  json config = testing::ByteLevelTokenizerJson();
  config["decoder"] = GrowingReplaceRules("decoders", std::string(16, 'a'));
  std::unique_ptr<HfTokenizer> tokenizer = ParseOrDie(config.dump(), "tokenizer.json");
  ASSERT_NE(tokenizer, nullptr);
  IncrementalDetokenizer detokenizer(*tokenizer, {}, false);
  absl::StatusOr<std::string> text = detokenizer.Append('a');
  ASSERT_FALSE(text.ok());
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(text.status().message()), HasSubstr("limit of 4112 bytes"));
  // Ids without an "a" still stream; the refused id was not kept.
  EXPECT_EQ(*detokenizer.Append('b'), "b");
  EXPECT_EQ(detokenizer.Flush(), "");
  EXPECT_EQ(detokenizer.text(), "b");
}

}  // namespace
}  // namespace zigzag
