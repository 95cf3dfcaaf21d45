"""The tests' engine client (tests/engine_client.py): a call into an engine that stops
answering fails with a message naming the call and its arguments, not pytest's bare timeout;
the same client works again once the engine answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine_client import EngineCallTimeout, timed_client
from tests.sockets import FaultyDocker

pytestmark = pytest.mark.integration


def test_a_hung_engine_call_names_the_call_and_the_client_recovers(
    root: None, tmp_path: Path
) -> None:
    proxy = FaultyDocker(tmp_path / "docker.sock")
    try:
        client = timed_client(f"unix://{proxy.path}", call_timeout=3)
        bridge = client.networks.get("bridge")
        proxy.hang()
        with pytest.raises(EngineCallTimeout) as hung:
            client.containers.list(all=True, filters={"label": "dhe-test"})
        assert "engine call containers.list(all=True, filters={'label': 'dhe-test'})" in str(
            hung.value
        ), hung.value
        assert f"unix://{proxy.path}" in str(hung.value)
        # Objects the client handed out are timed too, and named for what they are.
        with pytest.raises(EngineCallTimeout, match=r"engine call network\[bridge\]\.reload\(\)"):
            bridge.reload()
        proxy.forward()
        bridge.reload()
        assert bridge.name == "bridge"
        direct = timed_client()
        assert bridge.id == direct.networks.get("bridge").id
        direct.close()
        client.close()
    finally:
        proxy.close()
