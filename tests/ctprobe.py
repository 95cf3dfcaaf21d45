"""Read the conntrack table of the namespace it runs in, twice, independently: with our
ctnetlink reader and with pyroute2's decoder. Run in a test's namespace by
tests/integration/test_conntrack_on_engine.py (`ip netns exec NS python -m tests.ctprobe`);
prints one JSON object: each reading as [family, protocol, source, reply source, tcp state,
entries] rows."""

from __future__ import annotations

import json
import socket
from collections import Counter
from typing import Any

from exporter.readers.ctnetlink import AF_UNSPEC, ConntrackSocket, address_of

Row = tuple[int, int, str | None, str | None, int | None]


def ours(max_entries: int = 10**7) -> list[list[Any]]:
    """Counted by address: every address in the table is its own owner."""
    sock = ConntrackSocket()
    try:
        everyone = _AllAddresses()
        counts, _ = sock.count(AF_UNSPEC, everyone, max_entries)
    finally:
        sock.close()
    return sorted(
        [fam, proto, src, reply_src, state, n]
        for (fam, src, reply_src, proto, state), n in counts.counts.items()
    )


class _AllAddresses(dict[bytes, str]):
    """An owner map naming every address by itself."""

    def get(self, key: bytes | None, default: Any = None) -> Any:
        return address_of(key) if key is not None else default


def theirs() -> list[list[Any]]:
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTSocket  # noqa: PLC0415

    messages = []
    for family in (socket.AF_INET, socket.AF_INET6):  # its dump asks for one family
        sock = NFCTSocket(nfgen_family=family)
        try:
            messages += list(sock.dump())
        finally:
            sock.close()
    found: Counter[Row] = Counter()
    for msg in messages:
        family = msg["nfgen_family"]
        v = "V4" if family == socket.AF_INET else "V6"
        sources = []
        for direction in ("CTA_TUPLE_ORIG", "CTA_TUPLE_REPLY"):
            tup = msg.get_attr(direction)
            sources.append(tup.get_attr("CTA_TUPLE_IP").get_attr(f"CTA_IP_{v}_SRC"))
        proto = msg.get_attr("CTA_TUPLE_ORIG").get_attr("CTA_TUPLE_PROTO").get_attr("CTA_PROTO_NUM")
        state = None
        info = msg.get_attr("CTA_PROTOINFO")
        if info is not None and info.get_attr("CTA_PROTOINFO_TCP") is not None:
            state = info.get_attr("CTA_PROTOINFO_TCP").get_attr("CTA_PROTOINFO_TCP_STATE")
        found[(family, proto, sources[0], sources[1], state)] += 1
    return sorted([*key, n] for key, n in found.items())


if __name__ == "__main__":
    print(json.dumps({"ours": ours(), "pyroute2": theirs()}))
