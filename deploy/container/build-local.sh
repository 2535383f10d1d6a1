#!/usr/bin/env bash
# Builds both images from Containerfile on a machine that can reach a Debian mirror and PyPI
# but no container registry: the base is a Debian trixie rootfs made by debootstrap, and uv
# comes from the host's own binary. Runs as root (debootstrap and chroot isolation need it).
# Builds use the host's network (the default bridge network is never used), runs use none.
#
#   deploy/container/build-local.sh            # meeting-mesh:local and meeting-mesh-gpu:local
#   deploy/container/build-local.sh --check    # and then check the images (check-local.sh)
#
# Settings (environment): MIRROR (Debian mirror, default deb.debian.org), SUITE (trixie),
# WORK (the rootfs, default /var/tmp/meeting-mesh-rootfs), TAG (local), CA_BUNDLE (the CA
# certificates trusted for the downloads, default the host's), and STORAGE_DRIVER
# (vfs where overlay mounts are not allowed, as inside another container).
set -euo pipefail
cd "$(dirname "$0")/../.."

MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=${SUITE:-trixie}
WORK=${WORK:-/var/tmp/meeting-mesh-rootfs}
TAG=${TAG:-local}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
BASE=localhost/debian-$SUITE-minbase:latest
UV=localhost/meeting-mesh-uv:$(uv --version | awk '{print $2}')
podman=(podman ${STORAGE_DRIVER:+--storage-driver "$STORAGE_DRIVER"})

step() { printf '\n==> %s\n' "$*"; }

if ! "${podman[@]}" image exists "$BASE"; then
  step "base image $BASE from debootstrap ($SUITE, minbase)"
  rm -rf "$WORK"
  debootstrap --variant=minbase "$SUITE" "$WORK" "$MIRROR"
  # The rootfs keeps its sources (the Containerfile runs apt-get), not their downloaded lists.
  rm -rf "$WORK"/var/lib/apt/lists/* "$WORK"/var/cache/apt/archives/*.deb
  tar --numeric-owner -C "$WORK" -c . | "${podman[@]}" import \
    --change 'CMD ["/bin/bash"]' - "$BASE"
  rm -rf "$WORK"
fi

if ! "${podman[@]}" image exists "$UV"; then
  step "uv image $UV from $(command -v uv)"
  # The same shape as ghcr.io/astral-sh/uv: /uv on an empty image.
  container=$(buildah ${STORAGE_DRIVER:+--storage-driver "$STORAGE_DRIVER"} from scratch)
  buildah ${STORAGE_DRIVER:+--storage-driver "$STORAGE_DRIVER"} copy --chmod 0755 \
    "$container" "$(readlink -f "$(command -v uv)")" /uv
  buildah ${STORAGE_DRIVER:+--storage-driver "$STORAGE_DRIVER"} commit --rm "$container" "$UV"
fi

build=(
  "${podman[@]}" build --isolation=chroot --network=host --layers
  --build-arg "BASE_IMAGE=$BASE" --build-arg "UV_IMAGE=$UV" -f Containerfile
)
# The host's CA bundle, for a TLS-inspecting proxy on the way to PyPI (a secret: in no layer).
if [ -f "$CA_BUNDLE" ]; then
  build+=(--secret "id=ca-certificates.crt,src=$CA_BUNDLE")
fi
step "meeting-mesh:$TAG (gateway, meeting-service, gpu-proxy, migrate)"
"${build[@]}" --target service -t "meeting-mesh:$TAG" .
step "meeting-mesh-gpu:$TAG (gpu-node, with the speech engines)"
"${build[@]}" --target gpu-node -t "meeting-mesh-gpu:$TAG" .

"${podman[@]}" images --filter "reference=meeting-mesh*:$TAG"
if [ "${1:-}" = "--check" ]; then
  exec deploy/container/check-local.sh
fi
