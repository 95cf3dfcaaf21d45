"""`iptables -S` / `iptables-save` filter lines as FilterRule and FilterChain records: how the
unit tests build Docker-shaped rule sets, and how integration tests hold the decoders against
iptables' own printing. Only the options Docker's rules use are understood; anything else
becomes `undecoded`, as the decoders do."""

from __future__ import annotations

import shlex

from exporter.readers.filter_rules import CT_STATES, FilterChain, FilterRule

_VERDICTS = {"ACCEPT": "accept", "DROP": "drop", "REJECT": "reject", "RETURN": "return"}
_STATE_ORDER = [name for _, name in CT_STATES]


def _address(text: str, family: str) -> str:
    if "/" in text:
        return text
    return f"{text}/128" if family == "ipv6" else f"{text}/32"


def _is_chain(name: str, chains: set[str] | None) -> bool:
    if chains is not None:
        return name in chains
    return not name.isupper() or name.startswith(("DOCKER", "CNI", "KUBE"))


def parse_rule(  # noqa: PLR0912 (one branch per option)
    line: str,
    backend: str = "nftables",
    family: str = "ipv4",
    position: int = 1,
    chains: set[str] | None = None,
) -> FilterRule:
    """One -A line; chains: the user chains a -j may name (None: guessed by name)."""
    words = shlex.split(line)
    assert words[0] == "-A", line
    fields: dict[str, object] = {"chain": words[1]}
    undecoded: list[str] = []
    negate = False
    i = 2
    while i < len(words):
        word = words[i]
        if word == "!":
            negate = True
            i += 1
            continue
        value = words[i + 1] if i + 1 < len(words) else ""
        if word in ("-s", "-d", "-i", "-o", "-p"):
            key = {"-s": "source", "-d": "destination", "-i": "in_interface",
                   "-o": "out_interface", "-p": "protocol"}[word]  # fmt: skip
            fields[key] = _address(value, family) if word in ("-s", "-d") else value
            fields[key.replace("_interface", "") + "_negated" if "interface" in key else
                   f"{key}_negated"] = negate  # fmt: skip
            i += 2
        elif word == "-m":
            if value not in ("conntrack", "tcp", "udp", "comment", "state", "set"):
                undecoded.append(f"match {value}")
            i += 2
        elif word == "--comment":
            i += 2
        elif word == "--match-set":  # --match-set <name> src|dst (one dimension)
            fields["match_set"] = value
            fields["match_set_src"] = words[i + 2] == "src"
            fields["match_set_negated"] = negate
            i += 3
        elif word in ("--ctstate", "--state"):
            if negate:
                undecoded.append("negated state")
            states = set(value.split(","))
            fields["ct_state"] = tuple(s for s in _STATE_ORDER if s in states)
            i += 2
        elif word == "--dport":
            if negate or not value.isdigit():
                undecoded.append(f"--dport {'! ' if negate else ''}{value}")
            else:
                fields["dport"] = int(value)
            i += 2
        elif word == "--sport":
            fields["narrowed"] = True
            i += 2
        elif word in ("-j", "-g"):
            if value in _VERDICTS:
                fields["verdict"] = _VERDICTS[value]
            elif value in ("LOG", "NFLOG"):
                fields["verdict"] = "continue"
            elif not _is_chain(value, chains):
                undecoded.append(f"target {value}")
                fields["verdict"] = "continue"
            else:
                fields["verdict"] = "jump" if word == "-j" else "goto"
                fields["target"] = value
            break  # what follows are the target's own options
        else:
            undecoded.append(word)
            i += 1
        negate = False
    fields.setdefault("verdict", "continue")
    # iptables' in_negated/out_negated keys
    for side in ("in", "out"):
        if f"{side}_negated" not in fields and f"{side}_interface" in fields:
            fields[f"{side}_negated"] = False
    return FilterRule(
        backend=backend,
        family=family,
        table="filter",
        position=position,
        undecoded="; ".join(undecoded),
        **fields,  # type: ignore[arg-type]
    )


def parse_ruleset(
    text: str, backend: str = "nftables", family: str = "ipv4"
) -> tuple[tuple[FilterChain, ...], tuple[FilterRule, ...]]:
    """`iptables -S` output (or an iptables-save *filter section) as chains and rules; built-in
    INPUT and OUTPUT are left out, as the readers leave them out."""
    chains: dict[str, FilterChain] = {}
    rules: list[FilterRule] = []
    positions: dict[str, int] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("-P ") or (line.startswith(":") and not line.startswith(": ")):
            name, policy = line.split()[1:3] if line.startswith("-P") else line[1:].split()[:2]
            if name in ("INPUT", "OUTPUT"):
                continue
            hook = "forward" if name == "FORWARD" else None
            chains[name] = FilterChain(
                backend, family, "filter", name, hook, 0,
                policy.lower() if hook and policy != "-" else None,
            )  # fmt: skip
        elif line.startswith("-N "):
            name = line.split()[1]
            chains[name] = FilterChain(backend, family, "filter", name)
        elif line.startswith("-A "):
            chain = line.split()[1]
            if chain in ("INPUT", "OUTPUT"):
                continue
            positions[chain] = positions.get(chain, 0) + 1
            rules.append(parse_rule(line, backend, family, positions[chain], set(chains)))
    return tuple(chains.values()), tuple(rules)


def docker20_filter(
    bridges: tuple[str, ...] = ("docker0",),
    accepts: tuple[tuple[str, str, str, int], ...] = (),
    user: tuple[str, ...] = (),
    policies: tuple[str, ...] = ("INPUT", "FORWARD", "OUTPUT"),
) -> str:
    """Docker 20.10's filter table as `iptables -S` prints it: its chains, each bridge's four
    FORWARD rules and two isolation rules, one DOCKER accept per published port (container
    address, bridge, protocol, port) and DOCKER-USER's rules before its RETURN. The one copy
    of this layout the tests write out (with `restore_text` for iptables-restore's format)."""
    lines = [f"-P {chain} {'DROP' if chain == 'FORWARD' else 'ACCEPT'}" for chain in policies]
    lines += [f"-N {c}" for c in ("DOCKER", *(f"DOCKER-ISOLATION-STAGE-{n}" for n in (1, 2)))]
    lines += [
        "-N DOCKER-USER",
        "-A FORWARD -j DOCKER-USER",
        "-A FORWARD -j DOCKER-ISOLATION-STAGE-1",
    ]
    for b in bridges:
        lines += [
            f"-A FORWARD -o {b} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            f"-A FORWARD -o {b} -j DOCKER",
            f"-A FORWARD -i {b} ! -o {b} -j ACCEPT",
            f"-A FORWARD -i {b} -o {b} -j ACCEPT",
        ]
    lines += [
        f"-A DOCKER -d {address} ! -i {b} -o {b} -p {proto} -m {proto} --dport {port} -j ACCEPT"
        for address, b, proto, port in accepts
    ]
    stage1 = "-A DOCKER-ISOLATION-STAGE-1"
    lines += [f"{stage1} -i {b} ! -o {b} -j DOCKER-ISOLATION-STAGE-2" for b in bridges]
    lines += [f"{stage1} -j RETURN"]
    lines += [f"-A DOCKER-ISOLATION-STAGE-2 -o {b} -j DROP" for b in bridges]
    lines += ["-A DOCKER-ISOLATION-STAGE-2 -j RETURN", *user, "-A DOCKER-USER -j RETURN"]
    return "\n" + "\n".join(lines) + "\n"


def restore_text(text: str) -> str:
    """`iptables -S` lines as an iptables-restore *filter section (policies and chains first,
    as iptables-save prints them)."""
    heads, rules = [], []
    for line in text.strip().splitlines():
        if line.startswith("-P "):
            heads.append(f":{line.split()[1]} {line.split()[2]} [0:0]")
        elif line.startswith("-N "):
            heads.append(f":{line.split()[1]} - [0:0]")
        else:
            rules.append(line)
    return "\n".join(["*filter", *heads, *rules, "COMMIT"]) + "\n"
