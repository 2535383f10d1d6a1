#!/usr/bin/env bash
# Checks the two images build-local.sh made: their size, the user they run as, the speech
# engines only in the GPU node's image, and every service command starting, answering its
# probes and stopping cleanly (smoke.py) on a read-only root filesystem without a network
# (loopback only: --network none).
#
# Settings (environment): TAG (local), RUNTIME (an OCI runtime for podman run, e.g. runc on
# a host with hybrid cgroups, where crun refuses), STORAGE_DRIVER (as for build-local.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."

TAG=${TAG:-local}
SERVICE=meeting-mesh:$TAG
GPU=meeting-mesh-gpu:$TAG
podman=(podman ${STORAGE_DRIVER:+--storage-driver "$STORAGE_DRIVER"})
# What a Kubernetes pod gets from the manifests: read-only root, no capabilities, writable
# emptyDirs only where the services write (U: owned by the image's user, as fsGroup does).
run=(
  "${podman[@]}" run --rm --network none ${RUNTIME:+--runtime "$RUNTIME"}
  --read-only --cap-drop ALL --security-opt no-new-privileges
  --tmpfs /tmp:rw,size=512m --tmpfs /var/lib/meeting-mesh:rw,size=1g,U
  --tmpfs /var/cache/meeting-mesh/models:rw,size=1g,U
  -v "$PWD/deploy/container/smoke.py:/opt/smoke.py:ro"
)

step() { printf '\n==> %s\n' "$*"; }
# expect PATTERN COMMAND...: runs the command, prints its output, fails unless a line matches.
expect() {
  local pattern=$1 output
  shift
  output=$("$@")
  printf '%s\n' "$output"
  grep -q -- "$pattern" <<<"$output" || { echo "FAILED: expected $pattern" >&2; exit 1; }
}

step "sizes"
"${podman[@]}" images --format '{{.Repository}}:{{.Tag}} {{.Size}}' --filter "reference=meeting-mesh*:$TAG"

for image in "$SERVICE" "$GPU"; do
  step "$image: user, entrypoint"
  expect '^uid=10001(meeting-mesh) gid=10001' "${run[@]}" --entrypoint id "$image"
  expect 'gpu-node  *run a GPU node' "${run[@]}" "$image" --help
done

step "speech engines: absent from $SERVICE, present in $GPU"
probe='import importlib.util as u; print({m: bool(u.find_spec(m)) for m in ("faster_whisper", "ctranslate2", "resemblyzer", "nvidia")})'
expect "{'faster_whisper': False, 'ctranslate2': False, 'resemblyzer': False, 'nvidia': False}" \
  "${run[@]}" --entrypoint python "$SERVICE" -c "$probe"
expect "{'faster_whisper': True, 'ctranslate2': True, 'resemblyzer': True, 'nvidia': True}" \
  "${run[@]}" --entrypoint python "$GPU" -c "$probe"
# CUDA's libraries resolve through LD_LIBRARY_PATH (no GPU needed to load them).
"${run[@]}" --entrypoint python "$GPU" -c 'import ctypes; ctypes.CDLL("libcublas.so.12"); ctypes.CDLL("libcudnn.so.9"); import ctranslate2; print("cuBLAS, cuDNN load; CTranslate2", ctranslate2.__version__, "sees", ctranslate2.get_cuda_device_count(), "GPU(s)")'

step "$SERVICE: every service command, mock engine"
"${run[@]}" --entrypoint python "$SERVICE" /opt/smoke.py mock
step "$GPU: every service command, the real engine on the CPU"
"${run[@]}" --entrypoint python "$GPU" /opt/smoke.py whisper
step "all checks passed"
