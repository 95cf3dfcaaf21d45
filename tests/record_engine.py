"""Record a real engine for the replay tests: `scripts/record-engine.sh DOCKERD DOCKER_PROXY
BACKEND` (as root). The dockerd given (already built; nothing here builds one) runs in a network
namespace of its own with its own data-root, exec-root, pidfile and socket, so the host's
firewall, bridges and engine are untouched. On it the scene the engine tests use: the default
bridge and a user network (IPv4 and IPv6), TCP and UDP ports published on 0.0.0.0, 127.0.0.1 and
::, a namespace sharer, an internal network, and swarm ingress: a single-node swarm advertised on
the namespace's own address and a service publishing a TCP port through the routing mesh (the
nftables backend refuses swarm: its refusal is recorded). Then what our readers read is written to
tests/fixtures/engines/<version>-<backend>/: iptables-save, ip6tables-save, `nft -j list
ruleset`, the sysctls, every Engine API answer the exporter asked (through a recording proxy),
dockerd's command line and daemon.json, and the real exporter's exposition on the live engine."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import docker

from tests.engines import (
    FIXTURES,
    UnixConnection,
    _UnixHTTPServer,
    exporter_in_netns,
    get_in_netns,
    in_netns,
    netns,
)
from tests.helpers import stop, wait_for

IMAGE = "dhe-test/busybox:latest"
HTTPD = "exec httpd -f -p 80"
UDHCPD = (
    "mkdir -p /var/lib/misc && touch /var/lib/misc/udhcpd.leases && "
    "printf 'interface eth0\\nstart 10.9.0.10\\nend 10.9.0.20\\n' > /tmp/u.conf && "
    "exec udhcpd -f /tmp/u.conf"
)
BOTH = f"({UDHCPD}) & {HTTPD}"
# The swarm scene: the namespace's own address, on its loopback (the engine's namespace has no
# other link of its own; this kernel has no dummy links, and a veth pair would read as an orphan)
# and the ingress-published port.
SWARM_ADDRESS = "10.99.0.1"
INGRESS_SERVICE, INGRESS_PORT = "ingress-web", 18100
HOST_MODE_SERVICE, HOST_MODE_PORT = "host-web", 18101
USER_V6 = "fd00:d4e:1::/64"
DEFAULT_V6 = "fd00:d4e::/64"
COLLECTORS = ("containers", "network", "nat", "ports", "daemon")
FORWARDING = (
    "net.ipv4.ip_forward",
    "net.ipv6.conf.all.forwarding",
    "net.ipv6.conf.default.forwarding",
)
SYSCTLS = (
    "net.ipv4.ip_forward",
    "net.ipv6.conf.all.forwarding",
    "net.ipv4.conf.all.route_localnet",
)


def engine_get(socket_path: str, path: str) -> tuple[int, str, str]:
    connection = UnixConnection(socket_path)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read().decode()
        return response.status, response.getheader("Content-Type") or "", body
    finally:
        connection.close()


class RecordingProxy:
    """GET-only: forwards each GET to the engine and keeps (path, status, body)."""

    def __init__(self, path: Path, upstream: str) -> None:
        self.answers: dict[str, dict[str, Any]] = {}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                status, content_type, body = engine_get(upstream, self.path)
                proxy.record(self.path, status, content_type, body)
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_HEAD(self) -> None:
                self.do_GET()

        self.server = _UnixHTTPServer(str(path), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def record(self, path: str, status: int, content_type: str, body: str) -> None:
        self.answers[path] = {
            "path": path,
            "status": status,
            "content_type": content_type,
            "body": body,
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def engine(
    dockerd: Path, proxy: Path, backend: str, runc: Path | None, prefix: str = "dhr"
) -> Iterator[dict[str, Any]]:
    directory = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir="/tmp"))
    (directory / "bin").mkdir()
    # dockerd finds docker-proxy on its PATH, as an installed engine does; so does the
    # containerd shim find runc (an engine newer than Debian's runc takes one of its own).
    shutil.copy(proxy, directory / "bin" / "docker-proxy")
    if runc is not None:
        shutil.copy(runc, directory / "bin" / "runc")
    config: dict[str, Any] = {"ipv6": True, "fixed-cidr-v6": DEFAULT_V6, "ip6tables": True}
    if backend == "nftables":
        config["firewall-backend"] = "nftables"
    (directory / "daemon.json").write_text(json.dumps(config, indent=2) + "\n")
    sock = directory / "docker.sock"
    with netns(prefix) as name:
        if backend == "nftables":
            # With the nftables backend dockerd does not switch forwarding on (the host's
            # firewall is the admin's): it refuses to start until it is on.
            for key in FORWARDING:
                in_netns(name, "sysctl", "-qw", f"{key}=1")
        command = [
            "nsenter",
            f"--net=/run/netns/{name}",
            str(dockerd),
            f"--config-file={directory}/daemon.json",
            f"--data-root={directory}/root",
            f"--exec-root={directory}/exec",
            f"--pidfile={directory}/docker.pid",
            "-H",
            f"unix://{sock}",
            "--storage-driver=vfs",
        ]
        log = (directory / "dockerd.log").open("ab")
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "PATH": f"{directory}/bin:{os.environ.get('PATH', '')}",
                # A service's task runs the image the engine holds: no registry is asked for it
                # (the namespace reaches nothing outside, and the image was made here).
                "DOCKER_SERVICE_PREFER_OFFLINE_IMAGE": "1",
            },
        )
        try:

            def answers() -> bool:
                if process.poll() is not None:
                    raise SystemExit((directory / "dockerd.log").read_text()[-3000:])
                try:
                    return sock.exists() and engine_get(str(sock), "/_ping")[0] == 200
                except OSError:  # the socket is there before dockerd serves it
                    return False

            wait_for(answers, timeout=120, interval=0.5)
            yield {
                "directory": directory,
                "netns": name,
                "socket": sock,
                "command": command[2:],
                "config": config,
                "process": process,
            }
        except BaseException:
            # What the engine said is the first thing to read when a scene does not come up.
            print((directory / "dockerd.log").read_text(errors="replace")[-6000:], file=sys.stderr)
            raise
        finally:
            with contextlib.suppress(Exception):
                client = docker.DockerClient(base_url=f"unix://{sock}", version="auto")
                with contextlib.suppress(Exception):  # its overlay namespaces go with it
                    client.swarm.leave(force=True)
                for c in client.containers.list(all=True):
                    c.remove(force=True)
                client.close()
            stop(process, grace=60)
            subprocess.run(["umount", "-R", str(directory)], capture_output=True, check=False)
            shutil.rmtree(directory, ignore_errors=True)


def listening(pid: int, ports: set[int]) -> bool:
    found = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                found.add(int(line.split()[1].rsplit(":", 1)[1], 16))
    return ports <= found


def make_scene(client: Any) -> dict[str, Any]:
    host_engine = docker.from_env()
    try:
        client.images.load(b"".join(host_engine.images.get(IMAGE).save(named=True)))
    finally:
        host_engine.close()
    user = client.networks.create(
        "dhe-user",
        driver="bridge",
        enable_ipv6=True,
        ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=USER_V6)]),
    )
    internal = client.networks.create("dhe-internal", driver="bridge", internal=True)
    run = client.containers.run
    web = run(
        IMAGE,
        ["sh", "-c", BOTH],
        name="web",
        detach=True,
        ports={"80/tcp": [("0.0.0.0", 18080), ("::", 18080)], "67/udp": 18067},
    )
    local = run(
        IMAGE,
        ["sh", "-c", HTTPD],
        name="local",
        detach=True,
        ports={"80/tcp": ("127.0.0.1", 18081)},
    )
    app = run(
        IMAGE,
        ["sh", "-c", BOTH],
        name="app",
        detach=True,
        network=user.name,
        ports={"80/tcp": 18090, "67/udp": ("::", 18091)},
    )
    run(IMAGE, ["sleep", "3600"], name="sharer", detach=True, network_mode=f"container:{web.id}")
    run(IMAGE, ["sleep", "3600"], name="inner", detach=True, network=internal.name)
    for c in (web, local, app):
        c.reload()
        pid = int(c.attrs["State"]["Pid"])
        wanted = {80, 67} if c.name != "local" else {80}
        wait_for(lambda pid=pid, wanted=wanted: listening(pid, wanted), timeout=60)
    return {
        "published": {
            "web": ["0.0.0.0:18080->80/tcp", "[::]:18080->80/tcp", "0.0.0.0:18067->67/udp"],
            "local": ["127.0.0.1:18081->80/tcp"],
            "app": ["0.0.0.0:18090->80/tcp", "[::]:18090->80/tcp", "[::]:18091->67/udp"],
        },
        "sharer": "sharer shares web's network namespace",
        "internal": "inner on dhe-internal (internal: no MASQUERADE, no ports)",
        "networks": {"bridge": "default", "dhe-user": USER_V6, "dhe-internal": "internal"},
    }


def make_swarm_scene(client: Any, name: str, directory: Path) -> dict[str, Any]:
    """A single-node swarm advertised on the namespace's own address and two services: one
    publishing INGRESS_PORT through the routing mesh (ingress mode: the ingress sandbox, and the
    DOCKER-INGRESS rules where the kernel has IPVS), one publishing HOST_MODE_PORT in host mode
    (a port binding on its task's container, as `docker run -p` makes). What the engine does not
    do is recorded as its own answer: the nftables backend refuses swarm; without IPVS in the
    kernel the engine says so and writes no DOCKER-INGRESS rule."""
    in_netns(name, "ip", "addr", "add", f"{SWARM_ADDRESS}/32", "dev", "lo")
    try:
        client.swarm.init(advertise_addr=SWARM_ADDRESS, listen_addr=f"{SWARM_ADDRESS}:2377")
    except docker.errors.APIError as refused:
        return {"advertise": SWARM_ADDRESS, "refused": str(refused.explanation or refused)}
    for service, port in ((INGRESS_SERVICE, INGRESS_PORT), (HOST_MODE_SERVICE, HOST_MODE_PORT)):
        mode = "host" if service == HOST_MODE_SERVICE else "ingress"
        client.services.create(
            IMAGE,
            command=["sh", "-c", HTTPD],
            name=service,
            endpoint_spec=docker.types.EndpointSpec(ports={port: (80, "tcp", mode)}),
        )

    def task(service: str) -> Any:
        found = client.containers.list(
            filters={"label": f"com.docker.swarm.service.name={service}"}
        )
        return found[0] if found and found[0].status == "running" else None

    tasks = {}
    for service in (INGRESS_SERVICE, HOST_MODE_SERVICE):
        wait_for(lambda service=service: task(service) is not None, timeout=240, interval=1)
        tasks[service] = task(service)
        tasks[service].reload()
        pid = int(tasks[service].attrs["State"]["Pid"])
        wait_for(lambda pid=pid: listening(pid, {80}), timeout=60)
    sandbox = directory / "exec" / "netns" / "ingress_sbox"
    wait_for(sandbox.exists, timeout=120, interval=1)

    def ingress_rules() -> bool:
        rule = f"-A DOCKER-INGRESS -p tcp -m tcp --dport {INGRESS_PORT} "
        return all(
            rule in in_netns(name, "iptables-save", "-t", table) for table in ("nat", "filter")
        )

    def host_mode_rules() -> bool:
        return f"--dport {HOST_MODE_PORT} " in in_netns(name, "iptables-save", "-t", "nat")

    wait_for(host_mode_rules, timeout=120, interval=1)
    # DOCKER-INGRESS comes with the service's load balancer, once the task's endpoint is there.
    with contextlib.suppress(AssertionError):
        wait_for(ingress_rules, timeout=60, interval=1)
    time.sleep(2)  # libnetwork finishes the tasks' endpoints after the rules
    # Does the routing mesh answer? (Traffic only inside the engine's own namespace.)
    served = get_in_netns(name, f"http://{SWARM_ADDRESS}:{INGRESS_PORT}/") is not None
    said = [
        line.strip()
        for line in (directory / "dockerd.log").read_text(errors="replace").splitlines()
        if "ipvs" in line.lower()
    ]
    host_task = tasks[HOST_MODE_SERVICE].name
    return {
        "advertise": SWARM_ADDRESS,
        "service": INGRESS_SERVICE,
        "task": tasks[INGRESS_SERVICE].name,
        "published": [f"0.0.0.0:{INGRESS_PORT}->80/tcp (ingress)"],
        "ingress_sbox": sandbox.exists(),
        "ingress_rules": ingress_rules(),
        "ingress_served": served,
        "engine_said_of_ipvs": said[:3],
        "host_mode": {
            "service": HOST_MODE_SERVICE,
            "task": host_task,
            "published": {
                host_task: [
                    _binding(b["HostIp"], b["HostPort"])
                    for b in (tasks[HOST_MODE_SERVICE].attrs["NetworkSettings"]["Ports"] or {}).get(
                        "80/tcp"
                    )
                    or []
                ]
            },
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dockerd", type=Path)
    parser.add_argument("docker_proxy", type=Path)
    parser.add_argument("backend", choices=("iptables", "nftables"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--runc", type=Path, default=None, help="a runc for the engine's PATH")
    parser.add_argument(
        "--prefix", default="dhr", help="the engine's namespace and directory names start so"
    )
    args = parser.parse_args()
    runc = args.runc.resolve() if args.runc else None
    dockerd, docker_proxy = args.dockerd.resolve(), args.docker_proxy.resolve()
    with engine(dockerd, docker_proxy, args.backend, runc, args.prefix) as made:
        name, sock = made["netns"], str(made["socket"])
        client = docker.DockerClient(base_url=f"unix://{sock}", version="auto")
        scene = make_scene(client)
        scene["swarm"] = make_swarm_scene(client, name, made["directory"])
        # The host-mode task's ports are published ports like any container's.
        scene["published"].update(scene["swarm"].get("host_mode", {}).get("published", {}))
        version = json.loads(engine_get(sock, "/version")[2])
        out = args.out or FIXTURES / f"{version['Version']}-{args.backend}"
        out.mkdir(parents=True, exist_ok=True)
        # The live verdicts: the exporter straight on the engine's socket (so the daemon
        # collector finds the dockerd serving it), in the engine's namespace.
        with exporter_in_netns(name, f"unix://{sock}", "--sample.interval=5s") as exporter:
            exporter.sampled(COLLECTORS)
            time.sleep(6)  # a second run: its verdicts, not a first reading's
            samples = exporter.scrape()
        assert samples
        (out / "metrics.prom").write_text(samples)
        # The answers: the same exporter through a recording proxy.
        proxy = RecordingProxy(made["directory"] / "rec.sock", sock)
        try:
            with exporter_in_netns(
                name, f"unix://{made['directory']}/rec.sock", "--sample.interval=5s"
            ) as exporter:
                exporter.sampled(COLLECTORS)
                time.sleep(6)
                exporter.scrape()
            for path in ("/version", "/info", "/containers/json?all=1", "/networks", "/system/df"):
                proxy.record(path, *engine_get(sock, path))
            until = time.time()
            path = f"/events?since=0&until={until:.9f}"
            proxy.record(path, *engine_get(sock, path))
        finally:
            proxy.close()
        answers = sorted(proxy.answers.values(), key=lambda a: a["path"])
        (out / "api.json").write_text(json.dumps(answers, indent=1, sort_keys=True) + "\n")
        for tool in ("iptables-save", "ip6tables-save"):
            (out / f"{tool}.txt").write_text(_strip_counters(in_netns(name, tool)))
        # Docker 28.0.0's FORWARD matches ipsets of its own: the rules load only with them.
        (out / "ipset.txt").write_text(in_netns(name, "ipset", "save"))
        ruleset = json.loads(in_netns(name, "nft", "-j", "list", "ruleset"))
        (out / "nft.json").write_text(json.dumps(ruleset, indent=1) + "\n")
        sysctls = {s: in_netns(name, "sysctl", "-n", s).strip() for s in SYSCTLS}
        links = json.loads(in_netns(name, "ip", "-j", "-d", "address", "show"))
        (out / "links.json").write_text(json.dumps(links, indent=1) + "\n")
        engine_record = {
            "version": version["Version"],
            "api_version": version["ApiVersion"],
            "git_commit": version.get("GitCommit", ""),
            "go_version": version.get("GoVersion", ""),
            "backend": args.backend,
            "dockerd_command": [
                re.sub(rf"/tmp/{re.escape(args.prefix)}-[^/]+", "/tmp/dhr-X", a)
                for a in made["command"]
            ],
            "daemon_json": made["config"],
            "containerd": _first_line(["containerd", "--version"]),
            "runc": _first_line([str(runc or "runc"), "--version"]),
            "iptables": _first_line(["iptables", "--version"]),
            "nft": _first_line(["nft", "--version"]),
            "dockerd_environment": {"DOCKER_SERVICE_PREFER_OFFLINE_IMAGE": "1"},
            "sysctls": sysctls,
            "set_before_start": list(FORWARDING) if args.backend == "nftables" else [],
            "scene": scene,
            "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (out / "engine.json").write_text(json.dumps(engine_record, indent=1) + "\n")
        record_keys(args.dockerd.resolve(), out)
        client.close()
        print(f"recorded {out}")


def record_keys(dockerd: Path, out: Path) -> None:
    """Which daemon.json keys the engine knows, by its own `dockerd --validate`: each key alone
    in a file, its value null; "don't match any configuration option" is the engine's word for
    unknown. (dockerd flattens an object value into its keys, so a key that only holds an
    object, `proxies`, reads unknown here whatever the engine.)"""
    from exporter.readers.daemon_config import KEY_VERSIONS, KNOWN_KEYS  # noqa: PLC0415

    known: list[str] = []
    unknown: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "daemon.json"
        for key in sorted(KNOWN_KEYS | set(KEY_VERSIONS)):
            file.write_text(json.dumps({key: None}))
            found = subprocess.run(
                [str(dockerd), "--validate", f"--config-file={file}"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            said = found.stdout + found.stderr
            (unknown if "match any configuration option" in said else known).append(key)
    (out / "validate.json").write_text(json.dumps({"known": known, "unknown": unknown}, indent=1))


def _binding(address: str, port: str) -> str:
    """As `docker port` prints a binding of container port 80/tcp."""
    address = address or "0.0.0.0"
    return f"{f'[{address}]' if ':' in address else address}:{port}->80/tcp"


def _first_line(command: list[str]) -> str:
    found = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    return (found.stdout or found.stderr).splitlines()[0].strip() if found.stdout else ""


def _strip_counters(saved: str) -> str:
    """Without the comment lines (a timestamp) and with zeroed counters: a re-recording of
    the same engine then differs only where the engine does."""
    lines = [line for line in saved.splitlines() if not line.startswith("#")]
    return "\n".join(re.sub(r"\[\d+:\d+\]", "[0:0]", line) for line in lines) + "\n"


if __name__ == "__main__":
    main()
