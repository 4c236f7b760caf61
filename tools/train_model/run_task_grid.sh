#!/usr/bin/env bash
# The task grid of an HF model folder with the task format (issue 14): held-out task prompts, the
# full-cache accuracy in PyTorch, then zigzag-niah over every task x policy x budget x kernel, once
# with uniform and once with adaptive head budgets, the plots and tables.md (summarize_grid.py).
# Every step is seeded, so a rerun on the same model and build writes the same files.
#
#   bash tools/train_model/run_task_grid.sh [MODEL] [OUT]     (defaults: models/zigzag-eval,
#                                                              docs/results/niah-tasks)
# Then a second full-cache test on TEST_TRIALS x 5 more prompts a cell from seed TEST_SEED (defaults 8
# and 781: 40 a cell, about 17 minutes; TEST_TRIALS=0 skips it), so that tables.md can judge the
# model on 60 prompts a cell, where the grid's 20 leave a cell's share uncertain by about 5 points.
# Needs build/tools/zigzag-niah (cmake --build build --target zigzag-niah), /usr/bin/python3 with
# torch and matplotlib. THREADS (default 2), TASKS, BUDGETS, KERNELS, LENGTHS, TRIALS override the grid.
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${1:-models/zigzag-eval}
OUT=${2:-docs/results/niah-tasks}
THREADS=${THREADS:-2}
BUDGETS=${BUDGETS:-0.01,0.02,0.05,0.1,0.2,0.4}
KERNELS=${KERNELS:-7 13}
TASKS=${TASKS:-passkey,multikey,multivalue,vartrack,multiquery}
LENGTHS=${LENGTHS:-512,1024,2048,3072,4096}
TRIALS=${TRIALS:-4}
TEST_TRIALS=${TEST_TRIALS:-8}
TEST_SEED=${TEST_SEED:-781}
NIAH=${NIAH:-build/tools/zigzag-niah}
PY=/usr/bin/python3
[[ $TEST_TRIALS =~ ^[0-9]+$ && $TEST_SEED =~ ^[0-9]+$ ]] || {
  echo "run_task_grid: TEST_TRIALS and TEST_SEED must be whole numbers (got '$TEST_TRIALS', '$TEST_SEED')" >&2; exit 2; }
for f in "$MODEL/config.json" "$MODEL/tokenizer.model" "$NIAH"; do
  [[ -e $f ]] || { echo "run_task_grid: $f is missing" >&2; exit 2; }
done
mkdir -p "$OUT"

$PY tools/train_model/make_eval_tasks.py --tokenizer "$MODEL/tokenizer.model" --out "$OUT/tasks.jsonl" \
    --tasks "$TASKS" --lengths "$LENGTHS" --trials "$TRIALS"
$PY tools/train_model/eval_tasks.py --model "$MODEL" --tasks-file "$OUT/tasks.jsonl" --threads "$THREADS" \
    --json "$OUT/full-cache.json" | tee "$OUT/full-cache.md"
if (( TEST_TRIALS > 0 )); then
  $PY tools/train_model/make_eval_tasks.py --tokenizer "$MODEL/tokenizer.model" \
      --out "$OUT/tasks-seed$TEST_SEED.jsonl" --tasks "$TASKS" --lengths "$LENGTHS" --trials "$TEST_TRIALS" \
      --seed "$TEST_SEED"
  $PY tools/train_model/eval_tasks.py --model "$MODEL" --tasks-file "$OUT/tasks-seed$TEST_SEED.jsonl" \
      --threads "$THREADS" --json "$OUT/full-cache-seed$TEST_SEED.json" | tee "$OUT/full-cache-seed$TEST_SEED.md"
fi

runs=()
for split in uniform adaptive; do
  for k in $KERNELS; do
    policies=snapkv,pyramidkv,zigzag
    [[ $split == uniform ]] && policies=full,streaming,$policies
    "$NIAH" --model "$MODEL" --tasks_file "$OUT/tasks.jsonl" --policies "$policies" --budgets "$BUDGETS" \
        --kv_kernel "$k" --kv_head_budgets "$split" --threads "$THREADS" --out "$OUT/$split-k$k"
    $PY tools/niah/plot_niah.py --results "$OUT/$split-k$k/results.csv" --out "$OUT/$split-k$k"
    runs+=(--run "$split:$k:$OUT/$split-k$k/results.csv")
  done
done
$PY tools/niah/plot_head_split.py --out "$OUT" "${runs[@]}"
# The counts the README quotes (full cache, engine vs PyTorch, layer and head splits, layer shares).
$PY tools/train_model/summarize_grid.py "$OUT" > "$OUT/tables.md"
echo "run_task_grid: wrote $OUT"
