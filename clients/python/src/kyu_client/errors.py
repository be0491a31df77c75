"""kyu's error answers as Python exceptions.

kyu answers every error as ``{"error": {"code", "message", "field"?}}`` with an HTTP
status; callers branch on ``code`` (stable) and show ``field``, so both are kept on the
exception, and the common cases get subclasses to catch by type.
"""

from __future__ import annotations

from typing import Any


class KyuError(Exception):
    """An error answer from kyu, or no answer at all (``status`` is then ``None``)."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "error",
        field: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field
        self.status = status

    def __str__(self) -> str:
        where = f" ({self.field})" if self.field else ""
        status = f"{self.status} " if self.status is not None else ""
        return f"{status}{self.code}{where}: {self.message}"


class InvalidInput(KyuError):
    """400 or 422: the request or payload was refused; ``field`` names the culprit."""


class Unauthorized(KyuError):
    """401 or 403: no token, a wrong token, or a role that may not do this."""


class NotFound(KyuError):
    """404: no such job (or one that belongs to another token)."""


class Conflict(KyuError):
    """409: the job is not in a state that allows this (e.g. retrying a running job)."""


class LeaseLost(Conflict):
    """409 ``lease_lost``: the job is no longer this worker's; report nothing more."""


class Unavailable(KyuError):
    """503 or no connection: kyu or its database cannot answer right now."""


def error_from_response(status: int, body: Any) -> KyuError:
    """Build the exception for an error answer (any JSON body, or none)."""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        code = str(err.get("code", "error"))
        message = str(err.get("message", ""))
        field = err.get("field")
        field = str(field) if field is not None else None
    else:
        code, message, field = f"http_{status}", f"HTTP {status}", None
    cls: type[KyuError] = KyuError
    if code == "lease_lost":
        cls = LeaseLost
    elif status in (400, 422):
        cls = InvalidInput
    elif status in (401, 403):
        cls = Unauthorized
    elif status == 404:
        cls = NotFound
    elif status == 409:
        cls = Conflict
    elif status == 503:
        cls = Unavailable
    return cls(message, code=code, field=field, status=status)
