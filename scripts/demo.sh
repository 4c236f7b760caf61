#!/usr/bin/env bash
# The main job, end to end on a fresh machine: install dependencies, build, write a small random
# Llama-shaped checkpoint in the Hugging Face format, and generate tokens from it.
# (The gRPC server and the embedded trained model replace the last two steps as they land.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target zigzag-generate zigzag-make-checkpoint
model_dir="${ZIGZAG_DEMO_MODEL:-build/demo-model}"
./build/tools/zigzag-make-checkpoint --out "$model_dir" --arch llama --vocab 512 --hidden 128 \
  --intermediate 256 --layers 4 --heads 8 --kv-heads 2 --dtype bf16 --seed 1
./build/tools/zigzag-generate --model "$model_dir" --prompt-ids 1,17,42,99,7,256,3 \
  --max-tokens 24 --temperature 0 --ignore-eos
