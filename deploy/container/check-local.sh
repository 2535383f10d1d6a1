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
# emptyDirs only where the services write.
run=(
  "${podman[@]}" run --rm --network none ${RUNTIME:+--runtime "$RUNTIME"}
  --read-only --cap-drop ALL --security-opt no-new-privileges
  --tmpfs /tmp:rw,size=512m --tmpfs /var/lib/meeting-mesh:rw,size=1g,uid=10001,gid=10001
  --tmpfs /var/cache/meeting-mesh/models:rw,size=1g,uid=10001,gid=10001
  -v "$PWD/deploy/container/smoke.py:/opt/smoke.py:ro"
)

step() { printf '\n==> %s\n' "$*"; }

step "sizes"
"${podman[@]}" images --format '{{.Repository}}:{{.Tag}} {{.Size}}' --filter "reference=meeting-mesh*:$TAG"

for image in "$SERVICE" "$GPU"; do
  step "$image: user, entrypoint"
  "${run[@]}" --entrypoint id "$image" | tee /dev/stderr | grep -q '^uid=10001(meeting-mesh) gid=10001'
  "${run[@]}" "$image" --help | head -3
done

step "speech engines: absent from $SERVICE, present in $GPU"
probe='import importlib.util as u; print({m: bool(u.find_spec(m)) for m in ("faster_whisper", "ctranslate2", "resemblyzer", "nvidia.cublas", "nvidia.cudnn")})'
"${run[@]}" --entrypoint python "$SERVICE" -c "$probe" | tee /dev/stderr | grep -q "{'faster_whisper': False, 'ctranslate2': False, 'resemblyzer': False, 'nvidia.cublas': False, 'nvidia.cudnn': False}"
"${run[@]}" --entrypoint python "$GPU" -c "$probe" | tee /dev/stderr | grep -q "{'faster_whisper': True, 'ctranslate2': True, 'resemblyzer': True, 'nvidia.cublas': True, 'nvidia.cudnn': True}"
# CUDA's libraries resolve through LD_LIBRARY_PATH (no GPU needed to load them).
"${run[@]}" --entrypoint python "$GPU" -c 'import ctypes; ctypes.CDLL("libcublas.so.12"); ctypes.CDLL("libcudnn.so.9"); import ctranslate2; print("cuBLAS, cuDNN load; CTranslate2", ctranslate2.__version__, "sees", ctranslate2.get_cuda_device_count(), "GPU(s)")'

step "$SERVICE: every service command, mock engine"
"${run[@]}" --entrypoint python "$SERVICE" /opt/smoke.py mock
step "$GPU: every service command, the real engine on the CPU"
"${run[@]}" --entrypoint python "$GPU" /opt/smoke.py whisper
step "all checks passed"
