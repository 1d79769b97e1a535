"""Polling until a condition holds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")


def wait_until(
    check: Callable[[], _T | None], *, timeout: float, what: str, interval: float = 0.2
) -> _T:
    """Poll ``check`` until it returns something truthy (returned), or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
