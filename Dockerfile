# docker-host-exporter. Multi-stage: the build stage installs Debian's Python and the exporter
# into a virtualenv, then gathers into /rootfs only what running it needs (the interpreter, the
# standard library less its tests, IDLE, tkinter and ensurepip, the shared libraries the
# interpreter and the extension modules load, the virtualenv without pip), byte-compiled. The
# final stage is that root and nothing else: no shell, no apt, no pip, no docs (55 MB, was 280:
# docs/benchmarks.md).
# Netlink, nf_tables and ip_tables are all spoken directly, so no firewall tool is needed.
#
# The base is a build argument: where no registry is reachable (as in this project's tests) pass
# a locally made Debian: scripts/base-image.sh builds one with debootstrap and `docker import`.
# `make image` builds it with the version and the git commit as labels and in --version:
#   docker build --build-arg BASE_IMAGE=dhe-test/debian:bookworm \
#     --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) \
#     -t docker-host-exporter .
#
# Run it in the host's PID and network namespaces (docs/deploy.md, "Running it in a container"):
#   docker run -d --pid=host --network=host --read-only --cap-drop=ALL \
#     --cap-add=SYS_PTRACE --cap-add=DAC_READ_SEARCH --cap-add=NET_ADMIN --cap-add=NET_RAW \
#     --security-opt apparmor=unconfined \
#     -v /var/run/docker.sock:/var/run/docker.sock:ro docker-host-exporter
# It runs as root inside: reading other processes' /proc/PID/ns needs CAP_SYS_PTRACE in the
# effective set, which a non-root user only gets through file capabilities on the Python binary,
# and then the container would not start at all without every one of them added. The
# capabilities above are all it holds.
# Without network access to PyPI, put the wheels in deploy/docker/wheelhouse first and build
# with --build-arg PIP_NO_INDEX=1:
#   pip wheel -w deploy/docker/wheelhouse -c deploy/docker/constraints.txt 'setuptools>=77' .
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
ARG PIP_NO_INDEX=
# The commit the image is built from: the build context has no .git (see .dockerignore).
ARG REVISION=
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md LICENSE ./
COPY deploy/docker/constraints.txt ./
COPY deploy/docker/wheelhouse/ /wheelhouse/
COPY exporter ./exporter
RUN python3 -m venv /opt/docker-host-exporter \
 && DHE_REVISION="$REVISION" /opt/docker-host-exporter/bin/pip install --no-cache-dir \
      --no-compile --find-links /wheelhouse -c constraints.txt . \
 && /opt/docker-host-exporter/bin/pip uninstall -q -y pip setuptools \
 && rm -rf /opt/docker-host-exporter/bin/activate* /opt/docker-host-exporter/bin/pip*
COPY scripts/image-root.sh /usr/local/bin/image-root
RUN image-root /rootfs /opt/docker-host-exporter

FROM scratch
ARG VERSION=unknown
ARG REVISION=unknown
ARG SOURCE=https://github.com/docker-host-exporter/docker-host-exporter
COPY --from=build /rootfs/ /
LABEL org.opencontainers.image.title="docker-host-exporter" \
      org.opencontainers.image.description="Prometheus exporter for a Docker host's plumbing" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"
# A different --web.listen-address needs HEALTHCHECK_URL set to match.
ENV PATH=/opt/docker-host-exporter/bin:/usr/bin \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYTHONUTF8=1 \
    HEALTHCHECK_URL=http://127.0.0.1:9747/healthz
EXPOSE 9747
# /healthz answers while the sampler runs; it never touches the host.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/opt/docker-host-exporter/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTHCHECK_URL'], timeout=2)"]
ENTRYPOINT ["/opt/docker-host-exporter/bin/docker-host-exporter"]
