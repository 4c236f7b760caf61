// kernels/dtype.h: bf16 / fp16 <-> float conversions against hand-computed bit patterns and an
// independent float64 reference (nearest representable value, ties to even).
#include "kernels/dtype.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace zigzag {
namespace {

float FromBits(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

// IEEE binary16 decoded from its fields with ldexp, independent of dtype.h's bit shuffling.
double ReferenceHalfValue(uint16_t h) {
  const int sign = (h >> 15) ? -1 : 1;
  const int exponent = (h >> 10) & 0x1f;
  const int mantissa = h & 0x3ff;
  if (exponent == 0x1f) {
    return mantissa == 0 ? sign * std::numeric_limits<double>::infinity()
                         : std::numeric_limits<double>::quiet_NaN();
  }
  if (exponent == 0) return sign * std::ldexp(mantissa, -24);
  return sign * std::ldexp(1024 + mantissa, exponent - 25);
}

// bfloat16 decoded from its fields: 8-bit exponent (bias 127), 7-bit mantissa.
double ReferenceBF16Value(uint16_t b) {
  const int sign = (b >> 15) ? -1 : 1;
  const int exponent = (b >> 7) & 0xff;
  const int mantissa = b & 0x7f;
  if (exponent == 0xff) {
    return mantissa == 0 ? sign * std::numeric_limits<double>::infinity()
                         : std::numeric_limits<double>::quiet_NaN();
  }
  if (exponent == 0) return sign * std::ldexp(mantissa, -133);
  return sign * std::ldexp(128 + mantissa, exponent - 134);
}

// Nearest value among the non-negative finite codes 0..max_code (values increase with the code),
// ties to the even code; beyond the largest finite value by at least half a step: infinity.
uint16_t ReferenceRound(double magnitude, uint16_t max_code, uint16_t inf_code,
                        double (*decode)(uint16_t)) {
  const double max_value = decode(max_code);
  const double overflow_threshold = max_value + (max_value - decode(max_code - 1)) / 2;
  if (magnitude >= overflow_threshold) return inf_code;
  // Binary search for the largest code with value <= magnitude.
  uint32_t lo = 0, hi = max_code;
  while (lo < hi) {
    const uint32_t mid = (lo + hi + 1) / 2;
    if (decode(static_cast<uint16_t>(mid)) <= magnitude) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  if (lo == max_code) return max_code;
  const double below = decode(static_cast<uint16_t>(lo));
  const double above = decode(static_cast<uint16_t>(lo + 1));
  if (magnitude - below < above - magnitude) return static_cast<uint16_t>(lo);
  if (magnitude - below > above - magnitude) return static_cast<uint16_t>(lo + 1);
  return static_cast<uint16_t>((lo % 2 == 0) ? lo : lo + 1);
}

uint16_t ReferenceFloatToHalf(float value) {
  const uint16_t sign = std::signbit(value) ? 0x8000 : 0;
  return sign |
         ReferenceRound(std::fabs(static_cast<double>(value)), 0x7bff, 0x7c00, ReferenceHalfValue);
}

uint16_t ReferenceFloatToBF16(float value) {
  const uint16_t sign = std::signbit(value) ? 0x8000 : 0;
  return sign |
         ReferenceRound(std::fabs(static_cast<double>(value)), 0x7f7f, 0x7f80, ReferenceBF16Value);
}

TEST(DTypeTest, SizesAndNames) {
  EXPECT_EQ(DTypeSize(DType::kF32), 4u);
  EXPECT_EQ(DTypeSize(DType::kBF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kI32), 4u);
  EXPECT_STREQ(DTypeName(DType::kBF16), "bf16");
  EXPECT_STREQ(DTypeName(DType::kF16), "f16");
}

TEST(BF16Test, HandComputedPatterns) {
  EXPECT_EQ(FloatToBF16(1.0f), 0x3f80);
  EXPECT_EQ(FloatToBF16(-2.0f), 0xc000);
  EXPECT_EQ(FloatToBF16(0.0f), 0x0000);
  EXPECT_EQ(FloatToBF16(-0.0f), 0x8000);
  EXPECT_EQ(FloatToBF16(3.140625f), 0x4049);  // exactly representable: 1.5703125 * 2
  EXPECT_EQ(BF16ToFloat(0x3f80), 1.0f);
  EXPECT_EQ(BF16ToFloat(0xc049), -3.140625f);
  EXPECT_EQ(BF16ToFloat(0x4120), 10.0f);
}

TEST(BF16Test, RoundsToNearestEven) {
  // 1 + 2^-8 is half way between 1 (0x3f80, even) and 1 + 2^-7 (0x3f81): stays at 0x3f80.
  EXPECT_EQ(FloatToBF16(FromBits(0x3f808000)), 0x3f80);
  // 1 + 3 * 2^-8 is half way between 0x3f81 (odd) and 0x3f82 (even): goes up.
  EXPECT_EQ(FloatToBF16(FromBits(0x3f818000)), 0x3f82);
  // Just above / below half way.
  EXPECT_EQ(FloatToBF16(FromBits(0x3f808001)), 0x3f81);
  EXPECT_EQ(FloatToBF16(FromBits(0x3f807fff)), 0x3f80);
  // Carry into the exponent: 0x3fffffff rounds up to 2.0.
  EXPECT_EQ(FloatToBF16(FromBits(0x3fffffff)), 0x4000);
  // The largest float rounds to infinity (it is past half way to the next bf16 binade).
  EXPECT_EQ(FloatToBF16(std::numeric_limits<float>::max()), 0x7f80);
}

TEST(BF16Test, SubnormalsInfinityNaN) {
  EXPECT_EQ(FloatToBF16(FromBits(0x00010000)), 0x0001);  // smallest bf16 subnormal, 2^-133
  EXPECT_EQ(BF16ToFloat(0x0001), std::ldexp(1.0f, -133));
  EXPECT_EQ(FloatToBF16(FromBits(0x00000001)), 0x0000);  // smallest float subnormal rounds to 0
  EXPECT_EQ(FloatToBF16(FromBits(0x00018000)), 0x0002);  // tie between 1 and 2: even
  EXPECT_EQ(FloatToBF16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(FloatToBF16(-std::numeric_limits<float>::infinity()), 0xff80);
  EXPECT_TRUE(std::isinf(BF16ToFloat(0xff80)) && BF16ToFloat(0xff80) < 0);
  // NaNs stay NaN, including a signalling NaN whose payload lives only in the dropped bits.
  for (uint32_t nan_bits : {0x7fc00000u, 0x7f800001u, 0xffc00000u, 0x7f800100u}) {
    const uint16_t b = FloatToBF16(FromBits(nan_bits));
    EXPECT_EQ(b & 0x7f80, 0x7f80) << std::hex << nan_bits;
    EXPECT_NE(b & 0x7f, 0) << std::hex << nan_bits;
    EXPECT_EQ(b & 0x8000, (nan_bits >> 16) & 0x8000) << std::hex << nan_bits;
    EXPECT_TRUE(std::isnan(BF16ToFloat(b)));
  }
}

TEST(BF16Test, EveryPatternRoundTripsAndDecodesLikeReference) {
  for (uint32_t code = 0; code <= 0xffff; ++code) {
    const uint16_t b = static_cast<uint16_t>(code);
    const float value = BF16ToFloat(b);
    const double reference = ReferenceBF16Value(b);
    if (std::isnan(reference)) {
      EXPECT_TRUE(std::isnan(value)) << std::hex << code;
      EXPECT_TRUE(std::isnan(BF16ToFloat(FloatToBF16(value)))) << std::hex << code;
      continue;
    }
    ASSERT_EQ(static_cast<double>(value), reference) << std::hex << code;
    ASSERT_EQ(FloatToBF16(value), b) << std::hex << code;
  }
}

TEST(BF16Test, RandomFloatsMatchFloat64Reference) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 200000; ++i) {
    uint32_t bits = static_cast<uint32_t>(rng());
    if ((bits & 0x7f800000u) == 0x7f800000u) continue;  // inf / NaN covered above
    const float value = FromBits(bits);
    ASSERT_EQ(FloatToBF16(value), ReferenceFloatToBF16(value)) << std::hex << bits;
  }
}

TEST(HalfTest, HandComputedPatterns) {
  EXPECT_EQ(FloatToHalf(1.0f), 0x3c00);
  EXPECT_EQ(FloatToHalf(-2.0f), 0xc000);
  EXPECT_EQ(FloatToHalf(0.5f), 0x3800);
  EXPECT_EQ(FloatToHalf(0.0f), 0x0000);
  EXPECT_EQ(FloatToHalf(-0.0f), 0x8000);
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7bff);  // largest finite half
  EXPECT_EQ(HalfToFloat(0x3c00), 1.0f);
  EXPECT_EQ(HalfToFloat(0x3555), 0.333251953125f);  // 1365 / 4096
  EXPECT_EQ(HalfToFloat(0xc500), -5.0f);
  EXPECT_EQ(HalfToFloat(0x7bff), 65504.0f);
  EXPECT_TRUE(std::signbit(HalfToFloat(0x8000)) && HalfToFloat(0x8000) == 0.0f);
}

TEST(HalfTest, RoundsToNearestEven) {
  // 1 + 2^-11: half way between 0x3c00 (even) and 0x3c01.
  EXPECT_EQ(FloatToHalf(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  // 1 + 3 * 2^-11: half way between 0x3c01 (odd) and 0x3c02.
  EXPECT_EQ(FloatToHalf(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(FloatToHalf(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3c01);
  // 65519.99 stays finite; 65520 is half way to 65536 (even, = infinity) and overflows.
  EXPECT_EQ(FloatToHalf(65519.0f), 0x7bff);
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7c00);
  EXPECT_EQ(FloatToHalf(-65520.0f), 0xfc00);
  EXPECT_EQ(FloatToHalf(1e10f), 0x7c00);
}

TEST(HalfTest, Subnormals) {
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(HalfToFloat(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(HalfToFloat(0x03ff), 1023 * std::ldexp(1.0f, -24));  // largest subnormal
  EXPECT_EQ(HalfToFloat(0x0400), std::ldexp(1.0f, -14));         // smallest normal
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -14)), 0x0400);
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -25)), 0x0000);  // tie between 0 and 1: even
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -25) * 1.0001f), 0x0001);
  EXPECT_EQ(FloatToHalf(3 * std::ldexp(1.0f, -25)), 0x0002);        // tie between 1 and 2: even
  EXPECT_EQ(FloatToHalf(1023.5f * std::ldexp(1.0f, -24)), 0x0400);  // tie 0x3ff / 0x400: carries
  EXPECT_EQ(FloatToHalf(-std::ldexp(1.0f, -24)), 0x8001);
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -30)), 0x0000);
  EXPECT_EQ(FloatToHalf(FromBits(0x00000001)), 0x0000);
}

TEST(HalfTest, InfinityAndNaN) {
  EXPECT_EQ(FloatToHalf(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(FloatToHalf(-std::numeric_limits<float>::infinity()), 0xfc00);
  EXPECT_TRUE(std::isinf(HalfToFloat(0x7c00)) && HalfToFloat(0x7c00) > 0);
  EXPECT_TRUE(std::isinf(HalfToFloat(0xfc00)) && HalfToFloat(0xfc00) < 0);
  for (uint32_t nan_bits : {0x7fc00000u, 0x7f800001u, 0xffc00000u}) {
    const uint16_t h = FloatToHalf(FromBits(nan_bits));
    EXPECT_EQ(h & 0x7c00, 0x7c00) << std::hex << nan_bits;
    EXPECT_NE(h & 0x3ff, 0) << std::hex << nan_bits;
    EXPECT_TRUE(std::isnan(HalfToFloat(h)));
  }
  EXPECT_TRUE(std::isnan(HalfToFloat(0x7e00)));
  EXPECT_TRUE(std::isnan(HalfToFloat(0x7c01)));
}

TEST(HalfTest, EveryPatternRoundTripsAndDecodesLikeReference) {
  for (uint32_t code = 0; code <= 0xffff; ++code) {
    const uint16_t h = static_cast<uint16_t>(code);
    const float value = HalfToFloat(h);
    const double reference = ReferenceHalfValue(h);
    if (std::isnan(reference)) {
      EXPECT_TRUE(std::isnan(value)) << std::hex << code;
      continue;
    }
    ASSERT_EQ(static_cast<double>(value), reference) << std::hex << code;
    ASSERT_EQ(FloatToHalf(value), h) << std::hex << code;
  }
}

TEST(HalfTest, RandomFloatsMatchFloat64Reference) {
  std::mt19937_64 rng(11);
  // Exponents around the half range (2^-27 .. 2^17) so that subnormals, normals and overflow
  // all occur, plus random mantissa bits including exact ties.
  std::uniform_int_distribution<int> exponent(127 - 27, 127 + 17);
  for (int i = 0; i < 300000; ++i) {
    uint32_t mantissa = static_cast<uint32_t>(rng()) & 0x7fffffu;
    if (i % 4 == 0) mantissa &= ~0xfffu;  // many exact ties and near-ties
    const uint32_t sign = (rng() & 1) ? 0x80000000u : 0;
    const uint32_t bits = sign | (static_cast<uint32_t>(exponent(rng)) << 23) | mantissa;
    const float value = FromBits(bits);
    ASSERT_EQ(FloatToHalf(value), ReferenceFloatToHalf(value)) << std::hex << bits;
  }
}

}  // namespace
}  // namespace zigzag
