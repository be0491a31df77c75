"""A Worker against a real kyu: progress seen through GET, cancel reaching sync and
async handlers, retry after Retryable, the other outcomes, the deadline, and a
graceful stop that releases what has not started."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

from conftest import running, wait_for, worker_for
from server import KyuServer

from kyu_client import (
    Client,
    JobContext,
    NonRetryable,
    RateLimited,
    Retryable,
    Snooze,
)


def test_progress_is_visible_while_running(kyu: KyuServer, client: Client) -> None:
    release = threading.Event()

    def handler(ctx: JobContext) -> str:
        ctx.progress(40)
        release.wait(20)
        return "done"

    with running(worker_for(kyu, {"py_progress": handler})):
        job = client.enqueue("py_progress", {})
        seen = wait_for(client, job.job_id, lambda j: j.progress == 40)
        assert seen.status == "running"
        release.set()
        done = client.wait(job.job_id, timeout=15)
    assert done.status == "completed" and done.result == "done"


def test_cancel_reaches_a_sync_handler(kyu: KyuServer, client: Client) -> None:
    saw_cancel = threading.Event()

    def handler(ctx: JobContext) -> None:
        ctx.progress(1)
        if ctx.wait_cancelled(20):
            saw_cancel.set()
        ctx.check_cancelled()

    with running(worker_for(kyu, {"py_cancel_sync": handler})):
        job = client.enqueue("py_cancel_sync", {})
        wait_for(client, job.job_id, lambda j: j.progress == 1)
        client.cancel(job.job_id)
        assert saw_cancel.wait(10), "the handler never saw the cancel"
        done = client.wait(job.job_id, timeout=10)
    assert done.status == "canceled"


def test_cancel_reaches_an_async_handler(kyu: KyuServer, client: Client) -> None:
    saw_cancel = threading.Event()

    async def handler(ctx: JobContext) -> None:
        ctx.progress(1)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            saw_cancel.set()
            raise

    with running(worker_for(kyu, {"py_cancel_async": handler})):
        job = client.enqueue("py_cancel_async", {})
        wait_for(client, job.job_id, lambda j: j.status == "running" and j.progress == 1)
        client.cancel(job.job_id)
        assert saw_cancel.wait(10), "the handler's task was never cancelled"
        done = client.wait(job.job_id, timeout=10)
    assert done.status == "canceled"


def test_retry_after_a_retryable_error(kyu: KyuServer, client: Client) -> None:
    def handler(ctx: JobContext) -> dict[str, int]:
        if ctx.attempt == 1:
            raise Retryable("upstream hiccup")
        return {"attempt": ctx.attempt}

    with running(worker_for(kyu, {"py_retry": handler})):
        job = client.enqueue("py_retry", {}, max_retries=2)
        done = client.wait(job.job_id, timeout=20)
    assert done.status == "completed"
    assert done.result == {"attempt": 2} and done.attempts == 2
    assert [(e.kind, e.message) for e in done.errors] == [("retryable", "upstream hiccup")]


def test_outcomes_non_retryable_snooze_rate_limited(kyu: KyuServer, client: Client) -> None:
    runs: Counter[str] = Counter()

    def handler(ctx: JobContext) -> str:
        what: str = ctx.payload["do"]
        runs[what] += 1
        if what == "refuse":
            raise NonRetryable("bad symbol")
        if what == "snooze" and runs[what] == 1:
            raise Snooze(1)
        if what == "throttled" and runs[what] == 1:
            raise RateLimited("429 from partner", retry_after=1)
        if what == "crash":
            raise ValueError("boom")
        return what

    with running(worker_for(kyu, {"py_outcomes": handler})):
        ids = {
            d: client.enqueue("py_outcomes", {"do": d}, max_retries=0 if d == "crash" else 3).job_id
            for d in ("refuse", "snooze", "throttled", "crash")
        }
        done = {d: client.wait(i, timeout=20) for d, i in ids.items()}
    assert done["refuse"].status == "failed" and done["refuse"].error is not None
    assert (done["refuse"].error.kind, done["refuse"].attempts) == ("non_retryable", 1)
    assert done["snooze"].status == "completed" and done["snooze"].errors == []
    assert done["throttled"].status == "completed"
    assert done["throttled"].errors[0].kind == "rate_limit"
    assert done["crash"].status == "failed" and done["crash"].error is not None
    assert done["crash"].error.message == "ValueError: boom"


def test_deadline_times_the_attempt_out(kyu: KyuServer, client: Client) -> None:
    saw = threading.Event()

    def handler(ctx: JobContext) -> None:
        if ctx.wait_cancelled(20) and ctx.cancel_reason == "timeout":
            saw.set()
        ctx.check_cancelled()

    with running(worker_for(kyu, {"py_timeout": handler})):
        job = client.enqueue("py_timeout", {}, timeout_seconds=1, max_retries=0)
        done = client.wait(job.job_id, timeout=15)
        assert saw.wait(5)
    assert done.status == "failed" and done.error is not None
    assert done.error.kind == "timeout"


def test_graceful_stop_finishes_running_and_releases_the_rest(
    kyu: KyuServer, client: Client
) -> None:
    started = threading.Event()
    finish = threading.Event()

    def handler(ctx: JobContext) -> str:
        started.set()
        finish.wait(10)
        return "finished"

    worker = worker_for(kyu, {"py_graceful": handler}, concurrency=1, prefetch=2)
    ids = [
        j.job_id
        for j in client.enqueue_many(
            [{"type": "py_graceful", "payload": {"i": i}} for i in range(3)]
        )
    ]
    with running(worker):
        assert started.wait(10)
        worker.stop()
        threading.Timer(0.5, finish.set).start()
    jobs = [client.get(i) for i in ids]
    statuses = Counter(j.status for j in jobs)
    assert statuses == {"completed": 1, "queued": 2}, jobs
    for j in jobs:
        if j.status == "queued":
            client.cancel(j.job_id)
