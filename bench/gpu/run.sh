#!/usr/bin/env bash
# bench/gpu/run.sh: issue 5's checks and measurements on a GPU machine, in one call: tests (GPU
# tests included), kernel benchmarks, end-to-end benchmarks on generated Llama-3-8B / Mistral-7B
# shaped bf16 checkpoints, the comparison with Hugging Face transformers, compute-sanitizer
# memcheck and racecheck, and a Markdown report (bench/gpu/report.py) with pass/fail for every
# acceptance number (the CUDA tests judged apart from the CPU-only ones).
#
# HOW TO RUN IT (from a session with the device tool)
#   1. Here, on the dev machine:   bench/gpu/pack.sh          (builds + packs build-gpu-bundle/)
#      The GPU machine lacks our Debian dependencies (absl, spdlog, GTest, ...) and has no package
#      registry, so the binaries travel prebuilt; without a bundle this script builds with CMake,
#      which only works where scripts/setup.sh's packages are installed.
#   2. One call (everything, about 9 minutes on an H100; BUDGET caps it at 570 s and skips what
#      does not fit, saying so in the report):
#        device run  command="bash bench/gpu/run.sh"  carry=["build-gpu-bundle"]  timeout_s=600
#      Or two calls, each well inside the 10-minute limit (the machine keeps nothing between calls,
#      so each call is self-contained: the second regenerates the checkpoints):
#        STAGES="tests kernels memcheck racecheck" bash bench/gpu/run.sh
#        STAGES="e2e compare" bash bench/gpu/run.sh
#      racecheck is the slowest stage (shared-memory hazard tracking); a run that skips it for
#      lack of budget says so, and STAGES=racecheck runs it alone.
#   3. The files come back from $OUT: report.md, results.tar.gz (logs, test XML), the JSON figures.
#      Commit report.md (and the JSON) under bench/results/.
#
# Environment: OUT (default bench/results/<UTC time>), STAGES (default "tests kernels e2e compare
# memcheck racecheck", run in the order given; "sanitize" = both), MODELS (default "llama3-8b mistral-7b"; e2e), COMPARE_MODELS
# (default "llama3-8b"), BUDGET (seconds for the whole script, default 570), ZIGZAG_CKPT_DIR
# (generated checkpoints, default /tmp/zigzag-ckpt), ZIGZAG_BUILD_DIR (build with CMake there even
# when a bundle is present; default build-gpu), ARCH (CUDA architecture when building, 90),
# BUILD_TYPE (default Release, as pack.sh).
# Every stage runs under `timeout`, bounded by its own limit and by what is left of BUDGET.
# Bundle tests read their data from the bundle's data/ (bench/gpu/pack.sh); a test whose data the
# bundle lacks is left out with a message (and listed in the report), never failed for a path.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
SELF="$ROOT/bench/gpu/run.sh"

# ---------------------------------------------------------------------------------------------
# Subcommands (run under `timeout` by the stages below; they inherit the exported variables).
case "${1:-}" in
  __tests)
    if [ "$ZZ_MODE" = build ]; then
      exec ctest --test-dir "$ZZ_BUILD" -j4 --timeout 300 --output-on-failure \
        --output-junit "$ZZ_WORK/tests/ctest.xml"
    fi
    # Bundle: every test binary, four at a time (__test_one below). The data the tests read
    # comes from the bundle (pack.sh), in place of the build machine's paths; a test whose data
    # the bundle lacks is left out, with the reason in tests/filtered.txt.
    data=$ZZ_BUNDLE/data
    export ZIGZAG_SOURCE_DIR=$data/source
    export ZIGZAG_TOKENIZER_CORPUS=$data/source/tests/data/tokenizer_corpus.txt
    export ZIGZAG_TOKENIZER_DATA=$data/tokenizer_reference
    export ZIGZAG_NIAH_HAYSTACK=$data/RelNotes
    : >"$ZZ_WORK/tests/filtered.txt"
    : >"$ZZ_WORK/tests/exit-status.tsv"
    leave_out() { # BINARY GTEST_PATTERN REASON ("*": the whole binary)
      echo "$1: $2 left out: $3" | tee -a "$ZZ_WORK/tests/filtered.txt"
    }
    [ -d "$ZIGZAG_SOURCE_DIR/models/zigzag-tiny" ] ||
      leave_out tokenizer_test '*' "the bundle has no data/source (packed by an older pack.sh)"
    [ -f "$ZIGZAG_TOKENIZER_DATA/spm/ids.txt" ] ||
      leave_out tokenizer_test '*' "the bundle has no tokenizer reference data (pack.sh could not run the tokenizer_reference fixture)"
    if [ ! -d "$ZIGZAG_SOURCE_DIR/models/zigzag-tiny" ] || [ ! -d "$ZIGZAG_NIAH_HAYSTACK" ]; then
      leave_out niah_test 'EmbeddedModelTest.*' "the bundle has no embedded model or no git release notes (the haystack)"
    fi
    find "$ZZ_BIN" -maxdepth 1 -name '*_test' -print0 | sort -z | xargs -0 -P4 -n1 "$SELF" __test_one
    exit $?
    ;;
  __test_one)
    # One bundle test binary: GoogleTest XML in tests/, its exit status in tests/exit-status.tsv
    # (a binary that crashes writes no XML), minus what tests/filtered.txt leaves out.
    n=$(basename "$2")
    excluded=$(awk -v n="$n:" '$1 == n {print $2}' "$ZZ_WORK/tests/filtered.txt" | sort -u | paste -sd: -)
    if [[ ":$excluded:" == *":*:"* ]]; then
      printf '%s\tleft out\n' "$n" >>"$ZZ_WORK/tests/exit-status.tsv"
      echo "$n left out"
      exit 0
    fi
    "$2" --gtest_output=xml:"$ZZ_WORK/tests/$n.xml" ${excluded:+"--gtest_filter=-$excluded"} \
      >"$ZZ_WORK/logs/test-$n.log" 2>&1
    rc=$?
    printf '%s\t%s\n' "$n" "$rc" >>"$ZZ_WORK/tests/exit-status.tsv"
    echo "$n exit $rc"
    exit $rc
    ;;
  __sanitize)
    # $2: memcheck (device memory accesses) or racecheck (shared-memory hazards: the flash and
    # split-K attention kernels, the block reductions). Each binary gets an equal share of the
    # stage's time limit, so one slow binary cannot leave the others unchecked.
    tool=$2
    binaries=(cuda_backend_test backend_ops_test backend_attention_test backend_compaction_test)
    share=$(((ZZ_STAGE_LIMIT - 10) / ${#binaries[@]}))
    case $tool in
      # API errors are not counted: some tests provoke them on purpose (out-of-memory, a bad
      # launch); memcheck's subject is device memory accesses.
      memcheck) options=(--report-api-errors no) ;;
      racecheck) options=(--racecheck-report hazard) ;;
      *) echo "unknown sanitizer tool '$tool'"; exit 2 ;;
    esac
    rc=0
    for t in "${binaries[@]}"; do
      [ -x "$ZZ_BIN/$t" ] || continue
      log="$ZZ_WORK/sanitizer/$tool-$t.log"
      timeout --kill-after=5 "$share" "$ZZ_SANITIZER" --tool "$tool" "${options[@]}" \
        --print-limit 20 --error-exitcode 99 "$ZZ_BIN/$t" --gtest_filter='*cuda*:*Cuda*' \
        >"$log" 2>&1
      status=$?
      # report.py reads this line: a binary that crashed or timed out under the tool is not clean,
      # whatever summary was printed.
      echo "run.sh: $tool exit status $status" >>"$log"
      [ "$status" -eq 0 ] || rc=1
      grep -E "ERROR SUMMARY|RACECHECK SUMMARY|PASSED|FAILED|exit status" "$log" | sed "s/^/$tool $t: /"
    done
    exit $rc
    ;;
  __e2e)
    model=$2
    # The checkpoint was started in the background at the beginning: wait until its writer is
    # done (if it failed, bench_e2e below writes the checkpoint itself).
    if [ -f "$ZZ_WORK/checkpoint-$model.started" ]; then
      while [ ! -f "$ZZ_WORK/checkpoint-$model.done" ]; do sleep 2; done
      echo "checkpoint writer for $model: exit $(cat "$ZZ_WORK/checkpoint-$model.done")"
    fi
    case "$model" in
      llama3-8b) args=() ;;
      mistral-7b) args=("--stages=copy,prefill,decode") ;;
      *) args=("--prefill-tokens=64,256" "--decode-batches=1,4" --decode-context=32
               --decode-steps=4 --concurrency-tokens=1024) ;;
    esac
    exec "$ZZ_BIN/bench_e2e" --model="$model" --cache-dir="$ZZ_CKPT_DIR" \
      --json-out="$ZZ_WORK/e2e-$model.json" "${args[@]}"
    ;;
  __compare)
    model=$2
    "$ZZ_BIN/bench_dump_logits" --model-dir="$ZZ_CKPT_DIR/$model" \
      --out-prefix="$ZZ_WORK/ours-$model" --prompt-len=64 --greedy-tokens=16 || exit 1
    # Python runs with the machine's own LD_LIBRARY_PATH, not the bundle's (see publish).
    exec env LD_LIBRARY_PATH="$ZZ_ORIGINAL_LD_PATH" PYTHONUNBUFFERED=1 \
      python3 "$ROOT/bench/gpu/compare_transformers.py" \
      --model "$ZZ_CKPT_DIR/$model" --ours "$ZZ_WORK/ours-$model" \
      --json-out "$ZZ_WORK/compare-$model.json" --batches 1,8,32,64 --context 512 --new-tokens 32
    ;;
esac

# ---------------------------------------------------------------------------------------------
STAGES=${STAGES:-"tests kernels e2e compare memcheck racecheck"}
STAGES=${STAGES//sanitize/memcheck racecheck}
MODELS=${MODELS:-"llama3-8b mistral-7b"}
COMPARE_MODELS=${COMPARE_MODELS:-"llama3-8b"}
BUDGET=${BUDGET:-570}
OUT=${OUT:-$ROOT/bench/results/$(date -u +%Y%m%d-%H%M%S)}
export ZZ_CKPT_DIR=${ZIGZAG_CKPT_DIR:-/tmp/zigzag-ckpt}
export ZZ_WORK=${ZIGZAG_WORK_DIR:-/tmp/zigzag-gpu-run}
# Python (report, transformers) keeps the machine's own library path: the bundle's lib/ holds
# Debian's libssl, libz... for our binaries only.
export ZZ_ORIGINAL_LD_PATH=${LD_LIBRARY_PATH:-}
T0=$(date +%s)
rm -rf "$ZZ_WORK"
mkdir -p "$OUT" "$ZZ_WORK/tests" "$ZZ_WORK/sanitizer" "$ZZ_WORK/logs" "$ZZ_CKPT_DIR"
wants() { [[ " $STAGES " == *" $1 "* ]]; }

# Writes the report and the result files into $OUT (after every stage, so a run cut short still
# returns what it measured). $OUT gets at most 8 files: report.md, results.tar.gz and the JSONs.
publish() {
  env LD_LIBRARY_PATH="$ZZ_ORIGINAL_LD_PATH" python3 "$ROOT/bench/gpu/report.py" "$ZZ_WORK" \
    >"$ZZ_WORK/report.md" 2>"$ZZ_WORK/logs/report.err"
  cp "$ZZ_WORK/report.md" "$OUT/report.md"
  for f in "$ZZ_WORK"/kernels.json "$ZZ_WORK"/e2e-*.json "$ZZ_WORK"/compare-*.json; do
    [ -f "$f" ] && cp "$f" "$OUT/"
  done
  tar -C "$ZZ_WORK" --exclude='*.f32' -czf "$OUT/results.tar.gz" . 2>/dev/null
}

# stage NAME LIMIT COMMAND...: runs COMMAND under timeout (LIMIT, or what is left of BUDGET minus
# 25 s for the report), logs to logs/NAME.log, records a row in stages.tsv and publishes.
stage() {
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET - ($(date +%s) - T0) - 25))
  if ((left < 20)); then
    printf '%s\tskipped: budget spent\t0\t%s\n' "$name" "$*" >>"$ZZ_WORK/stages.tsv"
    echo "=== $name: skipped (budget of ${BUDGET}s spent; run it in another call)"
    return 1
  fi
  ((limit > left)) && limit=$left
  export ZZ_STAGE_LIMIT=$limit
  echo "=== $name (limit ${limit}s): $*"
  local start rc status
  start=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >"$ZZ_WORK/logs/$name.log" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124 | 137) status="timeout after ${limit}s" ;;
    *) status="failed (exit $rc)" ;;
  esac
  tail -n 12 "$ZZ_WORK/logs/$name.log" | sed "s/^/  /"
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$(($(date +%s) - start))" "$*" >>"$ZZ_WORK/stages.tsv"
  echo "=== $name: $status in $(($(date +%s) - start))s"
  publish
  return $rc
}

# Device and revision ---------------------------------------------------------------------------
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader \
    2>/dev/null || echo "no nvidia-smi"
  command -v nvcc >/dev/null && nvcc --version | tail -1
  [ -x /usr/local/cuda/bin/nvcc ] && /usr/local/cuda/bin/nvcc --version | tail -1
} | paste -sd ';' >"$ZZ_WORK/device.txt"
echo "device: $(cat "$ZZ_WORK/device.txt")"

# Binaries: a prebuilt bundle when carried, else a CMake build here ------------------------------
if [ -z "${ZIGZAG_BUILD_DIR:-}" ] && [ -f "$ROOT/build-gpu-bundle/bundle.tar.xz" ]; then
  export ZZ_MODE=bundle
  ZZ_BUNDLE=/tmp/zigzag-bundle
  rm -rf "$ZZ_BUNDLE" && mkdir -p "$ZZ_BUNDLE"
  tar -C "$ZZ_BUNDLE" -xJf "$ROOT/build-gpu-bundle/bundle.tar.xz"
  export ZZ_BIN=$ZZ_BUNDLE/bin ZZ_BUNDLE
  cuda_lib=""
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu; do
    [ -e "$d/libcublasLt.so.13" ] && cuda_lib=$d && break
  done
  if [ -z "$cuda_lib" ]; then
    found=$(find /usr/local /opt /usr/lib -name 'libcublasLt.so.13' 2>/dev/null | head -1)
    [ -n "$found" ] && cuda_lib=$(dirname "$found")
  fi
  # For our binaries (Python runs with ZZ_ORIGINAL_LD_PATH instead).
  export LD_LIBRARY_PATH="$ZZ_BUNDLE/lib${cuda_lib:+:$cuda_lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # The GPU machine's libstdc++ is normally newer than Debian 12's; fall back to ours if not.
  if "$ZZ_BIN/dtype_test" --gtest_list_tests 2>&1 | grep -q "GLIBCXX\|CXXABI"; then
    export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$ZZ_BUNDLE/lib/compat"
  fi
  missing=$(ldd "$ZZ_BIN/bench_kernels" "$ZZ_BIN/cuda_backend_test" | grep "not found" | sort -u)
  [ -n "$missing" ] && echo "WARNING: unresolved libraries (cuBLAS dir: '${cuda_lib}'): $missing"
  commit=$(grep '^commit ' "$ZZ_BUNDLE/MANIFEST" | cut -d' ' -f2)
  dirty=$(grep '^dirty_files ' "$ZZ_BUNDLE/MANIFEST" | cut -d' ' -f2)
  echo "$commit (prebuilt bundle; $dirty uncommitted files when packed; $(grep '^built ' "$ZZ_BUNDLE/MANIFEST"))" \
    >"$ZZ_WORK/commit.txt"
  cp "$ZZ_BUNDLE/MANIFEST" "$ZZ_WORK/MANIFEST"
  printf 'bundle\tok\t0\tunpacked build-gpu-bundle/bundle.tar.xz (LD_LIBRARY_PATH=%s)\n' \
    "$LD_LIBRARY_PATH" >>"$ZZ_WORK/stages.tsv"
else
  export ZZ_MODE=build
  export ZZ_BUILD=${ZIGZAG_BUILD_DIR:-$ROOT/build-gpu}
  export ZZ_BIN=$ZZ_BUILD/bin-links
  echo "$(git rev-parse HEAD 2>/dev/null || echo unknown) (built here)" >"$ZZ_WORK/commit.txt"
  stage build 420 bash -c "cmake -S '$ROOT' -B '$ZZ_BUILD' -G Ninja -DZIGZAG_CUDA=ON \
    -DZIGZAG_CUDA_ARCHITECTURES=${ARCH:-90} -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-Release} && \
    cmake --build '$ZZ_BUILD' -j$(nproc)" || {
    echo "build failed: see $ZZ_WORK/logs/build.log (no bundle was carried: bench/gpu/pack.sh)"
    publish
    exit 1
  }
  mkdir -p "$ZZ_BIN"
  ln -sf "$ZZ_BUILD"/tests/*_test "$ZZ_BUILD"/bench/bench_* "$ZZ_BIN/"
fi
echo "commit: $(cat "$ZZ_WORK/commit.txt")"

# Checkpoints: written in the background from the start (about a minute each, CPU-bound) while
# the tests and kernel benchmarks use the GPU. Each needs ~17 GB of disk.
if wants e2e || wants compare; then
  avail_gb=$(df -BG --output=avail "$ZZ_CKPT_DIR" | tail -1 | tr -dc '0-9')
  kept=""
  for m in $MODELS; do
    if ((avail_gb < 20)); then
      echo "not enough disk for $m (${avail_gb} GB free in $ZZ_CKPT_DIR): skipped"
      continue
    fi
    avail_gb=$((avail_gb - 17))
    kept="$kept $m"
    touch "$ZZ_WORK/checkpoint-$m.started"
    (
      "$ZZ_BIN/bench_e2e" --model="$m" --cache-dir="$ZZ_CKPT_DIR" --write-only \
        >"$ZZ_WORK/logs/checkpoint-$m.log" 2>&1
      echo $? >"$ZZ_WORK/checkpoint-$m.done"
    ) &
  done
  MODELS=$kept
fi

# Stages ----------------------------------------------------------------------------------------
for s in $STAGES; do
  case $s in
    tests) stage tests 150 "$SELF" __tests ;;
    kernels)
      stage kernels 120 "$ZZ_BIN/bench_kernels" --benchmark_counters_tabular=true \
        --benchmark_out_format=json --benchmark_out="$ZZ_WORK/kernels.json"
      ;;
    e2e)
      for m in $MODELS; do
        limit=200
        [ "$m" = mistral-7b ] && limit=120
        stage "e2e-$m" $limit "$SELF" __e2e "$m"
      done
      ;;
    compare)
      for m in $COMPARE_MODELS; do
        [[ " $MODELS " == *" $m "* ]] || { echo "compare $m: no checkpoint (not in MODELS)"; continue; }
        stage "compare-$m" 180 "$SELF" __compare "$m"
      done
      ;;
    memcheck | racecheck)
      export ZZ_SANITIZER
      ZZ_SANITIZER=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
      limit=150
      [ "$s" = racecheck ] && limit=180
      if [ -x "$ZZ_SANITIZER" ]; then
        stage "$s" $limit "$SELF" __sanitize "$s"
      else
        echo "=== $s: skipped (no compute-sanitizer on PATH or in /usr/local/cuda/bin)"
        printf '%s\tskipped: no compute-sanitizer\t0\t-\n' "$s" >>"$ZZ_WORK/stages.tsv"
      fi
      ;;
    *) echo "unknown stage '$s' (tests kernels e2e compare memcheck racecheck sanitize)" ;;
  esac
done

publish
echo
echo "=== report: $OUT/report.md ($(($(date +%s) - T0)) s in all)"
sed -n '/^## Acceptance/,/^## Tests/p' "$ZZ_WORK/report.md" | head -n -1
