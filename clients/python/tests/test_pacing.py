"""How many jobs the worker asks for: no server needed."""

from kyu_client._pacing import Pacing


def measured(job: float, fetch: float, prefetch: int = 100) -> Pacing:
    p = Pacing(10, prefetch)
    p.job_ran(job)
    p.fetched(fetch)
    return p


def test_nothing_ahead_before_measuring_or_for_long_jobs() -> None:
    assert Pacing(10, 100).fetch_size(0) == 10
    assert measured(10.0, 0.002).fetch_size(10) == 0
    assert measured(10.0, 0.002).fetch_size(9) == 1


def test_short_jobs_are_fetched_far_ahead_up_to_prefetch() -> None:
    p = measured(0.0001, 0.002)  # 40 jobs per slot per round trip
    assert p.extra() == 100
    assert p.fetch_size(0) == 100  # one fetch brings at most 100
    assert p.fetch_size(55) == 55  # half the capacity is free: fetch all of it
    assert p.fetch_size(56) == 0  # wait for more room
    assert measured(0.0001, 0.002, prefetch=0).fetch_size(10) == 0


def test_a_long_job_ends_the_prefetch_at_once() -> None:
    p = measured(0.0001, 0.002)
    p.job_ran(10.0)
    assert p.extra() == 0
