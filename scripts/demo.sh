#!/usr/bin/env bash
# The main job, end to end on a fresh machine: install dependencies, build, write a small random
# Llama-shaped checkpoint in the Hugging Face format, start zigzag-server on it, send a
# long-prompt request through gRPC with ZigZag compression at 20%, print the answer and the KV
# memory saved, and stop the server cleanly (SIGTERM drains it).
# (The embedded trained model and text prompts replace the random checkpoint with issue 6.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target zigzag-server zigzag-cli zigzag-make-checkpoint

model_dir="${ZIGZAG_DEMO_MODEL:-build/demo-model}"
port="${ZIGZAG_DEMO_PORT:-50151}"
./build/tools/zigzag-make-checkpoint --out "$model_dir" --arch llama --vocab 512 --hidden 128 \
  --intermediate 256 --layers 4 --heads 8 --kv-heads 2 --max-pos 4096 --dtype bf16 --seed 1

./build/server/zigzag-server --model "$model_dir" --host 127.0.0.1 --port "$port" \
  --metrics-port 0 --kv-memory-mb 64 >build/demo-server.log 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  ./build/tools/zigzag-cli info --target "127.0.0.1:$port" >/dev/null 2>&1 && break
  sleep 0.2
done

prompt=$(seq 0 499 | awk '{printf "%s%d", (NR > 1 ? "," : ""), ($1 * 37) % 500}')
./build/tools/zigzag-cli generate --target "127.0.0.1:$port" --prompt-ids "$prompt" \
  --max-tokens 32 --temperature 0 --kv-policy zigzag --kv-ratio 0.2

kill -TERM "$server"
wait "$server"
trap - EXIT
echo "server drained and stopped (log: build/demo-server.log)"
