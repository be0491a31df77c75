"""One fetched job, from its lease to its report.

The handler runs in a task (async) or a thread (sync) while this supervisor heartbeats
its lease every ``heartbeat_ms`` (sooner when progress changed), watches the attempt's
deadline, and turns a ``cancel: true`` or a lost lease into cancellation of the
handler. When the handler ends its outcome becomes one ack, unless the job was already
reported (canceled, timed out, released) or is no longer ours.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._acks import AckBatcher
from ._protocol import Protocol
from .context import JobContext
from .errors import KyuError, LeaseLost, NotFound
from .outcomes import Cancelled, NonRetryable, RateLimited, Retryable, Snooze

log = logging.getLogger("kyu_client.worker")

#: Progress goes out early, but not more often than this (seconds between heartbeats).
PROGRESS_GAP = 0.5
#: After a failed heartbeat, try again this soon (the lease lasts three intervals).
HEARTBEAT_RETRY = 1.0
MAX_MESSAGE = 4000

Handler = Callable[[JobContext], Any]


@dataclass
class RunEnv:
    """What every job of one worker shares."""

    protocol: Protocol
    acks: AckBatcher
    slots: asyncio.Semaphore
    executor: Executor
    lease_seconds: int
    on_stop: Callable[[], None]
    on_work_done: Callable[[float | None], None]  # how long the handler ran, if it did


def _deadline_monotonic(job: dict[str, Any], lease_seconds: int) -> float | None:
    """The deadline on our clock: kyu's deadline minus its lease expiry is the time
    left beyond our lease, which is immune to skew between the two clocks."""
    deadline, expires = job.get("deadline"), job.get("lease_expires_at")
    if not deadline:
        return None
    end = datetime.fromisoformat(str(deadline))
    if expires:
        left = (end - datetime.fromisoformat(str(expires))).total_seconds() + lease_seconds
    else:
        left = (end - datetime.now(end.tzinfo)).total_seconds()
    return time.monotonic() + left


def _message(exc: BaseException) -> str:
    plain = isinstance(exc, (Retryable, NonRetryable, RateLimited)) and str(exc)
    text = str(exc) if plain else f"{type(exc).__name__}: {exc}".rstrip(": ")
    return text[:MAX_MESSAGE]


class JobRun:
    def __init__(self, job: dict[str, Any], handler: Handler, is_async: bool, env: RunEnv):
        self.job = job
        self.job_id = str(job["job_id"])
        self.lease = str(job["lease"])
        self._handler = handler
        self._is_async = is_async
        self._env = env
        self._hb_every = max(float(job.get("heartbeat_ms") or 10_000) / 1000, 0.2)
        self._deadline = _deadline_monotonic(job, env.lease_seconds)
        self._loop = asyncio.get_running_loop()
        self._wake: asyncio.Future[None] | None = None
        self.ctx = JobContext(job, self._deadline, on_progress=self._poke)
        self.started = False
        self._started_at = 0.0
        self.reported = False
        self._sent_progress: int | None = None
        self._work: asyncio.Task[Any] | None = None

    # ---- the handler ------------------------------------------------------------
    async def _execute(self) -> Any:
        async with self._env.slots:
            self.started = True
            self._started_at = time.monotonic()
            self.ctx.check_cancelled()
            if self._is_async:
                return await self._handler(self.ctx)
            return await self._loop.run_in_executor(self._env.executor, self._handler, self.ctx)

    def _ran_for(self) -> float | None:
        return time.monotonic() - self._started_at if self.started else None

    def _poke(self) -> None:
        """Wake the supervisor (progress changed); callable from any thread."""
        self._loop.call_soon_threadsafe(self._set_wake)

    def _set_wake(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    # ---- supervision ------------------------------------------------------------
    async def run(self) -> None:
        work = self._work = asyncio.create_task(self._execute(), name=f"kyu-job-{self.job_id}")
        work.add_done_callback(lambda _: self._env.on_work_done(self._ran_for()))
        # Most jobs end long before their first heartbeat is due: give the handler one
        # turn of the loop before setting up the supervision's timers.
        await asyncio.sleep(0)
        last_hb = time.monotonic()
        next_hb = last_hb + self._hb_every
        while not work.done():
            if self.reported:  # canceled, timed out or lost: only wait for the handler
                await asyncio.wait({work})
                break
            now = time.monotonic()
            if self._deadline is not None and now >= self._deadline:
                self.abandon("timeout", kind="timeout", message="the job's deadline passed")
                continue
            dirty = self.ctx.current_progress != self._sent_progress
            if now >= next_hb or (dirty and now >= last_hb + PROGRESS_GAP):
                last_hb = now
                next_hb = now + (self._hb_every if await self._heartbeat() else HEARTBEAT_RETRY)
                continue
            until = next_hb
            if dirty:
                until = min(until, last_hb + PROGRESS_GAP)
            if self._deadline is not None:
                until = min(until, self._deadline)
            self._wake = self._loop.create_future()
            await asyncio.wait(
                {work, self._wake},
                timeout=max(0.0, until - now),
                return_when=asyncio.FIRST_COMPLETED,
            )
            self._wake = None
        if not self.reported:
            self.reported = True
            self._report(work)
        elif not work.cancelled():
            work.exception()  # already reported: the handler's ending is of no interest

    async def _heartbeat(self) -> bool:
        progress = self.ctx.current_progress
        try:
            answer = await self._env.protocol.heartbeat(self.job_id, self.lease, progress)
        except (LeaseLost, NotFound):
            log.info("kyu: job %s is no longer ours; stopping its handler", self.job_id)
            self.abandon("lease_lost")
            return True
        except KyuError as exc:
            log.warning("kyu: heartbeat for job %s failed: %s", self.job_id, exc)
            return False
        self._sent_progress = progress
        if answer.stop:
            self._env.on_stop()
        if answer.cancel:
            self.abandon("canceled", kind="canceled", message="canceled while running")
        return True

    def abandon(self, reason: str, *, op: str = "fail", **ack: Any) -> None:
        """Stop the handler (a sync one is told through ``ctx``) and report now: with
        ``kind`` a fail, with ``op="release"`` a release, otherwise nothing."""
        if self.reported:
            return
        self.reported = True
        self.ctx._cancel(reason)
        if ack or op != "fail":
            self._env.acks.add({"job_id": self.job_id, "lease": self.lease, "op": op, **ack})
        if self._work is not None and (self._is_async or not self.started):
            self._work.cancel()
        self._set_wake()

    def release_if_waiting(self) -> None:
        """Shutdown: give back a job whose handler has not started."""
        if not self.started:
            self.abandon("shutdown", op="release")

    # ---- the outcome --------------------------------------------------------------
    def _report(self, work: asyncio.Task[Any]) -> None:
        ack: dict[str, Any] = {"job_id": self.job_id, "lease": self.lease}
        exc = None if work.cancelled() else work.exception()
        if work.cancelled():
            ack.update(op="fail", kind="retryable", message="the handler was cancelled")
        elif exc is None:
            ack.update(op="complete", result=work.result())
        elif isinstance(exc, Snooze):
            ack.update(op="snooze", seconds=max(0, math.ceil(exc.seconds)))
        elif isinstance(exc, RateLimited):
            ack.update(op="fail", kind="rate_limit", message=_message(exc))
            if exc.retry_after is not None:
                ack["retry_after_seconds"] = max(0, math.ceil(exc.retry_after))
        elif isinstance(exc, NonRetryable):
            ack.update(op="fail", kind="non_retryable", message=_message(exc))
        elif isinstance(exc, Cancelled):
            ack.update(op="fail", kind="canceled", message=str(exc) or "canceled")
        else:
            if not isinstance(exc, Retryable):
                log.warning("kyu: job %s (%s) failed", self.job_id, self.ctx.type, exc_info=exc)
            ack.update(op="fail", kind="retryable", message=_message(exc))
        self._env.acks.add(ack)
