#include "fuzz/json_mutator.h"

#include <array>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "fuzz/shaped_input.h"
#include "nlohmann/json.hpp"

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

namespace zigzag::fuzz {
namespace {

using nlohmann::json;

// Deeper documents are left to byte mutation: copying and dumping them recurses.
constexpr int kMaxDepth = 200;
constexpr size_t kMaxNodes = 20000;
// How the generator-mode placeholder is spelled while the template is parsed.
constexpr std::string_view kPlaceholder = "@@";
constexpr std::string_view kPlaceholderJson = "\"\\u0001@@\"";
constexpr std::string_view kPlaceholderDumped = "\"\\u0001@@\"";

int MaxDepth(std::string_view text) {
  int depth = 0, max_depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    if (c == '[' || c == '{') max_depth = std::max(max_depth, ++depth);
    if (c == ']' || c == '}') --depth;
  }
  return max_depth;
}

json EdgeValue(std::minstd_rand& rng) {
  switch (rng() % 22) {
    case 0:
      return nullptr;
    case 1:
      return true;
    case 2:
      return false;
    case 3:
      return 0;
    case 4:
      return -1;
    case 5:
      return 1.5;
    case 6:
      return std::numeric_limits<int32_t>::max();
    case 7:
      return int64_t{std::numeric_limits<int32_t>::max()} + 1;
    case 8:
      return std::numeric_limits<int32_t>::min();
    case 9:
      return std::numeric_limits<int64_t>::max();
    case 10:
      return std::numeric_limits<int64_t>::min();
    case 11:
      return std::numeric_limits<uint64_t>::max();
    case 12:
      return 1e308;
    case 13:
      return -0.0;
    case 14:
      return "";
    case 15:
      return "x";
    case 16:
      return "<s>";
    case 17:
      return "\xE2\x96\x81";
    case 18:
      return json::array();
    case 19:
      return json::object();
    case 20:
      return json::array({1, "a", nullptr});
    default:
      return json::object({{"type", "Sequence"}});
  }
}

// Every node of the document (pre-order), with the object keys seen.
void Collect(json& root, std::vector<json*>* nodes, std::vector<std::string>* keys) {
  std::vector<json*> stack = {&root};
  while (!stack.empty() && nodes->size() < kMaxNodes) {
    json* node = stack.back();
    stack.pop_back();
    nodes->push_back(node);
    if (node->is_object()) {
      for (auto it = node->begin(); it != node->end(); ++it) {
        keys->push_back(it.key());
        stack.push_back(&it.value());
      }
    } else if (node->is_array()) {
      for (json& child : *node) stack.push_back(&child);
    }
  }
}

void MutateOnce(json& root, std::minstd_rand& rng) {
  std::vector<json*> nodes;
  std::vector<std::string> keys;
  Collect(root, &nodes, &keys);
  json& node = *nodes[rng() % nodes.size()];
  switch (rng() % 7) {
    case 0:  // change the type or take an edge value
      node = EdgeValue(rng);
      break;
    case 1:  // delete a member or an element
      if (node.is_object() && !node.empty()) {
        auto it = node.begin();
        std::advance(it, static_cast<std::ptrdiff_t>(rng() % node.size()));
        node.erase(it);
      } else if (node.is_array() && !node.empty()) {
        node.erase(node.begin() + static_cast<std::ptrdiff_t>(rng() % node.size()));
      } else {
        node = EdgeValue(rng);
      }
      break;
    case 2: {  // add a member under a key the document uses, or an element
      json value = rng() % 2 ? EdgeValue(rng) : json(*nodes[rng() % nodes.size()]);
      if (node.is_object()) {
        node[keys.empty() ? std::string("type") : keys[rng() % keys.size()]] = std::move(value);
      } else if (node.is_array()) {
        node.insert(node.begin() + static_cast<std::ptrdiff_t>(rng() % (node.size() + 1)),
                    std::move(value));
      } else {
        node = std::move(value);
      }
      break;
    }
    case 3:  // wrap one level deeper
      node = rng() % 2 ? json::array({node}) : json::object({{"a", node}});
      break;
    case 4: {  // replace with a copy of another subtree
      json copy = *nodes[rng() % nodes.size()];
      node = std::move(copy);
      break;
    }
    case 5:  // a string becomes a key of the document; a number an edge integer
      if (node.is_string() && !keys.empty()) {
        node = keys[rng() % keys.size()];
      } else if (node.is_number()) {
        node = EdgeValue(rng);
      } else {
        node = EdgeValue(rng);
      }
      break;
    default:  // duplicate an array element / object member value elsewhere in the same container
      if (node.is_array() && !node.empty()) {
        node.push_back(json(node[rng() % node.size()]));
      } else {
        node = EdgeValue(rng);
      }
      break;
  }
}

std::string ReplaceAll(std::string text, std::string_view from, std::string_view to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

}  // namespace

std::optional<std::string> MutateJson(std::string_view text, size_t max_size,
                                      std::minstd_rand& rng) {
  if (text.empty() || MaxDepth(text) > kMaxDepth) return std::nullopt;
  json root = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return std::nullopt;
  const int rounds = 1 + static_cast<int>(rng() % 3);
  for (int i = 0; i < rounds; ++i) MutateOnce(root, rng);
  std::string out = root.dump(-1, ' ', false, json::error_handler_t::replace);
  if (out.size() > max_size) return std::nullopt;
  return out;
}

size_t MutateJsonInput(uint8_t* data, size_t size, size_t max_size, unsigned seed) {
  std::minstd_rand rng(seed);
  if (rng() % 2 == 0) return LLVMFuzzerMutate(data, size, max_size);
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string header;
  std::string body(input);
  if (ParseShapeHeader(input).has_value()) {
    header = std::string(input.substr(0, 6));
    body = ReplaceAll(std::string(input.substr(6)), kPlaceholder, kPlaceholderJson);
  }
  std::vector<std::string_view> parts = SplitParts(body, 16);
  std::vector<std::string> mutated(parts.begin(), parts.end());
  const size_t start = rng() % parts.size();
  bool changed = false;
  for (size_t k = 0; k < parts.size() && !changed; ++k) {
    const size_t i = (start + k) % parts.size();
    std::optional<std::string> result = MutateJson(parts[i], max_size, rng);
    if (result.has_value()) {
      mutated[i] = *std::move(result);
      changed = true;
    }
  }
  if (!changed) return LLVMFuzzerMutate(data, size, max_size);
  std::string out = header;
  for (size_t i = 0; i < mutated.size(); ++i) {
    if (i > 0) out.push_back('\0');
    out += header.empty() ? mutated[i] : ReplaceAll(mutated[i], kPlaceholderDumped, kPlaceholder);
  }
  if (out.size() > max_size) return LLVMFuzzerMutate(data, size, max_size);
  std::memcpy(data, out.data(), out.size());
  return out.size();
}

}  // namespace zigzag::fuzz
