#!/usr/bin/env bash
# Installs every build and test dependency of zigzag-serve from Debian's packages.
# Idempotent: packages already present are skipped, so running it twice costs seconds.
# CUDA is not installed here: it is found in /usr/local/cuda when the machine has it.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libabsl-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  # oneDNN: the CPU backend's prefill matmuls (kernels/cpu/matmul_dnnl.h). OpenBLAS: only
  # bench_matmul's comparison (the backend no longer links a BLAS).
  libdnnl-dev libopenblas-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libprotobuf-dev protobuf-compiler libgrpc++-dev protobuf-compiler-grpc
  prometheus-cpp-dev libmicrohttpd-dev python3-grpcio python3-protobuf
  libicu-dev sentencepiece
  python3-matplotlib python3-numpy python3-yaml yamllint
  nodejs
  clang-format
  # The libFuzzer targets (fuzz/, scripts/fuzz.sh): clang and its sanitizer/fuzzer runtimes.
  clang-14 libclang-rt-14-dev
)

missing=()
# The image ships npm outside Debian's package; install Debian's only where there is none.
if ! command -v npm >/dev/null 2>&1; then packages+=(npm); fi
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "setup.sh: all ${#packages[@]} packages already installed"
  exit 0
fi

echo "setup.sh: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
