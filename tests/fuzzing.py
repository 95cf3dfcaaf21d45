"""What the fuzz tests share: hypothesis settings, and the builders of netlink and ip_tables
messages."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


NLA_F_NESTED = 0x8000


HEADER = struct.Struct("=IHHII")


def nla(kind: int, payload: bytes, declared: int | None = None) -> bytes:
    """One attribute, padded to 4; `declared` overrides the length field (a lying length)."""
    length = 4 + len(payload)
    header = struct.pack("=HH", length if declared is None else declared, kind)
    return header + payload + b"\0" * ((-length) % 4)


def message(msg_type: int, body: bytes, flags: int = 2, seq: int = 1) -> bytes:
    return HEADER.pack(HEADER.size + len(body), msg_type, flags, seq, 0) + body


u32 = st.integers(0, 2**32 - 1)


IFINFO = struct.Struct("=BxHiII")
ATTRS_START = HEADER.size + IFINFO.size


def attribute_offsets(data: bytes, start: int, end: int, depth: int = 0) -> list[int]:
    """Where the length fields of a message's attributes are, nested ones included."""
    found: list[int] = []
    offset = start
    while offset + 4 <= end:
        length, _ = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        found.append(offset)
        if depth < 3 and length > 8:
            found += attribute_offsets(data, offset + 4, min(offset + length, end), depth + 1)
        offset += (length + 3) & ~3
    return found


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes], start: int = ATTRS_START) -> bytes:
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["truncate", "length", "header", "overwrite", "append"]))
        if how == "truncate" and data:
            del data[draw(st.integers(0, len(data) - 1)) :]
        elif how == "length":
            offsets = attribute_offsets(bytes(data), start, len(data))
            if offsets:
                at = draw(st.sampled_from(offsets))
                lie = st.sampled_from([0, 1, 3, 4, 5, 7, 8, 0xFFFF, len(data)])
                struct.pack_into("=H", data, at, draw(st.one_of(lie, st.integers(0, 0xFFFF))))
        elif how == "header" and len(data) >= 4:
            lie = st.sampled_from([0, 1, 15, 16, 31, 32, len(data) + 1, 2**32 - 1])
            struct.pack_into("=I", data, 0, draw(st.one_of(lie, u32)))
        elif how == "overwrite" and data:
            at = draw(st.integers(0, len(data) - 1))
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[at : at + len(chunk)] = chunk
        else:
            data += draw(st.binary(max_size=16))
    return bytes(data)


def ipt_extension(name: bytes, data: bytes, revision: int = 0) -> bytes:
    padded = data + b"\0" * (-len(data) % 8)
    return struct.pack("=H29sB", 32 + len(padded), name, revision) + padded
