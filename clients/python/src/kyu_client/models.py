"""Typed views of what kyu's job API answers.

Plain frozen dataclasses built from the JSON, so callers get attribute access and type
checking; unknown keys are ignored (newer servers may add some) and the whole answer
stays available as ``raw``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: Statuses after which a job never changes again (unless retried).
TERMINAL_STATUSES = frozenset({"completed", "failed", "canceled"})


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp as an aware datetime (``None`` stays ``None``)."""
    if value is None:
        return None
    return datetime.fromisoformat(str(value))


@dataclass(frozen=True)
class AttemptError:
    """One failed attempt: ``kind`` is retryable, non_retryable, rate_limit, timeout, …"""

    kind: str
    message: str
    attempt: int | None = None
    at: datetime | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AttemptError:
        return cls(
            kind=str(data.get("kind", "")),
            message=str(data.get("message", "")),
            attempt=data.get("attempt"),
            at=parse_time(data.get("at")),
        )


@dataclass(frozen=True)
class Job:
    """A job as ``GET /api/v1/jobs/{id}`` shows it."""

    job_id: str
    type: str
    status: str
    progress: int
    payload: Any
    result: Any
    error: AttemptError | None
    errors: list[AttemptError]
    attempts: int
    max_attempts: int
    queue: str
    priority: int
    cancel_requested: bool
    created_at: datetime | None
    finished_at: datetime | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def done(self) -> bool:
        """The job reached ``completed``, ``failed`` or ``canceled``."""
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        err = data.get("error")
        return cls(
            job_id=str(data["job_id"]),
            type=str(data.get("type", "")),
            status=str(data.get("status", "")),
            progress=int(data.get("progress") or 0),
            payload=data.get("payload"),
            result=data.get("result"),
            error=AttemptError.from_json(err) if isinstance(err, dict) else None,
            errors=[AttemptError.from_json(e) for e in data.get("errors") or []],
            attempts=int(data.get("attempts") or 0),
            max_attempts=int(data.get("max_attempts") or 0),
            queue=str(data.get("queue", "")),
            priority=int(data.get("priority") or 0),
            cancel_requested=bool(data.get("cancel_requested")),
            created_at=parse_time(data.get("created_at")),
            finished_at=parse_time(data.get("finished_at")),
            raw=data,
        )


@dataclass(frozen=True)
class Enqueued:
    """The answer to an enqueue: the new job (or, for a repeated unique key, the live one)."""

    job_id: str
    status: str
    duplicate: bool = False

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Enqueued:
        return cls(
            job_id=str(data["job_id"]),
            status=str(data.get("status", "")),
            duplicate=bool(data.get("duplicate")),
        )


@dataclass(frozen=True)
class JobPage:
    """One page of ``list``: newest first; pass ``next_cursor`` to get the next page."""

    jobs: list[Job]
    next_cursor: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobPage:
        return cls(
            jobs=[Job.from_json(j) for j in data.get("jobs") or []],
            next_cursor=data.get("next_cursor"),
        )
