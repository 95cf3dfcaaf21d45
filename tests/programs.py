"""Which programs the tests and benchmarks run, and which Debian package gives each.

On a fresh machine `make test` failed because a test ran `nft` and scripts/testbed.sh did not
install nftables. This module finds every program that tests/ and bench/ start, by reading their
source (no import, nothing run): the first argument of subprocess.run/Popen/check_output/...
and of shutil.which, followed through local names, module constants, function parameters (their
call sites in the module), pytest fixtures (their return values), `ip netns exec NS PROG` and
`nsenter ... PROG`, and the repository's shell scripts those sources run. An argument it cannot
follow is reported, so that a new way of starting a program cannot slip past unseen.
"""

from __future__ import annotations

import ast
import functools
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTBED = ROOT / "scripts" / "testbed.sh"
SOURCES = ("tests", "bench")

# Every program the tests and benchmarks run, and the Debian 12 package that ships it (checked
# with `dpkg -S` and by tests/integration/test_testbed_on_host.py against `dpkg-query -L`).
PACKAGE_OF: dict[str, str] = {
    "apt-get": "apt",
    "awk": "mawk",
    "bash": "bash",
    "brctl": "bridge-utils",
    "chromedriver": "chromium-driver",
    "chromium": "chromium",
    "busybox": "busybox-static",
    "conntrack": "conntrack",
    "ctr": "containerd",
    "containerd": "containerd",
    "debootstrap": "debootstrap",
    "docker": "docker.io",
    "docker-compose": "docker-compose",
    "dockerd": "docker.io",
    "dpkg-query": "dpkg",
    "ethtool": "ethtool",
    "git": "git",
    "grep": "grep",
    "ifconfig": "net-tools",
    "ip": "iproute2",
    "iptables": "iptables",
    "iptables-legacy": "iptables",
    "iptables-save": "iptables",
    "ip6tables": "iptables",
    "ip6tables-legacy": "iptables",
    "iptables-nft": "iptables",
    "iptables-nft-restore": "iptables",
    "ldconfig": "libc-bin",
    "mktemp": "coreutils",
    "mount": "mount",
    "nft": "nftables",
    "ipset": "ipset",
    "nsenter": "util-linux",
    "openssl": "openssl",
    "pipx": "pipx",
    "podman": "podman",
    "prometheus": "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "amtool": "prometheus-alertmanager",
    "prometheus-node-exporter": "prometheus-node-exporter",
    "promtool": "prometheus",
    "rm": "coreutils",
    "sed": "sed",
    "setpriv": "util-linux",
    "sh": "dash",
    "ss": "iproute2",
    "sysctl": "procps",
    "sleep": "coreutils",
    "systemctl": "systemd",
    "systemd-analyze": "systemd",
    "strace": "strace",
    "tar": "tar",
    "umount": "mount",
    "unshare": "util-linux",
}

# Priority "required": on every Debian system (debootstrap's minimal set), never to be installed.
BASE = frozenset(
    {"apt", "bash", "coreutils", "dash", "dpkg", "grep", "libc-bin", "mawk", "mount", "sed", "tar"}
)

# Packages used but deliberately not installed by the test bed, and why. (A package the scanned
# code installs itself, as bench/host_bench.py does prometheus-node-exporter with apt-get, so
# that the test bed leaves no node_exporter service on :9100 on every test machine, is found by
# the scan: see self_installed.)
NOT_IN_TESTBED: dict[str, str] = {}

# Arguments the scan cannot follow, and where their program is accounted for instead.
# Keyed by (file, the argument's source text).
ACCOUNTED: dict[tuple[str, str], str] = {
    ("tests/integration/test_testbed_on_host.py", "program"): (
        "every program of PACKAGE_OF, looked up on PATH to check the map against dpkg"
    ),
    ("tests/own_dockerd.py", "f'{tool}-legacy{suffix}'"): (
        "iptables-legacy and ip6tables-legacy with -save and -restore, all of package iptables"
    ),
    ("tests/integration/test_filter_decoders.py", "program"): (
        "nsenter (util-linux), iptables-restore and ip6tables-restore (iptables), looked up"
    ),
    ("tests/integration/test_filter_decoders.py", "binary"): (
        "iptables-{nft,legacy}[-restore] and ip6tables-{nft,legacy}[-restore], package iptables"
    ),
    ("tests/integration/test_filter_decoders.py", "tool(family, backend, '-restore')"): (
        "iptables-nft-restore, iptables-legacy-restore and the ip6tables ones, package iptables"
    ),
    ("tests/integration/test_filter_decoders.py", "tool(family, backend)"): (
        "iptables-nft, iptables-legacy, ip6tables-nft, ip6tables-legacy, package iptables"
    ),
    ("tests/own_dockerd.py", "self.command"): (
        "the nsenter ... dockerd command ipv6_dockerd starts (and scanned there), started again"
    ),
    ("tests/filter_probe.py", "sys.argv[2:]"): (
        "the change its test passes: iptables-nft, package iptables"
    ),
    ("tests/engines.py", "command"): (
        "run(): ip (iproute2) and nsenter (util-linux), literal where it is called"
    ),
    ("tests/record_engine.py", "str(dockerd)"): (
        "the dockerd built from moby's source that record-engine.sh is given: no test bed program"
    ),
    ("tests/record_engine.py", "str(runc or 'runc')"): (
        "runc (package runc, docker.io's dependency) or the one record-engine.sh is given"
    ),
    ("tests/integration/test_release.py", "program"): (
        "git (package git), sys.executable, and the pip and docker-host-exporter of the fresh "
        "virtualenv the test makes"
    ),
    ("bench/change_cost.py", "python"): (
        "the python of a tree's own virtualenv (--tree NAME=PYTHON), no test bed program"
    ),
    ("tests/helpers.py", "*wrapper"): (
        "wrappers built by the callers from shutil.which('setpriv') and shutil.which('unshare'), "
        "which the scan finds"
    ),
    ("bench/rule_counters_cost.py", "*enter"): (
        "nsenter (util-linux) into the benchmark's namespace, running ip (iproute2), sysctl "
        "(procps), iptables-nft-restore (iptables) and sys.executable"
    ),
    ("tests/filter_probe.py", "sys.argv[4:]"): (
        "the change its test passes: iptables-nft or iptables-legacy, package iptables"
    ),
    ("tests/integration/test_rule_counters.py", "program"): (
        "nsenter (util-linux), iptables-nft-restore and iptables-legacy-restore (iptables), "
        "looked up"
    ),
    ("tests/integration/test_rule_counters.py", "restore"): (
        "iptables-nft-restore or iptables-legacy-restore, package iptables"
    ),
}


def _option(literal: object, node: ast.expr) -> bool:
    """An option of a wrapper: a literal or an f-string that starts with "-"."""
    if isinstance(literal, str):
        return literal[:1] == "-"
    return isinstance(node, ast.JoinedStr) and ast.unparse(node)[2:3] == "-"


CALLS = {
    "subprocess": {"run", "Popen", "check_output", "check_call", "call"},
    "subprocess-shell": {"getoutput", "getstatusoutput"},
    "shutil": {"which"},
    "os": {"execv", "execvp", "execvpe", "execl", "execlp", "execlpe", "system", "popen"},
    "asyncio": {"create_subprocess_exec", "create_subprocess_shell"},
}
SHELL_STRING = {"getoutput", "getstatusoutput", "system", "popen", "create_subprocess_shell"}
PROGRAM_FIRST = {"which", "execv", "execvp", "execvpe", "execl", "execlp", "execlpe"}
PROGRAM_FIRST |= {"create_subprocess_exec"}

SHELL_WORDS = frozenset(
    "if then else elif fi for while until do done case esac in function select time { } [ [[ ]] "
    "! : . echo printf set cd exit return trap local export read shift test true false eval "
    "exec source break continue wait kill type command declare readonly unset ulimit".split()
)


@dataclass(frozen=True)
class Use:
    program: str
    where: str
    args: tuple[str | None, ...] = ()  # the literal arguments after the program, None if not one


@dataclass(frozen=True)
class Unfollowed:
    file: str
    source: str
    where: str


class _Venv:
    """A program next to sys.executable: the venv's Python or one of its console scripts."""


VENV = _Venv()
Resolved = str | _Venv


def packages_of_testbed(text: str | None = None) -> set[str]:
    """The PACKAGES array of scripts/testbed.sh (one word per package, comments allowed)."""
    text = TESTBED.read_text() if text is None else text
    words: list[str] = []
    inside = False
    for line in text.splitlines():
        code = line.split("#", 1)[0]
        if not inside:
            if not code.startswith("PACKAGES=("):
                continue
            inside, code = True, code[len("PACKAGES=(") :]
        words += code.split(")", 1)[0].split()
        if ")" in code:
            return set(words)
    raise AssertionError("scripts/testbed.sh has no PACKAGES=(...) array")


def python_sources() -> list[Path]:
    return sorted(p for d in SOURCES for p in (ROOT / d).rglob("*.py"))


def scan(paths: list[Path] | None = None) -> tuple[list[Use], list[Unfollowed]]:
    """Every program the given Python files (default: tests/ and bench/) start, with the shell
    scripts of this repository they name; and the arguments it could not follow."""
    uses: list[Use] = []
    unfollowed: list[Unfollowed] = []
    scripts: set[Path] = set()
    for path in paths if paths is not None else python_sources():
        module = _Module(path)
        uses += module.uses
        unfollowed += module.unfollowed
        scripts |= module.scripts
    for script in sorted(scripts):
        rel = _rel(script)
        uses += [Use(p, rel) for p in shell_programs(script.read_text())]
    return uses, unfollowed


def shell_programs(text: str) -> set[str]:
    """Programs a shell script runs in command position (a simple reading: pipelines, lists,
    $(...) and backticks; not commands inside double-quoted substitutions or eval)."""
    programs: set[str] = set()
    functions = set(re.findall(r"^\s*([A-Za-z_][\w-]*)\s*\(\)", text, re.MULTILINE))
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.replace("$(", " ; ").replace("`", " ; ")
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        try:
            tokens = list(lexer)
        except ValueError:  # an unbalanced quote after the rewrite: read no further
            continue
        expect = True
        skip_rest = False
        for token in tokens:
            if token in {";", "&&", "||", "|", "&", "(", ")", ";;", "|&"}:
                expect, skip_rest = True, False
                continue
            if skip_rest or not expect:
                continue
            if token in {"for", "case", "select"}:
                skip_rest = True
                continue
            if token in {"then", "do", "else", "elif", "if", "while", "until", "!", "{", "time"}:
                continue
            expect = False
            if re.match(r"^[A-Za-z_]\w*(\[.*\])?\+?=", token) or token in functions:
                expect = not re.match(r"^[A-Za-z_]\w*=.", token) and "=" in token
                continue
            if token in SHELL_WORDS or "$" in token or token.isdigit():
                continue
            if re.match(r"^[\w./+-]+$", token) and not token.startswith("-"):
                programs.add(token.rsplit("/", 1)[-1])
    return programs


def _rel(path: Path) -> str:
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)


class _Module:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.rel = _rel(path)
        self.tree = ast.parse(path.read_text(), str(path))
        self.uses: list[Use] = []
        self.unfollowed: list[Unfollowed] = []
        self.scripts: set[Path] = set()
        self.parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
        self.modules, self.names = self._imports()
        self.functions = {
            n.name: n
            for n in ast.walk(self.tree)
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        self._visiting: set[int] = set()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call):
                self._call(node)

    # -- what is a call that starts a program --------------------------------------------------

    def _imports(self) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
        modules: dict[str, str] = {}
        names: dict[str, tuple[str, str]] = {}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    modules[alias.asname or alias.name] = alias.name
            elif isinstance(node, ast.ImportFrom) and node.module in CALLS:
                for alias in node.names:
                    names[alias.asname or alias.name] = (node.module, alias.name)
        return modules, names

    def _kind(self, func: ast.expr) -> str | None:
        module: str | None = None
        name: str | None = None
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            module, name = self.modules.get(func.value.id), func.attr
        elif isinstance(func, ast.Name) and func.id in self.names:
            module, name = self.names[func.id]
        if module is None or name is None:
            return None
        for group, members in CALLS.items():
            if module == group.split("-")[0] and name in members:
                return name
        return None

    def _call(self, call: ast.Call) -> None:
        kind = self._kind(call.func)
        if kind is None or not call.args:
            return
        first = call.args[0]
        self._scripts_in(first, call, 0)
        shell = kind in SHELL_STRING or any(
            k.arg == "shell" and isinstance(k.value, ast.Constant) and k.value.value
            for k in call.keywords
        )
        if shell:
            for value in self._values(first, call):
                if isinstance(value, str):
                    self._use(value.split()[0] if value.split() else "", call, ())
                else:
                    self._unfollowed(first, call)
            return
        if kind in PROGRAM_FIRST:
            self._program(first, call, ())
            return
        self._argv(first, call)

    # -- following an argument to the program it names ----------------------------------------

    def _argv(self, node: ast.expr, at: ast.AST) -> None:
        """node is a whole argv: a list/tuple literal, or something that evaluates to one."""
        if isinstance(node, ast.List | ast.Tuple):
            if not node.elts:
                return
            head, rest = node.elts[0], node.elts[1:]
            if isinstance(head, ast.Starred):
                self._starred_head(head, at)
                return
            args = tuple(self._literal(e) for e in rest)
            for program in self._program(head, at, args):
                self._inner(program, rest, at)
            return
        if isinstance(node, ast.Name):
            sources = self._bindings(node, at)
            if sources is None:
                self._unfollowed(node, at)
            for source, where in sources or ():
                self._argv(source, where)
            return
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            self._use(node.value, at, ())
            return
        self._unfollowed(node, at)

    def _starred_head(self, head: ast.Starred, at: ast.AST) -> None:
        if (self.rel, ast.unparse(head)) not in ACCOUNTED:
            self._unfollowed(head, at)

    def _program(self, node: ast.expr, at: ast.AST, args: tuple[str | None, ...]) -> list[str]:
        found: list[str] = []
        for value in self._values(node, at):
            if isinstance(value, _Venv):
                continue
            if value is None:
                self._unfollowed(node, at)
                continue
            if self._note_script(value):
                continue
            self._use(value, at, args)
            found.append(Path(value).name)
        return found

    def _inner(self, program: str, rest: list[ast.expr], at: ast.AST) -> None:
        """The program a wrapper runs: `ip netns exec NS PROG`, `nsenter [-t PID] [-m ...] PROG`."""
        literal = [self._literal(e) for e in rest]
        index: int | None = None
        if program == "ip" and literal[:2] == ["netns", "exec"] and len(rest) > 3:
            index = 3
        elif program == "nsenter":
            i = 0
            while i < len(rest) and _option(literal[i], rest[i]):
                i += 2 if literal[i] in {"-t", "--target"} else 1
            index = i if i < len(rest) else None
        if index is None:
            return
        node = rest[index]
        if isinstance(node, ast.Starred):
            for value, where in self._vararg(node.value, at):
                self._program(value, where, ())
        else:
            self._program(node, at, ())

    def _values(self, node: ast.expr, at: ast.AST, depth: int = 0) -> list[Resolved | None]:
        """The strings an expression can be, as far as they can be read; None where not."""
        if depth > 8:
            return [None]
        if "sys.executable" in ast.unparse(node):
            return [VENV]
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        follow = self._follow(node, at)
        if follow is not None:
            return [
                value
                for source, where in follow
                for value in ([None] if source is None else self._values(source, where, depth + 1))
            ]
        # ROOT / "scripts" / "x.sh", Path(...).with_name("x.sh"): a script, read on its own
        literals = [
            c.value
            for c in ast.walk(node)
            if isinstance(c, ast.Constant) and isinstance(c.value, str)
        ]
        return [] if any([self._note_script(s) for s in literals]) else [None]

    def _follow(self, node: ast.expr, at: ast.AST) -> list[tuple[ast.expr | None, ast.AST]] | None:
        """Where an expression's value comes from, if it can be followed (None if not); a None
        source for a name bound to nothing that was found."""
        if isinstance(node, ast.IfExp):
            return [(node.body, at), (node.orelse, at)]
        if isinstance(node, ast.Name):
            bindings = self._bindings(node, at)
            return [(None, at)] if bindings is None else list(bindings)
        if (
            isinstance(node, ast.Call)
            and (self._kind(node.func) == "which" or ast.unparse(node.func) == "str")
            and node.args
        ):
            return [(node.args[0], at)]
        return None

    def _bindings(self, name: ast.Name, at: ast.AST) -> list[tuple[ast.expr, ast.AST]] | None:
        """What a name is bound to where it is used: assignments in the enclosing functions or
        the module, a parameter's arguments at the call sites in this module (or its default),
        a pytest fixture's return values. None if none of these."""
        key = id(name)
        if key in self._visiting:
            return []
        self._visiting.add(key)
        try:
            return self._bindings_of(name.id, at)
        finally:
            self._visiting.discard(key)

    def _bindings_of(self, ident: str, at: ast.AST) -> list[tuple[ast.expr, ast.AST]] | None:
        scope: ast.AST | None = at
        while scope is not None:
            if isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef | ast.Module):
                assigned = self._assigned(scope, ident)
                if assigned:
                    return assigned
                if not isinstance(scope, ast.Module):
                    param = self._parameter(scope, ident)
                    if param is not None:
                        return param
            scope = self.parents.get(scope)
        return self._fixture(ident)

    def _assigned(self, scope: ast.AST, ident: str) -> list[tuple[ast.expr, ast.AST]]:
        out: list[tuple[ast.expr, ast.AST]] = []
        for node in _walk_scope(scope):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AnnAssign | ast.NamedExpr):
                targets = [node.target]
            value = getattr(node, "value", None)
            if value is not None and any(
                isinstance(t, ast.Name) and t.id == ident for t in targets
            ):
                out.append((value, node))
        return out

    def _parameter(
        self, func: ast.FunctionDef | ast.AsyncFunctionDef, ident: str
    ) -> list[tuple[ast.expr, ast.AST]] | None:
        positional = [a.arg for a in (*func.args.posonlyargs, *func.args.args)]
        keyword_only = [a.arg for a in func.args.kwonlyargs]
        if ident not in positional and ident not in keyword_only:
            return None
        out: list[tuple[ast.expr, ast.AST]] = []
        for call in self._calls_of(func.name):
            if ident in positional:
                index = positional.index(ident)
                if index < len(call.args) and not isinstance(call.args[index], ast.Starred):
                    out.append((call.args[index], call))
                    continue
            for kw in call.keywords:
                if kw.arg == ident:
                    out.append((kw.value, call))
        defaults = dict(
            zip(
                positional[len(positional) - len(func.args.defaults) :],
                func.args.defaults,
                strict=True,
            )
        )
        defaults |= {
            a.arg: d
            for a, d in zip(func.args.kwonlyargs, func.args.kw_defaults, strict=True)
            if d is not None
        }
        if ident in defaults:
            out.append((defaults[ident], func))
        if not out:
            fixture = self._fixture(ident)
            return fixture if fixture is not None else None
        return out

    def _vararg(self, node: ast.expr, at: ast.AST) -> list[tuple[ast.expr, ast.AST]]:
        """The first value a function's *args receives at its call sites in this module."""
        func = self._enclosing(at)
        if (
            not isinstance(node, ast.Name)
            or func is None
            or func.args.vararg is None
            or func.args.vararg.arg != node.id
        ):
            self._unfollowed(node, at)
            return []
        index = len(func.args.posonlyargs) + len(func.args.args)
        out: list[tuple[ast.expr, ast.AST]] = []
        for call in self._calls_of(func.name):
            if index < len(call.args) and not isinstance(call.args[index], ast.Starred):
                out.append((call.args[index], call))
            else:
                self._unfollowed(node, call)
        return out

    def _calls_of(self, name: str) -> list[ast.Call]:
        return [
            n
            for n in ast.walk(self.tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name
        ]

    def _enclosing(self, node: ast.AST) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        scope = self.parents.get(node)
        while scope is not None and not isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef):
            scope = self.parents.get(scope)
        return scope

    def _fixture(self, ident: str) -> list[tuple[ast.expr, ast.AST]] | None:
        """A pytest fixture of that name: here, its return values; in tests/conftest.py,
        nothing more to follow (the scan of conftest.py finds the program it returns)."""
        func = self.functions.get(ident)
        if func is not None and any("fixture" in ast.unparse(d) for d in func.decorator_list):
            return [(r.value, r) for r in self._returns(func) if r.value is not None]
        if ident in _conftest_fixtures():
            return []
        return None

    def _returns(self, func: ast.AST) -> list[ast.Return]:
        return [n for n in _walk_scope(func) if isinstance(n, ast.Return) and n.value is not None]

    # -- recording ----------------------------------------------------------------------------

    def _literal(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        return None

    def _note_script(self, value: str) -> bool:
        """A shell script of this repository, named by a literal: its programs are read too."""
        if not value.endswith(".sh"):
            return False
        name = Path(value).name
        for d in ("scripts", *SOURCES):
            for found in (ROOT / d).rglob(name):
                self.scripts.add(found)
                return True
        return False

    def _scripts_in(self, node: ast.expr, at: ast.AST, depth: int) -> None:
        """Shell scripts of this repository named anywhere in an argument, through names."""
        if depth > 4:
            return
        for c in ast.walk(node):
            if isinstance(c, ast.Constant) and isinstance(c.value, str):
                self._note_script(c.value)
            elif isinstance(c, ast.Name):
                for source, where in self._bindings(c, at) or ():
                    self._scripts_in(source, where, depth + 1)

    def _use(self, program: str, at: ast.AST, args: tuple[str | None, ...]) -> None:
        line = getattr(at, "lineno", 0)
        self.uses.append(Use(Path(program).name, f"{self.rel}:{line}", args))

    def _unfollowed(self, node: ast.expr, at: ast.AST) -> None:
        line = getattr(at, "lineno", getattr(node, "lineno", 0))
        source = ast.unparse(node)
        if (self.rel, source) in ACCOUNTED:
            return
        self.unfollowed.append(Unfollowed(self.rel, source, f"{self.rel}:{line}"))


def _walk_scope(scope: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a function or module body, not descending into nested functions."""
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            stack.extend(ast.iter_child_nodes(node))


@functools.cache
def _conftest_fixtures() -> frozenset[str]:
    tree = ast.parse((ROOT / "tests" / "conftest.py").read_text())
    return frozenset(
        n.name
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef)
        and any("fixture" in ast.unparse(d) for d in n.decorator_list)
    )


def self_installed(uses: list[Use]) -> set[str]:
    """Packages the scanned code installs itself (`apt-get install ... PKG`)."""
    out: set[str] = set()
    for use in uses:
        if use.program == "apt-get" and "install" in use.args:
            after = use.args[use.args.index("install") + 1 :]
            out |= {a for a in after if a is not None and not a.startswith("-")}
    return out


def unmapped(uses: list[Use]) -> list[Use]:
    """Uses of programs PACKAGE_OF does not name a package for."""
    return [u for u in uses if u.program not in PACKAGE_OF]


def not_installed(uses: list[Use], packages: set[str]) -> list[tuple[Use, str]]:
    """Uses of programs whose package the test bed does not install, with that package."""
    allowed = packages | BASE | set(NOT_IN_TESTBED) | self_installed(uses)
    return [
        (u, PACKAGE_OF[u.program])
        for u in uses
        if u.program in PACKAGE_OF and PACKAGE_OF[u.program] not in allowed
    ]
