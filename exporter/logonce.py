"""Conditions logged once when they begin and once when they end, never once per run: a host
that lacks a privilege, or a daemon that does not answer, stays so for hours."""

from __future__ import annotations

import logging


class ChangeLog:
    """Per condition (a key), its current reason, and a log line whenever that changes: one
    at `level` (a warning) when it begins or its reason changes, an info line when it ends."""

    def __init__(self, logger: logging.Logger, level: int = logging.WARNING) -> None:
        self._log = logger
        self._level = level
        self._now: dict[str, str | None] = {}

    def update(
        self,
        key: str,
        reason: str | None,
        begun: str,
        ended: str,
        exc_info: BaseException | None = None,
        **extra: str,
    ) -> None:
        before = self._now.get(key)
        if reason == before:
            return
        if reason is not None:
            self._log.log(self._level, begun, exc_info=exc_info, extra={"reason": reason, **extra})
        elif before is not None:
            self._log.info(ended, extra=extra)
        self._now[key] = reason
