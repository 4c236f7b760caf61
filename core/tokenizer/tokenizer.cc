#include "core/tokenizer/tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "core/tokenizer/hf_tokenizer.h"
#include "core/tokenizer/sentencepiece_tokenizer.h"
#include "core/tokenizer/tokenizer_limits.h"
#include "core/util/json_fields.h"
#include "core/util/read_file.h"
#include "core/util/status_macros.h"
#include "nlohmann/json.hpp"

namespace zigzag {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// The most ids an "eos_token_id" list may hold.
constexpr size_t kMaxConfigTokenIds = 1024;

// The file's text (at most `max_bytes`), or nullopt when it does not exist.
absl::StatusOr<std::optional<std::string>> ReadOptionalFile(const fs::path& path,
                                                            size_t max_bytes) {
  std::error_code error;  // an unreadable folder is treated as "no such file"
  if (!fs::exists(path, error)) return std::nullopt;
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path, max_bytes));
  return text;
}

// The parsed file (depth-bounded), or a null json when it is absent.
absl::StatusOr<json> ParseOptionalJson(const std::optional<std::string>& text,
                                       const fs::path& path) {
  if (!text.has_value()) return json();
  return ParseJson(*text, path.string());
}

// Resolves "bos_token" etc. of tokenizer_config.json: a string, an AddedToken object
// ({"content": ...}) or null. nullopt when the field is absent; an engaged nullopt inside when it
// is null (the model has no such token).
absl::StatusOr<std::optional<std::optional<int32_t>>> ConfigToken(const Tokenizer& tokenizer,
                                                                  const JsonField& config,
                                                                  const char* key) {
  if (!config.json().is_object() || !config.json().contains(key)) return std::nullopt;
  const JsonField field = config.Get(key);
  if (!field.present()) return std::optional<std::optional<int32_t>>(std::optional<int32_t>());
  std::string name;
  if (field.json().is_object()) {
    ASSIGN_OR_RETURN(name, field.Get("content").String());
  } else if (field.json().is_string()) {
    name = field.json().get<std::string>();
  } else {
    return field.Error(absl::StrCat("must be a string or {\"content\": string}, got ",
                                    DescribeJson(field.json())));
  }
  const std::optional<int32_t> id = tokenizer.TokenToId(name);
  if (!id.has_value()) {
    return field.Error(
        absl::StrCat("names '", name, "', which is not in the tokenizer's vocabulary"));
  }
  return std::optional<std::optional<int32_t>>(id);
}

// An "xxx_token_id" field that may be an int or a list of ints; appended to `ids`.
absl::Status ConfigIds(const JsonField& config, const char* key, std::vector<int32_t>* ids) {
  const JsonField field = config.Get(key);
  if (!field.present()) return absl::OkStatus();
  if (field.json().is_array()) {
    ASSIGN_OR_RETURN(const std::vector<JsonField> items, field.Elements(kMaxConfigTokenIds));
    for (const JsonField& item : items) {
      ASSIGN_OR_RETURN(const int64_t id, item.Int(0, kMaxTokenId));
      ids->push_back(static_cast<int32_t>(id));
    }
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(const int64_t id, field.Int(0, kMaxTokenId));
  ids->push_back(static_cast<int32_t>(id));
  return absl::OkStatus();
}

void AppendUnique(int32_t id, std::vector<int32_t>* ids) {
  if (std::find(ids->begin(), ids->end(), id) == ids->end()) ids->push_back(id);
}

// Defaults from the tokenizer file itself, before the config files are read.
struct TokenizerDefaults {
  std::optional<int32_t> bos, eos, pad;
  bool add_bos = false, add_eos = false;
};

absl::StatusOr<SpecialTokens> ResolveSpecialTokens(const Tokenizer& tokenizer,
                                                   const TokenizerFiles& files,
                                                   const TokenizerDefaults& defaults) {
  const fs::path dir(files.dir);
  const fs::path tokenizer_config_path = dir / "tokenizer_config.json";
  const fs::path generation_config_path = dir / "generation_config.json";
  const fs::path config_path = dir / "config.json";
  ASSIGN_OR_RETURN(const json tokenizer_config_json,
                   ParseOptionalJson(files.tokenizer_config, tokenizer_config_path));
  ASSIGN_OR_RETURN(const json generation_config_json,
                   ParseOptionalJson(files.generation_config, generation_config_path));
  ASSIGN_OR_RETURN(const json model_config_json, ParseOptionalJson(files.config, config_path));
  const JsonField tokenizer_config(tokenizer_config_json, tokenizer_config_path.string());
  const JsonField generation_config(generation_config_json, generation_config_path.string());
  const JsonField model_config(model_config_json, config_path.string());

  SpecialTokens special;
  // BOS and PAD: tokenizer_config.json, then generation_config.json, then config.json, then the
  // tokenizer file's own default.
  const auto resolve_single =
      [&](const char* token_field, const char* id_field,
          std::optional<int32_t> fallback) -> absl::StatusOr<std::optional<int32_t>> {
    ASSIGN_OR_RETURN(auto from_tokenizer_config,
                     ConfigToken(tokenizer, tokenizer_config, token_field));
    if (from_tokenizer_config.has_value()) return *from_tokenizer_config;
    for (const JsonField* config : {&generation_config, &model_config}) {
      std::vector<int32_t> ids;
      RETURN_IF_ERROR(ConfigIds(*config, id_field, &ids));
      if (!ids.empty()) return ids[0];
    }
    return fallback;
  };
  ASSIGN_OR_RETURN(special.bos_id, resolve_single("bos_token", "bos_token_id", defaults.bos));
  ASSIGN_OR_RETURN(special.pad_id, resolve_single("pad_token", "pad_token_id", defaults.pad));

  // EOS: the union, tokenizer_config.json's eos_token first.
  ASSIGN_OR_RETURN(auto eos_token, ConfigToken(tokenizer, tokenizer_config, "eos_token"));
  if (eos_token.has_value() && eos_token->has_value()) special.eos_ids.push_back(**eos_token);
  std::vector<int32_t> config_eos;
  RETURN_IF_ERROR(ConfigIds(generation_config, "eos_token_id", &config_eos));
  RETURN_IF_ERROR(ConfigIds(model_config, "eos_token_id", &config_eos));
  for (int32_t id : config_eos) AppendUnique(id, &special.eos_ids);
  if (special.eos_ids.empty() && defaults.eos.has_value()) special.eos_ids.push_back(*defaults.eos);

  ASSIGN_OR_RETURN(special.add_bos, tokenizer_config.Get("add_bos_token").BoolOr(defaults.add_bos));
  ASSIGN_OR_RETURN(special.add_eos, tokenizer_config.Get("add_eos_token").BoolOr(defaults.add_eos));
  if (!special.bos_id.has_value()) special.add_bos = false;
  if (special.eos_ids.empty()) special.add_eos = false;

  const auto check = [&](int32_t id, const char* what) -> absl::Status {
    if (id < 0 || id >= tokenizer.vocab_size()) {
      return absl::InvalidArgumentError(absl::StrCat(dir.string(), ": ", what, " id ", id,
                                                     " is outside the vocabulary [0, ",
                                                     tokenizer.vocab_size(), ")"));
    }
    return absl::OkStatus();
  };
  if (special.bos_id) RETURN_IF_ERROR(check(*special.bos_id, "BOS"));
  if (special.pad_id) RETURN_IF_ERROR(check(*special.pad_id, "PAD"));
  for (int32_t id : special.eos_ids) RETURN_IF_ERROR(check(id, "EOS"));
  return special;
}

}  // namespace

std::vector<int32_t> Tokenizer::AddSpecialTokens(std::vector<int32_t> ids) const {
  if (special_tokens_.add_bos && special_tokens_.bos_id.has_value()) {
    ids.insert(ids.begin(), *special_tokens_.bos_id);
  }
  if (special_tokens_.add_eos && !special_tokens_.eos_ids.empty()) {
    ids.push_back(special_tokens_.eos_ids[0]);
  }
  return ids;
}

absl::Status Tokenizer::CheckIds(absl::Span<const int32_t> ids) const {
  const int32_t size = vocab_size();
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= size) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", ids[i], " at position ", i,
                                                     " is outside the vocabulary [0, ", size, ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& model_dir) {
  const fs::path dir(model_dir);
  TokenizerFiles files;
  files.dir = model_dir;
  ASSIGN_OR_RETURN(files.tokenizer_json,
                   ReadOptionalFile(dir / "tokenizer.json", kMaxTokenizerFileBytes));
  // tokenizer.json wins; tokenizer.model is read only without it.
  if (!files.tokenizer_json.has_value()) {
    ASSIGN_OR_RETURN(files.tokenizer_model,
                     ReadOptionalFile(dir / "tokenizer.model", kMaxTokenizerFileBytes));
  }
  ASSIGN_OR_RETURN(files.tokenizer_config,
                   ReadOptionalFile(dir / "tokenizer_config.json", kMaxTokenizerConfigBytes));
  ASSIGN_OR_RETURN(files.generation_config,
                   ReadOptionalFile(dir / "generation_config.json", kMaxTokenizerConfigBytes));
  ASSIGN_OR_RETURN(files.config, ReadOptionalFile(dir / "config.json", kMaxTokenizerConfigBytes));
  return LoadTokenizerFromFiles(files);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizerFromFiles(const TokenizerFiles& files) {
  const fs::path dir(files.dir);
  const fs::path json_path = dir / "tokenizer.json";
  const fs::path model_path = dir / "tokenizer.model";
  std::unique_ptr<Tokenizer> tokenizer;
  TokenizerDefaults defaults;
  if (files.tokenizer_json.has_value()) {
    if (files.tokenizer_json->size() > kMaxTokenizerFileBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(json_path.string(), ": larger than ", kMaxTokenizerFileBytes, " bytes"));
    }
    ASSIGN_OR_RETURN(std::unique_ptr<HfTokenizer> hf,
                     HfTokenizer::Parse(*files.tokenizer_json, json_path.string()));
    defaults.bos = hf->template_bos();
    defaults.eos = hf->template_eos();
    defaults.add_bos = defaults.bos.has_value();
    defaults.add_eos = defaults.eos.has_value();
    tokenizer = std::move(hf);
  } else if (files.tokenizer_model.has_value()) {
    absl::StatusOr<SentencePieceModel> model = ParseSentencePieceModel(*files.tokenizer_model);
    if (!model.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          model_path.string(), ": not a valid SentencePiece model: ", model.status().message()));
    }
    ASSIGN_OR_RETURN(std::unique_ptr<SentencePieceTokenizer> sp,
                     SentencePieceTokenizer::Create(*std::move(model), model_path.string()));
    defaults.bos = sp->model_bos_id();
    defaults.eos = sp->model_eos_id();
    defaults.pad = sp->model_pad_id();
    defaults.add_bos = defaults.bos.has_value();  // as Hugging Face's LlamaTokenizer
    tokenizer = std::move(sp);
  } else {
    return absl::NotFoundError(
        absl::StrCat(files.dir, " has neither tokenizer.json nor tokenizer.model"));
  }
  ASSIGN_OR_RETURN(SpecialTokens special, ResolveSpecialTokens(*tokenizer, files, defaults));
  tokenizer->set_special_tokens(std::move(special));
  return tokenizer;
}

}  // namespace zigzag
