#!/usr/bin/env bash
# The main job, end to end on a fresh machine: install dependencies, build, start zigzag-server on
# the embedded model (models/zigzag-tiny), send a long-context question through gRPC (a passkey
# hidden in ~3,000 tokens of text, with ZigZag keeping 20% of the KV cache), print the answer and
# the KV memory saved, and stop the server cleanly (SIGTERM drains it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target zigzag-server zigzag-cli

model_dir="${ZIGZAG_DEMO_MODEL:-models/zigzag-tiny}"
port="${ZIGZAG_DEMO_PORT:-50151}"
mkdir -p build/demo
./build/server/zigzag-server --model "$model_dir" --host 127.0.0.1 --port "$port" \
  --metrics-port 0 --kv-memory-mb 64 >build/demo/server.log 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 150); do
  ./build/tools/zigzag-cli info --target "127.0.0.1:$port" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat build/demo/server.log; exit 1; }
  sleep 0.2
done

# The haystack: git's release notes, as plain ASCII words (text the model was not trained on:
# every 8th file, the ones tools/train_model holds out), with the passkey sentence in the middle.
passkey=$((RANDOM % 90000 + 10000))
mapfile -t notes < <(find /usr/share/doc/git/RelNotes -name '*.txt' | LC_ALL=C sort | awk 'NR % 8 == 0')
words=$(cat "${notes[@]}" | LC_ALL=C tr -cd '\11\12\15\40-\176' | tr -s '[:space:]' ' ' |
  cut -d' ' -f1-2200)
first=$(echo "$words" | cut -d' ' -f1-1100)
rest=$(echo "$words" | cut -d' ' -f1101-)
printf '%s The secret passkey is %s. Remember it. %s What is the secret passkey? The secret passkey is' \
  "$first" "$passkey" "$rest" >build/demo/prompt.txt
echo "question: a ~$(wc -w <build/demo/prompt.txt)-word text hides the passkey $passkey; what is it?"

./build/tools/zigzag-cli generate --target "127.0.0.1:$port" --prompt-file build/demo/prompt.txt \
  --max-tokens 8 --temperature 0 --kv-policy zigzag --kv-ratio 0.2 | tee build/demo/answer.txt |
  grep -E '^(text|finish_reason|prompt_tokens|kv_)'
answer=$(sed -n 's/^text: //p' build/demo/answer.txt)
saved=$(sed -n 's/.*kv_saved_bytes: \([0-9]*\).*/\1/p' build/demo/answer.txt)
full=$(sed -n 's/.*kv_full_block_bytes: \([0-9]*\).*/\1/p' build/demo/answer.txt)
echo "answer:${answer}  (expected ${passkey}); KV memory saved: ${saved} of ${full} bytes"

kill -TERM "$server"
wait "$server"
trap - EXIT
echo "server drained and stopped (log: build/demo/server.log)"
