"""The ports collector's own flags."""

from __future__ import annotations

from exporter.options import Option, positive
from exporter.settings import parse_duration

# 4 minutes: at the default 15 s interval a listener that closed is read again within 16 runs
# (4 min) and its confirming second look follows within the run (1 s), so the listener verdict
# shows within 5 minutes (docs/architecture.md, "Listeners", gives the formula).
LISTENER_REFRESH = Option(
    "listener-refresh",
    parse_duration,  # positive, or a ValueError
    240.0,
    check=positive,
    help="every publishing container's listeners are looked at again at least this often, "
    "spread evenly over the runs: three turns in four by their sockets still being open in its "
    "processes, the fourth by reading /proc/PID/net/tcp (which walks the kernel's whole TCP "
    "hash, ~2 ms); read at the next run when its processes, its DNAT or forward rules or its "
    "docker-proxy changed; a closed listener is reported within floor(refresh/interval) runs "
    "plus the run's confirming second look (default: 4m)",
)
