"""Where kyu is and who we are to it, from arguments or the environment.

Both clients and the worker read the same defaults (``KYU_URL``, ``KYU_TOKEN``), so a
program configured by its environment needs no arguments at all.
"""

from __future__ import annotations

import os

from ._version import __version__

DEFAULT_URL = "http://127.0.0.1:7878"
USER_AGENT = f"kyu-client-python/{__version__}"


def resolve_url(url: str | None) -> str:
    return (url or os.environ.get("KYU_URL") or DEFAULT_URL).rstrip("/")


def resolve_token(token: str | None) -> str | None:
    return token if token is not None else (os.environ.get("KYU_TOKEN") or None)
