"""Docker Engine API reader. GET endpoints only: the exporter never changes the host.

One list call covers every container in every state; no per-container inspect, so the daemon's
cost stays flat as containers grow (PID 1 and namespaces come from /proc instead). After an
event names one container, the list endpoint is asked for that container alone (filtered by
id): the very record a full list would hold, at the cost of one entry.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import re
import socket
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
import docker.utils
import requests

# The states the Engine API reports for a container; every one is exported, zero when empty,
# so a dashboard does not lose a line when the last container leaves a state.
CONTAINER_STATES: tuple[str, ...] = (
    "created",
    "running",
    "paused",
    "restarting",
    "removing",
    "exited",
    "dead",
)
# Running in the Engine's sense (State.Running): paused and restarting containers keep their
# processes, addresses and published ports too.
RUNNING_STATES: tuple[str, ...] = ("running", "paused", "restarting")


@dataclass(frozen=True, order=True)
class PublishedPort:
    """A port the Engine API lists for a container: host side and container side."""

    protocol: str
    host_ip: str
    host_port: int
    container_port: int


@dataclass(frozen=True)
class ContainerRecord:
    """One container as the Engine API's list endpoint reports it (no inspect needed)."""

    id: str
    name: str
    image: str
    image_id: str
    state: str
    network_mode: str
    created: float
    ports: tuple[PublishedPort, ...] = ()
    addresses: tuple[str, ...] = ()  # IPv4 addresses on its networks
    ipv6_addresses: tuple[str, ...] = ()  # global IPv6 addresses on its networks
    # (key, value) of its Docker labels whose keys were allowlisted; no other label is kept.
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def __hash__(self) -> int:
        # A block's key on every write of the containers' series (metrics.Families.blocks_of):
        # by the id alone (a str keeps its hash), not every port and label. Equal records have
        # equal ids, so the hash stays consistent with the generated __eq__.
        return hash(self.id)


@dataclass(frozen=True)
class EngineComponent:
    name: str
    version: str


@dataclass(frozen=True)
class DockerNetwork:
    """A Docker network as GET /networks reports it."""

    id: str
    name: str
    driver: str
    bridge: str  # the Linux bridge backing it; "" for drivers without one
    subnets: tuple[str, ...]
    internal: bool
    ip_masquerade: bool
    enable_ipv6: bool = False
    # com.docker.network.bridge.gateway_mode_ipv6 (Docker 27+): "nat" (or unset) and
    # "nat-unprotected" NAT the network's IPv6 traffic; "routed" and "isolated" do not.
    gateway_mode_ipv6: str = ""
    # Swarm's routing-mesh network: it justifies the ingress_sbox namespace on this node.
    ingress: bool = False
    # IPAM gateways, in canonical form; shown on the topology page, never judged.
    gateways: tuple[str, ...] = ()
    # For the daemon collector's restart-only keys: IPAM IPRanges (fixed-cidr, fixed-cidr-v6 on
    # the default bridge), the driver's MTU option ("" unset) and when the network was created.
    ip_ranges: tuple[str, ...] = ()
    mtu: str = ""
    created: float | None = None


@dataclass(frozen=True)
class EngineFacts:
    """What one run of the Docker API reader saw."""

    containers: tuple[ContainerRecord, ...]
    components: tuple[EngineComponent, ...]
    api_version: str
    networks: tuple[DockerNetwork, ...] = ()
    # The container the exporter itself runs in (readers/own_container.py), if any: set by the
    # containers collector's source, which reads it once, so that its writer reads no file.
    own_container_id: str | None = None


DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


class DockerUnavailable(Exception):
    """The Engine API could not be reached or answered with an error."""


class BadAnswer(ValueError):
    """An answer that is not what the endpoint gives (the Engine API's text is not trusted)."""


def resolve_docker_host(flag: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """--docker.host wins, then DOCKER_HOST, then the local socket."""
    return flag or environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


def container_record(entry: Mapping[str, Any], label_keys: Sequence[str] = ()) -> ContainerRecord:
    names = entry.get("Names") or []
    labels = entry.get("Labels") or {}
    # A container's own name is the one without a further slash (older engines also list
    # link aliases such as "/web/db").
    own = next((n for n in names if n.count("/") == 1), names[0] if names else "")
    return ContainerRecord(
        id=entry["Id"],
        name=own.lstrip("/") or entry["Id"][:12],
        image=entry.get("Image") or "",
        image_id=entry.get("ImageID") or "",
        state=(entry.get("State") or "unknown").lower(),
        network_mode=(entry.get("HostConfig") or {}).get("NetworkMode") or "",
        created=float(entry.get("Created") or 0),
        ports=tuple(
            sorted(
                PublishedPort(
                    protocol=p.get("Type") or "tcp",
                    host_ip=p.get("IP") or "",
                    host_port=int(p["PublicPort"]),
                    container_port=int(p.get("PrivatePort") or 0),
                )
                for p in entry.get("Ports") or []
                if p.get("PublicPort")
            )
        ),
        addresses=_addresses(entry, "IPAddress", ipaddress.IPv4Address),
        ipv6_addresses=_addresses(entry, "GlobalIPv6Address", ipaddress.IPv6Address),
        labels=tuple((k, str(labels[k])) for k in label_keys if labels.get(k) is not None),
    )


def _addresses(
    entry: Mapping[str, Any],
    key: str,
    kind: type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address],
) -> tuple[str, ...]:
    """The container's addresses of one family on its networks, in canonical form; anything
    that is not such an address (the Engine API's text is not trusted) is left out."""
    found = set()
    for network in ((entry.get("NetworkSettings") or {}).get("Networks") or {}).values():
        text = network.get(key) if isinstance(network, Mapping) else None
        if not isinstance(text, str) or not text:
            continue
        try:
            found.add(str(kind(text)))
        except ValueError:
            continue
    return tuple(sorted(found))


def _subnets(entry: Mapping[str, Any]) -> tuple[str, ...]:
    """IPAM subnets in canonical form (as rules are decoded); malformed ones are left out."""
    return _ipam(entry, "Subnet", lambda text: str(ipaddress.ip_network(text, strict=False)))


def _ip_ranges(entry: Mapping[str, Any]) -> tuple[str, ...]:
    """IPAM IPRanges (the pool addresses are given from) in canonical form."""
    return _ipam(entry, "IPRange", lambda text: str(ipaddress.ip_network(text, strict=False)))


# RFC 3339 as Go writes it: up to nine fractional digits (more than datetime takes), Z or an
# offset.
_CREATED = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def created_time(text: object) -> float | None:
    """A network's Created as Unix time; None when absent or not RFC 3339 (the zero time an
    engine writes for a network it never stored included)."""
    match = _CREATED.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    seconds, fraction, zone = match.groups()
    try:
        moment = datetime.datetime.fromisoformat(seconds + ("+00:00" if zone == "Z" else zone))
    except ValueError:
        return None
    if moment.year < 1971:
        return None
    return moment.timestamp() + (int(fraction.ljust(9, "0")) / 1e9 if fraction else 0.0)


def _gateways(entry: Mapping[str, Any]) -> tuple[str, ...]:
    """IPAM gateways in canonical form; malformed ones are left out."""
    return _ipam(entry, "Gateway", lambda text: str(ipaddress.ip_address(text)))


def _ipam(entry: Mapping[str, Any], key: str, canonical: Callable[[str], str]) -> tuple[str, ...]:
    found = []
    for config in (entry.get("IPAM") or {}).get("Config") or []:
        text = config.get(key) if isinstance(config, Mapping) else None
        if not isinstance(text, str) or not text:
            continue
        try:
            found.append(canonical(text))
        except ValueError:
            continue
    return tuple(found)


BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"
MASQUERADE_OPTION = "com.docker.network.bridge.enable_ip_masquerade"
GATEWAY_MODE_IPV6_OPTION = "com.docker.network.bridge.gateway_mode_ipv6"
MTU_OPTION = "com.docker.network.driver.mtu"


def docker_network(entry: Mapping[str, Any]) -> DockerNetwork:
    options = entry.get("Options") or {}
    driver = entry.get("Driver") or ""
    bridge = options.get(BRIDGE_NAME_OPTION) or ""
    if not bridge and driver == "bridge":
        bridge = "br-" + entry["Id"][:12]  # libnetwork's name for a user-defined bridge
    return DockerNetwork(
        id=entry["Id"],
        name=entry.get("Name") or "",
        driver=driver,
        bridge=bridge,
        subnets=_subnets(entry),
        internal=bool(entry.get("Internal")),
        ip_masquerade=driver == "bridge"
        and str(options.get(MASQUERADE_OPTION, "true")).lower() == "true",
        enable_ipv6=entry.get("EnableIPv6") is True,
        gateway_mode_ipv6=str(options.get(GATEWAY_MODE_IPV6_OPTION) or ""),
        ingress=entry.get("Ingress") is True,
        gateways=_gateways(entry),
        ip_ranges=_ip_ranges(entry),
        mtu=str(options.get(MTU_OPTION) or ""),
        created=created_time(entry.get("Created")),
    )


def engine_components(version: Mapping[str, Any]) -> tuple[EngineComponent, ...]:
    components = version.get("Components") or [
        {"Name": "Engine", "Version": version.get("Version", "")}
    ]
    return tuple(
        EngineComponent(name=c.get("Name", ""), version=c.get("Version", "")) for c in components
    )


class _EngineClient(docker.APIClient):  # type: ignore[misc]
    """docker-py's client, which reaches a unix socket (or npipe, or ssh) with no look for proxy
    settings: no proxy stands between it and a socket, and looking (the proxy variables, a
    .netrc) on every request was a quarter of each GET's CPU (a ping 0.53 -> 0.40 ms,
    measured). A daemon over TCP is still reached through the proxy the environment names."""

    def _retrieve_server_version(self) -> Any:
        # Called once, by __init__, when the transport is mounted and before any request.
        if self.base_url.startswith("http+docker://"):
            self.trust_env = False
        return super()._retrieve_server_version()


class DockerReader:
    """Lazily connects, negotiates the API version once, and reconnects after any failure.

    Negotiating per connection (not per process) means an exporter started before dockerd, or
    across a dockerd upgrade, recovers with no restart.
    """

    def __init__(self, base_url: str, timeout: float, label_keys: Sequence[str] = ()) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self.label_keys = tuple(label_keys)
        self._client: Any = None
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        kwargs: dict[str, Any] = {}
        if self.base_url == os.environ.get("DOCKER_HOST"):
            kwargs = docker.utils.kwargs_from_env()  # DOCKER_TLS_VERIFY / DOCKER_CERT_PATH
        kwargs["base_url"] = self.base_url
        return _EngineClient(version="auto", timeout=self.timeout, **kwargs)

    def _call(self, fn_name: str, **kwargs: Any) -> Any:
        return self._call_with(lambda client: getattr(client, fn_name)(**kwargs))

    def _call_with(self, call: Callable[[Any], Any]) -> Any:
        with self._lock:
            try:
                if self._client is None:
                    self._client = self._connect()
                return call(self._client)
            except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
                self.close_locked()
                _release(exc)
                raise DockerUnavailable(describe(exc, self.base_url)) from exc
            except ValueError as exc:  # an answer that is not the JSON it should be
                self.close_locked()
                raise DockerUnavailable(f"docker at {self.base_url}: bad answer: {exc}") from exc

    def close_locked(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def close(self) -> None:
        # A call stuck on a hung socket holds the lock; shutting down must not wait for it.
        if self._lock.acquire(timeout=1.0):
            try:
                self.close_locked()
            finally:
                self._lock.release()

    def read(self) -> EngineFacts:
        version = self._call("version")
        containers = self._call("containers", all=True)
        networks = self.read_networks()
        return EngineFacts(
            containers=tuple(
                sorted((container_record(c, self.label_keys) for c in containers), key=by_name)
            ),
            components=engine_components(version),
            api_version=str(version.get("ApiVersion", "")),
            networks=networks,
        )

    def read_container(self, container_id: str) -> ContainerRecord | None:
        """One container as a full list would hold it (the list endpoint filtered by its id);
        None when no container has that id (removed). BadAnswer for anything else."""
        entries = self._call("containers", all=True, filters={"id": [container_id]})
        return listed_one(entries, container_id, self.label_keys)

    def read_networks(self) -> tuple[DockerNetwork, ...]:
        """GET /networks, sorted by name (EngineFacts.networks)."""
        networks = self._call("networks")
        return tuple(sorted((docker_network(n) for n in networks), key=lambda n: n.name))

    def call(self, fn_name: str, **kwargs: Any) -> Any:
        """Any read-only call of the SDK's low-level client, by name (GET endpoints only)."""
        return self._call(fn_name, **kwargs)

    def ping(self) -> None:
        """GET /_ping on the kept-alive connection, under the timeout: that dockerd answers at
        all (a hung one fails the call as a list would)."""
        self._call("ping")

    def follow_events(self, filters: dict[str, list[str]]) -> EventFeed:
        """GET /events from now on, held open: its answer headers within the timeout, then its
        lines for as long as dockerd sends them. On a client of its own, so that the shared
        one's lock is never held by a stream that may block for hours."""
        client: Any = None
        try:
            client = self._connect()
            response = client._get(
                client._url("/events"),
                params={"filters": json.dumps(filters)},
                stream=True,
                timeout=self.timeout,
            )
            raw = client._get_raw_response_socket(response)  # raises on an error status
            sock = getattr(raw, "_sock", raw)  # a unix socket's comes wrapped in a SocketIO
            # The next event may be hours away: wait for it with no timeout; interrupt() wakes it.
            sock.settimeout(None)
            return EventFeed(client, response, sock, self.base_url)
        except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
            if client is not None:
                client.close()
            _release(exc)
            raise DockerUnavailable(describe(exc, self.base_url)) from exc
        except Exception:  # a transport whose socket is not where it is looked for (ssh)
            if client is not None:
                client.close()
            raise

    def info(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("info")
        return result

    def events(
        self, since: float, until: float, filters: dict[str, list[str]] | None = None
    ) -> list[dict[str, Any]]:
        """The daemon's event log in [since, until]: a finite GET /events, under the timeout.

        The SDK's events() streams with no timeout at all; a daemon that stops answering
        would hold the call, and the collector, forever.
        """
        params: dict[str, str] = {"since": f"{since:.9f}", "until": f"{until:.9f}"}
        if filters:
            params["filters"] = json.dumps(filters)

        def get(client: Any) -> Any:
            # Closed after the answer: docker-py keeps a connection pool per URL, and each
            # since/until makes a new one, so kept-alive connections would pile up (25 per
            # reader, measured).
            response = client.get(
                client._url("/events"),
                params=params,
                timeout=self.timeout,
                headers={"Connection": "close"},
            )
            client._raise_for_status(response)
            return response.text

        text: str = self._call_with(get)
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def reload_events(self, since: float, until: float) -> list[dict[str, Any]]:
        """The daemon's reload events in [since, until]."""
        # until in the past or now: a future "until" would block until then.
        events = self.events(since, until, filters={"type": ["daemon"], "event": ["reload"]})
        return [e for e in events if e.get("Action") == "reload"]


# dockerd's events are a few hundred bytes (a container's labels included); a longer line is not
# kept whole (the Engine API's text is not trusted): it counts as "something changed".
MAX_EVENT_LINE = 64 * 1024


class EventFeed:
    """One open GET /events: its lines as dockerd sends them, closable from another thread."""

    def __init__(self, client: Any, response: Any, sock: Any, base_url: str) -> None:
        self.base_url = base_url
        self._client = client
        self._response = response
        self._sock = sock

    def lines(self) -> Iterator[bytes | None]:
        """Each line as it comes (None for one longer than MAX_EVENT_LINE); ends when dockerd
        closes the stream. Raises DockerUnavailable when it breaks."""
        pending = b""
        dropping = False
        try:
            for chunk in self._response.iter_content(chunk_size=None):
                pending += chunk
                while (end := pending.find(b"\n")) >= 0:
                    line, pending = pending[:end], pending[end + 1 :]
                    if dropping:
                        dropping = False  # the end of the overlong line, already reported
                    elif line.strip():
                        yield line
                if len(pending) > MAX_EVENT_LINE:
                    if not dropping:
                        yield None
                    pending, dropping = b"", True
        except Exception as exc:  # urllib3's and requests' errors alike: the stream is gone
            _release(exc)
            broken = f"docker at {self.base_url}: event stream broken"
            raise DockerUnavailable(broken) from exc

    def interrupt(self) -> None:
        """Wakes the thread blocked reading the stream, from any other thread: it sees the
        stream end (shutdown, not close: a socket closed under a reading thread leaves that
        thread waiting)."""
        with contextlib.suppress(OSError):  # already closed by dockerd
            self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """By the thread that read it, once done."""
        self._response.close()
        self._client.close()


def by_name(record: ContainerRecord) -> tuple[str, str]:
    """The order of EngineFacts.containers."""
    return (record.name, record.id)


def listed_one(
    entries: object, container_id: str, label_keys: Sequence[str]
) -> ContainerRecord | None:
    """The list endpoint's answer for one container id: its record, or None when it lists
    none. Anything else (several entries, another id, a malformed entry) is a BadAnswer."""
    if not isinstance(entries, list) or len(entries) > 1:
        raise BadAnswer(f"a list filtered by one id gave {type(entries).__name__} {entries!r:.200}")
    if not entries:
        return None
    entry = entries[0]
    if not isinstance(entry, Mapping) or entry.get("Id") != container_id:
        raise BadAnswer(f"a list filtered by id {container_id[:12]} gave {entry!r:.200}")
    try:
        return container_record(entry, label_keys)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadAnswer(
            f"container {container_id[:12]}: malformed list entry: {exc!r:.200}"
        ) from exc


def _release(exc: BaseException) -> None:
    """Clear the frames of an error's tracebacks, its causes' too. urllib3's errors form
    reference cycles with them, and a failed connect's socket, a local of one of those frames,
    stayed open until the cyclic GC ran: 20 failed calls left 20 sockets open (measured)."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        traceback.clear_frames(error.__traceback__)
        error = error.__cause__ or error.__context__


def timed_out(base_url: str) -> str:
    return f"docker at {base_url}: timed out waiting for the daemon"


def describe(exc: BaseException, base_url: str) -> str:
    """A one-line reason an operator can act on, instead of urllib3's nested repr."""
    text = str(exc)
    if any(needle in text for needle in ("Read timed out", "timed out")):
        return timed_out(base_url)
    for needle, reason in (
        ("FileNotFoundError", "socket does not exist"),
        ("No such file or directory", "socket does not exist"),
        ("Connection refused", "connection refused"),
        ("ConnectionRefusedError", "connection refused"),
        ("Permission denied", "permission denied on the socket"),
    ):
        if needle in text:
            return f"docker at {base_url}: {reason}"
    first_line = text.splitlines()[0] if text else type(exc).__name__
    return f"docker at {base_url}: {first_line[:300]}"
