#!/usr/bin/env bash
# bench/peers/run.sh: our CPU engine next to llama.cpp on the same checkpoints and prompt ids.
# Installs node-llama-cpp (pinned, prebuilt CPU binary only) into BUILD/peers, writes a random
# 124M Llama (fp32 and bf16) with zigzag-make-checkpoint, converts it and models/zigzag-tiny with
# tools/gguf, then bench/peers/compare.py times both engines and prints the table.
#   bench/peers/run.sh            # env: BUILD=build THREADS=2 REPEATS=3 DTYPES=f32,bf16
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
THREADS=${THREADS:-2}
REPEATS=${REPEATS:-3}
DTYPES=${DTYPES:-f32,bf16}
CONTEXTS=${CONTEXTS:-512,4096}
NODE_LLAMA_CPP_VERSION=3.22.1
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
work="$BUILD/peers"
die() { echo "bench/peers: $*" >&2; exit 1; }

for tool in zigzag-generate zigzag-make-checkpoint zigzag-tokenize; do
  [ -x "$BUILD/tools/$tool" ] ||
    die "$BUILD/tools/$tool is missing: cmake --build $BUILD --target zigzag-generate zigzag-make-checkpoint zigzag-tokenize"
done
command -v node >/dev/null || die "node is missing (apt-get install nodejs npm)"
command -v npm >/dev/null || die "npm is missing (apt-get install npm)"
"$PY" -c 'import numpy' 2>/dev/null || die "python3 numpy is missing (apt-get install python3-numpy)"

# node-llama-cpp: --omit=optional skips the CUDA/Vulkan builds; only the plain linux-x64 binary
# package is added, and the install scripts (which could download or compile) do not run.
mkdir -p "$work/models" "$work/prompts"
if [ "$(node -p "try{require('./$work/node_modules/node-llama-cpp/package.json').version}catch(e){''}" 2>/dev/null)" != "$NODE_LLAMA_CPP_VERSION" ]; then
  echo "bench/peers: installing node-llama-cpp@$NODE_LLAMA_CPP_VERSION into $work" >&2
  timeout 60 npm view "node-llama-cpp@$NODE_LLAMA_CPP_VERSION" version >/dev/null 2>&1 ||
    die "the npm registry is unreachable (npm view node-llama-cpp failed within 60 s)"
  [ -f "$work/package.json" ] || echo '{"name":"zigzag-peers","private":true,"type":"module"}' >"$work/package.json"
  (cd "$work" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true timeout 900 npm install --no-audit --no-fund \
    --omit=optional --ignore-scripts "node-llama-cpp@$NODE_LLAMA_CPP_VERSION" \
    "@node-llama-cpp/linux-x64@$NODE_LLAMA_CPP_VERSION") >"$work/npm.log" 2>&1 ||
    die "npm install failed; see $work/npm.log"
fi
cp bench/peers/llamacpp_bench.mjs "$work/"

# Checkpoints: 124M Llama (hidden 768, 12 layers, 12 q / 4 kv heads, FFN 2048, vocab 32000),
# the same seed for both dtypes, and their GGUF conversions.
for dtype in ${DTYPES//,/ }; do
  dir="$work/models/llama124m-$dtype"
  if [ ! -f "$dir/config.json" ]; then
    "$BUILD/tools/zigzag-make-checkpoint" --out "$dir" --arch llama --vocab 32000 --hidden 768 \
      --layers 12 --heads 12 --kv_heads 4 --intermediate 2048 --max_pos 8192 --dtype "$dtype" \
      --seed 124 >/dev/null
  fi
  [ -f "$dir.gguf" ] || "$PY" tools/gguf/convert_hf_to_gguf.py --model "$dir" --out "$dir.gguf" --outtype "$dtype"
done
[ -f "$work/models/zigzag-tiny.gguf" ] ||
  "$PY" tools/gguf/convert_hf_to_gguf.py --model models/zigzag-tiny --out "$work/models/zigzag-tiny.gguf"

# Prompts: seeded random ids (BOS first) and the README demo's passkey prompt, tokenized by us.
for n in ${CONTEXTS//,/ }; do
  "$PY" -c "import random; r = random.Random($n); print(','.join(['1'] + [str(r.randrange(3, 32000)) for _ in range($n - 1)]))" >"$work/prompts/random-$n.ids"
done
mapfile -t notes < <(find /usr/share/doc/git/RelNotes -name '*.txt' 2>/dev/null | LC_ALL=C sort | awk 'NR % 8 == 0')
[ "${#notes[@]}" -gt 0 ] || die "/usr/share/doc/git/RelNotes is missing (the demo's haystack; apt-get install git)"
words=$(cat "${notes[@]}" | LC_ALL=C tr -cd '\11\12\15\40-\176' | tr -s '[:space:]' ' ' | cut -d' ' -f1-2200)
text="$(echo "$words" | cut -d' ' -f1-1100) The secret passkey is 54321. Remember it. $(echo "$words" | cut -d' ' -f1101-) What is the secret passkey? The secret passkey is"
"$BUILD/tools/zigzag-tokenize" --model models/zigzag-tiny --add_special_tokens --text "$text" | tr -d ' \n' >"$work/prompts/demo.ids"

echo "bench/peers: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git rev-parse --short HEAD)" >&2
exec "$PY" bench/peers/compare.py --work "$work" --tiny-model models/zigzag-tiny \
  --zigzag-generate "$BUILD/tools/zigzag-generate" --llamacpp-bench "$work/llamacpp_bench.mjs" \
  --threads "$THREADS" --repeats "$REPEATS" --dtypes "$DTYPES" --contexts "$CONTEXTS" "$@"
