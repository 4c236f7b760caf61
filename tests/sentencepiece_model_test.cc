// Tests of our SentencePiece reader and BPE tokenizer (core/tokenizer/sentencepiece_model.h,
// sentencepiece_tokenizer.h) against Debian's spm_train / spm_encode / spm_decode (package
// sentencepiece), an independent implementation run as separate processes: tiny BPE models are
// trained on a corpus written here, then ids and decoded text must match on every line.
// Also: a hand-written model file (unknown fields, proto2 defaults), errors and corrupt files.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/tokenizer/sentencepiece_model.h"
#include "core/tokenizer/sentencepiece_tokenizer.h"
#include "core/tokenizer/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_support.h"

namespace zigzag {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// A small deterministic generator (independent of the standard library's distributions).
class Lcg {
 public:
  explicit Lcg(uint64_t seed) : state_(seed) {}
  uint32_t Next(uint32_t bound) {
    state_ = state_ * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<uint32_t>(state_ >> 33) % bound;
  }

 private:
  uint64_t state_;
};

constexpr const char* kSyllables[] = {
    "ka",  "to", "ri",  "mu",  "sen",  "dal", "qui", "ver", "lo",  "pa",  "zé",  "nö", "tra",
    "bel", "ch", "ing", "ion", "ment", "str", "ful", "are", "ous", "ки",  "но",  "λο", "γο",
    "ten", "xy", "山",  "川",  "語",   "本",  "ga",  "ne",  "wo",  "rth", "ies", "ed"};

// Training text: prose, accents, Greek/Cyrillic, CJK, emoji, digits, whitespace runs and code.
std::vector<std::string> CorpusLines() {
  const std::vector<std::string> words = {
      "the",     "quick",    "brown",     "fox",      "jumps",      "over",
      "lazy",    "dog",      "and",       "then",     "runs",       "away",
      "from",    "model",    "server",    "token",    "stream",     "café",
      "naïve",   "résumé",   "Ünïcödé",   "élan",     "façade",     "Ελληνικά",
      "русский", "язык",     "日本語",    "東京",     "中文",       "字符",
      "한국어",  "😀",        "🎉",         "👍🏽", "🇫🇷",         "👨‍👩‍👧",
      "int",     "main()",   "{",         "}",        "return",     "0;",
      "x->y",    "#include", "<stdio.h>", "def",      "f(x):",      "\"quoted\"",
      "a\\b",    "for",      "(i = 0;",   "i < n;",   "++i)",       "==",
      "!=",      "&&",       "12345",     "3.14159",  "2024-01-01", "$100",
      "50%",     "0x1F",     "1e-9"};
  Lcg rng(20240611);
  std::vector<std::string> lines;
  for (int i = 0; i < 1500; ++i) {
    std::string line;
    if (rng.Next(10) == 0) line += std::string(1 + rng.Next(3), ' ');
    if (rng.Next(25) == 0) line += "\t";
    const int n = 1 + static_cast<int>(rng.Next(14));
    for (int w = 0; w < n; ++w) {
      if (w > 0) line += rng.Next(12) == 0 ? std::string(2 + rng.Next(3), ' ') : " ";
      if (rng.Next(8) == 0) {
        line += std::to_string(rng.Next(100000));
      } else if (rng.Next(3) == 0) {
        // Made-up words, so that there is plenty to merge.
        const int syllables = 2 + static_cast<int>(rng.Next(3));
        for (int k = 0; k < syllables; ++k) {
          line += kSyllables[rng.Next(static_cast<uint32_t>(std::size(kSyllables)))];
        }
      } else {
        line += words[rng.Next(static_cast<uint32_t>(words.size()))];
      }
    }
    if (rng.Next(10) == 0) line += std::string(1 + rng.Next(3), ' ');
    lines.push_back(line);
  }
  // Characters seen once or twice: below character_coverage, so unknown or byte fallback.
  lines.push_back("rare: Ω ≈ √ ∫ 🦩");
  lines.push_back("ｆｕｌｌｗｉｄｔｈ ＡＢＣ１２３ ﬁ ① e\u0301");
  return lines;
}

// Lines to compare on: the corpus plus text the models have not seen and whitespace edge cases.
std::vector<std::string> TestLines() {
  std::vector<std::string> lines = CorpusLines();
  const std::vector<std::string> extra = {
      "",
      " ",
      "   ",
      "a",
      " leading space",
      "   three leading spaces",
      "trailing spaces   ",
      "a  b   c    d",
      "\tTabs\tand  spaces \t mixed",
      "unseen: Ω≈ç√∫ 🦩🦩 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 हिन्दी "
      "العربية",
      "combining e\u0301 and precomposed é",
      "ｆｕｌｌｗｉｄｔｈ ＡＢＣ１２３ ﬁ ① ㎏",
      "\u2581 a literal marker \u2581\u2581 and U+2581",
      "<s> </s> <unk> <0x41> are plain text here",
      "int main() { return 0; }  // the end",
      "🇫🇷🇫🇷👨‍👩‍👧👍🏽😀🎉",
      "1234567890 3.14159265358979 $1,000,000.00",
      "x",
      "日本語のテキスト、東京タワー。",
  };
  lines.insert(lines.end(), extra.begin(), extra.end());
  return lines;
}

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string JoinLines(const std::vector<std::string>& lines) {
  std::string text;
  for (const std::string& line : lines) text += line + "\n";
  return text;
}

std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<std::vector<int32_t>> ParseIds(const std::string& text) {
  std::vector<std::vector<int32_t>> rows;
  for (const std::string& line : SplitLines(text)) {
    std::vector<int32_t> ids;
    std::istringstream numbers(line);
    for (int32_t id; numbers >> id;) ids.push_back(id);
    rows.push_back(ids);
  }
  return rows;
}

std::string IdsText(const std::vector<std::vector<int32_t>>& rows) {
  std::string text;
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) absl::StrAppend(&text, i ? " " : "", row[i]);
    text += "\n";
  }
  return text;
}

// Runs `tool args < input > output` and returns the output; fails the test on a non-zero exit.
std::string RunTool(const std::string& tool, const std::string& args, const std::string& input,
                    const fs::path& dir) {
  const fs::path in = dir / "tool_input.txt";
  const fs::path out = dir / "tool_output.txt";
  testing::WriteFile(in, input);
  const std::string command = tool + " " + args + " < " + ShellQuote(in.string()) + " > " +
                              ShellQuote(out.string()) + " 2> " +
                              ShellQuote((dir / "tool_stderr.txt").string());
  const int rc = std::system(command.c_str());
  EXPECT_EQ(rc, 0) << command << "\n" << testing::ReadFile(dir / "tool_stderr.txt");
  return rc == 0 ? testing::ReadFile(out) : std::string();
}

const fs::path& WorkDir() {
  static const fs::path* dir = new fs::path(testing::MakeTempDir("spm-model-test"));
  return *dir;
}

const fs::path& CorpusPath() {
  static const fs::path* path = [] {
    auto* p = new fs::path(WorkDir() / "corpus.txt");
    testing::WriteFile(*p, JoinLines(CorpusLines()));
    return p;
  }();
  return *path;
}

// Trains WorkDir()/NAME.model with spm_train (BPE, one thread, deterministic).
fs::path Train(const std::string& name, const std::string& flags) {
  const fs::path prefix = WorkDir() / name;
  const fs::path model = prefix.string() + ".model";
  if (fs::exists(model)) return model;
  const std::string command = "spm_train --input=" + ShellQuote(CorpusPath().string()) +
                              " --model_prefix=" + ShellQuote(prefix.string()) +
                              " --num_threads=1 --minloglevel=2 " + flags + " > " +
                              ShellQuote(prefix.string() + ".log") + " 2>&1";
  const int rc = std::system(command.c_str());
  EXPECT_EQ(rc, 0) << command << "\n"
                   << testing::ReadFile(prefix.string() + ".log")
                   << "\n(spm_train comes with Debian's package 'sentencepiece')";
  return model;
}

std::unique_ptr<SentencePieceTokenizer> LoadOrDie(const fs::path& model) {
  absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> tokenizer =
      SentencePieceTokenizer::Load(model.string());
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? std::move(*tokenizer) : nullptr;
}

// Our Encode and Decode against spm_encode / spm_decode on `lines`; returns the reference ids.
std::vector<std::vector<int32_t>> ExpectMatchesSpm(const fs::path& model,
                                                   const std::vector<std::string>& lines) {
  std::unique_ptr<SentencePieceTokenizer> tokenizer = LoadOrDie(model);
  if (tokenizer == nullptr) return {};
  const std::string model_flag = "--model=" + ShellQuote(model.string());
  const std::vector<std::vector<int32_t>> expected = ParseIds(
      RunTool("spm_encode", model_flag + " --output_format=id", JoinLines(lines), WorkDir()));
  EXPECT_EQ(expected.size(), lines.size());
  if (expected.size() != lines.size()) return {};
  int mismatches = 0;
  for (size_t i = 0; i < lines.size() && mismatches < 10; ++i) {
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer->Encode(lines[i], false);
    EXPECT_TRUE(ids.ok()) << ids.status();
    if (!ids.ok()) return {};
    if (*ids != expected[i]) ++mismatches;
    EXPECT_EQ(*ids, expected[i]) << model.filename() << " line " << i << ": '" << lines[i]
                                 << "'\nnormalized: '" << tokenizer->Normalize(lines[i]) << "'";
  }
  const std::vector<std::string> decoded = SplitLines(
      RunTool("spm_decode", model_flag + " --input_format=id", IdsText(expected), WorkDir()));
  EXPECT_EQ(decoded.size(), lines.size());
  for (size_t i = 0; i < decoded.size() && i < lines.size(); ++i) {
    EXPECT_EQ(*tokenizer->Decode(expected[i], true), decoded[i])
        << model.filename() << " line " << i << ": '" << lines[i] << "'";
  }
  return expected;
}

// Random id sequences (byte pieces, control and unknown tokens, "▁" pieces in any order) decoded
// by us and by spm_decode. Bytes 0x0A and 0x0D are left out: spm_decode's output is line-based.
void ExpectRandomDecodeMatchesSpm(const fs::path& model, uint64_t seed) {
  std::unique_ptr<SentencePieceTokenizer> tokenizer = LoadOrDie(model);
  if (tokenizer == nullptr) return;
  const std::optional<int32_t> newline = tokenizer->TokenToId("<0x0A>");
  const std::optional<int32_t> carriage_return = tokenizer->TokenToId("<0x0D>");
  Lcg rng(seed);
  std::vector<std::vector<int32_t>> rows;
  for (int r = 0; r < 300; ++r) {
    std::vector<int32_t> row;
    const int n = static_cast<int>(rng.Next(8));
    for (int k = 0; k < n; ++k) {
      int32_t id = static_cast<int32_t>(rng.Next(static_cast<uint32_t>(tokenizer->vocab_size())));
      if (rng.Next(4) == 0) id = static_cast<int32_t>(rng.Next(8));  // unk, <s>, </s>, ...
      if (id == newline || id == carriage_return) continue;
      row.push_back(id);
    }
    rows.push_back(row);
  }
  const std::vector<std::string> decoded = SplitLines(
      RunTool("spm_decode", "--model=" + ShellQuote(model.string()) + " --input_format=id",
              IdsText(rows), WorkDir()));
  ASSERT_EQ(decoded.size(), rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    std::string pieces;
    for (int32_t id : rows[i]) pieces += *tokenizer->IdToToken(id) + " ";
    EXPECT_EQ(*tokenizer->Decode(rows[i], true), decoded[i]) << "pieces: " << pieces;
  }
}

// Llama-2 / our embedded model: identity normalization, whitespace kept, byte fallback.
constexpr char kLlamaFlags[] =
    "--model_type=bpe --vocab_size=1000 --byte_fallback=true --split_digits=true "
    "--character_coverage=0.995 --normalization_rule_name=identity "
    "--remove_extra_whitespaces=false";

TEST(SentencePieceModelTest, LlamaStyleByteFallbackMatchesSpm) {
  const fs::path model = Train("llama_style_1000", kLlamaFlags);
  ExpectMatchesSpm(model, TestLines());
  ExpectRandomDecodeMatchesSpm(model, 1);
}

TEST(SentencePieceModelTest, LlamaStyleRoundTripsAndSpecialTokens) {
  std::unique_ptr<SentencePieceTokenizer> tokenizer =
      LoadOrDie(Train("llama_style_1000", kLlamaFlags));
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->vocab_size(), 1000);
  EXPECT_EQ(tokenizer->model_bos_id(), 1);
  EXPECT_EQ(tokenizer->model_eos_id(), 2);
  EXPECT_EQ(tokenizer->model_pad_id(), std::nullopt);
  EXPECT_TRUE(tokenizer->IsSpecial(1));
  EXPECT_FALSE(tokenizer->IsSpecial(0));
  EXPECT_FALSE(tokenizer->IsSpecial(tokenizer->vocab_size()));
  EXPECT_EQ(tokenizer->TokenToId("<s>"), 1);
  EXPECT_EQ(tokenizer->TokenToId("<0x41>"), 3 + 0x41);
  EXPECT_EQ(tokenizer->TokenToId("no such piece"), std::nullopt);
  EXPECT_EQ(tokenizer->IdToToken(0), "<unk>");
  EXPECT_EQ(tokenizer->IdToToken(-1), std::nullopt);
  for (const std::string& line : TestLines()) {
    // A literal "▁" in the text decodes as a space, as in SentencePiece.
    if (line.find("\u2581") != std::string::npos) continue;
    const std::vector<int32_t> ids = *tokenizer->Encode(line, false);
    EXPECT_EQ(*tokenizer->Decode(ids, true), line);
    std::vector<int32_t> with_bos = {1};
    with_bos.insert(with_bos.end(), ids.begin(), ids.end());
    with_bos.push_back(2);
    EXPECT_EQ(*tokenizer->Decode(with_bos, true), line);
    EXPECT_EQ(*tokenizer->Decode(with_bos, false),
              "<s>" + (line.empty() ? "" : " " + line) + "</s>");
  }
  // A 200K-character prompt: the same ids as spm_encode, in well under a second per call.
  std::string long_text;
  const std::vector<std::string> lines = CorpusLines();
  for (size_t i = 0; long_text.size() < 200000; ++i) long_text += lines[i % lines.size()] + " ";
  const auto start = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = *tokenizer->Encode(long_text, false);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 5.0);
  const std::vector<std::vector<int32_t>> expected =
      ParseIds(RunTool("spm_encode",
                       "--model=" + ShellQuote((WorkDir() / "llama_style_1000.model").string()) +
                           " --output_format=id",
                       long_text + "\n", WorkDir()));
  ASSERT_EQ(expected.size(), 1u);
  EXPECT_EQ(ids, expected[0]);
  EXPECT_EQ(*tokenizer->Decode(ids, true), long_text);
}

TEST(SentencePieceModelTest, SmallVocabWithoutByteFallbackMatchesSpm) {
  // Default whitespace handling (collapse runs, strip ends); rare characters are unknown.
  const fs::path model = Train("small_300",
                               "--model_type=bpe --vocab_size=300 --character_coverage=0.98 "
                               "--normalization_rule_name=identity");
  ExpectMatchesSpm(model, TestLines());
  ExpectRandomDecodeMatchesSpm(model, 2);
  std::unique_ptr<SentencePieceTokenizer> tokenizer = LoadOrDie(model);
  ASSERT_NE(tokenizer, nullptr);
  // A run of unknown characters is one unknown token, decoded as " ⁇ ".
  const std::vector<int32_t> ids = *tokenizer->Encode("Ω≈√", false);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 0), 1);
  EXPECT_EQ(*tokenizer->Decode({0}, true), " \xE2\x81\x87 ");
}

TEST(SentencePieceModelTest, ByteFallbackWithDefaultWhitespaceMatchesSpm) {
  const fs::path model = Train("fallback_600",
                               "--model_type=bpe --vocab_size=600 --byte_fallback=true "
                               "--character_coverage=0.99 --normalization_rule_name=identity");
  ExpectMatchesSpm(model, TestLines());
  ExpectRandomDecodeMatchesSpm(model, 3);
}

TEST(SentencePieceModelTest, NoDummyPrefixMatchesSpm) {
  for (const char* remove : {"true", "false"}) {
    const fs::path model = Train(std::string("no_dummy_") + remove,
                                 std::string("--model_type=bpe --vocab_size=400 "
                                             "--normalization_rule_name=identity "
                                             "--add_dummy_prefix=false --byte_fallback=true "
                                             "--remove_extra_whitespaces=") +
                                     remove);
    ExpectMatchesSpm(model, TestLines());
    ExpectRandomDecodeMatchesSpm(model, 4);
  }
}

TEST(SentencePieceModelTest, WhitespaceAsSuffixMatchesSpm) {
  for (const char* remove : {"true", "false"}) {
    const fs::path model =
        Train(std::string("suffix_") + remove, std::string("--model_type=bpe --vocab_size=500 "
                                                           "--normalization_rule_name=identity "
                                                           "--treat_whitespace_as_suffix=true "
                                                           "--remove_extra_whitespaces=") +
                                                   remove);
    ExpectMatchesSpm(model, TestLines());
    ExpectRandomDecodeMatchesSpm(model, 5);
  }
}

TEST(SentencePieceModelTest, UserDefinedAndControlSymbolsMatchSpm) {
  const fs::path model = Train("user_defined",
                               "--model_type=bpe --vocab_size=500 --byte_fallback=true "
                               "--normalization_rule_name=identity "
                               "--remove_extra_whitespaces=false "
                               "--user_defined_symbols=" +
                                   ShellQuote("<tool>,@@,quick,東京") +
                                   " --control_symbols=" + ShellQuote("<ctrl>,<|im_end|>"));
  std::vector<std::string> lines = TestLines();
  lines.push_back("<tool>call<tool> @@@@@ quickquick <ctrl> <|im_end|> 東京東京");
  ExpectMatchesSpm(model, lines);
  ExpectRandomDecodeMatchesSpm(model, 6);
  std::unique_ptr<SentencePieceTokenizer> tokenizer = LoadOrDie(model);
  ASSERT_NE(tokenizer, nullptr);
  const std::optional<int32_t> ctrl = tokenizer->TokenToId("<ctrl>");
  ASSERT_TRUE(ctrl.has_value());
  EXPECT_TRUE(tokenizer->IsSpecial(*ctrl));
  EXPECT_FALSE(tokenizer->IsSpecial(*tokenizer->TokenToId("<tool>")));
}

TEST(SentencePieceModelTest, NfkcNormalizationMatchesSpm) {
  // spm_train's default normalization (nmt_nfkc, a precompiled character map) and its
  // case-folding variant.
  for (const char* rule : {"nmt_nfkc", "nfkc_cf"}) {
    const fs::path model = Train(std::string("nfkc_") + rule,
                                 std::string("--model_type=bpe --vocab_size=600 "
                                             "--byte_fallback=true --normalization_rule_name=") +
                                     rule);
    ExpectMatchesSpm(model, TestLines());
    ExpectRandomDecodeMatchesSpm(model, 7);
  }
}

TEST(SentencePieceModelTest, EmbeddedModelMatchesSpmWhenPresent) {
  const fs::path model =
      fs::path(__FILE__).parent_path().parent_path() / "models" / "zigzag-tiny" / "tokenizer.model";
  if (!fs::exists(model)) GTEST_SKIP() << model << " is absent";
  ExpectMatchesSpm(model, TestLines());
  ExpectRandomDecodeMatchesSpm(model, 8);
}

TEST(SentencePieceModelTest, LoadTokenizerUsesTheModel) {
  const fs::path dir = testing::MakeTempDir("spm-load");
  testing::WriteFile(dir / "tokenizer.model",
                     testing::ReadFile(Train("llama_style_1000", kLlamaFlags)));
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = LoadTokenizer(dir.string());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->special_tokens().bos_id, 1);
  EXPECT_TRUE((*tokenizer)->special_tokens().add_bos);
  const std::vector<int32_t> ids = *(*tokenizer)->Encode("hello world", true);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(*(*tokenizer)->Decode(ids, true), "hello world");
}

TEST(SentencePieceModelTest, InvalidInputIsRejected) {
  std::unique_ptr<SentencePieceTokenizer> tokenizer =
      LoadOrDie(Train("llama_style_1000", kLlamaFlags));
  ASSERT_NE(tokenizer, nullptr);
  const absl::StatusOr<std::vector<int32_t>> bad = tokenizer->Encode("ok \xC3(", false);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("byte offset 3"));
  for (int32_t id : {-1, tokenizer->vocab_size()}) {
    const absl::StatusOr<std::string> text = tokenizer->Decode({5, id}, false);
    EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument) << id;
  }
}

// Protobuf wire-format writer for hand-made model files.
std::string Varint(uint64_t value) {
  std::string out;
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
  return out;
}
std::string Tag(uint32_t field, uint32_t wire_type) { return Varint((field << 3) | wire_type); }
std::string Bytes(uint32_t field, const std::string& payload) {
  return Tag(field, 2) + Varint(payload.size()) + payload;
}
std::string VarintField(uint32_t field, uint64_t value) { return Tag(field, 0) + Varint(value); }
std::string Fixed32Field(uint32_t field, float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  std::string out = Tag(field, 5);
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((bits >> (8 * i)) & 0xFF));
  return out;
}
std::string Piece(const std::string& text, float score, int type) {
  // Unknown fields of every wire type in between, which must be skipped.
  return Bytes(1, text) + VarintField(9, 12345) + Fixed32Field(2, score) + Tag(10, 1) +
         std::string(8, '\x07') + (type == 1 ? "" : VarintField(3, type));
}

std::string HandMadeModel() {
  std::string model;
  model += Bytes(1, Piece("<unk>", 0, 2));
  model += Bytes(1, Piece("<s>", 0, 3));
  model += Bytes(1, Piece("</s>", 0, 3));
  model += Bytes(1, Piece("ab", 10, 5));  // UNUSED: merged, then split back
  model += Bytes(1, Piece("bc", 5, 1));
  model += Bytes(1, Piece("\u2581a", 4, 1));
  model += Bytes(1, Piece("\u2581", -1, 1));
  model += Bytes(1, Piece("a", -2, 1));
  model += Bytes(1, Piece("b", -3, 1));
  model += Bytes(1, Piece("c", -4, 1));
  // A group (wire types 3/4) with a nested field, then the trainer spec: BPE.
  model += Tag(99, 3) + VarintField(1, 7) + Tag(99, 4);
  model += Bytes(2, VarintField(3, 2) + Bytes(100, "unknown string") + VarintField(41, 1));
  // No normalizer spec: proto2 defaults (dummy prefix, collapse whitespace, escape).
  return model;
}

TEST(SentencePieceModelTest, HandMadeModelSkipsUnknownFieldsAndUsesDefaults) {
  const std::string bytes = HandMadeModel();
  const absl::StatusOr<SentencePieceModel> model = ParseSentencePieceModel(bytes);
  ASSERT_TRUE(model.ok()) << model.status();
  ASSERT_EQ(model->pieces.size(), 10u);
  EXPECT_EQ(model->pieces[3].piece, "ab");
  EXPECT_EQ(model->pieces[3].type, SentencePieceModel::PieceType::kUnused);
  EXPECT_FLOAT_EQ(model->pieces[4].score, 5.0f);
  EXPECT_EQ(model->model_type, SentencePieceModel::ModelType::kBpe);
  EXPECT_TRUE(model->add_dummy_prefix);
  EXPECT_TRUE(model->remove_extra_whitespaces);
  EXPECT_TRUE(model->escape_whitespaces);
  EXPECT_FALSE(model->byte_fallback);
  EXPECT_EQ(model->unk_surface, " \xE2\x81\x87 ");

  const fs::path path = WorkDir() / "hand_made.model";
  testing::WriteFile(path, bytes);
  std::unique_ptr<SentencePieceTokenizer> tokenizer = LoadOrDie(path);
  ASSERT_NE(tokenizer, nullptr);
  // "▁abc ▁ab": ab (UNUSED, best score) merges first and is split back; bc never gets a chance.
  EXPECT_EQ(*tokenizer->Encode("abc  ab", false), (std::vector<int32_t>{6, 7, 8, 9, 6, 7, 8}));
  EXPECT_EQ(*tokenizer->Encode(" a xyz", false), (std::vector<int32_t>{5, 6, 0}));
  // spm_encode/spm_decode read the same file the same way.
  ExpectMatchesSpm(path, {"abc  ab", " a xyz", "bcbc abab", "", "cab"});
}

TEST(SentencePieceModelTest, CorruptModelsAreRejected) {
  const std::string good = testing::ReadFile(Train("llama_style_1000", kLlamaFlags));
  ASSERT_GT(good.size(), 1000u);
  const fs::path dir = testing::MakeTempDir("spm-corrupt");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"truncated.model", good.substr(0, good.size() / 2 + 3)},
      {"truncated_end.model", good.substr(0, good.size() - 1)},
      {"garbage.model", "this is not a SentencePiece model at all"},
      {"empty.model", ""},
      {"bad_length.model", Tag(1, 2) + Varint(1000000) + "short"},
      {"no_unk.model", Bytes(1, Piece("a", 0, 1)) + Bytes(2, VarintField(3, 2))},
      {"duplicate.model", Bytes(1, Piece("<unk>", 0, 2)) + Bytes(1, Piece("a", 0, 1)) +
                              Bytes(1, Piece("a", 0, 1)) + Bytes(2, VarintField(3, 2))},
      {"bad_piece_type.model", Bytes(1, Piece("<unk>", 0, 9)) + Bytes(2, VarintField(3, 2))},
  };
  for (const auto& [name, bytes] : cases) {
    const fs::path path = dir / name;
    testing::WriteFile(path, bytes);
    const absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> tokenizer =
        SentencePieceTokenizer::Load(path.string());
    ASSERT_FALSE(tokenizer.ok()) << name;
    EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument)
        << name << ": " << tokenizer.status();
    EXPECT_THAT(tokenizer.status().message(), HasSubstr(path.string())) << name;
  }
  const absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> missing =
      SentencePieceTokenizer::Load((dir / "missing.model").string());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound) << missing.status();
  EXPECT_THAT(missing.status().message(), HasSubstr("missing.model"));
}

TEST(SentencePieceModelTest, UnigramModelsAreRejected) {
  const fs::path model = Train("unigram",
                               "--model_type=unigram --vocab_size=300 "
                               "--normalization_rule_name=identity");
  const absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> tokenizer =
      SentencePieceTokenizer::Load(model.string());
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tokenizer.status().message(), HasSubstr("UNIGRAM"));
  EXPECT_THAT(tokenizer.status().message(), HasSubstr(model.string()));
}

}  // namespace
}  // namespace zigzag
