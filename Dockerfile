# docker-host-exporter. Multi-stage: the build stage makes a virtualenv, the final stage has
# Python and nothing else (netlink, nf_tables and ip_tables are all spoken directly).
#
# The base is a build argument: where no registry is reachable (as in this project's tests) pass
# a locally made Debian: scripts/base-image.sh builds one with debootstrap and `docker import`.
#   docker build --build-arg BASE_IMAGE=dhe-test/debian:bookworm -t docker-host-exporter .
#
# Run it in the host's PID and network namespaces (see the README, "Running it in a container"):
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
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY deploy/docker/constraints.txt ./
COPY deploy/docker/wheelhouse/ /wheelhouse/
COPY exporter ./exporter
RUN python3 -m venv /opt/docker-host-exporter \
 && /opt/docker-host-exporter/bin/pip install --no-cache-dir --no-compile \
      --find-links /wheelhouse -c constraints.txt . \
 && /opt/docker-host-exporter/bin/python -m compileall -q /opt/docker-host-exporter/lib

FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc /usr/share/man
COPY --from=build /opt/docker-host-exporter /opt/docker-host-exporter
# A different --web.listen-address needs HEALTHCHECK_URL set to match.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    HEALTHCHECK_URL=http://127.0.0.1:9747/healthz
EXPOSE 9747
# /healthz answers while the sampler runs; it never touches the host.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/opt/docker-host-exporter/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTHCHECK_URL'], timeout=2)"]
ENTRYPOINT ["/opt/docker-host-exporter/bin/docker-host-exporter"]
