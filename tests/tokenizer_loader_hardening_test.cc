// Malformed tokenizer files (issue 11, item 8): every wrong type, out-of-range id, over-deep
// nesting or over-long chain in tokenizer.json, tokenizer_config.json, generation_config.json or
// config.json, and every malformed tokenizer.model, gives a Status whose message names the file
// and the key; none crashes, throws or allocates by a hostile number.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/tokenizer/hf_tokenizer.h"
#include "core/tokenizer/sentencepiece_model.h"
#include "core/tokenizer/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/test_support.h"

namespace zigzag {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::HasSubstr;

constexpr const char* kSource = "/models/t/tokenizer.json";

// A tokenizer.json that uses every field our loader reads (each normalizer, pre-tokenizer and
// decoder type with its options, added tokens, a TemplateProcessing post-processor) and parses.
const char* kFullTokenizerJson = R"({
  "version": "1.0",
  "added_tokens": [{"id": 4, "content": "<s>", "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false, "special": true}],
  "normalizer": {"type": "Sequence", "normalizers": [
    {"type": "Prepend", "prepend": "_"},
    {"type": "Replace", "pattern": {"String": " "}, "content": "_"},
    {"type": "Strip", "left": true, "right": false},
    {"type": "NFC"}]},
  "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Isolated", "invert": false},
    {"type": "Digits", "individual_digits": true},
    {"type": "Metaspace", "replacement": "_", "prepend_scheme": "first", "split": true},
    {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}]},
  "post_processor": {"type": "Sequence", "processors": [
    {"type": "TemplateProcessing",
     "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}}],
     "special_tokens": {"<s>": {"id": "<s>", "ids": [4], "tokens": ["<s>"]}}}]},
  "decoder": {"type": "Sequence", "decoders": [
    {"type": "Replace", "pattern": {"String": "_"}, "content": " "},
    {"type": "ByteFallback"},
    {"type": "Fuse"},
    {"type": "Strip", "content": " ", "start": 1, "stop": 0},
    {"type": "Metaspace", "replacement": "_", "add_prefix_space": true,
     "prepend_scheme": "always"}]},
  "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>",
            "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
            "byte_fallback": false, "ignore_merges": false,
            "vocab": {"<unk>": 0, "a": 1, "b": 2, "ab": 3}, "merges": ["a b"]}
})";

absl::Status ParseError(const std::string& text) {
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tokenizer = HfTokenizer::Parse(text, kSource);
  EXPECT_FALSE(tokenizer.ok()) << "parsed a malformed tokenizer.json";
  return tokenizer.ok() ? absl::OkStatus() : tokenizer.status();
}

// A value of another JSON type than `value` (and not null, which means "absent").
json OtherType(const json& value) {
  if (value.is_string()) return 7;
  if (value.is_boolean()) return "yes";
  if (value.is_number()) return "7";
  if (value.is_object()) return json::array({1});
  if (value.is_array()) return json{{"x", 1}};
  return json::object();  // null: where a string, number or bool may be
}

// "/model/merges/0" -> "model.merges[0]": the key path our errors print.
std::string KeyPath(const json::json_pointer& pointer) {
  std::string path;
  json::json_pointer rest = pointer;
  std::vector<std::string> tokens;
  while (!rest.empty()) {
    tokens.insert(tokens.begin(), rest.back());
    rest.pop_back();
  }
  for (const std::string& token : tokens) {
    const bool index = !token.empty() && token.find_first_not_of("0123456789") == std::string::npos;
    if (index) {
      path += "[" + token + "]";
    } else {
      path += (path.empty() ? "" : ".") + token;
    }
  }
  return path;
}

// Every value in `doc` (but the root), depth first.
void ForEachValue(const json& doc, const json::json_pointer& at,
                  const std::function<void(const json::json_pointer&)>& visit) {
  if (!at.empty()) visit(at);
  const json& value = doc.at(at);
  if (value.is_object()) {
    for (const auto& [key, child] : value.items()) ForEachValue(doc, at / key, visit);
  } else if (value.is_array()) {
    for (size_t i = 0; i < value.size(); ++i) ForEachValue(doc, at / i, visit);
  }
}

TEST(TokenizerJsonHardeningTest, TheFullDocumentParses) {
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tokenizer =
      HfTokenizer::Parse(kFullTokenizerJson, kSource);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->vocab_size(), 5);
  EXPECT_EQ((*tokenizer)->template_bos(), 4);
}

TEST(TokenizerJsonHardeningTest, EveryFieldOfTheWrongTypeIsInvalidArgumentNamingIt) {
  const json base = json::parse(kFullTokenizerJson);
  // Read for their presence only, or not at all (as Hugging Face's own loader ignores them).
  const std::vector<std::string> unread = {
      "/version", "/post_processor/processors/0/single/0/SpecialToken/type_id",
      "/post_processor/processors/0/single/1/Sequence",
      "/post_processor/processors/0/special_tokens/<s>/id",
      "/post_processor/processors/0/special_tokens/<s>/tokens"};
  int checked = 0;
  ForEachValue(base, json::json_pointer(), [&](const json::json_pointer& pointer) {
    const std::string where = pointer.to_string();
    for (const std::string& prefix : unread) {
      if (where.rfind(prefix, 0) == 0) return;
    }
    json doc = base;
    doc.at(pointer) = OtherType(base.at(pointer));
    const absl::Status status = ParseError(doc.dump());
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << where << ": " << status;
    EXPECT_THAT(std::string(status.message()),
                HasSubstr(std::string(kSource) + ": field '" + KeyPath(pointer) + "'"))
        << where;
    ++checked;
  });
  EXPECT_GT(checked, 70);
}

TEST(TokenizerJsonHardeningTest, IdsOutsideTheLimitAreRejectedBeforeAnyTableIsSized) {
  json doc = json::parse(kFullTokenizerJson);
  // INT_MAX used to overflow `id + 1`; 999,999,999 asked for a 32 GB table.
  for (const int64_t id :
       {int64_t{2147483647}, int64_t{999999999}, int64_t{4194304}, int64_t{-1}}) {
    doc["model"]["vocab"]["b"] = id;
    absl::Status status = ParseError(doc.dump());
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(status.message()),
                HasSubstr(std::string(kSource) +
                          ": field 'model.vocab.b' must be an integer in [0, 4194303], got"));
    doc["model"]["vocab"]["b"] = 2;
    doc["added_tokens"][0]["id"] = id;
    status = ParseError(doc.dump());
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(status.message()),
                HasSubstr("field 'added_tokens[0].id' must be an integer in [0, 4194303]"));
    doc["added_tokens"][0]["id"] = 4;
  }
}

TEST(TokenizerJsonHardeningTest, SparseIdsAreRejectedTheTableIsSizedByTheEntries) {
  // Five tokens cannot claim a 4M-entry table: at most 2 x 5 + 1024 ids.
  json doc = json::parse(kFullTokenizerJson);
  doc["model"]["vocab"]["ab"] = 4000000;
  doc["model"]["merges"] = json::array();
  absl::Status status = ParseError(doc.dump());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(
      std::string(status.message()),
      HasSubstr(std::string(kSource) +
                ": field 'model.vocab.ab' is 4000000, but the tokenizer has only 5 tokens"));
  doc["model"]["vocab"]["ab"] = 3;
  doc["added_tokens"][0]["id"] = 1034;  // 2 x 5 + 1024 = 1034 ids: one too many
  status = ParseError(doc.dump());
  EXPECT_THAT(std::string(status.message()), HasSubstr("field 'added_tokens[0].id' is 1034"));
  doc["added_tokens"][0]["id"] = 1033;
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tokenizer = HfTokenizer::Parse(doc.dump(), kSource);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->vocab_size(), 1034);
}

TEST(TokenizerJsonHardeningTest, TwentyThousandNestedNormalizersAreRejectedByDepth) {
  // Sequence inside Sequence 20,000 times used to recurse through the parser (and dump()).
  std::string nested = R"({"type": "NFC"})";
  std::string text;
  for (int i = 0; i < 20000; ++i) text += R"({"type": "Sequence", "normalizers": [)";
  text += nested;
  for (int i = 0; i < 20000; ++i) text += "]}";
  json doc = json::parse(kFullTokenizerJson);
  doc.erase("normalizer");
  std::string full = doc.dump();
  full.insert(1, "\"normalizer\": " + text + ", ");
  const absl::Status status = ParseError(full);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(
      std::string(status.message()),
      HasSubstr(std::string(kSource) + ": field 'normalizer.normalizers[0].normalizers[0]"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("is nested deeper than 64 levels"));
}

TEST(TokenizerJsonHardeningTest, HugeStripCountIsAnIntegerOutOfRangeNotAnOverflow) {
  json doc = json::parse(kFullTokenizerJson);
  doc["decoder"]["decoders"][3]["start"] = 1e10;
  absl::Status status = ParseError(doc.dump());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr(std::string(kSource) +
                        ": field 'decoder.decoders[3].start' must be an integer in [0, "
                        "2147483647], got a number 10000000000.0"));
  doc["decoder"]["decoders"][3]["start"] = 10000000000;
  status = ParseError(doc.dump());
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("field 'decoder.decoders[3].start' must be an integer in [0, 2147483647], "
                        "got an integer 10000000000"));
}

TEST(TokenizerJsonHardeningTest, BadRegexUnknownTypesAndLongChainsNameTheirKey) {
  json doc = json::parse(kFullTokenizerJson);
  doc["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
  absl::Status status = ParseError(doc.dump());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("field 'pre_tokenizer.pretokenizers[0].pattern.Regex' cannot compile regex "
                        "'(unclosed': U_REGEX_MISMATCHED_PAREN"));

  doc = json::parse(kFullTokenizerJson);
  doc["normalizer"]["normalizers"][3]["type"] = "BertNormalizer";
  status = ParseError(doc.dump());
  EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("field 'normalizer.normalizers[3].type' names normalizer type "
                        "'BertNormalizer', which is not supported"));

  doc = json::parse(kFullTokenizerJson);
  doc["model"]["type"] = "WordPiece";
  status = ParseError(doc.dump());
  EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(status.message()), HasSubstr("field 'model.type' is 'WordPiece'"));

  // Metaspace turns every space into its replacement: it must be one character.
  doc = json::parse(kFullTokenizerJson);
  doc["pre_tokenizer"]["pretokenizers"][2]["replacement"] = std::string(1000, '_');
  status = ParseError(doc.dump());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("field 'pre_tokenizer.pretokenizers[2].replacement' must be a single "
                        "character"));

  // 65 normalizers: each would be one more pass over every text.
  doc = json::parse(kFullTokenizerJson);
  json many = json::array();
  for (int i = 0; i < 65; ++i) many.push_back({{"type", "NFC"}});
  doc["normalizer"]["normalizers"] = many;
  status = ParseError(doc.dump());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(
      std::string(status.message()),
      HasSubstr("field 'normalizer.normalizers' has 65 elements, more than the limit of 64"));
}

TEST(TokenizerJsonHardeningTest, NotJsonAndNotAnObjectAreInvalidArgument) {
  EXPECT_THAT(std::string(ParseError("{\"model\": ").message()),
              HasSubstr(std::string(kSource) + ": invalid JSON"));
  EXPECT_THAT(std::string(ParseError("[1]").message()),
              HasSubstr(std::string(kSource) + ": expected a JSON object at top level"));
  EXPECT_THAT(std::string(ParseError("{}").message()),
              HasSubstr(std::string(kSource) + ": field 'model' is required but missing"));
}

// The config files LoadTokenizer reads
// -------------------------------------------------------------

struct ConfigCase {
  const char* label;
  const char* file;
  std::string contents;
  std::string message;  // after "DIR/FILE: "
};

class TokenizerConfigFilesTest : public ::testing::TestWithParam<ConfigCase> {};

TEST_P(TokenizerConfigFilesTest, MalformedFieldIsInvalidArgumentNamingFileAndKey) {
  const ConfigCase& c = GetParam();
  const fs::path dir = testing::MakeTempDir("tokenizer_configs");
  testing::WriteFile(dir / "tokenizer.json", kFullTokenizerJson);
  testing::WriteFile(dir / c.file, c.contents);
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = LoadTokenizer(dir.string());
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument) << tokenizer.status();
  EXPECT_THAT(std::string(tokenizer.status().message()),
              HasSubstr((dir / c.file).string() + ": " + c.message));
}

std::string DeepObject(const std::string& key, int depth) {
  std::string text;
  for (int i = 0; i < depth; ++i) text += "{\"" + key + "\": ";
  text += "1";
  for (int i = 0; i < depth; ++i) text += "}";
  return text;
}

INSTANTIATE_TEST_SUITE_P(
    Files, TokenizerConfigFilesTest,
    ::testing::Values(
        ConfigCase{"BosNumber", "tokenizer_config.json", R"({"bos_token": 7})",
                   "field 'bos_token' must be a string or {\"content\": string}, got an integer 7"},
        ConfigCase{"BosContentNumber", "tokenizer_config.json", R"({"bos_token": {"content": 5}})",
                   "field 'bos_token.content' must be a string, got an integer 5"},
        ConfigCase{"EosUnknown", "tokenizer_config.json", R"({"eos_token": "<nope>"})",
                   "field 'eos_token' names '<nope>', which is not in the tokenizer's vocabulary"},
        ConfigCase{"AddBosString", "tokenizer_config.json", R"({"add_bos_token": "yes"})",
                   "field 'add_bos_token' must be true or false, got a string \"yes\""},
        ConfigCase{"AddEosNumber", "tokenizer_config.json", R"({"add_eos_token": 1})",
                   "field 'add_eos_token' must be true or false, got an integer 1"},
        ConfigCase{"DeepTokenizerConfig", "tokenizer_config.json", DeepObject("x", 20000),
                   "field 'x.x.x.x"},
        ConfigCase{"EosString", "generation_config.json", R"({"eos_token_id": "2"})",
                   "field 'eos_token_id' must be an integer in [0, 4194303], got a string \"2\""},
        ConfigCase{"EosListItem", "generation_config.json", R"({"eos_token_id": [1, "x"]})",
                   "field 'eos_token_id[1]' must be an integer in [0, 4194303]"},
        ConfigCase{"BosIntMax", "generation_config.json", R"({"bos_token_id": 2147483647})",
                   "field 'bos_token_id' must be an integer in [0, 4194303], got an integer "
                   "2147483647"},
        ConfigCase{"PadFloat", "config.json", R"({"pad_token_id": 1e10})",
                   "field 'pad_token_id' must be an integer in [0, 4194303], got a number"},
        ConfigCase{"DeepConfig", "config.json", DeepObject("rope_scaling", 20000),
                   "field 'rope_scaling.rope_scaling"},
        ConfigCase{"NotAnObject", "generation_config.json", "[1, 2]",
                   "expected a JSON object at top level"}),
    [](const ::testing::TestParamInfo<ConfigCase>& info) { return std::string(info.param.label); });

// tokenizer.model
// ------------------------------------------------------------------------------------

// Protobuf wire format, by hand.
std::string Varint(uint64_t value) {
  std::string out;
  do {
    uint8_t byte = value & 0x7F;
    value >>= 7;
    if (value != 0) byte |= 0x80;
    out.push_back(static_cast<char>(byte));
  } while (value != 0);
  return out;
}
std::string Key(int field, int wire_type) {
  return Varint(static_cast<uint64_t>(field << 3 | wire_type));
}
std::string Bytes(int field, const std::string& payload) {
  return Key(field, 2) + Varint(payload.size()) + payload;
}
std::string Piece(const std::string& text, float score = 0.0f, uint64_t type = 1) {
  std::string fixed(4, '\0');
  std::memcpy(fixed.data(), &score, 4);
  return Bytes(1, Bytes(1, text) + Key(2, 5) + fixed + Key(3, 0) + Varint(type));
}

absl::Status SentencePieceError(const std::string& bytes,
                                const SentencePieceLimits& limits = SentencePieceLimits()) {
  absl::StatusOr<SentencePieceModel> model = ParseSentencePieceModel(bytes, limits);
  EXPECT_FALSE(model.ok()) << "parsed a malformed model";
  if (model.ok()) return absl::OkStatus();
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument) << model.status();
  return model.status();
}

TEST(SentencePieceModelHardeningTest, WellFormedPiecesParse) {
  absl::StatusOr<SentencePieceModel> model =
      ParseSentencePieceModel(Piece("<unk>", 0, 2) + Piece("a", -1.5f) + Piece("b"));
  ASSERT_TRUE(model.ok()) << model.status();
  ASSERT_EQ(model->pieces.size(), 3u);
  EXPECT_EQ(model->pieces[1].piece, "a");
  EXPECT_EQ(model->pieces[1].score, -1.5f);
}

TEST(SentencePieceModelHardeningTest, MalformedModelsNameTheFieldAndOffset) {
  // A piece type of 2^32 + 1 used to wrap to 1 (NORMAL) when cast to int32.
  EXPECT_THAT(std::string(SentencePieceError(Piece("a", 0, (uint64_t{1} << 32) + 1)).message()),
              HasSubstr("pieces[0].type: unknown piece type 4294967297"));
  EXPECT_THAT(std::string(SentencePieceError(Piece("a", std::nanf(""))).message()),
              HasSubstr("pieces[0].score at byte offset"));
  EXPECT_THAT(std::string(SentencePieceError(Piece("a") + Piece(std::string(1025, 'x'))).message()),
              HasSubstr("pieces[1].piece at byte offset 15 is 1025 bytes long, more than the limit "
                        "of 1024"));
  // The tenth byte of a varint may only hold bit 63.
  const std::string overlong = Key(2, 0) + std::string(9, '\xFF') + "\x02";
  EXPECT_THAT(std::string(SentencePieceError(Bytes(2, overlong)).message()),
              HasSubstr("varint overflows 64 bits"));
  EXPECT_THAT(std::string(SentencePieceError(Key(1, 2) + Varint(1000) + "ab").message()),
              HasSubstr("length 1000 runs past the end of the data"));
  // Piece count: a limit of 3 (4M by default) stops the fourth piece before it is stored.
  SentencePieceLimits limits;
  limits.max_pieces = 3;
  const std::string four = Piece("a") + Piece("b") + Piece("c") + Piece("d");
  EXPECT_THAT(std::string(SentencePieceError(four, limits).message()),
              HasSubstr("pieces: more than 3 pieces"));
  EXPECT_TRUE(ParseSentencePieceModel(four.substr(0, four.size() / 4 * 3), limits).ok());
}

TEST(SentencePieceModelHardeningTest, ReadingNamesTheFile) {
  const fs::path dir = testing::MakeTempDir("spm_hardening");
  testing::WriteFile(dir / "tokenizer.model", Piece("a", 0, 9));
  absl::StatusOr<SentencePieceModel> model =
      ReadSentencePieceModel((dir / "tokenizer.model").string());
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(model.status().message()),
              HasSubstr((dir / "tokenizer.model").string() +
                        ": not a valid SentencePiece model: pieces[0].type: unknown piece type 9"));
}

}  // namespace
}  // namespace zigzag
