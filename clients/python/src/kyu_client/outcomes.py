"""What a handler raises to say how its attempt ended, other than by returning.

A handler's return value completes the job. These exceptions choose another outcome:
each maps to one report of the worker protocol (``fail`` with a kind, or ``snooze``).
Any other exception counts as :class:`Retryable`.
"""

from __future__ import annotations


class Retryable(Exception):
    """Fail this attempt; kyu runs the job again after its back-off (if attempts remain)."""


class NonRetryable(Exception):
    """Fail the job for good: retrying cannot help (bad input, a 4xx from a partner…)."""


class RateLimited(Exception):
    """A provider said "too many": run again after ``retry_after`` seconds."""

    def __init__(self, message: str = "rate limited", *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Snooze(Exception):
    """Run the job again in ``seconds`` without spending an attempt or recording an error."""

    def __init__(self, seconds: float):
        super().__init__(f"snooze {seconds} s")
        self.seconds = seconds


class Cancelled(Exception):
    """Raised by ``ctx.check_cancelled()`` once kyu asked to cancel the job (or its
    deadline passed); let it propagate and the worker reports the right outcome."""
