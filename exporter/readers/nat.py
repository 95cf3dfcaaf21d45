"""nat reader: both firewall backends, and what Docker's networks and published ports need."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

from exporter.facts import EngineFacts, FirewallBackend, NatExpectations, NatFacts, NatRule
from exporter.plumbing import unmet_expectations
from exporter.readers.docker_api import DockerUnavailable
from exporter.readers.inventory import DockerInventory
from exporter.readers.netfilter import FirewallUnreadable, read_legacy, read_nftables
from exporter.readers.nfnetlink import NftSocket

log = logging.getLogger(__name__)

# Running in the Engine's sense (State.Running): paused and restarting containers are too.
_RUNNING = ("running", "paused", "restarting")


def nat_expectations(engine: EngineFacts) -> NatExpectations:
    """Docker's networks and its running containers, with their published ports."""
    return NatExpectations(
        networks=engine.networks,
        containers=tuple(c for c in engine.containers if c.state in _RUNNING),
    )


class NatReader:
    def __init__(
        self,
        procfs: str | Path,
        inventory: DockerInventory,
        timeout: float,
        confirm_after: float = 1.0,
        inventory_wait: float | None = None,
    ) -> None:
        self.procfs = procfs
        self.inventory = inventory
        self.inventory_wait = inventory_wait
        # A network or a published port is set up in steps; look again before calling a rule
        # missing, within a quarter of the run's timeout.
        self.confirm_after = min(confirm_after, timeout / 4)
        self._errors: dict[str, str | None] = {}
        self._timeout = timeout
        self._nft: NftSocket | None = None

    def close(self) -> None:
        self.inventory.close()
        self._close_nft()

    def _close_nft(self) -> None:
        if self._nft is not None:
            self._nft.close()
            self._nft = None

    def _read_nftables(self) -> tuple[FirewallBackend, list[NatRule]]:
        if self._nft is None:
            self._nft = NftSocket(self._timeout)
        try:
            return read_nftables(self._nft)
        except FirewallUnreadable:
            self._close_nft()  # a socket left mid-answer by an error is not reused
            raise

    def read(self) -> NatFacts:
        first = self._read()
        missing = unmet_expectations(first)
        if not missing:
            return first
        time.sleep(self.confirm_after)
        # A second look at the containers too: one removed meanwhile took its rule with it.
        return replace(self._read(confirming=True), earlier_missing=missing)

    def _read(self, confirming: bool = False) -> NatFacts:
        # The Engine API first: a rule Docker adds after this is not yet expected.
        try:
            expectations: NatExpectations | None = nat_expectations(
                self.inventory.current(wait=self.inventory_wait, share=not confirming)
            )
        except DockerUnavailable as exc:
            self._note("docker", str(exc))
            expectations = None
        else:
            self._note("docker", None)
        backends: list[FirewallBackend] = []
        rules: list[NatRule] = []
        for name, read in (
            ("nftables", self._read_nftables),
            ("legacy", lambda: read_legacy(self.procfs)),
        ):
            try:
                backend, found = read()
            except FirewallUnreadable as exc:
                self._note(name, str(exc), exc.missing_capabilities)
                backends.append(
                    FirewallBackend(name, False, str(exc), 0, (), exc.missing_capabilities)
                )
                continue
            self._note(name, None)
            backends.append(backend)
            rules.extend(found)
        if not any(b.readable or b.missing_capabilities for b in backends):
            # Nothing readable, and not for want of a privilege (that is reported, not failed).
            raise FirewallUnreadable("; ".join(b.error or "" for b in backends))
        return NatFacts(backends=tuple(backends), rules=tuple(rules), expectations=expectations)

    def _note(self, source: str, error: str | None, needs: tuple[str, ...] = ()) -> None:
        """Log a source's failure once per change, not once per interval."""
        if self._errors.get(source) == error:
            return
        if error and source == "docker":
            log.warning(
                "no missing-rule verdicts: the Engine API is unreadable", extra={"reason": error}
            )
        elif error:
            log.warning(
                "firewall backend unreadable" + (f": needs {' and '.join(needs)}" if needs else ""),
                extra={"backend": source, "reason": error},
            )
        elif self._errors.get(source):
            log.info("nat source readable again", extra={"input": source})
        self._errors[source] = error
