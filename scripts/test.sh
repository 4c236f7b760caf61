#!/usr/bin/env bash
# The test command (README.md; .ci/run runs exactly this after scripts/setup.sh):
#  1. a Release build (what users and the Dockerfile build) with -Werror and every target (the CUDA
#     backend too when nvcc is found), and all tests;
#  2. an AddressSanitizer + UndefinedBehaviorSanitizer build of the CPU code and its tests;
#  3. a ThreadSanitizer build of the scheduler and server tests (the code with threads: scheduler
#     worker, gRPC callbacks, metrics), run with scripts/tsan-suppressions.txt;
#  4. the libFuzzer targets (clang-14): every saved regression, then a short run of each target.
# -Werror is CI's (-DZIGZAG_WERROR=ON here); users' builds leave it off.
# GPU tests skip themselves, with a message, on machines without a usable CUDA device.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${ZIGZAG_JOBS:-$(nproc)}"

echo "== build (Release, -Werror; CUDA backend compiled when nvcc is found)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DZIGZAG_WERROR=ON -DZIGZAG_CUDA=AUTO >/dev/null
cmake --build build -j "$jobs"
echo "== tests"
ctest --test-dir build --output-on-failure -j "$jobs"

echo "== build (ASan + UBSan, CPU backend)"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DZIGZAG_SANITIZE=ON -DZIGZAG_CUDA=OFF \
  -DZIGZAG_BUILD_BENCH=OFF -DZIGZAG_WERROR=ON >/dev/null
cmake --build build-asan -j "$jobs"
echo "== tests under ASan + UBSan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs"

echo "== build (ThreadSanitizer: scheduler and server tests, CPU backend)"
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DZIGZAG_SANITIZE=thread \
  -DZIGZAG_CUDA=OFF -DZIGZAG_BUILD_BENCH=OFF -DZIGZAG_WERROR=ON >/dev/null
# Not server_soak_test: 500 calls take ~10 minutes under TSan on 2 cores, at its ctest time limit,
# and every race it could add runs through gRPC callbacks, which the suppressions hide (see
# scripts/tsan-suppressions.txt); the ASan stage runs it.
tsan_targets=()
for src in tests/scheduler*_test.cc tests/server_*_test.cc; do
  [ "$(basename "$src")" = server_soak_test.cc ] || tsan_targets+=("$(basename "$src" .cc)")
done
cmake --build build-tsan -j "$jobs" --target "${tsan_targets[@]}"
# ctest knows GoogleTest's Suite.Test names (gtest_discover_tests): select the suites of the
# binaries just built (the others are not built in this tree).
suites=$(for t in "${tsan_targets[@]}"; do build-tsan/tests/"$t" --gtest_list_tests; done |
  grep -v '^Running main() from' | sed -n 's/^\([^ #][^.]*\)\..*/\1/p' | sort -u | paste -sd'|')
echo "== scheduler and server tests under TSan (${tsan_targets[*]})"
TSAN_OPTIONS="suppressions=$PWD/scripts/tsan-suppressions.txt halt_on_error=1 second_deadlock_stack=1" \
  ctest --test-dir build-tsan --output-on-failure -j "$jobs" -R "^(${suites})\\."

# Fuzzing (fuzz/README.md): clang-14 build in build-fuzz, each target's regressions, then ~15 s of
# fuzzing per target, one at a time.
echo "== fuzz (libFuzzer, short run)"
bash scripts/fuzz.sh --ci
