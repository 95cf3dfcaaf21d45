"""--web.config.file: real TLS handshakes and basic auth against the real HTTP server, with
certificates made by openssl for the test (no root, loopback only)."""

from __future__ import annotations

import base64
import http.client
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from exporter import webconfig
from exporter.metrics import Exposition
from exporter.web import make_server, serve_in_background
from exporter.webconfig import WebConfigError, load_web_config
from tests.conftest import unavailable
from tests.helpers import free_port

# host_free (tests/conftest.py): the exporter's HTTP server on a loopback port, with a fixed
# exposition; no collector, no root, nothing of the host read.
pytestmark = [pytest.mark.integration, pytest.mark.host_free]


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        unavailable("openssl makes the test certificates")
    d = tmp_path_factory.mktemp("pki")
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        cwd=d,
    )
    for name in ("server", "client"):
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={'localhost' if name == 'server' else name}",
            cwd=d,
        )
        (d / f"{name}.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.crt",
            "-days",
            "2",
            "-extfile",
            f"{name}.ext",
            cwd=d,
        )
    return d


HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()


def serve(config_text: str, directory: Path) -> Iterator[int]:
    (directory / "web.yml").write_text(config_text)
    port = free_port()
    server = make_server(
        f"127.0.0.1:{port}",
        "/metrics",
        lambda: Exposition(b"docker_host_up 1\n"),
        lambda: True,
        b"hi",
        web_config=load_web_config(directory / "web.yml"),
    )
    serve_in_background(server)
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def mtls(pki: Path) -> Iterator[int]:
    yield from serve(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"
        f"  min_version: TLS12\nbasic_auth_users:\n  prometheus: '{HASH}'\n",
        pki,
    )


def client(
    pki: Path, cert: bool = True, max_version: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if cert:
        ctx.load_cert_chain(pki / "client.crt", pki / "client.key")
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


def get(
    port: int,
    ctx: ssl.SSLContext,
    path: str = "/metrics",
    user: str | None = None,
    password: str = "",
) -> int:
    connection = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
    headers = {}
    if user is not None:
        headers["Authorization"] = (
            "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        )
    try:
        connection.request("GET", path, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def test_mutual_tls_and_basic_auth(mtls: int, pki: Path) -> None:
    assert get(mtls, client(pki), user="prometheus", password="s3cret") == 200
    assert get(mtls, client(pki), user="prometheus", password="wrong") == 401
    assert get(mtls, client(pki), user="nobody", password="s3cret") == 401
    assert get(mtls, client(pki)) == 401
    assert get(mtls, client(pki), path="/healthz") == 200  # probes need no credentials


def test_client_without_certificate_is_refused(mtls: int, pki: Path) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        get(mtls, client(pki, cert=False), user="prometheus", password="s3cret")


def test_min_version_is_enforced(pki: Path) -> None:
    for port in serve(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  min_version: TLS13\n",
        pki,
    ):
        assert get(port, client(pki, cert=False)) == 200
        with pytest.raises(ssl.SSLError):
            get(port, client(pki, cert=False, max_version=ssl.TLSVersion.TLSv1_2))


def test_unknown_user_costs_a_bcrypt_check_like_a_wrong_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checks: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        checks.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    auth = webconfig.BasicAuth({"prometheus": HASH.encode()})
    assert not auth.check("prometheus", "wrong")
    assert not auth.check("nobody", "wrong")
    assert len(checks) == 2 and checks[1] == webconfig.dummy_hash()
    assert auth.check("prometheus", "s3cret") and auth.check("prometheus", "s3cret")
    assert len(checks) == 3  # verified credentials are cached


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n", "No such file"),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS99\n",
            "unknown TLS version",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n"
            "  client_auth_type: RequireAndVerifyClientCert\n",
            "needs client_ca_file",
        ),
        ("basic_auth_users:\n  alice: plaintext\n", "not a bcrypt hash"),
        ("surprise: 1\n", "unknown keys"),
        ("- a list\n", "not a mapping"),
    ],
)
def test_bad_files_say_why(tmp_path: Path, text: str, reason: str) -> None:
    (tmp_path / "web.yml").write_text(text)
    with pytest.raises(WebConfigError, match=reason):
        load_web_config(tmp_path / "web.yml")
