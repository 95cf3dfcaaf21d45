"""Command line: `docker-host-exporter [flags]` serves metrics; `... inspect [flags]` prints one
sample as tables (or JSON facts) for a person at a shell."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Any

from exporter import __version__, logsetup
from exporter.collectors import CollectorDef, all_collectors
from exporter.options import Option
from exporter.readers.docker_api import resolve_docker_host
from exporter.recording import snapshot_json
from exporter.report import render_report
from exporter.revision import revision
from exporter.sampler import Sampler
from exporter.settings import DEFAULT_LISTEN_ADDRESS, Settings, parse_duration
from exporter.topology import TopologyPage, topology_svg
from exporter.web import landing_page, make_server, serve_in_background
from exporter.webconfig import WebConfigError, load_web_config

log = logging.getLogger("exporter")


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _checked(option: Option[Any]) -> Callable[[str], object]:
    """A collector flag's parser and check, their ValueError shown to the user as argparse's
    own: "argument --collector.layers.top-k: must not be negative, not -1"."""

    def checked(text: str) -> object:
        try:
            return option.from_text(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    checked.__name__ = getattr(option.parse, "__name__", "value")
    return checked


def build_parser(
    collectors: Sequence[CollectorDef], inspect: bool = False
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="docker-host-exporter" + (" inspect" if inspect else ""),
        description=(
            "Print one sample of this Docker host's plumbing as tables."
            if inspect
            else "Prometheus exporter for a Docker host's plumbing. "
            "Run `docker-host-exporter inspect` for a one-shot report."
        ),
    )
    add = parser.add_argument
    if inspect:
        add(
            "--format",
            choices=("table", "json", "svg"),
            default="table",
            help="tables for people, the raw facts as JSON, or the topology picture as SVG "
            "(default: table)",
        )
    else:
        add(
            "--web.listen-address",
            dest="listen_address",
            default=DEFAULT_LISTEN_ADDRESS,
            help="address to serve on, host:port or :port (default: %(default)s)",
        )
        add(
            "--web.config.file",
            dest="web_config_file",
            default=None,
            help="TLS and basic auth, in the exporter-toolkit's web configuration format",
        )
        add(
            "--web.telemetry-path",
            dest="telemetry_path",
            default="/metrics",
            help="path under which to expose metrics (default: %(default)s)",
        )
        add(
            "--web.topology",
            dest="web_topology",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="serve /topology, the host's plumbing drawn from the latest sample (default: on)",
        )
    add(
        "--docker.host",
        dest="docker_host",
        default=None,
        help="Docker Engine API address (default: $DOCKER_HOST, else unix:///var/run/docker.sock)",
    )
    add(
        "--path.procfs",
        dest="procfs",
        default="/proc",
        help="the host's procfs mount point (default: %(default)s)",
    )
    add(
        "--sample.interval",
        dest="sample_interval",
        type=_duration,
        default=15.0,
        help="how often every collector samples the host, e.g. 15s, 1m (default: 15s)",
    )
    add(
        "--sample.timeout",
        dest="sample_timeout",
        type=_duration,
        default=10.0,
        help="longest a collector run may take; capped at 80%% of its interval (default: 10s)",
    )
    for c in collectors:
        add(
            f"--collector.{c.name}",
            dest=f"collector_{c.name}",
            action=argparse.BooleanOptionalAction,
            default=c.enabled_by_default,
            help=f"{c.description} (default: {'on' if c.enabled_by_default else 'off'})",
        )
        default = f"{c.default_interval:g}s" if c.default_interval else "--sample.interval"
        add(
            f"--collector.{c.name}.interval",
            dest=f"interval_{c.name}",
            type=_duration,
            default=None,
            help=f"sampling interval for {c.name} (default: {default})",
        )
    for c in collectors:
        for option in c.options:
            add(
                f"--collector.{c.name}.{option.name}",
                dest=_option_dest(c, option),
                metavar=option.name.upper().replace("-", "_"),  # TOP_K, not OPTION_LAYERS_TOP_K
                type=_checked(option),
                default=option.default,
                help=option.help,
            )
    add(
        "--metrics.max-series-per-family",
        dest="max_series",
        type=int,
        default=10000,
        help="series at most per metric family; the rest are counted in "
        "docker_host_series_dropped (0: no cap; default: %(default)s)",
    )
    add(
        "--log.level",
        dest="log_level",
        choices=logsetup.LEVELS,
        default="info",
        help="only log messages with this or a higher severity (default: %(default)s)",
    )
    add(
        "--log.format",
        dest="log_format",
        choices=("logfmt", "json"),
        default="logfmt",
        help="log format (default: %(default)s)",
    )
    add("--version", action=_VersionAction, nargs=0, help="print the version and exit")
    return parser


class _VersionAction(argparse.Action):
    """argparse's own "version" action wraps the line at the terminal's width."""

    def __call__(self, parser: argparse.ArgumentParser, *_args: object) -> None:
        sys.stdout.write(version_line() + "\n")
        parser.exit()


def version_line() -> str:
    """What --version prints: the version, and the commit it was built from."""
    python = ".".join(str(n) for n in sys.version_info[:3])
    return f"docker-host-exporter {__version__} (revision {revision()}, python {python})"


def settings_from(args: argparse.Namespace, collectors: Sequence[CollectorDef]) -> Settings:
    return Settings(
        listen_address=getattr(args, "listen_address", DEFAULT_LISTEN_ADDRESS),
        telemetry_path=getattr(args, "telemetry_path", "/metrics"),
        web_config_file=getattr(args, "web_config_file", None),
        web_topology=getattr(args, "web_topology", True),
        docker_host=resolve_docker_host(args.docker_host),
        procfs=args.procfs,
        collectors=tuple(c.name for c in collectors if getattr(args, f"collector_{c.name}")),
        sample_interval=args.sample_interval,
        sample_timeout=args.sample_timeout,
        collector_intervals=MappingProxyType(
            {
                c.name: v
                for c in collectors
                if (v := getattr(args, f"interval_{c.name}") or c.default_interval) is not None
            }
        ),
        log_level=args.log_level,
        log_format=args.log_format,
        max_series_per_family=args.max_series,
        options=MappingProxyType(
            {
                option: getattr(args, _option_dest(c, option))
                for c in collectors
                for option in c.options
            }
        ),
    )


def _option_dest(collector: CollectorDef, option: Option[Any]) -> str:
    return f"option_{collector.name}_{option.name}".replace("-", "_")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    collectors = all_collectors()
    inspect = bool(argv) and argv[0] == "inspect"
    parser = build_parser(collectors, inspect=inspect)
    args = parser.parse_args(argv[1:] if inspect else argv)
    settings = settings_from(args, collectors)
    logsetup.configure(settings.log_level, settings.log_format)
    enabled = [c for c in collectors if c.name in settings.collectors]
    if not enabled:
        parser.error("every collector is disabled: nothing to do")
    if inspect:
        return run_inspect(enabled, settings, args.format)
    return serve(enabled, settings)


def run_inspect(enabled: Sequence[CollectorDef], settings: Settings, fmt: str) -> int:
    snapshot = Sampler(((c, c.source(settings)) for c in enabled), settings).sample_once()
    if fmt == "json":
        sys.stdout.write(snapshot_json(snapshot))
    elif fmt == "svg":
        sys.stdout.write(topology_svg(snapshot, socket.gethostname()))
    else:
        sys.stdout.write(render_report(snapshot, [c.report for c in enabled]))
    # Non-zero only when the host could not be read at all; a partial report is still useful.
    return 0 if any(s.success for s in snapshot.collectors.values()) else 1


GC_YOUNG_THRESHOLD = 2500
SHUTDOWN_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


def serve(enabled: Sequence[CollectorDef], settings: Settings) -> int:
    try:
        web_config = load_web_config(settings.web_config_file) if settings.web_config_file else None
    except WebConfigError as exc:
        log.error("bad --web.config.file", extra={"reason": str(exc)})
        return 1
    sampler = Sampler(((c, c.source(settings)) for c in enabled), settings)
    topology = (
        TopologyPage(lambda: sampler.store.snapshot, socket.gethostname(), settings.telemetry_path)
        if settings.web_topology
        else None
    )
    try:
        server = make_server(
            settings.listen_address,
            settings.telemetry_path,
            exposition=lambda: sampler.store.exposition,
            healthy=sampler.healthy,
            landing=landing_page(
                settings.telemetry_path,
                [(c.name, c.description) for c in enabled],
                topology=topology is not None,
            ),
            web_config=web_config,
            topology=topology.current if topology is not None else None,
        )
    except (OSError, ValueError) as exc:
        log.error("cannot listen", extra={"address": settings.listen_address, "reason": str(exc)})
        return 1

    # The main thread takes a shutdown signal with sigwait, not through a handler. A Python
    # handler runs only when the main thread next runs bytecode: a signal that lands after it
    # lets go of the GIL and before it sleeps on its lock, or one the kernel hands to another
    # thread, leaves it asleep (CI saw a SIGTERM unanswered for 15 s). Blocked here, before
    # the first thread starts, they are blocked in every thread (a thread inherits its
    # creator's mask): the kernel holds one for the process until sigwait takes it, and holds
    # it even for PID 1 in a container, which drops a signal it has no handler for.
    signal.pthread_sigmask(signal.SIG_BLOCK, SHUTDOWN_SIGNALS)

    # The cyclic GC collects its youngest generation every 700 allocations (net) by default.
    # A container started or removed makes thousands of small objects that live until the next
    # change, and each collection walked them: 0.55 ms a sample under the bench's churn, and
    # 0.08 ms at this threshold, RSS unchanged. Little here is cyclic (the collections found
    # ~300 objects a minute of garbage under churn): reference counting frees the rest.
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    sampler.start()
    serve_in_background(server)
    log.info(
        "listening",
        extra={
            "address": settings.listen_address,
            "collectors": ",".join(c.name for c in enabled),
            "version": __version__,
            "revision": revision(),
        },
    )
    signum = signal.sigwait(SHUTDOWN_SIGNALS)
    log.info("shutting down", extra={"signal": signal.Signals(signum).name})
    server.shutdown()
    server.server_close()
    sampler.stop()
    return 0
