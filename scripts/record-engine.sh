#!/bin/sh
# Record a real engine for the replay tests (tests/integration/test_engine_replay.py):
#   scripts/record-engine.sh DOCKERD DOCKER_PROXY iptables|nftables [--out DIR] [--runc RUNC]
# as root, on the test bed (scripts/testbed.sh), with an already built dockerd and
# docker-proxy (this script builds nothing; docs/testing.md says which moby tag and Go the
# checked-in recordings came from). The engine runs in a network namespace of its own with its
# own roots and socket; the recording lands in tests/fixtures/engines/<version>-<backend>/.
set -eu
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "record-engine.sh: run as root" >&2; exit 1; }
[ $# -ge 3 ] || { echo "usage: $0 DOCKERD DOCKER_PROXY iptables|nftables [--out DIR] [--runc RUNC]" >&2; exit 2; }
PYTHON=${PYTHON:-.venv/bin/python}
exec "$PYTHON" -m tests.record_engine "$@"
