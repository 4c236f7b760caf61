// core/util/json_fields and read_file: parsing with a nesting limit (and the key path of the
// first container past it), typed field access whose errors name the file and key path, and
// size-capped file reading.
#include "core/util/json_fields.h"

#include <filesystem>
#include <string>

#include "core/util/read_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_support.h"

namespace zigzag {
namespace {

using ::testing::HasSubstr;

std::string Nested(int depth, const std::string& open, const std::string& close,
                   const std::string& inner = "1") {
  std::string text;
  for (int i = 0; i < depth; ++i) text += open;
  text += inner;
  for (int i = 0; i < depth; ++i) text += close;
  return text;
}

TEST(ParseJsonTest, AcceptsNestingUpToTheLimit) {
  // kMaxJsonDepth containers, the innermost holding a number.
  absl::StatusOr<nlohmann::json> parsed =
      ParseJson(Nested(kMaxJsonDepth, "[", "]"), "f.json", /*require_object=*/false);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const nlohmann::json* inner = &*parsed;
  for (int i = 0; i < kMaxJsonDepth; ++i) inner = &(*inner)[0];
  EXPECT_EQ(*inner, 1);
}

TEST(ParseJsonTest, DeeperNestingIsInvalidArgumentWithTheKeyPath) {
  // 20,000 nested arrays under two keys: rejected at the 65th level, never walked recursively.
  const std::string text = R"({"a": 1, "model": {"x": [2, )" + Nested(20000, "[", "]") + "]}}";
  absl::StatusOr<nlohmann::json> parsed = ParseJson(text, "/m/tokenizer.json");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string message(parsed.status().message());
  EXPECT_THAT(message, HasSubstr("/m/tokenizer.json: field 'model.x[1][0][0]"));
  EXPECT_THAT(message, HasSubstr("is nested deeper than 64 levels"));

  // Objects: the path is made of their keys.
  parsed = ParseJson(Nested(20000, R"({"k": )", "}"), "c.json");
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(std::string(parsed.status().message()),
              HasSubstr("c.json: field 'k.k.k.k.k.k.k.k.k.k.k.k"));
}

TEST(ParseJsonTest, SyntaxErrorsAndNonObjectsAreInvalidArgument) {
  absl::StatusOr<nlohmann::json> parsed = ParseJson("{\"a\": ", "x.json");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("x.json: invalid JSON: "));
  // Invalid UTF-8 inside a string is a syntax error (so every parsed string is valid UTF-8).
  parsed = ParseJson("{\"a\": \"\xC3(\"}", "x.json");
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("x.json: invalid JSON"));
  parsed = ParseJson("[1, 2]", "x.json");
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(std::string(parsed.status().message()),
              HasSubstr("x.json: expected a JSON object at top level, got an array of 2 elements"));
}

TEST(JsonFieldTest, TypedGettersNameTheFileAndKeyPath) {
  const nlohmann::json doc = nlohmann::json::parse(
      R"({"s": "text", "b": true, "i": 7, "big": 18446744073709551615, "f": 1e10,
          "list": [1, "two"], "obj": {"inner": -3}, "nul": null})");
  const JsonField root(doc, "/d/config.json");
  EXPECT_EQ(*root.Get("s").String(), "text");
  EXPECT_EQ(*root.Get("b").Bool(), true);
  EXPECT_EQ(*root.Get("i").Int(0, 10), 7);
  EXPECT_EQ(*root.Get("obj").Get("inner").Int(-5, 0), -3);
  EXPECT_DOUBLE_EQ(*root.Get("f").Number(0, 1e11), 1e10);
  EXPECT_EQ(*root.Get("missing").StringOr("fallback"), "fallback");
  EXPECT_EQ(*root.Get("nul").IntOr(5, 0, 10), 5);

  const auto message = [](const absl::Status& status) {
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    return std::string(status.message());
  };
  EXPECT_EQ(message(root.Get("s").Int(0, 10).status()),
            "/d/config.json: field 's' must be an integer in [0, 10], got a string \"text\"");
  EXPECT_EQ(message(root.Get("i").Int(0, 5).status()),
            "/d/config.json: field 'i' must be an integer in [0, 5], got an integer 7");
  // 1e10 is a number, not an integer: it must not be converted (and overflow) silently.
  EXPECT_EQ(message(root.Get("f").Int(0, 2147483647).status()),
            "/d/config.json: field 'f' must be an integer in [0, 2147483647], got a number "
            "10000000000.0");
  EXPECT_THAT(message(root.Get("big").Int(0, INT64_MAX).status()),
              HasSubstr("field 'big' must be an integer"));
  EXPECT_EQ(message(root.Get("list").At(1).Int(0, 9).status()),
            "/d/config.json: field 'list[1]' must be an integer in [0, 9], got a string \"two\"");
  EXPECT_EQ(message(root.Get("obj").Get("inner").Bool().status()),
            "/d/config.json: field 'obj.inner' must be true or false, got an integer -3");
  EXPECT_EQ(message(root.Get("missing").String().status()),
            "/d/config.json: field 'missing' is required but missing");
  EXPECT_EQ(message(root.Get("list").RequireObject()),
            "/d/config.json: field 'list' must be an object, got an array of 2 elements");
  EXPECT_EQ(message(root.Get("list").Elements(1).status()),
            "/d/config.json: field 'list' has 2 elements, more than the limit of 1");
  // A member of a non-object is absent, and reported as missing with its full path.
  EXPECT_EQ(message(root.Get("s").Get("x").String().status()),
            "/d/config.json: field 's.x' is required but missing");
}

TEST(JsonFieldTest, DescriptionsAreShort) {
  EXPECT_EQ(DescribeJson(nlohmann::json(std::string(1000, 'x'))),
            "a string \"" + std::string(40, 'x') + "...\"");
  EXPECT_EQ(DescribeJson(nlohmann::json::object({{"a", 1}})), "an object");
  EXPECT_EQ(DescribeJson(nlohmann::json()), "null");
}

TEST(ReadFileTest, CapsTheSizeAndNamesThePath) {
  const std::filesystem::path dir = testing::MakeTempDir("read_file");
  testing::WriteFile(dir / "small", std::string(100, 'a'));
  absl::StatusOr<std::string> read = ReadFileToString(dir / "small", 100);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->size(), 100u);
  read = ReadFileToString(dir / "small", 99);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(read.status().message()),
              HasSubstr((dir / "small").string() + " is larger than the limit of 99 bytes"));
  EXPECT_EQ(ReadFileToString(dir / "absent", 10).status().code(), absl::StatusCode::kNotFound);
  // A device that never ends is cut at the limit too.
  EXPECT_EQ(ReadFileToString("/dev/zero", 1 << 20).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace zigzag
