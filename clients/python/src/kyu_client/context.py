"""What a handler sees of its job: payload, attempt, progress and cancellation.

One :class:`JobContext` per attempt. Handlers run in threads (sync) or tasks (async),
while the worker's event loop heartbeats, so the context is the thread-safe meeting
point: the handler writes progress, the worker writes the cancel flag.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .models import parse_time
from .outcomes import Cancelled


class JobContext:
    """The job a handler runs: ``ctx.payload``, ``ctx.progress(40)``, ``ctx.cancelled``."""

    def __init__(
        self,
        job: dict[str, Any],
        deadline_monotonic: float | None,
        on_progress: Callable[[], None] | None = None,
    ) -> None:
        self.job_id: str = str(job["job_id"])
        self.type: str = str(job["type"])
        self.payload: Any = job.get("payload")
        self.queue: str = str(job.get("queue", ""))
        self.provider: str | None = job.get("provider")
        self.priority: int = int(job.get("priority") or 0)
        self.attempt: int = int(job.get("attempt") or 1)
        self.max_attempts: int = int(job.get("max_attempts") or 1)
        self.deadline: datetime | None = parse_time(job.get("deadline"))
        self._deadline_monotonic = deadline_monotonic
        self._on_progress = on_progress
        self._progress: int | None = None
        self._cancel_reason: str | None = None
        self._cancel_event = threading.Event()

    # ---- progress ---------------------------------------------------------------
    def progress(self, percent: float) -> None:
        """Report progress (0-100); it reaches kyu with the next heartbeat, which comes
        early (within about a second) when progress changes."""
        value = max(0, min(100, round(percent)))
        if value != self._progress:
            self._progress = value
            if self._on_progress is not None:
                self._on_progress()

    @property
    def current_progress(self) -> int | None:
        return self._progress

    # ---- cancellation -----------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        """True once kyu asked to cancel the job, its deadline passed, the lease was
        lost or the worker is shutting down past its grace: stop soon."""
        return self._cancel_event.is_set()

    @property
    def cancel_reason(self) -> str | None:
        """``canceled``, ``timeout``, ``lease_lost`` or ``shutdown`` once cancelled."""
        return self._cancel_reason

    def check_cancelled(self) -> None:
        """Raise :class:`Cancelled` if the handler should stop; call it between steps."""
        if self._cancel_event.is_set():
            raise Cancelled(self._cancel_reason or "canceled")

    def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Sleep up to ``timeout`` seconds, waking early on cancellation (sync handlers'
        interruptible ``time.sleep``); returns whether the job was cancelled."""
        return self._cancel_event.wait(timeout)

    def time_left(self) -> float | None:
        """Seconds until the attempt's deadline (``None``: no deadline)."""
        if self._deadline_monotonic is None:
            return None
        return self._deadline_monotonic - time.monotonic()

    def _cancel(self, reason: str) -> None:
        if self._cancel_reason is None:
            self._cancel_reason = reason
        self._cancel_event.set()
