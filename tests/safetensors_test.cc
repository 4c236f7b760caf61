// core/model/safetensors: reading hand-built files byte by byte, and every malformed input the
// header validation must reject, with the message it must carry.
#include "core/model/safetensors.h"

#include <cstring>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_support.h"

namespace zigzag {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// 8-byte little-endian header length, the header, then the data region: built by hand.
std::string SafetensorsBytes(const std::string& header, const std::string& data) {
  std::string bytes;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return bytes + header + data;
}

std::string FloatBytes(std::initializer_list<float> values) {
  std::string out;
  for (float v : values) {
    char raw[4];
    std::memcpy(raw, &v, 4);
    out.append(raw, 4);
  }
  return out;
}

class SafetensorsTest : public ::testing::Test {
 protected:
  std::filesystem::path Write(const std::string& bytes) {
    const auto path = dir_ / "t.safetensors";
    testing::WriteFile(path, bytes);
    return path;
  }
  // Opens `bytes` as a file and returns the error; fails the test when it opens.
  absl::Status OpenError(const std::string& bytes) {
    auto file = SafetensorsFile::Open(Write(bytes));
    EXPECT_FALSE(file.ok()) << "opened a malformed file";
    if (file.ok()) return absl::OkStatus();
    EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument) << file.status();
    EXPECT_THAT(std::string(file.status().message()), HasSubstr((dir_ / "t.safetensors").string()));
    return file.status();
  }
  std::string Message(const std::string& header, const std::string& data) {
    return std::string(OpenError(SafetensorsBytes(header, data)).message());
  }

  std::filesystem::path dir_ = testing::MakeTempDir("safetensors");
};

TEST_F(SafetensorsTest, ReadsTensorsInPlace) {
  // F32 [2,2] then BF16 [3] then F16 [1]; plus metadata, which is skipped.
  const std::string data = FloatBytes({1.0f, -2.0f, 0.5f, 3.0f}) +
                           std::string("\x80\x3f\x00\xc0\x49\x40", 6) +  // bf16 1, -2, 3.140625
                           std::string("\x00\x3c", 2);                   // f16 1.0
  const std::string header =
      R"({"__metadata__": {"format": "pt"},
          "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
          "b": {"dtype": "BF16", "shape": [3], "data_offsets": [16, 22]},
          "h": {"dtype": "F16", "shape": [1], "data_offsets": [22, 24]},
          "empty": {"dtype": "F32", "shape": [0, 4], "data_offsets": [24, 24]}})";
  auto file = SafetensorsFile::Open(Write(SafetensorsBytes(header, data)));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_THAT((*file)->TensorNames(), ElementsAre("b", "empty", "h", "w"));
  EXPECT_TRUE((*file)->Contains("w"));
  EXPECT_FALSE((*file)->Contains("__metadata__"));

  auto w = (*file)->Get("w");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->dtype, DType::kF32);
  EXPECT_EQ(w->shape, (Shape{2, 2}));
  EXPECT_EQ(w->size_bytes, 16u);
  EXPECT_EQ(w->name, "w");
  EXPECT_EQ(w->file, (dir_ / "t.safetensors").string());
  float values[4];
  std::memcpy(values, w->data, 16);
  EXPECT_THAT(values, ElementsAre(1.0f, -2.0f, 0.5f, 3.0f));

  auto b = (*file)->Get("b");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->dtype, DType::kBF16);
  EXPECT_EQ(b->size_bytes, 6u);
  EXPECT_EQ(std::memcmp(b->data, "\x80\x3f\x00\xc0\x49\x40", 6), 0);
  // The view points into the mapping right after the header.
  EXPECT_EQ(b->data - w->data, 16);

  auto h = (*file)->Get("h");
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->dtype, DType::kF16);
  EXPECT_EQ(std::memcmp(h->data, "\x00\x3c", 2), 0);

  auto empty = (*file)->Get("empty");
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->size_bytes, 0u);

  auto missing = (*file)->Get("nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()),
              HasSubstr("tensor 'nope' not found in " + (dir_ / "t.safetensors").string()));
}

TEST_F(SafetensorsTest, EmptyHeaderObjectIsValid) {
  auto file = SafetensorsFile::Open(Write(SafetensorsBytes("{}", "")));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE((*file)->TensorNames().empty());
}

TEST_F(SafetensorsTest, MissingFileIsNotFound) {
  auto file = SafetensorsFile::Open(dir_ / "absent.safetensors");
  EXPECT_EQ(file.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(file.status().message()), HasSubstr("absent.safetensors"));
}

TEST_F(SafetensorsTest, Truncated) {
  EXPECT_THAT(std::string(OpenError("").message()), HasSubstr("truncated"));
  EXPECT_THAT(std::string(OpenError(std::string("\x05\x00\x00", 3)).message()),
              HasSubstr("truncated"));
}

TEST_F(SafetensorsTest, HeaderLengthBeyondFile) {
  // Declares 1000 header bytes in a 20-byte file.
  std::string bytes = SafetensorsBytes("{}", "0123456789");
  bytes[0] = static_cast<char>(1000 & 0xff);
  bytes[1] = static_cast<char>(1000 >> 8);
  EXPECT_THAT(std::string(OpenError(bytes).message()),
              HasSubstr("header length 1000 exceeds file size 20"));
  // A length whose top bit is set must not wrap around.
  bytes = SafetensorsBytes("{}", "");
  bytes[7] = static_cast<char>(0x80);
  EXPECT_THAT(std::string(OpenError(bytes).message()), HasSubstr("exceeds file size 10"));
}

TEST_F(SafetensorsTest, HeaderNotJson) {
  EXPECT_THAT(Message("{\"w\": {", ""), HasSubstr("header is not valid JSON"));
  EXPECT_THAT(Message("[1, 2]", ""), HasSubstr("header is not a JSON object"));
}

TEST_F(SafetensorsTest, EntryNotObject) {
  EXPECT_THAT(Message(R"({"w": [1, 2]})", ""), HasSubstr("tensor 'w' entry is not a JSON object"));
}

TEST_F(SafetensorsTest, BadDTypes) {
  const std::string data(16, '\0');
  EXPECT_THAT(Message(R"({"w": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}})", data),
              HasSubstr("tensor 'w' has unsupported dtype 'I64'"));
  EXPECT_THAT(Message(R"({"w": {"dtype": "F64", "shape": [2], "data_offsets": [0, 16]}})", data),
              HasSubstr("unsupported dtype 'F64'"));
  EXPECT_THAT(
      Message(R"({"w": {"dtype": "F8_E4M3", "shape": [16], "data_offsets": [0, 16]}})", data),
      HasSubstr("unsupported dtype 'F8_E4M3'"));
  EXPECT_THAT(Message(R"({"w": {"dtype": "Q4_K", "shape": [2], "data_offsets": [0, 16]}})", data),
              HasSubstr("tensor 'w' has unknown dtype 'Q4_K'"));
  EXPECT_THAT(Message(R"({"w": {"shape": [2], "data_offsets": [0, 8]}})", data),
              HasSubstr("tensor 'w' has no string 'dtype'"));
  EXPECT_THAT(Message(R"({"w": {"dtype": 32, "shape": [2], "data_offsets": [0, 8]}})", data),
              HasSubstr("tensor 'w' has no string 'dtype'"));
}

TEST_F(SafetensorsTest, BadShapes) {
  const std::string data(16, '\0');
  EXPECT_THAT(Message(R"({"w": {"dtype": "F32", "shape": 4, "data_offsets": [0, 16]}})", data),
              HasSubstr("tensor 'w' has no 'shape' list"));
  EXPECT_THAT(Message(R"({"w": {"dtype": "F32", "data_offsets": [0, 16]}})", data),
              HasSubstr("tensor 'w' has no 'shape' list"));
  EXPECT_THAT(
      Message(R"({"w": {"dtype": "F32", "shape": [2, -2], "data_offsets": [0, 16]}})", data),
      HasSubstr("tensor 'w' has a shape that is not a list of non-negative integers"));
  EXPECT_THAT(Message(R"({"w": {"dtype": "F32", "shape": ["4"], "data_offsets": [0, 16]}})", data),
              HasSubstr("not a list of non-negative integers"));
  EXPECT_THAT(Message(R"({"w": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 16]}})", data),
              HasSubstr("not a list of non-negative integers"));
  EXPECT_THAT(Message(R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296],
                               "data_offsets": [0, 16]}})",
                      data),
              HasSubstr("tensor 'w' has a shape too large"));
}

TEST_F(SafetensorsTest, BadOffsets) {
  const std::string data(16, '\0');
  EXPECT_THAT(Message(R"({"w": {"dtype": "F32", "shape": [2]}})", data),
              HasSubstr("tensor 'w' needs 'data_offsets' [begin, end]"));
  EXPECT_THAT(Message(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8]}})", data),
              HasSubstr("needs 'data_offsets'"));
  EXPECT_THAT(Message(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}})", data),
              HasSubstr("needs 'data_offsets'"));
  EXPECT_THAT(Message(R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}})", data),
              HasSubstr("tensor 'w' has data_offsets begin 8 after end 0"));
}

TEST_F(SafetensorsTest, DataBeyondFile) {
  EXPECT_THAT(Message(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})",
                      std::string(8, '\0')),
              HasSubstr("tensor 'w' data ends at 16 beyond the file's data region of 8 bytes"));
}

TEST_F(SafetensorsTest, SizeDisagreesWithShape) {
  EXPECT_THAT(Message(R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})",
                      std::string(16, '\0')),
              HasSubstr("tensor 'w' has 8 bytes of data but dtype F32 x shape [3] needs 12"));
  EXPECT_THAT(Message(R"({"ok": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                          "x": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [4, 16]}})",
                      std::string(16, '\0')),
              HasSubstr("tensor 'x' has 12 bytes of data but dtype BF16 x shape [2, 2] needs 8"));
}

}  // namespace
}  // namespace zigzag
