#include "tests/test_support.h"

#include <cstdlib>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>

#include "gtest/gtest.h"

namespace zigzag::testing {
namespace {

std::vector<std::filesystem::path>& TempDirs() {
  static auto* dirs = new std::vector<std::filesystem::path>();
  return *dirs;
}

void RemoveTempDirs() {
  for (const auto& dir : TempDirs()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
}

}  // namespace

std::filesystem::path MakeTempDir(const std::string& prefix) {
  static std::once_flag registered;
  std::call_once(registered, [] { std::atexit(RemoveTempDirs); });
  const char* base = std::getenv("TEST_TMPDIR");
  std::filesystem::path root = base ? base : std::filesystem::temp_directory_path();
  std::string pattern = (root / (prefix + "-XXXXXX")).string();
  char* made = mkdtemp(pattern.data());
  if (made == nullptr) ADD_FAILURE() << "mkdtemp failed for " << pattern;
  TempDirs().emplace_back(pattern);
  return pattern;
}

std::vector<float> RandomFloats(size_t n, uint64_t seed, float lo, float hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> out(n);
  for (float& x : out) x = dist(rng);
  return out;
}

void WriteFile(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace zigzag::testing
