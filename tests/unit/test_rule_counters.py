"""Issue 24: the nat rules' counters apart from the rules. Counters that moved re-run the nat
counter writer only, never the verdict writers (nat's, firewall's, the ports'); the exposition
stays what a render from scratch gives. The legacy tables: a table is decoded again only when
it changed with its counters zeroed."""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.collectors import by_name, facts_types
from exporter.collectors.nat.facts import NatFacts
from exporter.metrics import Families, Renderer, Writer, render
from exporter.readers.iptables import TableBlob
from exporter.readers.nat_rules import NatCounters, NatDecodes, _count, decode_expressions, nft_nat
from exporter.readers.netfilter_base import LegacyCache
from exporter.readers.netlink import NetlinkError
from exporter.readers.nfnetlink import (
    RULE,
    RawExpressions,
    RuleParses,
    parse_message,
    parse_rule_count,
)
from exporter.recording import snapshot_from_json, snapshot_json
from exporter.settings import Settings
from exporter.snapshot import CollectorState, Snapshot
from tests.fuzzing import FUZZ, HEADER, message, mutated, nla
from tests.helpers import parse, select
from tests.nat_rules import dnat
from tests.unit.test_fuzz_iptables import (
    DNAT6_ENTRY,
    DNAT_ENTRY,
    MASQUERADE6_ENTRY,
    MASQUERADE_ENTRY,
)
from tests.unit.test_fuzz_nftables import (
    DNAT,
    MASQUERADE,
    NATIVE_DNAT,
    NFT_RULE,
    be64,
    expression,
    hostile_expressions,
    rule_message,
)
from tests.unit.test_ports import DAEMON, FW, NAT, NET, PORTS

JUDGED = ("nat", "firewall", "ports")


def snapshot(counters: NatCounters, nat: NatFacts = NAT) -> Snapshot:
    found = Snapshot()
    for name, facts, counted in (
        ("nat", nat, counters),
        ("firewall", FW, None),
        ("network", NET, None),
        ("daemon", DAEMON, None),
        ("ports", PORTS, None),
    ):
        found = found.with_state(CollectorState(name, True, 0.01, 1.0, facts, counters=counted))
    return found


def from_scratch(state: Snapshot) -> bytes:
    return render(state, [by_name()[name].write_all(Settings()) for name in JUDGED])


def counting(writers: list[tuple[str, Writer]], runs: Counter[str]) -> list[Writer]:
    def wrap(name: str, writer: Writer) -> Writer:
        def write(state: Snapshot, out: Families) -> None:
            runs[name] += 1
            writer.write(state, out)

        return replace(writer, write=write)  # cached and collector as the writer's own

    return [wrap(name, w) for name, w in writers]


def named_writers() -> list[tuple[str, Writer]]:
    found = []
    for name in JUDGED:
        writers = by_name()[name].writers(Settings())
        found += [(name if i == 0 else f"{name} counters", w) for i, w in enumerate(writers)]
    return found


def test_counters_that_moved_rerun_only_the_nat_counter_writer() -> None:
    runs: Counter[str] = Counter()
    renderer = Renderer(counting(named_writers(), runs))
    renderer.render(snapshot(NatCounters((1, 2, 3), (60, 120, 180))))
    assert runs == {"nat": 1, "nat counters": 1, "firewall": 1, "ports": 1}
    moved = snapshot(NatCounters((7, 2, 3), (420, 120, 180)))
    text = renderer.render(moved)
    assert runs == {"nat": 1, "nat counters": 2, "firewall": 1, "ports": 1}
    assert text == from_scratch(moved)
    (masquerade,) = select(parse(text), "docker_host_nat_masquerade_packets_total")
    assert masquerade.value == 7
    # A rule inserted: the verdicts are judged again, the ports' among them.
    more = replace(NAT, rules=(*NAT.rules, dnat(8080)))
    changed = snapshot(NatCounters((7, 2, 3, 0), (420, 120, 180, 0)), more)
    assert renderer.render(changed) == from_scratch(changed)
    assert runs == {"nat": 2, "nat counters": 3, "firewall": 1, "ports": 2}


def test_the_ports_writer_reads_no_counters() -> None:
    """The ports writer joins nat's, firewall's and network's facts, and no collector's
    counters: traffic never makes it judge its hundreds of verdicts again."""
    watched = snapshot(NatCounters((1, 2, 3), (60, 120, 180))).watched()
    by_name()["ports"].writer(Settings())(watched, Families())
    assert watched.reads is not None
    assert {name for name, _ in watched.reads} >= {"ports", "nat", "firewall", "network"}
    assert not [read for read in watched.reads if read[1]]


def test_equal_rules_fold_into_one_series_their_counters_summed() -> None:
    twice = replace(NAT, rules=(NAT.rules[0], *NAT.rules))
    text = from_scratch(snapshot(NatCounters((1, 4, 2, 3), (60, 240, 120, 180)), twice))
    (rules,) = select(parse(text), "docker_host_nat_masquerade_rules")
    (packets,) = select(parse(text), "docker_host_nat_masquerade_packets_total")
    (byte_count,) = select(parse(text), "docker_host_nat_masquerade_bytes_total")
    assert (rules.value, packets.value, byte_count.value) == (2, 5, 300)


def test_counters_of_another_reading_are_not_written() -> None:
    """Counters that do not match the rules one for one (never from one reading) give no
    counter series rather than wrong ones; the rules' own series stay."""
    samples = parse(from_scratch(snapshot(NatCounters((1,), (60,)))))
    assert not select(samples, "docker_host_nat_masquerade_packets_total")
    assert select(samples, "docker_host_nat_masquerade_rules")


def with_counters(entry: bytes, family: str, packets: int, byte_count: int) -> bytes:
    at = 96 if family == "ipv4" else 152
    return entry[:at] + struct.pack("=QQ", packets, byte_count) + entry[at + 16 :]


def test_a_legacy_table_without_its_counters_is_the_same_while_no_rule_changed() -> None:
    for family, masquerade, other in (
        ("ipv4", MASQUERADE_ENTRY, DNAT_ENTRY),
        ("ipv6", MASQUERADE6_ENTRY, DNAT6_ENTRY),
    ):
        before = TableBlob(family, 1 << 4, (0, 0, 0, 0, 0), masquerade + other)
        moved = TableBlob(
            family,
            1 << 4,
            (0, 0, 0, 0, 0),
            with_counters(masquerade, family, 9, 900) + with_counters(other, family, 1, 2),
        )
        assert moved.blob != before.blob
        assert moved.rules_key() == before.rules_key()
        assert (moved.counters(0), moved.counters(len(masquerade))) == ((9, 900), (1, 2))
        # A rule changed (its source address), or the chains' heads moved: another table.
        changed = masquerade[:3] + b"\x07" + masquerade[4:]
        assert replace(before, blob=changed + other).rules_key() != before.rules_key()
        assert replace(before, hook_entry=(0, 0, 0, 0, 8)).rules_key() != before.rules_key()


def test_a_legacy_table_is_decoded_again_only_when_its_rules_changed() -> None:
    cache, decoded = LegacyCache(), []

    def decode(table: TableBlob) -> int:
        decoded.append(table.blob)
        return len(decoded)

    table = TableBlob("ipv4", 1 << 4, (0, 0, 0, 0, 0), MASQUERADE_ENTRY + DNAT_ENTRY)
    assert cache.made("nat", table, decode) == 1
    moved = replace(table, blob=with_counters(MASQUERADE_ENTRY, "ipv4", 5, 5) + DNAT_ENTRY)
    assert cache.made("nat", moved, decode) == 1
    assert cache.made("nat", replace(table, blob=DNAT_ENTRY), decode) == 2
    assert cache.made("filter", table, decode) == 3  # each table its own


def counter(packets: int, byte_count: int) -> bytes:
    return expression("counter", nla(1, be64(byte_count)), nla(2, be64(packets)))


def with_handle(data: bytes, handle: int) -> bytes:
    """The rule message with an NFTA_RULE_HANDLE, as the kernel dumps one."""
    return message(NFT_RULE, data[HEADER.size :] + nla(3, be64(handle)))


def fully(data: bytes) -> tuple[object, ...] | None:
    """What the full parse and the nat decoder make of a rule message's place and counter."""
    try:
        (rule,) = [parse_message(data, RULE)]
    except NetlinkError:
        return None
    decoded = decode_expressions(rule.attrs.get_attr("NFTA_RULE_EXPRESSIONS") or [])
    place = [rule.attrs.get_attr(f"NFTA_RULE_{a}") for a in ("TABLE", "CHAIN", "HANDLE")]
    return (*place, decoded.packets, decoded.bytes)


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=80),
        mutated(
            st.sampled_from(
                [
                    with_handle(rule_message([*MASQUERADE, counter(3, 180)]), 7),
                    with_handle(rule_message([counter(1, 2), *DNAT, counter(5, 300)]), 9),
                    rule_message(NATIVE_DNAT),
                ]
            ),
            start=HEADER.size + 4,
        ),
        hostile_expressions.map(lambda e: with_handle(rule_message([*e, counter(2, 4)]), 3)),
    )
)
def test_a_rule_read_for_its_counter_only_agrees_with_the_full_decoding(data: bytes) -> None:
    """Where the full parse reads a rule message, the counter-only parse of an unchanged
    ruleset's reading finds the same place and counter; a hostile message is refused, never
    a crash."""
    try:
        quick = parse_rule_count(data)
    except NetlinkError:
        assert fully(data) is None
        return
    expected = fully(data)
    if expected is not None:
        packets, byte_count = quick.counted or (0, 0)
        found = (quick.table, quick.chain, quick.handle, _count(packets), _count(byte_count))
        assert found == expected


def test_a_recording_keeps_the_counters_apart() -> None:
    """`inspect --format json` records the counters beside the facts, and a replay gives both
    back typed: the counter families render from a recording as from the host."""
    recorded = snapshot(NatCounters((1, 2, 3), (60, 120, 180)))
    again = snapshot_from_json(snapshot_json(recorded), facts_types())
    assert again == recorded
    assert again.counters("nat", NatCounters) == NatCounters((1, 2, 3), (60, 120, 180))
    assert from_scratch(again) == from_scratch(recorded)


def dumped(data: bytes, seq: int, generation: int) -> bytes:
    """A rule message as another dump gives it: another sequence number and generation."""
    body = data[HEADER.size :]
    return message(NFT_RULE, body[:2] + struct.pack(">H", generation) + body[4:], seq=seq)


A_RULE = with_handle(rule_message([*MASQUERADE, counter(3, 180)]), 7)
B_RULE = with_handle(rule_message([*DNAT, counter(0, 0)]), 9)
A_COUNTED = with_handle(rule_message([*MASQUERADE, counter(4, 240)]), 7)


def test_a_rule_message_seen_in_the_last_dump_is_not_parsed_again() -> None:
    """RuleParses: a rule new to a dump is parsed whole; one byte for byte the last dump's
    (under another sequence number and generation) is the kept message, its expressions left
    raw, equal to a fresh parse; a counter that moved makes a new rule; a rule gone is
    forgotten; the families' dumps are kept apart."""
    a, b, moved = A_RULE, B_RULE, A_COUNTED
    parses = RuleParses()
    first = parses.parse(2, iter([dumped(a, 1, 5), dumped(b, 2, 5)]))
    assert first == [parse_message(a, RULE), parse_message(b, RULE)]
    assert all(type(m.attrs["NFTA_RULE_EXPRESSIONS"]) is list for m in first)  # parsed whole
    second = parses.parse(2, iter([dumped(moved, 8, 6), dumped(b, 9, 6)]))
    assert second == [parse_message(moved, RULE), parse_message(b, RULE)]
    assert type(second[0].attrs["NFTA_RULE_EXPRESSIONS"]) is list  # counted since: parsed
    kept = second[1].attrs["NFTA_RULE_EXPRESSIONS"]
    assert isinstance(kept, RawExpressions) and kept and list(kept) == kept.parsed()
    assert second[1].key == first[1].key != second[0].key
    again = parses.parse(2, iter([dumped(moved, 10, 7), dumped(b, 11, 7)]))
    assert again[0] is not second[0] and again[1] is second[1]  # both kept now
    assert type(parses.parse(10, iter([dumped(b, 3, 6)]))[0].attrs["NFTA_RULE_EXPRESSIONS"]) is list
    third = parses.parse(2, iter([dumped(a, 4, 7)]))
    assert type(third[0].attrs["NFTA_RULE_EXPRESSIONS"]) is list  # a was forgotten
    assert third == [parse_message(a, RULE)]
    with pytest.raises(NetlinkError):
        parses.parse(2, iter([a[:18]]))


def test_a_rule_message_decoded_by_the_last_reading_is_not_decoded_again() -> None:
    """NatDecodes: a rule whose message is the last reading's keeps its decoding (the very
    object), its expressions not read; a counted one is decoded afresh, to the same rules as
    a reading without NatDecodes; a rule gone is forgotten; a message without a key (not from
    RuleParses) is decoded every time and not kept."""
    parses, decodes = RuleParses(), NatDecodes()
    first = nft_nat([], parses.parse(2, iter([A_RULE, B_RULE])), decodes)
    kept = dict(decodes.last)
    assert len(kept) == 2
    again = nft_nat([], parses.parse(2, iter([dumped(A_RULE, 5, 2), B_RULE])), decodes)
    assert again == first
    assert all(decodes.last[k] is kept[k] for k in kept)
    counted = parses.parse(2, iter([A_COUNTED, B_RULE]))
    third = nft_nat([], counted, decodes)
    fresh = nft_nat([], [parse_message(A_COUNTED, RULE), parse_message(B_RULE, RULE)])
    assert third == fresh and third[1] == first[1]  # the same rules, other counts
    key_a, key_b = (m.key for m in counted)
    assert decodes.last[key_b] is kept[key_b] and key_a not in kept
    assert set(decodes.last) == {key_a, key_b}  # the uncounted a forgotten
    unkept = NatDecodes()
    assert nft_nat([], [parse_message(A_RULE, RULE)], unkept) == nft_nat(
        [], [parse_message(A_RULE, RULE)]
    )
    assert unkept.last == {}
