#!/usr/bin/env bash
# deploy/docker/build-and-smoke.sh: builds the container image from the Dockerfile with buildah (no
# Docker engine, no registry) and runs it: zigzag-server from the image must answer a gRPC
# Generate (a passkey hidden in ~3,000 tokens, ZigZag keeping 20% of the KV cache), its /metrics
# and the health check (the image's own HEALTHCHECK command, and the host's) on loopback, then
# drain and exit 0 on SIGTERM. It prints a summary (image size, build time, the response text and
# KV saved, health status) and writes it to $WORK/summary.md. Takes minutes (the image compiles
# zigzag-server), so it is documented in the README, not run per commit.
#
#   sudo deploy/docker/build-and-smoke.sh          # root: debootstrap and buildah's chroot
#
# The base: a Debian 12 (bookworm) root file system made with debootstrap from the mirror this
# machine's apt uses, imported as a local image, so nothing is pulled from a registry. Its apt
# sources name the same mirror, so the build's RUN steps (host network) install from it too.
#
# Environment:
#   VARIANT         cpu (default) or cuda (needs NVIDIA's repository reachable from the build)
#   MIRROR          Debian mirror; default: the first .../debian URI in /etc/apt/sources.list*
#   SECURITY_MIRROR default: the first .../debian-security URI there, else none
#   BASE_IMAGE      a Debian 12 image to use instead of the debootstrapped one (e.g. debian:12)
#   REBUILD_BASE=1  debootstrap again even when the base image exists
#   WORK            work folder (default build-image/ in the repo: ignored by git and the build)
#   BUILD_JOBS      compile jobs inside the image build (default 2)
#   TAG             image name (default localhost/zigzag-serve:<version>-<variant>)
#   LAYERS          0 (default): no layer cache; 1: cache every build step, so that a rerun skips
#                   the dependency layer. With vfs every cached step is a full copy of the
#                   builder's file system (~2.3 GB each, ~40 GB for the builder's 16 steps)
#   STORAGE_DRIVER  buildah storage (default vfs: works without overlayfs or fuse)
#   KEEP_IMAGE=0    remove the image at the end (default: keep it)
#   SMOKE_ONLY=1    skip the base and the build: run the smoke test on the existing $TAG
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

VARIANT=${VARIANT:-cpu}
WORK=${WORK:-$ROOT/build-image}
BUILD_JOBS=${BUILD_JOBS:-2}
STORAGE_DRIVER=${STORAGE_DRIVER:-vfs}
LAYERS=${LAYERS:-0}
VERSION=$(sed -n 's/^project(zigzag_serve VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
TAG=${TAG:-localhost/zigzag-serve:${VERSION}-${VARIANT}}
DEBOOTSTRAP_BASE=localhost/zigzag-debian-base:12
case "$VARIANT" in cpu | cuda) ;; *) echo "VARIANT must be cpu or cuda, not '$VARIANT'" >&2; exit 2 ;; esac
if [ "$(id -u)" -ne 0 ]; then
  echo "build-and-smoke.sh: run as root (debootstrap and buildah --isolation chroot need it)" >&2
  exit 2
fi
for tool in buildah python3 curl; do
  command -v "$tool" >/dev/null || { echo "build-and-smoke.sh: needs $tool" >&2; exit 2; }
done
BUILDAH=(buildah --storage-driver "$STORAGE_DRIVER")
bah() { "${BUILDAH[@]}" "$@"; }
# One run at a time per machine: a run removes the containers and untagged images that appear in
# buildah's storage while it builds, which must not be another run's.
exec 9>/tmp/zigzag-build-and-smoke.lock
if ! flock -n 9; then
  echo "build-and-smoke.sh: another run holds /tmp/zigzag-build-and-smoke.lock; waiting" >&2
  flock 9
fi
log() { echo "[$(date -u +%H:%M:%S)] $*"; }
mkdir -p "$WORK"
T_START=$(date +%s)
# The revision the build context was taken from (recorded now: the build takes minutes).
COMMIT=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then
  COMMIT="$COMMIT + uncommitted changes: $(git status --porcelain | awk '{print $2}' | paste -sd' ')"
fi

# Debian mirror -----------------------------------------------------------------------------------
# deb822 "URIs:" lines and one-line "deb URI suite ..." entries alike.
apt_uris() {
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
    2>/dev/null | sed -n -e 's/^URIs:[[:space:]]*//p' -e 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?//p' |
    tr ' ' '\n' | grep -E '^https?://'
}
MIRROR=${MIRROR:-$(apt_uris | grep -E '/debian/?$' | head -1 || true)}
SECURITY_MIRROR=${SECURITY_MIRROR-$(apt_uris | grep -E '/debian-security/?$' | head -1 || true)}
MIRROR=${MIRROR%/}
SECURITY_MIRROR=${SECURITY_MIRROR%/}
[ -n "$MIRROR" ] || { echo "no Debian mirror found in /etc/apt/sources.list*: set MIRROR" >&2; exit 2; }
log "mirror $MIRROR${SECURITY_MIRROR:+ (security: $SECURITY_MIRROR)}"

# Base image --------------------------------------------------------------------------------------
T_BASE=$(date +%s)
if [ "${SMOKE_ONLY:-0}" = 1 ]; then
  base=${BASE_IMAGE:-$DEBOOTSTRAP_BASE}
  log "SMOKE_ONLY=1: no base or build; smoke test of the existing $TAG"
elif [ -n "${BASE_IMAGE:-}" ]; then
  base=$BASE_IMAGE
  log "base image $base (given)"
elif [ "${REBUILD_BASE:-0}" != 1 ] && bah inspect --type image "$DEBOOTSTRAP_BASE" >/dev/null 2>&1; then
  base=$DEBOOTSTRAP_BASE
  log "base image $base (exists; REBUILD_BASE=1 makes it again)"
else
  command -v debootstrap >/dev/null || { echo "needs debootstrap (apt-get install debootstrap)" >&2; exit 2; }
  base=$DEBOOTSTRAP_BASE
  rootfs=$WORK/rootfs
  rm -rf "$rootfs"
  log "debootstrap --variant=minbase bookworm from $MIRROR"
  debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -20 "$WORK/debootstrap.log"; exit 1; }
  # The same mirror for the image's apt (deb822, as Debian 12's images have it).
  rm -f "$rootfs/etc/apt/sources.list"
  {
    printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\n' "$MIRROR"
    printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    if [ -n "$SECURITY_MIRROR" ]; then
      printf '\nTypes: deb\nURIs: %s\nSuites: bookworm-security\nComponents: main\n' "$SECURITY_MIRROR"
      printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    fi
  } >"$rootfs/etc/apt/sources.list.d/debian.sources"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/tmp/*
  tar -C "$rootfs" --numeric-owner -cf "$WORK/rootfs.tar" .
  ctr=$(bah from scratch)
  bah add "$ctr" "$WORK/rootfs.tar" / >/dev/null
  bah config --cmd /bin/bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --label org.opencontainers.image.description="Debian 12 minbase (debootstrap from $MIRROR)" "$ctr"
  bah commit --rm --quiet "$ctr" "$base" >/dev/null
  rm -rf "$rootfs" "$WORK/rootfs.tar"
  log "base image $base imported"
fi
base_seconds=$(($(date +%s) - T_BASE))

# Image -------------------------------------------------------------------------------------------
# chroot isolation + host network: RUN steps reach the mirror like the host does. Docker format
# keeps HEALTHCHECK and STOPSIGNAL (the OCI format drops them).
T_BUILD=$(date +%s)
build_note=""
build_cmd=("${BUILDAH[@]}" bud --isolation chroot --network host --format docker --layers="$([ "$LAYERS" = 1 ] && echo true || echo false)"
  --build-arg VARIANT="$VARIANT" --build-arg DEBIAN_IMAGE="$base"
  --build-arg DEBIAN_RUNTIME_IMAGE="$base" --build-arg BUILD_JOBS="$BUILD_JOBS"
  -f Dockerfile -t "$TAG" .)
if [ "${SMOKE_ONLY:-0}" = 1 ]; then
  bah inspect --type image "$TAG" >/dev/null || { echo "no image $TAG to smoke-test" >&2; exit 1; }
  build_seconds=$(cat "$WORK/build-seconds.txt" 2>/dev/null || echo '?')
  build_note=" (the last build; this run is SMOKE_ONLY=1)"
else
  log "building $TAG: ${build_cmd[*]}"
  containers_before=$(bah containers -q | sort)
  dangling_before=$(bah images -q -a --filter dangling=true | sort)
  build_rc=0
  "${build_cmd[@]}" >"$WORK/build.log" 2>&1 || build_rc=$?
  # buildah 1.28 leaves the working container of a stage with no instructions (runtime-cpu)
  # behind: remove the containers this build created; without the layer cache, also the
  # untagged stage images it made (the builder's is ~2.3 GB).
  for c in $(comm -13 <(echo "$containers_before") <(bah containers -q | sort)); do
    bah rm "$c" >/dev/null 2>&1 || true
  done
  if [ "$LAYERS" != 1 ]; then
    for i in $(comm -13 <(echo "$dangling_before") <(bah images -q -a --filter dangling=true | sort)); do
      bah rmi "$i" >/dev/null 2>&1 || true
    done
  fi
  if [ "$build_rc" != 0 ]; then
    tail -40 "$WORK/build.log"
    echo "image build failed: $WORK/build.log" >&2
    exit 1
  fi
  build_seconds=$(($(date +%s) - T_BUILD))
  echo "$build_seconds" >"$WORK/build-seconds.txt"
fi
image_size=$(bah images --format '{{.Size}}' "$TAG" | head -1)
base_size=$(bah images --format '{{.Size}}' "$base" | head -1)
# The package list the builder printed (after its ldd output, before buildah's next line).
runtime_packages=$(awk 'f && /^(-->|\[|STEP|COMMIT)/ {exit} f && /^[a-z0-9][a-z0-9.+-]+$/ {print}
  /cat \/out\/runtime-packages.txt/ {f=1}' "$WORK/build.log" | paste -sd' ' || true)
log "built in ${build_seconds}s, $image_size"

# Smoke run ---------------------------------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
GRPC_PORT=${GRPC_PORT:-$(free_port)}
METRICS_PORT=${METRICS_PORT:-$(free_port)}
bah inspect --type image "$TAG" >"$WORK/image.json"
# config KEY: one line per element of the image's Docker config KEY (a list or a string).
config() {
  python3 -c '
import json, sys
value = json.load(open(sys.argv[1]))["Docker"]["config"].get(sys.argv[2]) or []
print(*([value] if isinstance(value, str) else value), sep="\n")' "$WORK/image.json" "$1"
}
mapfile -t entrypoint < <(config Entrypoint)
mapfile -t default_cmd < <(config Cmd)
image_user=$(config User)
# The image's HEALTHCHECK command (["CMD", ...]), aimed at this run's port.
mapfile -t health_cmd < <(python3 -c '
import json, sys
test = (json.load(open(sys.argv[1]))["Docker"]["config"].get("Healthcheck") or {}).get("Test") or []
print(*[a.replace("127.0.0.1:50051", "127.0.0.1:" + sys.argv[2]) for a in test[1:]], sep="\n")' \
  "$WORK/image.json" "$GRPC_PORT")
[ "${#entrypoint[@]}" -gt 0 ] || { echo "the image has no ENTRYPOINT" >&2; exit 1; }
[ "${#health_cmd[@]}" -gt 0 ] || { echo "the image has no HEALTHCHECK" >&2; exit 1; }
# The image's entrypoint and default flags, then loopback ports for this machine (later flags win)
# and a small KV cache.
server_args=("${entrypoint[@]}" "${default_cmd[@]}" --host=127.0.0.1 --port="$GRPC_PORT"
  --metrics-host=127.0.0.1 --metrics-port="$METRICS_PORT" --kv-memory-mb=64)

# The zigzag-server process under `buildah run` (buildah -> buildah's chroot helper, twice ->
# the server): signals to buildah itself do not reach it.
server_process() {
  local todo=("$1") p c
  while [ "${#todo[@]}" -gt 0 ]; do
    p=${todo[0]}
    todo=("${todo[@]:1}")
    if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = zigzag-server ]; then
      echo "$p"
      return 0
    fi
    for c in $(pgrep -P "$p"); do todo+=("$c"); done
  done
  return 1
}

ctr=$(bah from --quiet "$TAG")
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    proc=$(server_process "$server_pid" || true)
    [ -n "$proc" ] && kill -KILL "$proc" 2>/dev/null
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  bah rm "$ctr" >/dev/null 2>&1 || true
  if [ "${KEEP_IMAGE:-1}" = 0 ]; then bah rmi "$TAG" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
run_in() { bah run --isolation chroot --network host "$ctr" -- "$@"; }

log "starting ${server_args[*]} (user $image_user)"
run_in id >"$WORK/run-id.txt" 2>&1 || true
T_SERVE=$(date +%s)
run_in "${server_args[@]}" >"$WORK/server.log" 2>&1 &
server_pid=$!
health_host=1
for _ in $(seq 1 600); do
  if python3 deploy/docker/grpc_health_check.py "127.0.0.1:$GRPC_PORT" zigzag.v1.Engine 2 \
    >"$WORK/health-host.txt" 2>&1; then
    health_host=0
    break
  fi
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.2
done
ready_seconds=$(($(date +%s) - T_SERVE))
if [ "$health_host" != 0 ]; then
  tail -30 "$WORK/server.log"
  echo "the server from the image did not become ready: $WORK/server.log" >&2
  exit 1
fi
log "ready after ${ready_seconds}s"
# The image's own HEALTHCHECK, run inside the image (its python3-minimal and script) as its user.
health_image=0
run_in "${health_cmd[@]}" >"$WORK/health-image.txt" 2>&1 || health_image=$?
health_live=0
python3 deploy/docker/grpc_health_check.py "127.0.0.1:$GRPC_PORT" "" 3 >>"$WORK/health-host.txt" 2>&1 ||
  health_live=$?

# A passkey hidden in ~2,200 words of git's release notes, as scripts/demo.sh asks it.
passkey=$((RANDOM % 90000 + 10000))
mapfile -t notes < <(find /usr/share/doc/git/RelNotes -name '*.txt' 2>/dev/null | LC_ALL=C sort | awk 'NR % 8 == 0')
if [ "${#notes[@]}" -gt 0 ]; then
  words=$(cat "${notes[@]}" | LC_ALL=C tr -cd '\11\12\15\40-\176' | tr -s '[:space:]' ' ' | cut -d' ' -f1-2200)
else
  words=$(for i in $(seq 1 300); do printf 'The grass is green and the sky is blue number %s. ' "$i"; done)
fi
printf '%s The secret passkey is %s. Remember it. %s What is the secret passkey? The secret passkey is' \
  "$(echo "$words" | cut -d' ' -f1-1100)" "$passkey" "$(echo "$words" | cut -d' ' -f1101-)" >"$WORK/prompt.txt"
generate_rc=0
/usr/bin/python3 deploy/clients/python/zigzag_client.py generate --target "127.0.0.1:$GRPC_PORT" \
  --timeout 300 --prompt-file "$WORK/prompt.txt" --max-tokens 8 --temperature 0 \
  --kv-policy zigzag --kv-ratio 0.2 >"$WORK/generate.txt" 2>&1 || generate_rc=$?
metrics_rc=0
curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics" >"$WORK/metrics.txt" 2>&1 || metrics_rc=$?

# SIGTERM to the server process itself, then its exit status (buildah run passes it on).
server_proc=$(server_process "$server_pid" || true)
drain_rc=unknown
if [ -n "$server_proc" ]; then
  kill -TERM "$server_proc"
  if wait "$server_pid"; then drain_rc=0; else drain_rc=$?; fi
else
  kill -TERM "$server_pid" 2>/dev/null || true
  wait "$server_pid" || true
  drain_rc="server process not found under buildah run"
fi
server_pid=""
total_seconds=$(($(date +%s) - T_START))

# Summary -----------------------------------------------------------------------------------------
field() { sed -n "s/.*$1: \\([^ ]*\\).*/\\1/p" "$WORK/generate.txt" | head -1; }
answer=$(sed -n 's/^text: //p' "$WORK/generate.txt")
found=no
grep -q "$passkey" <<<"$answer" && found=yes
success=$(grep -E '^zigzag_request_success_total' "$WORK/metrics.txt" 2>/dev/null | paste -sd';' || true)
ok=1
[ "$generate_rc" = 0 ] && [ -n "$answer" ] && [ "$health_image" = 0 ] && [ "$health_live" = 0 ] &&
  [ "$metrics_rc" = 0 ] && [ "$drain_rc" = 0 ] || ok=0
{
  echo "# Image smoke test ($(date -u +%Y-%m-%d))"
  echo
  echo "- Command: \`VARIANT=$VARIANT BUILD_JOBS=$BUILD_JOBS deploy/docker/build-and-smoke.sh\`"
  echo "- Commit: $COMMIT"
  echo "- Machine: $(nproc) cores, $(grep -h '^PRETTY_NAME=' /etc/os-release | cut -d= -f2 | tr -d '"'), $(buildah --version)"
  echo "- Base: $base ($base_size; $base_seconds s to make or find); mirror $MIRROR"
  echo "- Image: $TAG, variant $VARIANT, **$image_size**, built in **${build_seconds} s**${build_note} (BUILD_JOBS=$BUILD_JOBS, layer cache $([ "$LAYERS" = 1 ] && echo on || echo off))"
  echo "- Runtime packages (from ldd of zigzag-server): ${runtime_packages:-see build.log}"
  echo "- Run: \`buildah run --isolation chroot --network host\`, user $(tr -d '\n' <"$WORK/run-id.txt" | cut -c1-80)"
  echo "- Server: \`${server_args[*]}\`; ready (health SERVING) after ${ready_seconds} s"
  echo "- Health, the image's HEALTHCHECK inside the image (\`${health_cmd[*]}\`): exit $health_image ($(tr -d '\n' <"$WORK/health-image.txt" | cut -c1-120))"
  echo "- Health from the host: ready (\`zigzag.v1.Engine\`) exit $health_host, live (\`\"\"\`) exit $health_live"
  echo "- Generate (zigzag, 20% of the KV cache, passkey $passkey in a $(wc -w <"$WORK/prompt.txt")-word prompt): exit $generate_rc"
  echo "  - text: $answer (passkey found: $found)"
  echo "  - prompt_tokens $(field prompt_tokens), finish_reason $(sed -n 's/^finish_reason: //p' "$WORK/generate.txt")"
  echo "  - kv_full_bytes $(field kv_full_bytes), kv_retained_bytes $(field kv_retained_bytes), **kv_saved_bytes $(field kv_saved_bytes)**, kv_retained_ratio $(field kv_retained_ratio)"
  echo "- /metrics: exit $metrics_rc; $success"
  echo "- SIGTERM: drained, exit status $drain_rc"
  echo "- Total: ${total_seconds} s. Result: **$([ "$ok" = 1 ] && echo PASS || echo FAIL)**"
  echo
  echo "Client output:"
  echo
  echo '```'
  cat "$WORK/generate.txt"
  echo '```'
  echo
  echo "Server log (last lines):"
  echo
  echo '```'
  tail -n 12 "$WORK/server.log"
  echo '```'
} >"$WORK/summary.md"
cat "$WORK/summary.md"
[ "$ok" = 1 ]
