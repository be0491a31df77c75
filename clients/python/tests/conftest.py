"""Fixtures: one real kyu for the session, clients on it, and workers run in a thread
for the length of a ``with`` block."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from server import KyuServer

from kyu_client import Client, Job, Worker

STOCK_SCHEMA = (
    '{"type": "object", "required": ["symbols"], "properties": '
    '{"symbols": {"type": "array", "items": {"type": "string"}}}}'
)

#: Each test uses its own job types, so a worker of one test never takes another's jobs.
TEST_TYPES: dict[str, str | None] = {
    "py_echo": None,
    "py_progress": None,
    "py_cancel_sync": None,
    "py_cancel_async": None,
    "py_retry": None,
    "py_outcomes": None,
    "py_timeout": None,
    "py_idle": None,
    "py_graceful": None,
    "py_async_echo": None,
    "py_stock": STOCK_SCHEMA,
}


@pytest.fixture(scope="session")
def kyu() -> Iterator[KyuServer]:
    server = KyuServer(TEST_TYPES)
    yield server
    server.stop()


@pytest.fixture
def client(kyu: KyuServer) -> Iterator[Client]:
    with Client(kyu.url) as c:
        yield c


@contextmanager
def running(worker: Worker) -> Iterator[Worker]:
    """Run ``worker`` on its own event loop in a thread; stop it gracefully after."""
    failure: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(worker.run_async())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=main, name="kyu-test-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(30)
        assert not thread.is_alive(), "worker did not stop"
        if failure:
            raise failure[0]


def wait_for(
    client: Client, job_id: str, check: Callable[[Job], bool], timeout: float = 10.0
) -> Job:
    """Poll the job until ``check(job)`` holds; fail the test after ``timeout``."""
    end = time.monotonic() + timeout
    while True:
        job = client.get(job_id)
        if check(job):
            return job
        if time.monotonic() > end:
            pytest.fail(f"job never matched: {job}")
        time.sleep(0.05)


def worker_for(kyu: KyuServer, handlers: dict[str, Any], **options: Any) -> Worker:
    """A worker with short leases and polls, so heartbeats (and cancels) come quickly."""
    options.setdefault("lease_seconds", 5)
    options.setdefault("poll_seconds", 1.0)
    return Worker(Client(kyu.url), handlers, **options)
