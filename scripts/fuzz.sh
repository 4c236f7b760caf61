#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, ZIGZAG_FUZZ=ON) with clang-14 in build-fuzz/ and runs them
# one after another: first each target's saved regressions (fuzz/regressions/<target>/, every
# input once), then fuzzing for SECONDS from a copy of its seed corpus with its dictionary.
# Prints per target: execs, exec/s, coverage (cov: / ft:) and what crashed. Exits non-zero when
# any regression or fuzzing run crashes, runs out of memory or times out; reproducers stay under
# build-fuzz/fuzz-work/<target>/artifacts/. See fuzz/README.md.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]   fuzz each target SECONDS (default 20)
#   scripts/fuzz.sh --ci                    the short run scripts/test.sh does (15 s per target)
#   scripts/fuzz.sh --keep-going 90         go on past crashes (-fork=1), collecting all of them
#   scripts/fuzz.sh --regressions           only replay fuzz/regressions/
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

seconds=20
seed=0  # libFuzzer's: 0 = from the clock
keep_going=0
regressions_only=0
targets=()
for arg in "$@"; do
  case "$arg" in
    # A fixed seed: CI's short run explores the same inputs every time, so it cannot fail by luck.
    --ci) seconds=15 seed=1 ;;
    --keep-going) keep_going=1 ;;
    --regressions) regressions_only=1 ;;
    -h | --help)
      sed -n '2,13p' "$0"
      exit 0
      ;;
    [0-9]*) seconds="$arg" ;;
    fuzz_*) targets+=("$arg") ;;
    *)
      echo "fuzz.sh: unknown argument '$arg' (see --help)" >&2
      exit 2
      ;;
  esac
done

all_targets=(fuzz_safetensors fuzz_model_config fuzz_tokenizer_config fuzz_tokenizer_json
  fuzz_sentencepiece fuzz_detokenize fuzz_request)
if [ "${#targets[@]}" -eq 0 ]; then targets=("${all_targets[@]}"); fi

# Longest mutated input per target: enough for the seeds (the generator mode of shaped_input.h
# makes the megabyte shapes; mutation need not).
max_len_of() {
  case "$1" in
    fuzz_tokenizer_json | fuzz_sentencepiece) echo 16384 ;;
    *) echo 4096 ;;
  esac
}

for tool in clang-14 clang++-14; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "fuzz.sh: $tool not found: install clang-14 and libclang-rt-14-dev (scripts/setup.sh)" >&2
    exit 1
  fi
done

build=build-fuzz
jobs="${ZIGZAG_JOBS:-$(nproc)}"
launcher=()
if command -v ccache >/dev/null 2>&1; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
echo "== fuzz: build (clang-14, libFuzzer + ASan + UBSan) in $build"
CC=clang-14 CXX=clang++-14 cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DZIGZAG_FUZZ=ON -DZIGZAG_CUDA=OFF -DZIGZAG_BUILD_TESTS=OFF -DZIGZAG_BUILD_BENCH=OFF \
  "${launcher[@]}" >/dev/null
cmake --build "$build" -j "$jobs" --target "${targets[@]}"

# Leaks count as findings; UBSan reports stop the run (the code is built without recovery).
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export ZIGZAG_FUZZ_SOURCE_DIR="$root"

# What went wrong, from a libFuzzer / sanitizer log.
failure_kind() {
  local log="$1"
  if grep -q "ERROR: libFuzzer: out-of-memory\|ERROR: libFuzzer: malloc limit\|allocator is out of memory\|allocation-size-too-big\|rss-limit" "$log"; then
    echo "out-of-memory"
  elif grep -q "ERROR: libFuzzer: timeout" "$log"; then
    echo "timeout"
  elif grep -q "ERROR: LeakSanitizer" "$log"; then
    echo "leak"
  elif grep -q "stack-overflow" "$log"; then
    echo "stack-overflow"
  elif grep -q "ERROR: AddressSanitizer" "$log"; then
    echo "asan:$(grep -o 'ERROR: AddressSanitizer: [a-z-]*' "$log" | head -1 | cut -d' ' -f3)"
  elif grep -q "runtime error:" "$log"; then
    echo "ubsan"
  elif grep -q "uncaught exception\|terminate called" "$log"; then
    echo "uncaught-exception"
  elif grep -q "check failed:" "$log"; then
    echo "check-failed"
  elif grep -q "ERROR: libFuzzer: deadly signal" "$log"; then
    echo "deadly-signal"
  else
    echo "exit-code"
  fi
}

failed=0
summary=()
for target in "${targets[@]}"; do
  bin="$build/fuzz/$target"
  work="$build/fuzz-work/$target"
  mkdir -p "$work/corpus" "$work/artifacts"

  # 1. Regressions: each saved input once (they must not crash once their bug is fixed).
  regression_dir="fuzz/regressions/$target"
  regression_status="-"
  if [ -d "$regression_dir" ] && [ -n "$(ls -A "$regression_dir" 2>/dev/null)" ]; then
    bad=0
    total=0
    for input in "$regression_dir"/*; do
      total=$((total + 1))
      log="$work/regression-$(basename "$input").log"
      if ! timeout 120 "$bin" -rss_limit_mb=2048 -timeout=10 "$input" >"$log" 2>&1; then
        bad=$((bad + 1))
        echo "!! $target: regression $input fails ($(failure_kind "$log")); log: $log"
      fi
    done
    regression_status="$((total - bad))/$total ok"
    if [ "$bad" -gt 0 ]; then failed=1; fi
  fi
  if [ "$regressions_only" -eq 1 ]; then
    summary+=("$(printf '%-22s regressions %s' "$target" "$regression_status")")
    continue
  fi

  # 2. Fuzzing from a copy of the seeds (the committed corpus is never written to); inputs found
  #    by earlier runs in this build folder are kept.
  cp -n fuzz/corpus/"$target"/* "$work/corpus/" 2>/dev/null || true
  dict=()
  if [ -f "fuzz/dicts/$target.dict" ]; then dict=(-dict="fuzz/dicts/$target.dict"); fi
  fork=()
  if [ "$keep_going" -eq 1 ]; then
    fork=(-fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1)
  fi
  log="$work/fuzz.log"
  stamp="$work/.started"
  touch "$stamp"
  echo "== fuzz: $target for ${seconds}s (log: $log)"
  rc=0
  # The outer timeout is a backstop for a hung harness; libFuzzer stops itself at max_total_time.
  timeout $((seconds + 300)) "$bin" -max_total_time="$seconds" -max_len="$(max_len_of "$target")" \
    -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
    -seed="$seed" "${dict[@]}" "${fork[@]}" "$work/corpus" >"$log" 2>&1 || rc=$?

  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1 || true)
  if [ -z "$execs" ]; then
    # Fork mode and crashed runs print no final stats: take the last status line.
    execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#' || true)
    rate=$(grep -o 'exec/s:\? [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  fi
  crashes=$(find "$work/artifacts" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' \
    -o -name 'leak-*' \) -newer "$stamp" 2>/dev/null | wc -l)
  outcome="ok"
  if [ "$rc" -ne 0 ] || [ "$crashes" -gt 0 ]; then
    failed=1
    outcome="FAILED: $(failure_kind "$log"), $crashes reproducer(s) in $work/artifacts/"
    # The report's first line and its first frames in our code.
    grep -m1 "ERROR: \|runtime error:\|check failed:\|terminate called" "$log" | cut -c1-200 |
      sed 's/^/   /' || true
    grep -E '^ *#[0-9]+ ' "$log" | grep 'zigzag::\|LLVMFuzzerTestOneInput' | head -5 |
      sed -E 's/\(anonymous namespace\)/{anon}/g; s/^ *#[0-9]+ 0x[0-9a-f]+ in ([^( ]*)(\(.*)? ([^ ]*:[0-9]+):[0-9]+$/     \1  \3/' |
      sed -E 's|[^ ]*/build-fuzz/\.\./||' | cut -c1-160 || true
  fi
  summary+=("$(printf '%-22s execs %-9s exec/s %-6s %-22s regressions %-8s %s' "$target" \
    "${execs:-?}" "${rate:-?}" "${cov:-cov: ?}" "$regression_status" "$outcome")")
done

echo "== fuzz: summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
