"""Each API call written once, for both the sync and the asyncio client.

A call is the HTTP request to make plus how to read a successful answer; the two
clients differ only in how they send it (``httpx.Client`` or ``httpx.AsyncClient``),
so the paths, bodies and decoding live here and cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from .errors import KyuError, Unavailable, error_from_response
from .models import Enqueued, Job, JobPage

T = TypeVar("T")

#: What ``enqueue`` accepts besides type and payload (kyu's ``POST /jobs`` fields).
ENQUEUE_OPTIONS = frozenset(
    {
        "priority",
        "queue",
        "provider",
        "delay_seconds",
        "run_at",
        "max_retries",
        "timeout_seconds",
        "unique_key",
        "concurrency_key",
        "concurrency_limit",
        "tenant",
        "tier",
    }
)


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    decode: Callable[[Any], T]
    json: Any = None
    params: Mapping[str, str | int] | None = None


def job_body(job_type: str, payload: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON of one job to enqueue; unknown options are a TypeError, as in a call."""
    unknown = set(options) - ENQUEUE_OPTIONS
    if unknown:
        raise TypeError(f"unknown enqueue option(s): {', '.join(sorted(unknown))}")
    body: dict[str, Any] = {"type": job_type, "payload": payload}
    for key, value in options.items():
        if value is None:
            continue
        body[key] = value.isoformat() if isinstance(value, datetime) else value
    return body


def _job_path(job_id: str, action: str = "") -> str:
    return f"/api/v1/jobs/{quote(str(job_id), safe='')}{action}"


def enqueue(job_type: str, payload: Any, options: Mapping[str, Any]) -> Call[Enqueued]:
    return Call("POST", "/api/v1/jobs", Enqueued.from_json, job_body(job_type, payload, options))


def enqueue_many(jobs: Iterable[Mapping[str, Any]]) -> Call[list[Enqueued]]:
    bodies = []
    for job in jobs:
        spec = dict(job)
        job_type = spec.pop("type")
        payload = spec.pop("payload", None)
        bodies.append(job_body(job_type, payload, spec))
    return Call(
        "POST",
        "/api/v1/jobs/batch",
        lambda data: [Enqueued.from_json(j) for j in data["jobs"]],
        {"jobs": bodies},
    )


def get(job_id: str) -> Call[Job]:
    return Call("GET", _job_path(job_id), Job.from_json)


def cancel(job_id: str) -> Call[Job]:
    return Call("POST", _job_path(job_id, "/cancel"), Job.from_json)


def retry(job_id: str) -> Call[Job]:
    return Call("POST", _job_path(job_id, "/retry"), Job.from_json)


def list_jobs(
    *,
    type: str | None = None,
    status: str | None = None,
    queue: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[JobPage]:
    given = {"type": type, "status": status, "queue": queue, "limit": limit, "cursor": cursor}
    params = {k: v for k, v in given.items() if v is not None}
    return Call("GET", "/api/v1/jobs", JobPage.from_json, params=params)


def headers(token: str | None, user_agent: str) -> dict[str, str]:
    out = {"user-agent": user_agent, "accept": "application/json"}
    if token:
        out["authorization"] = f"Bearer {token}"
    return out


def read(response: httpx.Response) -> Any:
    """The answer's JSON, or the matching KyuError for a non-2xx status."""
    try:
        body = response.json() if response.content else None
    except ValueError:
        body = None
    if response.is_success:
        return body
    raise error_from_response(response.status_code, body)


def transport_error(exc: httpx.TransportError) -> KyuError:
    """No answer at all (refused, reset, timed out): retrying later may help."""
    return Unavailable(f"{type(exc).__name__}: {exc}", code="unreachable")
