"""The netlink numbers the exporter writes down itself, checked against pyroute2's tables.

pyroute2 is the reference here, not a runtime dependency: importing it costs the exporter 13 MB
of RSS and its decoders ~20x the CPU (see exporter/readers/netlink.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from pyroute2.netlink import NLM_F_DUMP, NLM_F_MULTI, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR
from pyroute2.netlink.nfnetlink import NFNL_SUBSYS_NFTABLES
from pyroute2.netlink.nfnetlink import nftsocket as nft
from pyroute2.netlink.rtnl import RTM_GETLINK, RTM_GETNSID
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg, protinfo_bridge, states
from pyroute2.netlink.rtnl.nsidmsg import nsidmsg

from exporter.readers import ctnetlink, netlink, nfnetlink

EXPR = nft.nft_contains_expr.nft_expr


def names(nla_map: Any) -> dict[int, str]:
    """pyroute2's nla_map tables are positional: an attribute's number is its index."""
    return {number: name for number, (name, *_) in enumerate(nla_map)}


def test_rtnetlink_numbers() -> None:
    assert (netlink.NLM_F_REQUEST, netlink.NLM_F_MULTI, netlink.NLM_F_DUMP) == (
        NLM_F_REQUEST,
        NLM_F_MULTI,
        NLM_F_DUMP,
    )
    assert (netlink.NLMSG_ERROR, netlink.NLMSG_DONE) == (NLMSG_ERROR, NLMSG_DONE)
    assert (netlink.RTM_GETLINK, netlink.RTM_GETNSID) == (RTM_GETLINK, RTM_GETNSID)
    for ours, theirs in (
        (netlink.IFLA, ifinfmsg.nla_map),
        (netlink.IFLA_INFO, ifinfmsg.ifinfo.nla_map),
        (netlink.IFLA_BR, ifinfmsg.ifinfo.bridge_data.nla_map),
        (netlink.IFLA_BRPORT, protinfo_bridge.nla_map),
        (netlink.NETNSA, nsidmsg.nla_map),
    ):
        reference = names(theirs)
        assert {name: reference[number] for name, number in ours.items()} == {n: n for n in ours}
    stats64 = tuple(name for name, _ in ifinfmsg.ifstats64.fields)
    assert stats64[: len(netlink.STATS64_FIELDS)] == netlink.STATS64_FIELDS
    assert tuple(s.lower() for s in states) == netlink.OPERSTATES


@pytest.mark.parametrize(
    ("schema", "theirs"),
    [
        (nfnetlink.CHAIN, nft.nft_chain_msg.nla_map),
        (nfnetlink.RULE, nft.nft_rule_msg.nla_map),
        (nfnetlink._EXPRESSION_HEAD, EXPR.nla_map),
        (nfnetlink._DATA, nft.nft_data.nfta_data.nla_map),
        (nfnetlink._VERDICT, nft.nft_data.nfta_data.verdict.nla_map),
        (nfnetlink._HOOK, nft.nft_chain_msg.hook.nla_map),
        (nfnetlink.GENERATION, nft.nft_gen_msg.nla_map),
        (nfnetlink.SET_ELEMENTS, nft.nft_set_elem_list_msg.nla_map),
        (nfnetlink._SET_ELEMENT, nft.nft_set_elem_list_msg.set_elem.nla_map),
        *(
            (schema, getattr(EXPR, f"nft_{name}").nla_map)
            for name, schema in nfnetlink._EXPRESSION_DATA.items()
        ),
    ],
)
def test_nf_tables_attribute_numbers(schema: nfnetlink.Schema, theirs: Any) -> None:
    reference = names(theirs)
    assert {n: name for n, (name, _) in schema.fields.items()} == {
        n: reference[n] for n in schema.fields
    }


def test_nf_tables_message_and_enum_numbers() -> None:
    assert nfnetlink.NFNL_SUBSYS_NFTABLES == NFNL_SUBSYS_NFTABLES
    assert (nfnetlink.NFT_MSG_GETCHAIN, nfnetlink.NFT_MSG_GETRULE) == (
        nft.NFT_MSG_GETCHAIN,
        nft.NFT_MSG_GETRULE,
    )
    assert (nfnetlink.NFT_MSG_GETSETELEM, nfnetlink.NFT_MSG_GETGEN) == (
        nft.NFT_MSG_GETSETELEM,
        nft.NFT_MSG_GETGEN,
    )
    for expression, attribute, ops in (
        ("meta", "NFTA_META_KEY", EXPR.nft_meta.meta_key.ops),
        ("cmp", "NFTA_CMP_OP", EXPR.nft_cmp.ops.ops),
        ("nat", "NFTA_NAT_TYPE", EXPR.nft_nat.types.ops),
        ("payload", "NFTA_PAYLOAD_BASE", EXPR.nft_payload.base_type.ops),
    ):
        decode = next(
            d
            for name, d in nfnetlink._EXPRESSION_DATA[expression].fields.values()
            if name == attribute
        )
        for number, name in ops.items():
            decoded = decode(number.to_bytes(4, "big"))
            assert decoded in (name, number)  # named where the decoder needs the name


def test_ctnetlink_numbers() -> None:
    from pyroute2.netlink.nfnetlink import NFNL_SUBSYS_CTNETLINK  # noqa: PLC0415
    from pyroute2.netlink.nfnetlink import nfctsocket as ct  # noqa: PLC0415
    from pyroute2.netlink.rtnl import RTM_GETADDR  # noqa: PLC0415
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg  # noqa: PLC0415

    assert ctnetlink.NFNL_SUBSYS_CTNETLINK == NFNL_SUBSYS_CTNETLINK
    assert (ctnetlink.IPCTNL_MSG_CT_NEW, ctnetlink.IPCTNL_MSG_CT_GET) == (
        ct.IPCTNL_MSG_CT_NEW,
        ct.IPCTNL_MSG_CT_GET,
    )
    tuple_nla = ct.nfct_msg.cta_tuple
    for ours, theirs in (
        (ctnetlink.CTA, ct.nfct_msg.nla_map),
        (ctnetlink.CTA_TUPLE, tuple_nla.nla_map),
        (ctnetlink.CTA_IP, tuple_nla.cta_ip.nla_map),
        (ctnetlink.CTA_PROTO, tuple_nla.cta_proto.nla_map),
        (ctnetlink.CTA_PROTOINFO, ct.nfct_msg.cta_protoinfo.nla_map),
        (ctnetlink.CTA_PROTOINFO_TCP, ct.nfct_msg.cta_protoinfo.cta_protoinfo_tcp.nla_map),
        (netlink.IFA, ifaddrmsg.nla_map),
    ):
        reference = names(theirs)
        assert {name: reference[number] for name, number in ours.items()} == {n: n for n in ours}
    assert netlink.RTM_GETADDR == RTM_GETADDR
    # TCP states by number; pyroute2 still calls 9 LISTEN, which the kernel renamed SYN_SENT2.
    theirs_states = {n: name.lower() for n, name in ct.TCP_CONNTRACK_TO_NAME.items() if n < 9}
    assert dict(list(enumerate(ctnetlink.TCP_STATES))[1:9]) == theirs_states


def test_change_feed_and_stats_numbers() -> None:
    """What the network reader's change feed subscribes to and its counters dump asks."""
    from pyroute2 import netlink as nl  # noqa: PLC0415
    from pyroute2.netlink import rtnl  # noqa: PLC0415
    from pyroute2.netlink.rtnl.ifstatsmsg import ifstatsmsg  # noqa: PLC0415

    assert (
        netlink.SOL_NETLINK,
        netlink.NETLINK_ADD_MEMBERSHIP,
        netlink.NETLINK_LISTEN_ALL_NSID,
    ) == (nl.SOL_NETLINK, nl.NETLINK_ADD_MEMBERSHIP, nl.NETLINK_LISTEN_ALL_NSID)
    assert (netlink.RTNLGRP_LINK, netlink.RTNLGRP_NSID) == (rtnl.RTNLGRP_LINK, rtnl.RTNLGRP_NSID)
    ours = (netlink.RTM_NEWLINK, netlink.RTM_DELLINK, netlink.RTM_NEWNSID, netlink.RTM_DELNSID)
    assert ours == (rtnl.RTM_NEWLINK, rtnl.RTM_DELLINK, rtnl.RTM_NEWNSID, rtnl.RTM_DELNSID)
    assert (netlink.RTM_NEWSTATS, netlink.RTM_GETSTATS) == (rtnl.RTM_NEWSTATS, rtnl.RTM_GETSTATS)
    assert names(ifstatsmsg.nla_map)[netlink.IFLA_STATS_LINK_64] == "IFLA_STATS_LINK_64"
    assert "".join(kind for _, kind in ifstatsmsg.fields) == "BBHII"  # if_stats_msg
