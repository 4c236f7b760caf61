# syntax=docker/dockerfile:1
# zigzag-serve container: zigzag-server with the embedded model, in two variants chosen by a build
# argument (one Dockerfile; the stages a variant does not use are skipped):
#   VARIANT=cuda (default)  CUDA backend with CPU fallback; CUDA from NVIDIA's Debian 12 repository
#   VARIANT=cpu             CPU backend only; Debian's mirror only, no NVIDIA repository touched
#
#   docker build -t zigzag-serve:0.1.0 .
#   docker build --build-arg VARIANT=cpu -t zigzag-serve:0.1.0-cpu .
#   docker run --rm --gpus all -p 50051:50051 -p 9090:9090 zigzag-serve:0.1.0
#   docker run --rm --gpus all zigzag-serve:0.1.0 --kv-policy zigzag --kv-ratio 0.25   # extra flags
#
# Stage selection by `FROM toolchain-${VARIANT}` needs a builder that skips unused stages:
# BuildKit (Docker >= 23's default) or buildah/podman (--skip-unused-stages, on by default).
#
# Built and run with buildah by deploy/docker/build-and-smoke.sh (CPU variant, a debootstrapped
# Debian 12 base, a gRPC request and a health check against the running image; the last run's
# summary is under docs/results/). CI checks the structure (deploy/tests/test_deploy_config.py, run
# by ctest): the variant stages, that the cpu variant reaches no NVIDIA repository, the non-root
# USER, the model COPY, HEALTHCHECK, EXPOSE matching the server's default ports, and that every
# flag below exists in `zigzag-server --help`.
#
# Why Debian 12 and not nvidia/cuda:*-ubuntu22.04: the project builds from Debian 12 packages
# (scripts/setup.sh: gRPC 1.51, Protobuf 3.21, Abseil 20220623, prometheus-cpp, sentencepiece),
# several of which Ubuntu 22.04 lacks or ships too old. NVIDIA's CUDA apt repository for Debian 12
# provides the same toolkit the nvidia/cuda images carry, so builder and runtime are Debian 12 with
# CUDA from that repository: the cuda toolchain stage gets nvcc + cuBLAS headers, the runtime stage
# only the shared libraries the binary links (found with ldd, below).

ARG VARIANT=cuda
# Any Debian 12 image works; build-and-smoke.sh passes a local debootstrapped one for both.
ARG DEBIAN_IMAGE=debian:12
ARG DEBIAN_RUNTIME_IMAGE=debian:12-slim
# CUDA package suffix in NVIDIA's repository (cuda-nvcc-12-6, libcublas-12-6, ...).
ARG CUDA_VERSION=12-6
ARG CUDA_REPO=https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64

# ---------------------------------------------------------------------------------------------
# toolchain-cpu / toolchain-cuda: what the builder needs beyond scripts/setup.sh, per variant.
FROM ${DEBIAN_IMAGE} AS toolchain-cpu
ENV ZIGZAG_CMAKE_CUDA=OFF

FROM ${DEBIAN_IMAGE} AS toolchain-cuda
ARG CUDA_VERSION
ARG CUDA_REPO
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends ca-certificates curl \
 && curl -fsSL -o /tmp/cuda-keyring.deb "${CUDA_REPO}/cuda-keyring_1.1-1_all.deb" \
 && dpkg -i /tmp/cuda-keyring.deb \
 && apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends \
      cuda-nvcc-${CUDA_VERSION} cuda-cudart-dev-${CUDA_VERSION} libcublas-dev-${CUDA_VERSION} \
 && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/local/cuda/bin:${PATH} \
    ZIGZAG_CMAKE_CUDA=ON

# ---------------------------------------------------------------------------------------------
# builder: the variant's toolchain + the project's build dependencies (scripts/setup.sh); builds
# zigzag-server only (no tests, no benchmarks).
FROM toolchain-${VARIANT} AS builder
ARG CUDA_ARCHITECTURES="80;86;89;90"
ARG BUILD_JOBS=0
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src
# setup.sh first, alone, so the dependency layer is cached across source changes. libmicrohttpd
# serves /metrics (server/metrics_http.cc); listed here until setup.sh carries it.
COPY scripts/setup.sh scripts/setup.sh
RUN bash scripts/setup.sh \
 && apt-get install -y -qq --no-install-recommends libmicrohttpd-dev \
 && rm -rf /var/lib/apt/lists/*
# Only what `--target zigzag-server` is built from: a change to tests/, bench/ or docs/ leaves this
# layer (and the compile below) cached. deploy/tests checks that every add_subdirectory() the
# root CMakeLists.txt runs with tests and benchmarks off is copied here.
COPY CMakeLists.txt ./
COPY kernels kernels
COPY core core
COPY proto proto
COPY server server
COPY tools tools
COPY deploy/docker/grpc_health_check.py deploy/docker/grpc_health_check.py
# No -DZIGZAG_WERROR: warnings are CI's business (scripts/test.sh), not a user's image build.
RUN jobs="${BUILD_JOBS}"; [ "$jobs" -gt 0 ] || jobs="$(nproc)"; \
    cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DZIGZAG_CUDA="${ZIGZAG_CMAKE_CUDA}" \
      -DZIGZAG_CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES}" \
      -DZIGZAG_BUILD_TESTS=OFF -DZIGZAG_BUILD_BENCH=OFF \
 && cmake --build /build -j "$jobs" --target zigzag-server \
 && install -D -m 0755 /build/server/zigzag-server /out/usr/local/bin/zigzag-server \
 && strip --strip-debug /out/usr/local/bin/zigzag-server \
 && install -D -m 0755 deploy/docker/grpc_health_check.py \
      /out/usr/local/bin/grpc_health_check.py
# The Debian packages that own the binary's shared libraries (CUDA's included): exactly what the
# runtime stage installs. A library ldd cannot find fails the build here, not at run time.
# (dpkg knows some libraries by their pre-usrmerge /lib path, others by the resolved one.)
RUN set -e; ldd /out/usr/local/bin/zigzag-server | tee /tmp/ldd.txt; \
    if grep -q "not found" /tmp/ldd.txt; then exit 1; fi; \
    for lib in $(awk '$3 ~ /^\// {print $3}' /tmp/ldd.txt); do \
      dpkg -S "$lib" 2>/dev/null || dpkg -S "$(readlink -f "$lib")" || exit 1; \
    done > /tmp/owners.txt; \
    cut -d: -f1 /tmp/owners.txt | sort -u > /out/runtime-packages.txt; \
    cat /out/runtime-packages.txt

# ---------------------------------------------------------------------------------------------
# runtime-cpu / runtime-cuda: the runtime base per variant (cuda: NVIDIA's repository for the CUDA
# libraries, and the variables the NVIDIA container toolkit reads).
FROM ${DEBIAN_RUNTIME_IMAGE} AS runtime-cpu

FROM ${DEBIAN_RUNTIME_IMAGE} AS runtime-cuda
COPY --from=toolchain-cuda /tmp/cuda-keyring.deb /tmp/cuda-keyring.deb
RUN dpkg -i /tmp/cuda-keyring.deb && rm /tmp/cuda-keyring.deb
# The NVIDIA container toolkit mounts the driver (libcuda) when these are set; without a GPU the
# server falls back to the CPU backend (--backend auto).
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    LD_LIBRARY_PATH=/usr/local/cuda/lib64

# ---------------------------------------------------------------------------------------------
# runtime: the variant's base + the server's shared libraries + the embedded model
FROM runtime-${VARIANT} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
COPY --from=builder /out/runtime-packages.txt /tmp/
# python3-minimal runs the HEALTHCHECK script (standard library only). libmicrohttpd12 serves
# /metrics (also in runtime-packages.txt once the server links it; listed so the image has it).
RUN apt-get update -qq \
 && xargs -a /tmp/runtime-packages.txt apt-get install -y -qq --no-install-recommends \
      ca-certificates python3-minimal libmicrohttpd12 \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt \
 && groupadd --system --gid 10001 zigzag \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin zigzag
COPY --from=builder /out/usr/local/bin/ /usr/local/bin/
# The embedded model (trained by tools/, issue 6), read-only and owned by root.
COPY --chown=0:0 --chmod=0755 models/zigzag-tiny /models/zigzag-tiny
USER 10001:10001
WORKDIR /tmp
# gRPC (zigzag.v1.Engine, grpc.health.v1, reflection) and Prometheus /metrics.
EXPOSE 50051 9090
# Ready = the Engine service is SERVING (NOT_SERVING while the model loads or the server drains).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python3", "/usr/local/bin/grpc_health_check.py", "127.0.0.1:50051", "zigzag.v1.Engine", "3"]
# SIGTERM drains: running requests finish within --drain-timeout, then the process exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/zigzag-server", "--model=/models/zigzag-tiny", "--host=0.0.0.0", "--port=50051", "--metrics-host=0.0.0.0", "--metrics-port=9090"]
# Extra flags: `docker run IMAGE --kv-policy zigzag --kv-ratio 0.25` replaces these.
CMD ["--backend=auto", "--log-level=info"]
