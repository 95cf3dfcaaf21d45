"""--web.config.file: TLS and basic auth in the Prometheus exporter-toolkit's format, so a file
written for node_exporter works here unchanged.

    tls_server_config:
      cert_file: server.crt          # paths relative to this file
      key_file: server.key
      min_version: TLS12             # TLS10 .. TLS13
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: ca.crt
    basic_auth_users:
      prometheus: $2y$10$...         # bcrypt hashes only
"""

from __future__ import annotations

import functools
import hashlib
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}


@functools.cache
def dummy_hash() -> bytes:
    """Compared against when the user is unknown, so an unknown user costs one bcrypt check,
    the same as a wrong password: the response time does not tell which users exist. Made on
    the first unknown user, not at import: every start of the exporter, and every `inspect`, paid
    for it (~60 ms of CPU here at cost 10, measured with time.process_time)."""
    return bcrypt.hashpw(b"not a password", bcrypt.gensalt(rounds=10))


class WebConfigError(ValueError):
    pass


@dataclass(frozen=True)
class TlsConfig:
    cert_file: Path
    key_file: Path
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None

    def context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file)
            if self.client_ca_file is not None:
                ctx.load_verify_locations(cafile=str(self.client_ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise WebConfigError(f"tls_server_config: {exc}") from exc
        ctx.minimum_version = TLS_VERSIONS[self.min_version]
        ctx.maximum_version = TLS_VERSIONS[self.max_version]
        ctx.verify_mode = CLIENT_AUTH[self.client_auth_type]
        return ctx


@dataclass
class BasicAuth:
    users: dict[str, bytes]
    # Verified (user, sha256(password)) pairs: bcrypt is slow by design, and a scraper sends
    # the same credentials every few seconds.
    _verified: set[tuple[str, bytes]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, user: str, password: str) -> bool:
        digest = hashlib.sha256(password.encode()).digest()
        with self._lock:
            if (user, digest) in self._verified:
                return True
        stored = self.users.get(user)
        ok = bcrypt.checkpw(password.encode(), stored or dummy_hash()) and stored is not None
        if ok:
            with self._lock:
                self._verified.add((user, digest))
        return ok


@dataclass(frozen=True)
class WebConfig:
    tls: TlsConfig | None = None
    basic_auth: BasicAuth | None = None


def _path(base: Path, value: Any, name: str) -> Path:
    if not isinstance(value, str) or not value:
        raise WebConfigError(f"tls_server_config: {name} must be a file path")
    path = Path(value)
    return path if path.is_absolute() else base / path


def load_web_config(path: str | Path) -> WebConfig:
    """Parse and check the file at startup: a bad file stops the exporter with the reason."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise WebConfigError(f"{path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise WebConfigError(f"{path}: not a mapping")
    unknown = set(raw) - {"tls_server_config", "basic_auth_users", "http_server_config"}
    if unknown:
        raise WebConfigError(f"{path}: unknown keys {sorted(unknown)}")
    tls = _tls(path.parent, raw.get("tls_server_config"))
    users = raw.get("basic_auth_users") or {}
    if not isinstance(users, dict):
        raise WebConfigError("basic_auth_users: must map user names to bcrypt hashes")
    hashes: dict[str, bytes] = {}
    for user, hashed in users.items():
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise WebConfigError(f"basic_auth_users: {user}: not a bcrypt hash")
        hashes[str(user)] = hashed.encode()
    config = WebConfig(tls=tls, basic_auth=BasicAuth(hashes) if hashes else None)
    if config.tls is not None:
        config.tls.context()  # fail now, not on the first scrape
    return config


def _tls(base: Path, raw: Any) -> TlsConfig | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise WebConfigError("tls_server_config: must be a mapping")
    client_auth = raw.get("client_auth_type", "NoClientCert")
    if client_auth not in CLIENT_AUTH:
        raise WebConfigError(
            f"tls_server_config: client_auth_type {client_auth!r} is not one "
            f"of {', '.join(CLIENT_AUTH)}"
        )
    versions = (raw.get("min_version", "TLS12"), raw.get("max_version", "TLS13"))
    for version in versions:
        if version not in TLS_VERSIONS:
            raise WebConfigError(f"tls_server_config: unknown TLS version {version!r}")
    ca = raw.get("client_ca_file")
    # Python's ssl verifies every client certificate it asks for: the two Go modes that ask
    # without verifying behave here like their verifying twins, so they need a CA too.
    if client_auth != "NoClientCert" and not ca:
        raise WebConfigError(f"tls_server_config: {client_auth} needs client_ca_file")
    return TlsConfig(
        cert_file=_path(base, raw.get("cert_file"), "cert_file"),
        key_file=_path(base, raw.get("key_file"), "key_file"),
        min_version=versions[0],
        max_version=versions[1],
        client_auth_type=client_auth,
        client_ca_file=_path(base, ca, "client_ca_file") if ca else None,
    )
