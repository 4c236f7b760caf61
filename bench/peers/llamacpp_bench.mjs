// llamacpp_bench.mjs: times llama.cpp (through node-llama-cpp's prebuilt CPU binary) on one GGUF
// file and one prompt of token ids: prefill of the prompt, then greedy decode steps.
// Owns only the llama.cpp side of bench/peers; run.sh runs ours and compares.
//   node llamacpp_bench.mjs --model M.gguf --prompt-ids FILE --decode N --threads 2 --context C
// Prints one JSON line: {"prefill_tokens", "prefill_s", "decode_tokens", "decode_s", "tokens"}.
import {readFileSync} from "node:fs";
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

function fail(message) {
  process.stderr.write(`llamacpp_bench: ${message}\n`);
  process.exit(2);
}

const args = {};
for (let i = 2; i < process.argv.length; i += 2) {
  const key = process.argv[i];
  if (!key.startsWith("--") || i + 1 >= process.argv.length) fail(`bad argument '${key}'`);
  args[key.slice(2)] = process.argv[i + 1];
}
for (const key of ["model", "prompt-ids", "decode", "threads", "context"]) {
  if (args[key] === undefined) fail(`--${key} is required`);
}
const decode = Number(args.decode);
const threads = Number(args.threads);
const contextSize = Number(args.context);
if (!Number.isInteger(decode) || decode < 1 || decode > 4096) fail("--decode must be in [1, 4096]");
if (!Number.isInteger(threads) || threads < 1 || threads > 256) fail("--threads must be in [1, 256]");
const prompt = readFileSync(args["prompt-ids"], "utf8").trim().split(",").map(Number);
if (prompt.length < 2 || prompt.some((t) => !Number.isInteger(t) || t < 0)) {
  fail(`--prompt-ids ${args["prompt-ids"]}: needs >= 2 comma-separated non-negative token ids`);
}
if (!Number.isInteger(contextSize) || contextSize < prompt.length + decode) {
  fail(`--context ${args.context} must hold the prompt (${prompt.length}) + decode (${decode})`);
}

// gpu: false and build: "never": the prebuilt CPU binary or an error, never a source build.
const llama = await getLlama({gpu: false, build: "never", usePrebuiltBinaries: true,
                              logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath: args.model, gpuLayers: 0, useMmap: false});
const context = await model.createContext({contextSize, threads, batchSize: 512, sequences: 1});
const sequence = context.getSequence();

// Prefill all prompt tokens but the last without logits; the last is the first step of the
// greedy loop below and yields the first generated token (as our prefill does), so it is counted
// in the prefill time.
const head = prompt.slice(0, -1);
let t0 = performance.now();
await sequence.evaluateWithoutGeneratingNewTokens(head);
const tokens = [];
const iterator = sequence.evaluate([prompt[prompt.length - 1]], {temperature: 0})[
  Symbol.asyncIterator]();
let next = await iterator.next();
const prefillS = (performance.now() - t0) / 1000;
tokens.push(next.value);
t0 = performance.now();
while (tokens.length < decode + 1) {
  next = await iterator.next();
  if (next.done) break;
  tokens.push(next.value);
}
const decodeS = (performance.now() - t0) / 1000;
await iterator.return?.();
console.log(JSON.stringify({prefill_tokens: prompt.length, prefill_s: prefillS,
                            decode_tokens: tokens.length - 1, decode_s: decodeS, tokens}));
await context.dispose();
await model.dispose();
await llama.dispose();
