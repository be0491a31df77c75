"""How many jobs a worker asks for, and when.

Without prefetch a slot idles for one fetch round trip after each job: nothing for
hour-long jobs, most of the time for millisecond ones. While a fetch is on its way each
slot finishes about ``fetch time / job time`` jobs, so the worker holds twice that per
slot beyond its free slots (at most ``prefetch``): a flood of short jobs comes in large
fetches. Before both times are known, and when jobs run longer than half a fetch, it
holds nothing ahead: leased jobs would only wait here while other workers idle. With
jobs held ahead it fetches again once half its capacity is free, for all of it at once,
so fetches stay large instead of one job each.
"""

from __future__ import annotations

ALPHA = 0.1  # weight of the newest sample in the moving averages
MAX_FETCH = 100  # kyu hands out at most this many jobs per fetch


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
        self.job_seconds = self._average(self.job_seconds, max(0.0, seconds))

    def fetched(self, seconds: float) -> None:
        """A fetch that brought jobs (a long poll's waiting says nothing of the trip)."""
        self.fetch_seconds = self._average(self.fetch_seconds, max(0.0, seconds))

    def extra(self) -> int:
        """Jobs to hold beyond the free slots."""
        if not self.prefetch or self.job_seconds is None or self.fetch_seconds is None:
            return 0
        per_slot = 2 * self.fetch_seconds / max(self.job_seconds, 1e-6)
        return min(self.prefetch, int(self.concurrency * per_slot))

    def fetch_size(self, in_hand: int) -> int:
        """Jobs to ask for now; 0 means wait until more slots are free."""
        capacity = self.concurrency + self.extra()
        free = capacity - in_hand
        low_water = max(1, capacity // 2) if in_hand >= self.concurrency else 1
        return min(free, MAX_FETCH) if free >= low_water else 0
