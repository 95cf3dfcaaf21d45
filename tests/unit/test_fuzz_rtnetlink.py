"""Hostile input into the rtnetlink decoders: RTM_NEWLINK / NLMSG_ERROR / RTM_NEWNSID bytes
built with struct, mutated (truncated, lengths rewritten, bytes overwritten) and arbitrary:
never a crash, only what the bytes say or NetlinkError."""

from __future__ import annotations

import dataclasses
import errno
import itertools
import random
import struct
from collections.abc import Callable, Iterable, Sequence

import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from exporter.readers.netlink import (
    IFLA,
    IFLA_BR,
    IFLA_BRPORT,
    IFLA_INFO,
    NETNSA,
    OPERSTATES,
    PORT_STATES,
    STATS64_FIELDS,
    Link,
    LinkCounters,
    NetlinkError,
    _error,
    _find,
    _i32,
    _split,
    _text,
    parse_link,
)
from tests.fuzzing import (
    ATTRS_START,
    FUZZ,
    HEADER,
    IFINFO,
    NLA_F_NESTED,
    message,
    mutated,
    nla,
    u32,
)

RTM_NEWLINK = 16


RTM_NEWNSID = 88


NLMSG_ERROR = 2


def link_message(index: int, attrs: Iterable[bytes]) -> bytes:
    return message(RTM_NEWLINK, IFINFO.pack(0, 1, index, 0, 0) + b"".join(attrs))


@dataclasses.dataclass(frozen=True)
class LinkSpec:
    """What a generated RTM_NEWLINK says, and so what parse_link must return."""

    index: int
    name: str
    kind: str | None
    slave_kind: str | None
    port_state: int | None
    stp_state: int | None
    master: int | None
    link: int | None
    netnsid: int | None
    operstate: int | None
    stats: tuple[int, ...] | None
    nested_flag: bool

    def attributes(self, noise: Sequence[bytes]) -> list[bytes]:
        nested = NLA_F_NESTED if self.nested_flag else 0
        top: list[bytes] = [nla(IFLA["IFLA_IFNAME"], self.name.encode() + b"\0"), *noise]
        info: list[bytes] = []
        if self.kind is not None:
            info.append(nla(IFLA_INFO["IFLA_INFO_KIND"], self.kind.encode() + b"\0"))
            if self.stp_state is not None:
                data = nla(IFLA_BR["IFLA_BR_STP_STATE"], struct.pack("=I", self.stp_state))
                info.append(nla(IFLA_INFO["IFLA_INFO_DATA"] | nested, data))
        if self.slave_kind is not None:
            info.append(nla(IFLA_INFO["IFLA_INFO_SLAVE_KIND"], self.slave_kind.encode() + b"\0"))
            if self.port_state is not None:
                state = nla(IFLA_BRPORT["IFLA_BRPORT_STATE"], bytes([self.port_state]))
                info.append(nla(IFLA_INFO["IFLA_INFO_SLAVE_DATA"] | nested, state))
        if info:
            top.append(nla(IFLA["IFLA_LINKINFO"] | nested, b"".join(info)))
        for key, value, fmt in (
            ("IFLA_MASTER", self.master, "=I"),
            ("IFLA_LINK", self.link, "=i"),
            ("IFLA_LINK_NETNSID", self.netnsid, "=i"),
        ):
            if value is not None:
                top.append(nla(IFLA[key], struct.pack(fmt, value)))
        if self.operstate is not None:
            top.append(nla(IFLA["IFLA_OPERSTATE"], bytes([self.operstate])))
        if self.stats is not None:
            top.append(nla(IFLA["IFLA_STATS64"], struct.pack(f"={len(self.stats)}Q", *self.stats)))
        return top

    def expected(self) -> Link:
        counters = None
        if self.stats is not None:
            named = dict(zip(STATS64_FIELDS, self.stats, strict=False))
            counters = LinkCounters(
                *(named[f.name] for f in dataclasses.fields(LinkCounters))  # same names
            )
        port_state = None
        if self.slave_kind == "bridge" and self.port_state is not None:
            code = self.port_state
            port_state = PORT_STATES[code] if code < len(PORT_STATES) else str(code)
        stp = None
        if self.kind == "bridge" and self.stp_state is not None:
            stp = self.stp_state != 0
        operstate = "unknown"
        if self.operstate is not None:
            code = self.operstate
            operstate = OPERSTATES[code] if code < len(OPERSTATES) else str(code)
        return Link(
            index=self.index,
            name=self.name,
            kind=self.kind or "",
            master=self.master,
            peer_index=self.link if self.link not in (None, 0, self.index) else None,
            peer_nsid=self.netnsid,
            operstate=operstate,
            port_state=port_state,
            stp_enabled=stp,
            counters=counters,
        )


USED_TYPES = {
    IFLA[k]
    for k in (
        "IFLA_IFNAME",
        "IFLA_LINKINFO",
        "IFLA_MASTER",
        "IFLA_LINK",
        "IFLA_LINK_NETNSID",
        "IFLA_OPERSTATE",
        "IFLA_STATS64",
    )
}


i32 = st.integers(-(2**31), 2**31 - 1)


# Names as the kernel would never give them: anything but NUL, encoded as UTF-8.
label_text = st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=20)


link_specs = st.builds(
    LinkSpec,
    index=i32,
    name=label_text,
    kind=st.one_of(st.none(), st.sampled_from(["", "veth", "bridge", "dummy"]), label_text),
    slave_kind=st.one_of(st.none(), st.sampled_from(["bridge", "bond"]), label_text),
    port_state=st.one_of(st.none(), st.integers(0, 255)),
    stp_state=st.one_of(st.none(), u32),
    master=st.one_of(st.none(), u32),
    link=st.one_of(st.none(), i32),
    netnsid=st.one_of(st.none(), i32),
    operstate=st.one_of(st.none(), st.integers(0, 255)),
    # IFLA_STATS64 grew over the years (23 fields, then 24, 25): any length that holds the
    # eight counters read.
    stats=st.one_of(
        st.none(),
        st.integers(8, 26).flatmap(
            lambda n: st.lists(st.integers(0, 2**64 - 1), min_size=n, max_size=n).map(tuple)
        ),
    ),
    nested_flag=st.booleans(),
)


# Attributes the parser does not read (IFLA_MTU, IFLA_AF_SPEC, ... and numbers nobody defined).
noise_attrs = st.lists(
    st.builds(
        nla,
        st.integers(0, 0x3FFF).filter(lambda t: t not in USED_TYPES),
        st.binary(max_size=40),
    ),
    max_size=4,
)


@FUZZ
@given(spec=link_specs, noise=noise_attrs, order=st.randoms(use_true_random=False))
def test_well_formed_links_parse_to_exactly_what_they_say(
    spec: LinkSpec, noise: list[bytes], order: random.Random
) -> None:
    attrs = spec.attributes(noise)
    order.shuffle(attrs)  # attribute order is not part of the protocol
    assert parse_link(link_message(spec.index, attrs)) == spec.expected()


def seeds() -> list[bytes]:
    """Messages worth mutating: a veth on a bridge, a bridge, a host link with stats."""
    port = LinkSpec(7, "veth1a2b3c", "veth", "bridge", 3, None, 4, 2, 0, 6, (1,) * 24, False)
    bridge = LinkSpec(4, "docker0", "bridge", None, None, 0, None, None, None, 2, None, True)
    plain = LinkSpec(1, "lo", None, None, None, None, None, None, None, None, (5,) * 23, False)
    return [link_message(s.index, s.attributes([])) for s in (port, bridge, plain)]


generated_links = st.builds(
    lambda spec, noise: link_message(spec.index, spec.attributes(noise)), link_specs, noise_attrs
)


hostile_link_bytes = st.one_of(
    st.binary(max_size=200),
    mutated(st.sampled_from(seeds())),
    mutated(generated_links),
)


def parses_or_refuses(parse: Callable[[], object]) -> object | None:
    """The decoder's contract: a result, or its own error; nothing else may escape."""
    try:
        return parse()
    except NetlinkError:
        return None


@FUZZ
@given(data=hostile_link_bytes)
@example(data=link_message(3, [nla(IFLA["IFLA_OPERSTATE"], b"\x07")]))  # an operstate unknown
@example(data=link_message(3, [nla(IFLA["IFLA_STATS64"], b"\0" * 16)]))  # stats cut short
@example(data=link_message(3, [nla(IFLA["IFLA_MASTER"], b"\1\0")]))  # u32 with 2 bytes
@example(data=link_message(3, [nla(IFLA["IFLA_IFNAME"], b"eth0\0", declared=200)]))
@example(data=message(RTM_NEWLINK, b"\0" * 6))  # ifinfomsg truncated
def test_hostile_link_messages_parse_or_raise_netlink_error(data: bytes) -> None:
    link = parses_or_refuses(lambda: parse_link(data))
    event("parsed" if link is not None else "refused")
    if link is None:
        return
    assert isinstance(link, Link)
    assert isinstance(link.name, str) and "\0" not in link.name
    assert isinstance(link.operstate, str)
    if link.counters is not None:
        assert all(0 <= v < 2**64 for v in dataclasses.astuple(link.counters))


def test_short_attribute_is_refused_not_read_from_its_neighbour() -> None:
    # A 2-byte IFLA_MASTER followed by IFLA_LINK: reading 4 bytes would take half of the
    # next attribute's header as the master's ifindex.
    data = link_message(
        3, [nla(IFLA["IFLA_MASTER"], b"\x05\x00"), nla(IFLA["IFLA_LINK"], b"\x09\0\0\0")]
    )
    with pytest.raises(NetlinkError):
        parse_link(data)


@FUZZ
@given(
    datagram=st.one_of(
        st.binary(max_size=120),
        st.lists(st.one_of(generated_links, mutated(st.sampled_from(seeds()))), max_size=3).map(
            lambda ms: b"".join(m + b"\0" * ((-len(m)) % 4) for m in ms)
        ),
    )
)
@example(datagram=HEADER.pack(0, RTM_NEWLINK, 2, 1, 0))  # a zero length: must not spin
@example(datagram=HEADER.pack(8, RTM_NEWLINK, 2, 1, 0) + b"\0" * 16)  # shorter than a header
@example(datagram=HEADER.pack(64, RTM_NEWLINK, 2, 1, 0))  # longer than the datagram
def test_datagram_splitting_terminates_and_yields_whole_messages(datagram: bytes) -> None:
    # A bound on the iteration, so a parser that loops forever fails here instead of hanging.
    bound = len(datagram) // HEADER.size + 1
    messages = parses_or_refuses(lambda: list(itertools.islice(_split(datagram), bound + 1)))
    if messages is None:
        return
    assert isinstance(messages, list)
    assert len(messages) <= len(datagram) // HEADER.size
    for _, _, _, one in messages:
        assert len(one) >= HEADER.size
        assert HEADER.unpack_from(one)[0] == len(one)  # not cut short by the datagram's end


@FUZZ
@given(
    code=st.one_of(st.sampled_from([0, -1, -19, -22, 5, -(2**31)]), i32),
    cut=st.integers(0, 40),
)
@example(code=-1, cut=HEADER.size)  # the errno itself missing
@example(code=-(2**31), cut=40)  # no errno: os.strerror(2**31) overflowed
def test_error_messages_decode_or_refuse(code: int, cut: int) -> None:
    full = message(NLMSG_ERROR, struct.pack("=i", code) + HEADER.pack(20, 18, 1, 1, 0))
    data = full[:cut] if cut < len(full) else full
    try:
        error = _error(data)
    except NetlinkError:
        assert len(data) < HEADER.size + 4
        return
    if len(data) < HEADER.size + 4:
        # Too short to hold an errno: an error it must be, never an acknowledgement.
        assert isinstance(error, NetlinkError)
        return
    if code == 0:
        assert error is None
    else:
        assert isinstance(error, NetlinkError)
        # -errno, or a value no kernel sends: reported as a malformed message.
        assert error.errno == (-code if -4096 < code < 0 else errno.EBADMSG)


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=64),
        mutated(st.sampled_from(seeds())),
        mutated(
            i32.map(
                lambda nsid: message(
                    RTM_NEWNSID, b"\0" * 4 + nla(NETNSA["NETNSA_NSID"], struct.pack("=i", nsid))
                )
            )
        ),
    )
)
def test_single_answers_name_and_nsid_lookups_never_crash(data: bytes) -> None:
    """What link_names and nsids_of read out of each answer."""
    name = parses_or_refuses(lambda: _text(data, _find(data, ATTRS_START, IFLA["IFLA_IFNAME"])))
    assert name is None or isinstance(name, str)
    nsid = parses_or_refuses(
        lambda: _i32(data, _find(data, HEADER.size + 4, NETNSA["NETNSA_NSID"]))
    )
    assert nsid is None or isinstance(nsid, int)
