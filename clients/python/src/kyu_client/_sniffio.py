"""Spare every async request a failed import.

httpcore asks ``import sniffio`` on each request of an ``httpx.AsyncClient``; without
sniffio installed (httpx does not need it) every one of those imports searches
``sys.path`` again, ~0.5 ms a request, which capped a worker's throughput. Recording
the miss once in ``sys.modules`` makes the import fail at once, as it would anyway.
"""

from __future__ import annotations

import importlib.util
import sys


def remember_missing_sniffio() -> None:
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]
