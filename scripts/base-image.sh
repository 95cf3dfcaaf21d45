#!/usr/bin/env bash
# A minimal Debian bookworm as a local image, for building the Dockerfile where no registry is
# reachable: debootstrap from Debian's own mirror, then `docker import`. Idempotent.
set -euo pipefail
IMAGE=${1:-dhe-test/debian:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    exit 0
fi
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
echo "base-image: debootstrap bookworm into $rootfs" >&2
debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >/dev/null
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | docker import -c 'CMD ["bash"]' - "$IMAGE" >/dev/null
echo "base-image: $IMAGE" >&2
