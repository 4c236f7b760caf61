// A structure-aware libFuzzer mutator for JSON inputs: it changes a value's type, swaps in edge
// numbers, deletes, duplicates, splices and wraps subtrees, which byte mutation rarely does while
// keeping the document valid. Knows nothing of which fields a target reads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>

namespace zigzag::fuzz {

// One structural mutation of the JSON document `text`; nullopt when it is not JSON, is nested
// deeper than a few hundred levels, or the result would exceed `max_size` bytes.
std::optional<std::string> MutateJson(std::string_view text, size_t max_size,
                                      std::minstd_rand& rng);

// LLVMFuzzerCustomMutator for inputs made of NUL-separated JSON files (shaped_input.h's
// generator-mode templates included, "@@" standing for a JSON value): half of the time
// libFuzzer's own mutation, else MutateJson on one part that parses.
size_t MutateJsonInput(uint8_t* data, size_t size, size_t max_size, unsigned seed);

}  // namespace zigzag::fuzz
