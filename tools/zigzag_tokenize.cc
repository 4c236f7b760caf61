// zigzag-tokenize: encodes text into token ids or decodes ids into text with a model folder's
// tokenizer (tokenizer.json or tokenizer.model), for checking prompts and debugging.
//   zigzag-tokenize --model DIR --text "Hello"      prints ids, comma-separated
//   zigzag-tokenize --model DIR --ids 9906,1917     prints the text
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/tokenizer/tokenizer.h"
#include "core/util/command_line.h"

ABSL_FLAG(std::string, model, "", "Model folder with tokenizer.json or tokenizer.model");
ABSL_FLAG(std::string, text, "", "Text to encode");
ABSL_FLAG(std::string, ids, "", "Comma-separated token ids to decode, e.g. 1,2,3");
ABSL_FLAG(bool, add_special_tokens, false, "Encode: add BOS/EOS as the tokenizer config says");
ABSL_FLAG(bool, skip_special_tokens, false, "Decode: leave out special tokens");
ABSL_FLAG(bool, show_tokens, false, "Encode: also print each id's token, one per line");

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "zigzag-tokenize: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Encodes text or decodes token ids.\n"
      "  zigzag-tokenize --model DIR --text \"Hello\"\n"
      "  zigzag-tokenize --model DIR --ids 1,2,3");
  const std::vector<std::string> positional = zigzag::ParseCommandLineAcceptingDashes(argc, argv);
  if (positional.size() > 1) return Fail("unexpected argument '" + positional[1] + "'");
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  const std::string text = absl::GetFlag(FLAGS_text);
  const std::string ids_flag = absl::GetFlag(FLAGS_ids);
  if (model_dir.empty()) return Fail("--model is required");
  if (text.empty() == ids_flag.empty()) return Fail("give exactly one of --text and --ids");

  auto tokenizer = zigzag::LoadTokenizer(model_dir);
  if (!tokenizer.ok()) return Fail("loading the tokenizer: " + tokenizer.status().ToString());

  if (!text.empty()) {
    auto ids = (*tokenizer)->Encode(text, absl::GetFlag(FLAGS_add_special_tokens));
    if (!ids.ok()) return Fail("--text: " + ids.status().ToString());
    std::printf("%s\n", absl::StrJoin(*ids, ",").c_str());
    if (absl::GetFlag(FLAGS_show_tokens)) {
      for (int32_t id : *ids) {
        std::printf("%d\t%s\n", id, (*tokenizer)->IdToToken(id).value_or("").c_str());
      }
    }
    return 0;
  }
  std::vector<int32_t> ids;
  for (absl::string_view piece : absl::StrSplit(ids_flag, ',')) {
    int32_t id;
    if (!absl::SimpleAtoi(piece, &id)) {
      return Fail("--ids: '" + std::string(piece) + "' is not an integer token id");
    }
    ids.push_back(id);
  }
  auto decoded = (*tokenizer)->Decode(ids, absl::GetFlag(FLAGS_skip_special_tokens));
  if (!decoded.ok()) return Fail("--ids: " + decoded.status().ToString());
  std::printf("%s\n", decoded->c_str());
  return 0;
}
