"""A worker process killed with SIGKILL while holding a job: kyu notices it is dead
(``KYU_NODE_DEAD_AFTER=2s``, long before its 30 s lease ends) and another worker runs
the job to completion."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import running, worker_for
from server import KyuServer

from kyu_client import Client, JobContext


@pytest.fixture(scope="module")
def fast_death() -> Iterator[KyuServer]:
    server = KyuServer(
        {"py_kill": None},
        env={
            "KYU_NODE_DEAD_AFTER": "2s",
            "KYU_NODE_HEARTBEAT_INTERVAL": "500ms",
            "KYU_RESCUE_INTERVAL": "1s",
        },
    )
    yield server
    server.stop()


def test_killed_workers_job_runs_again(fast_death: KyuServer) -> None:
    child_script = Path(__file__).with_name("worker_child.py")
    with Client(fast_death.url) as client:
        job = client.enqueue("py_kill", {"n": 1}, max_retries=3)
        child = subprocess.Popen(
            [sys.executable, str(child_script), fast_death.url], stdout=subprocess.PIPE, text=True
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == f"started {job.job_id}"
            assert client.get(job.job_id).status == "running"
            child.kill()
            child.wait(10)
        finally:
            if child.poll() is None:
                child.kill()
        killed_at = time.monotonic()

        def finish(ctx: JobContext) -> dict[str, int]:
            return {"attempt": ctx.attempt}

        with running(worker_for(fast_death, {"py_kill": finish})):
            done = client.wait(job.job_id, timeout=20)
        elapsed = time.monotonic() - killed_at
    assert done.status == "completed" and done.result == {"attempt": 2}
    assert elapsed < 15, f"took {elapsed:.1f} s after the kill"
