// Shared helpers for the GoogleTest suites: scratch folders and seeded random data.
// Reference implementations live in the tests that use them, written independently of the code
// under test (float64, naive loops).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace zigzag::testing {

// A fresh empty folder under the test's temporary directory, removed at process exit.
std::filesystem::path MakeTempDir(const std::string& prefix);

// n floats uniform in [lo, hi), reproducible from seed.
std::vector<float> RandomFloats(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f);

// Writes bytes to a file (creating or truncating it).
void WriteFile(const std::filesystem::path& path, const std::string& bytes);
std::string ReadFile(const std::filesystem::path& path);

}  // namespace zigzag::testing
