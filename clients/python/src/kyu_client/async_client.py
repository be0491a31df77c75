"""The asyncio client: the same calls as :class:`~kyu_client.Client`, awaited.

For async frameworks (FastAPI, aiohttp) and async workers. Every method is one HTTP call
(``wait`` polls), raising :class:`~kyu_client.errors.KyuError` subclasses on errors.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import httpx

from . import _calls
from ._config import USER_AGENT, resolve_token, resolve_url
from ._sniffio import remember_missing_sniffio
from .models import Enqueued, Job, JobPage

T = TypeVar("T")


class AsyncClient:
    """``AsyncClient(url, token=None)``: kyu's job API, awaited.

    ``url`` defaults to ``$KYU_URL`` or ``http://127.0.0.1:7878``, ``token`` to
    ``$KYU_TOKEN``. Use it as a context manager, or await :meth:`aclose`.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        remember_missing_sniffio()
        self.url = resolve_url(url)
        self.token = resolve_token(token)
        self.timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers=_calls.headers(self.token, USER_AGENT),
            timeout=timeout,
            transport=transport,
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: _calls.Call[T]) -> T:
        try:
            response = await self._http.request(
                call.method, call.path, json=call.json, params=call.params
            )
        except httpx.TransportError as exc:
            raise _calls.transport_error(exc) from exc
        return call.decode(_calls.read(response))

    async def enqueue(self, type: str, payload: Any = None, **options: Any) -> Enqueued:
        """Enqueue one job; ``options`` are kyu's job fields (priority, queue,
        delay_seconds, run_at, max_retries, timeout_seconds, unique_key, provider,
        concurrency_key, concurrency_limit, tenant, tier)."""
        return await self._send(_calls.enqueue(type, payload, options))

    async def enqueue_many(self, jobs: Iterable[Mapping[str, Any]]) -> list[Enqueued]:
        """Enqueue several jobs, all or none: each a dict with ``type``, ``payload`` and
        any enqueue option. At most kyu's ``KYU_MAX_BATCH`` (1000) per call."""
        return await self._send(_calls.enqueue_many(jobs))

    async def get(self, job_id: str) -> Job:
        return await self._send(_calls.get(job_id))

    async def cancel(self, job_id: str) -> Job:
        """Cancel a queued, scheduled or running job (a running one's worker is told)."""
        return await self._send(_calls.cancel(job_id))

    async def retry(self, job_id: str) -> Job:
        """Queue a failed or canceled job again (``Conflict`` otherwise)."""
        return await self._send(_calls.retry(job_id))

    async def list(
        self,
        *,
        type: str | None = None,
        status: str | None = None,
        queue: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JobPage:
        """One page of jobs, newest first; ``page.next_cursor`` fetches the next."""
        return await self._send(
            _calls.list_jobs(type=type, status=status, queue=queue, limit=limit, cursor=cursor)
        )

    async def wait(
        self,
        job_id: str,
        *,
        on_progress: Callable[[Job], object] | None = None,
        timeout: float | None = None,
        poll_interval: float = 0.5,
    ) -> Job:
        """Poll until the job is completed, failed or canceled and return it.

        ``on_progress(job)`` is called whenever its status or progress changes. Raises
        ``TimeoutError`` after ``timeout`` seconds (``None``: wait as long as it takes).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay, seen = 0.05, None
        while True:
            job = await self.get(job_id)
            if on_progress is not None and (job.status, job.progress) != seen:
                seen = (job.status, job.progress)
                if inspect.isawaitable(maybe := on_progress(job)):
                    await maybe
            if job.done:
                return job
            if deadline is not None and time.monotonic() + delay > deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout} s")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, poll_interval)
