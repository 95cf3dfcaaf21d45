#!/usr/bin/env bash
# The test bed: on a fresh Debian machine, as root, install what the tests need, start dockerd
# if none answers, and build the local test images (no registry is reachable: a static busybox
# root filesystem goes in through `docker import`, layered images are built FROM it; the same
# root filesystem goes into Podman through `podman import`).
# Idempotent: re-running it on a ready machine does nothing but check.
# Every program the tests and benchmarks run must come from a package below or from Debian's
# required set: tests/unit/test_testbed.py reads the tests' source to check it.
set -euo pipefail

PACKAGES=(
    docker.io containerd      # the engine; ctr for a container behind dockerd's back
    iptables nftables         # iptables(-legacy) -S, nft for Docker 29's own tables
    ipset                     # Docker 28.0.0's docker-ext-bridges sets (its recorded replay too)
    busybox-static            # the test images' root filesystem
    prometheus                # promtool and the end-to-end Prometheus
    prometheus-alertmanager   # the storm-control end-to-end test; amtool checks its config
    iproute2 bridge-utils     # ip link/netns for veths and orphans; brctl show
    conntrack                 # conntrack tables, per network namespace
    podman                    # namespaces and veths that are not Docker's
    util-linux                # setpriv, unshare, nsenter
    openssl                   # certificates for the TLS tests
    procps                    # ps, for looking at a run (no test runs it)
    debootstrap               # a Debian base image for building the exporter's own
    docker-compose            # the compose file, checked with `docker-compose config`
    ethtool net-tools         # bench/veth.sh, the blog post's script the benchmark times
    chromium chromium-driver  # the /topology page in a real browser (Selenium drives it)
    nodejs                    # node and npm: grafana/pictures/build.sh bundles the pictures' page
    systemd                   # systemd-analyze verify/security on deploy/systemd's unit (not as init)
    pipx                      # the unit's install steps (pipx install .)
    git                       # the release test builds from a clean clone
    strace                    # the systemd unit's seccomp filter, checked against a trace
)
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd-testbed.log}
BASE_IMAGE=dhe-test/busybox:latest
LAYERED_IMAGE=dhe-test/layered:latest
PODMAN_IMAGE=localhost/dhe-test/busybox:latest

say() { printf 'testbed: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    say "must run as root: it installs packages and starts dockerd (as root: make test;" \
        "with sudo: sudo make test; no root at all: make unit runs the tests that need none)"
    exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's nodejs leaves npm to a package of its own; another build of nodejs (NodeSource's,
# which declares it conflicts with Debian's npm) carries npm itself.
if ! command -v npm >/dev/null; then
    say "installing npm"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends npm >/dev/null
fi

# The dashboard pictures' page: Grafana's panel components bundled with esbuild, after `npm ci`
# into a cache outside the repository (nothing to do while its sources are unchanged).
say "dashboard pictures' page: $("$(dirname "$0")/../grafana/pictures/build.sh")"

# Debian's docker.io installs the daemon; the client may be another build earlier on PATH.
DOCKER=${DOCKER:-docker}
engine_answers() { "$DOCKER" version >/dev/null 2>&1; }

if ! engine_answers; then
    say "starting dockerd (log: $DOCKERD_LOG)"
    # A stale pid file from a killed daemon makes dockerd refuse to start.
    if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
        rm -f /var/run/docker.pid
    fi
    setsid dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
    for _ in $(seq 1 120); do
        engine_answers && break
        sleep 0.5
    done
    if ! engine_answers; then
        say "dockerd did not answer within 60s; last lines of its log:"
        tail -n 20 "$DOCKERD_LOG" >&2
        exit 1
    fi
fi

# A root filesystem with a static busybox, made once when an image needs it.
rootfs=
trap 'if [ -n "$rootfs" ]; then rm -rf "$rootfs"; fi' EXIT
busybox_rootfs() {
    if [ -z "$rootfs" ]; then
        rootfs=$(mktemp -d)
        mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/etc"
        cp /bin/busybox "$rootfs/bin/busybox"
        for applet in $(/bin/busybox --list); do
            [ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
        done
        echo 'root:x:0:0:root:/root:/bin/sh' >"$rootfs/etc/passwd"
    fi
}

if ! "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    say "building $BASE_IMAGE from busybox-static"
    busybox_rootfs
    tar -C "$rootfs" -c . | "$DOCKER" import -c 'CMD ["sh"]' -c 'ENV PATH=/bin' - "$BASE_IMAGE" >/dev/null
fi

# The same root filesystem for Podman (its own image store; no registry to pull from either).
if ! podman image exists "$PODMAN_IMAGE"; then
    say "building Podman image $PODMAN_IMAGE from busybox-static"
    busybox_rootfs
    tar -C "$rootfs" -c . | podman import -q -c 'CMD ["sh"]' -c 'ENV PATH=/bin' - "$PODMAN_IMAGE" >/dev/null
fi

if ! "$DOCKER" image inspect "$LAYERED_IMAGE" >/dev/null 2>&1; then
    say "building $LAYERED_IMAGE"
    ctx=$(mktemp -d)
    cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $BASE_IMAGE
RUN mkdir -p /data && echo one >/data/one
RUN dd if=/dev/zero of=/data/blob bs=1024 count=256 2>/dev/null
CMD ["sleep", "3600"]
DOCKERFILE
    if ! out=$(DOCKER_BUILDKIT=0 "$DOCKER" build -q -t "$LAYERED_IMAGE" "$ctx" 2>&1); then
        printf '%s\n' "$out" >&2
        exit 1
    fi
    rm -rf "$ctx"
fi

# A Debian base for building the exporter's own image (no registry to pull one from).
"$(dirname "$0")/base-image.sh" dhe-test/debian:bookworm

say "ready: $("$DOCKER" version --format 'engine {{.Server.Version}}, API {{.Server.APIVersion}}'), images $BASE_IMAGE $LAYERED_IMAGE, podman $PODMAN_IMAGE"
