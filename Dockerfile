# syntax=docker/dockerfile:1
# zigzag-serve container: zigzag-server (CUDA backend, CPU fallback) with the embedded model.
#
#   docker build -t zigzag-serve:0.1.0 .
#   docker run --rm --gpus all -p 50051:50051 -p 9090:9090 zigzag-serve:0.1.0
#   docker run --rm --gpus all zigzag-serve:0.1.0 --kv-policy zigzag --kv-ratio 0.25   # extra flags
#
# NOT BUILT IN CI: the project's machines have no Docker engine (the client is there, `docker build`
# is not possible) and no network access to the base images. What CI checks instead
# (deploy/tests/test_deploy_config.py, run by ctest): the stages, the non-root USER, the model
# COPY, HEALTHCHECK, EXPOSE matching the server's default ports, and that every flag below exists
# in `zigzag-server --help`. The health-check script is tested against a real server.
#
# Why Debian 12 and not nvidia/cuda:*-ubuntu22.04: the project builds from Debian 12 packages
# (scripts/setup.sh: gRPC 1.51, Protobuf 3.21, Abseil 20220623, prometheus-cpp, sentencepiece),
# several of which Ubuntu 22.04 lacks or ships too old. NVIDIA's CUDA apt repository for Debian 12
# provides the same toolkit the nvidia/cuda images carry, so builder and runtime are Debian 12 with
# CUDA from that repository: the "devel" stage gets nvcc + cuBLAS headers, the runtime stage only
# the shared libraries the binary links (found with ldd, below).

ARG DEBIAN_IMAGE=debian:12
ARG DEBIAN_RUNTIME_IMAGE=debian:12-slim
# CUDA package suffix in NVIDIA's repository (cuda-nvcc-12-6, libcublas-12-6, ...).
ARG CUDA_VERSION=12-6
ARG CUDA_REPO=https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64

# ---------------------------------------------------------------------------------------------
# builder: Debian 12 + CUDA devel packages + the project's build dependencies (scripts/setup.sh)
FROM ${DEBIAN_IMAGE} AS builder
ARG CUDA_VERSION
ARG CUDA_REPO
ARG CUDA_ARCHITECTURES="80;86;89;90"
ARG BUILD_JOBS=0
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends ca-certificates curl \
 && curl -fsSL -o /tmp/cuda-keyring.deb "${CUDA_REPO}/cuda-keyring_1.1-1_all.deb" \
 && dpkg -i /tmp/cuda-keyring.deb \
 && apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends \
      cuda-nvcc-${CUDA_VERSION} cuda-cudart-dev-${CUDA_VERSION} libcublas-dev-${CUDA_VERSION} \
 && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/local/cuda/bin:${PATH}
WORKDIR /src
# setup.sh first, alone, so the dependency layer is cached across source changes. It installs every
# build dependency, libmicrohttpd-dev (the /metrics HTTP server) among them.
COPY scripts/setup.sh scripts/setup.sh
RUN bash scripts/setup.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN jobs="${BUILD_JOBS}"; [ "$jobs" -gt 0 ] || jobs="$(nproc)"; \
    cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DZIGZAG_CUDA=ON \
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
    cat /out/runtime-packages.txt; \
    cp /tmp/cuda-keyring.deb /out/cuda-keyring.deb

# ---------------------------------------------------------------------------------------------
# runtime: Debian 12 slim + the server's shared libraries + the embedded model
FROM ${DEBIAN_RUNTIME_IMAGE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
COPY --from=builder /out/cuda-keyring.deb /out/runtime-packages.txt /tmp/
# python3-minimal runs the HEALTHCHECK script (standard library only). libmicrohttpd12 (serves
# /metrics) is in runtime-packages.txt already; it is named as well so that the list cannot lose it.
RUN dpkg -i /tmp/cuda-keyring.deb \
 && apt-get update -qq \
 && xargs -a /tmp/runtime-packages.txt apt-get install -y -qq --no-install-recommends \
      ca-certificates python3-minimal libmicrohttpd12 \
 && rm -rf /var/lib/apt/lists/* /tmp/cuda-keyring.deb /tmp/runtime-packages.txt \
 && groupadd --system --gid 10001 zigzag \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin zigzag
COPY --from=builder /out/usr/local/bin/ /usr/local/bin/
# The embedded model (trained by tools/, issue 6), read-only and owned by root.
COPY --chown=0:0 --chmod=0755 models/zigzag-tiny /models/zigzag-tiny
# The NVIDIA container toolkit mounts the driver (libcuda) when these are set; without a GPU the
# server falls back to the CPU backend (--backend auto).
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    LD_LIBRARY_PATH=/usr/local/cuda/lib64
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
