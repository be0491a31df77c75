"""How many jobs a worker asks for, and when.

Without prefetch a slot idles for one fetch round trip after each job: nothing for
hour-long jobs, most of the time for millisecond ones. So the worker holds up to
``prefetch`` extra jobs, but only while jobs are short next to a fetch (under
``SHORT_FACTOR`` round trips): then the extra leases pay for themselves, whereas with
long jobs they would only keep work from idle workers elsewhere. With prefetch on, it
fetches once that many slots are free, for all free room at once, so fetches stay
large instead of one job each.
"""

from __future__ import annotations

SHORT_FACTOR = 4.0
ALPHA = 0.2  # weight of the newest sample in the moving averages
MAX_FETCH = 100


class Pacing:
    def __init__(self, concurrency: int, prefetch: int) -> None:
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.job_seconds: float | None = None
        self.fetch_seconds: float | None = None

    @staticmethod
    def _average(old: float | None, sample: float) -> float:
        return sample if old is None else old + ALPHA * (sample - old)

    def job_ran(self, seconds: float) -> None:
        self.job_seconds = self._average(self.job_seconds, seconds)

    def fetched(self, seconds: float) -> None:
        """A fetch that brought jobs (a long poll's waiting says nothing of the trip)."""
        self.fetch_seconds = self._average(self.fetch_seconds, seconds)

    def extra(self) -> int:
        """Prefetch in force: all of it while jobs are short, none before we know."""
        if self.job_seconds is None or self.fetch_seconds is None:
            return 0
        short = self.job_seconds < SHORT_FACTOR * self.fetch_seconds
        return self.prefetch if short else 0

    def fetch_size(self, in_hand: int) -> int:
        """Jobs to ask for now; 0 means wait until more slots are free."""
        extra = self.extra()
        free = self.concurrency + extra - in_hand
        return min(free, MAX_FETCH) if free >= max(1, extra) else 0
