"""The docker SDK client the tests use, with a deadline on every call.

A container start that hangs in a loaded engine used to surface as pytest's bare 300 s timeout
with a stack deep in a socket read. Here every call made through the client, its collections
and the objects they return (containers, networks, images, the low-level `api`) runs under its
own deadline, and one that misses it fails with EngineCallTimeout naming the call and its
arguments. The hung call is left to its thread (daemon) and to the client's socket timeout."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import docker
import requests
from docker.models.resource import Collection, Model

# Well under pytest's per-test timeout (pyproject), so that ours is the message a hang leaves.
CALL_TIMEOUT = 120.0
# Calls that legitimately take long: image builds and transfers.
SLOW_CALLS = {"build": 240.0, "load": 240.0, "save": 240.0, "commit": 240.0, "prune": 240.0}


class EngineCallTimeout(TimeoutError):
    """An engine call that did not return within its deadline."""


@dataclass(frozen=True)
class Deadline:
    """Which engine a proxy's calls go to, and their deadline."""

    where: str
    seconds: float

    def of(self, name: str, kwargs: dict[str, Any]) -> float:
        """The call's own deadline; a call that waits by its own `timeout=` gets that on top."""
        base = max(self.seconds, SLOW_CALLS.get(name, 0.0))
        waits = kwargs.get("timeout")
        return base + float(waits) if isinstance(waits, int | float) else base


def timed_client(
    base_url: str = "unix:///var/run/docker.sock", call_timeout: float = CALL_TIMEOUT
) -> Any:
    """A DockerClient whose every call has a deadline (call_timeout, longer for SLOW_CALLS);
    making it asks the engine its API version, under the same deadline."""
    client = call_with_deadline(
        docker.DockerClient,
        (),
        {"base_url": base_url, "version": "auto", "timeout": max(1, round(call_timeout))},
        call="DockerClient",
        where=base_url,
        seconds=call_timeout,
    )
    return Timed(client, "", Deadline(base_url, call_timeout))


def unwrap(value: Any) -> Any:
    """The SDK object behind a Timed proxy (the SDK checks isinstance on its arguments)."""
    if isinstance(value, Timed):
        return value._target
    if isinstance(value, list | tuple):
        return type(value)(unwrap(v) for v in value)
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    return value


def _wrap(value: Any, path: str, where: Deadline) -> Any:
    if isinstance(value, Model):
        # Named by what it is, not how it was reached: container[dhe-1a2b3c-web].remove(...)
        name = getattr(value, "name", None) or value.short_id
        return Timed(value, f"{type(value).__name__.lower()}[{name}]", where)
    if isinstance(value, Collection | docker.DockerClient | docker.APIClient):
        return Timed(value, path, where)
    if isinstance(value, list):
        return [_wrap(v, path, where) for v in value]
    if isinstance(value, tuple):
        return tuple(_wrap(v, path, where) for v in value)
    return value


def describe(call: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """`name(arg, key=value)` with long arguments shortened: the message is for a person."""

    def short(value: Any) -> str:
        text = repr(value)
        return text if len(text) <= 120 else text[:117] + "..."

    shown = [short(a) for a in args] + [f"{k}={short(v)}" for k, v in kwargs.items()]
    return f"{call}({', '.join(shown)})"


def call_with_deadline(
    function: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    call: str,
    where: str,
    seconds: float,
) -> Any:
    """function(*args, **kwargs) in a thread of its own, waited for at most `seconds`."""
    outcome: list[Any] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(function(*args, **kwargs))
        except BaseException as exc:  # handed to the caller's thread below
            failure.append(exc)

    worker = threading.Thread(target=run, name=f"engine call {call}", daemon=True)
    worker.start()
    worker.join(seconds)
    hung = (
        f"engine call {describe(call, args, kwargs)} did not return within {seconds:g} s"
        f" (Docker at {where})"
    )
    if worker.is_alive():
        raise EngineCallTimeout(hung)
    if failure:
        # The client's socket timeout can win the race: the same finding, the same message.
        if isinstance(failure[0], requests.exceptions.Timeout | socket.timeout):
            raise EngineCallTimeout(hung) from failure[0]
        raise failure[0]
    return outcome[0]


class Timed:
    """A proxy that times the calls of the SDK object it holds; attributes pass through."""

    def __init__(self, target: Any, path: str, where: Deadline) -> None:
        self._target = target
        self._path = path
        self._where = where

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        path = f"{self._path}.{name}" if self._path else name
        if not callable(value) or isinstance(value, Model | Collection | docker.APIClient):
            return _wrap(value, path, self._where)

        def timed(*args: Any, **kwargs: Any) -> Any:
            args, kwargs = unwrap(args), unwrap(kwargs)
            seconds = self._where.of(name, kwargs)
            result = call_with_deadline(
                value, args, kwargs, call=path, where=self._where.where, seconds=seconds
            )
            return _wrap(result, path, self._where)

        return timed

    def __eq__(self, other: object) -> bool:
        return bool(self._target == unwrap(other))

    def __hash__(self) -> int:
        return hash(self._target)

    def __repr__(self) -> str:
        return repr(self._target)
