"""A worker in its own process, for the test that SIGKILLs one: it takes a ``py_kill``
job, says so on stdout, and never finishes it."""

from __future__ import annotations

import sys

from kyu_client import Client, JobContext, Worker


def hold(ctx: JobContext) -> None:
    print(f"started {ctx.job_id}", flush=True)
    ctx.wait_cancelled(600)


if __name__ == "__main__":
    Worker(
        Client(sys.argv[1]),
        {"py_kill": hold},
        concurrency=1,
        prefetch=0,
        lease_seconds=30,
        poll_seconds=1.0,
    ).run()
