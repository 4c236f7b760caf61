#!/usr/bin/env bash
# bench/gpu/pack.sh: builds the CUDA configuration on THIS machine (no GPU needed: nvcc 13 is
# here) and packs what bench/gpu/run.sh needs on the GPU machine into build-gpu-bundle/:
#   bundle.tar.xz  bin/ (every test, the benchmarks, stripped), lib/ (the Debian shared libraries
#                  they link: absl, spdlog, fmt, OpenBLAS, ...; lib/compat/ holds libstdc++ and
#                  libgcc_s, used only when the GPU machine's own are too old), data/ (what the
#                  tests read from the source and build trees, below), MANIFEST
# data/: the tests find it through environment variables run.sh sets (the compiled-in paths
# name this machine's trees): source/models/zigzag-tiny and source/tests/data (tokenizer_test,
# niah_test; ZIGZAG_SOURCE_DIR, ZIGZAG_TOKENIZER_CORPUS), tokenizer_reference/ (the ctest fixture's
# output, made here: it needs npm's registry, which the GPU machine lacks; ZIGZAG_TOKENIZER_DATA)
# and RelNotes/ (git's release notes, niah_test's haystack; ZIGZAG_NIAH_HAYSTACK). What could
# not be packed is listed in MANIFEST as "missing_data", and run.sh leaves out the tests needing
# it, saying so.
# Why: the GPU machine has CUDA 13, CMake and Python but none of our Debian dependencies and no
# package registry, so building there fails at find_package(absl). cuBLAS and the CUDA runtime
# come from the GPU machine's own CUDA 13 (the same major version as nvcc here).
#
#   bench/gpu/pack.sh [BUILD_DIR]        # default build-gpu; JOBS=2 by default
# then carry it:  device run, carry ["build-gpu-bundle"], command "bash bench/gpu/run.sh".
# The folder name matches .gitignore's /build*/, so it is never committed. The build type is
# Release, what users and the image run (BUILD_TYPE overrides); binaries are stripped when packed.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build-gpu}
BUNDLE=build-gpu-bundle
ARCH=${ZIGZAG_CUDA_ARCHITECTURES:-90}

cmake -S . -B "$BUILD" -G Ninja -DZIGZAG_CUDA=ON -DZIGZAG_CUDA_ARCHITECTURES="$ARCH" \
  -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" >/dev/null
cmake --build "$BUILD" -j"${JOBS:-2}"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib/compat"
binaries=()
for f in "$BUILD"/tests/*_test "$BUILD"/bench/bench_* "$BUILD"/tools/zigzag-*; do
  if [ ! -f "$f" ] || [ ! -x "$f" ]; then continue; fi
  strip -o "$stage/bin/$(basename "$f")" "$f"
  binaries+=("$stage/bin/$(basename "$f")")
done

# Shared libraries the binaries resolve here, minus glibc (must be the GPU machine's own), the
# driver and the big CUDA libraries (the GPU machine's CUDA 13 provides them).
declare -A seen=()
for b in "${binaries[@]}"; do
  while read -r path; do
    [ -n "$path" ] && seen["$path"]=1
  done < <(ldd "$b" | awk '/=> \// {print $3}')
done
for path in "${!seen[@]}"; do
  name=$(basename "$path")
  case "$name" in
    libc.so.* | libm.so.* | libpthread.so.* | libdl.so.* | librt.so.* | ld-linux*) continue ;;
    libcuda.so.* | libcublas.so.* | libcublasLt.so.*) continue ;;
    libstdc++.so.* | libgcc_s.so.*) cp -L "$path" "$stage/lib/compat/$name" ;;
    *) cp -L "$path" "$stage/lib/$name" ;;
  esac
done

# Test data (see the top): the tokenizer fixture runs here if it has not yet.
missing_data=()
mkdir -p "$stage/data/source/tests" "$stage/data/source/models"
cp -r models/zigzag-tiny "$stage/data/source/models/"
cp -r tests/data "$stage/data/source/tests/"
ref="$BUILD/tests/tokenizer_reference"
if [ ! -f "$ref/spm/ids.txt" ] || [ ! -f "$ref/llama3/reference.json" ]; then
  ctest --test-dir "$BUILD" -R '^tokenizer_reference_setup$' --output-on-failure >"$BUILD/pack-fixture.log" 2>&1 ||
    echo "pack.sh: the tokenizer_reference fixture failed ($BUILD/pack-fixture.log)"
fi
if [ -f "$ref/spm/ids.txt" ] && [ -f "$ref/llama3/reference.json" ]; then
  mkdir -p "$stage/data/tokenizer_reference"
  # Everything but npm's install tree (node_modules: only the fixture itself needs it).
  tar -C "$ref" --exclude=./npm -cf - . | tar -C "$stage/data/tokenizer_reference" -xf -
else
  missing_data+=(tokenizer_reference)
fi
if [ -d /usr/share/doc/git/RelNotes ]; then
  cp -rL /usr/share/doc/git/RelNotes "$stage/data/RelNotes"
else
  missing_data+=(RelNotes)
fi

{
  echo "commit $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "missing_data ${missing_data[*]}"
  echo "dirty_files $(git status --porcelain 2>/dev/null | wc -l)"
  echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(grep -h '^PRETTY_NAME=' /etc/os-release | cut -d= -f2)"
  echo "nvcc $(/usr/local/cuda/bin/nvcc --version 2>/dev/null | tail -1)"
  echo "cmake -DZIGZAG_CUDA=ON -DZIGZAG_CUDA_ARCHITECTURES=$ARCH -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-Release}"
  git status --porcelain 2>/dev/null | sed 's/^/status /'
} >"$stage/MANIFEST"

rm -rf "$BUNDLE"
mkdir -p "$BUNDLE"
tar -C "$stage" -cJf "$BUNDLE/bundle.tar.xz" .
echo "pack.sh: ${#binaries[@]} binaries, $(find "$stage/lib" -name '*.so*' | wc -l) libraries ->" \
  "$BUNDLE/bundle.tar.xz ($(du -h "$BUNDLE/bundle.tar.xz" | cut -f1)); carry [\"$BUNDLE\"]"
