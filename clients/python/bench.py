"""Throughput benchmark (not a test): N no-op jobs enqueued in batches, then drained by
one worker process with concurrency 10; prints one JSON line with jobs/s.

    .venv/bin/python bench.py                 # starts its own kyu (KYU_BIN), SQLite
    .venv/bin/python bench.py --url URL       # a running kyu that declares py_bench_noop
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).with_name("tests")))

from server import KyuServer

from kyu_client import Client, JobContext, Worker

TYPE = "py_bench_noop"


def drain(url: str, n: int, concurrency: int, handler_kind: str, prefetch: int | None) -> None:
    """The worker process: run until ``n`` jobs are done, print the time it took."""
    done = 0

    def count() -> None:
        nonlocal done
        done += 1
        if done == n:
            worker.stop()

    def noop(ctx: JobContext) -> None:
        count()

    async def anoop(ctx: JobContext) -> None:
        count()

    worker = Worker(
        Client(url),
        {TYPE: anoop if handler_kind == "async" else noop},
        concurrency=concurrency,
        prefetch=prefetch,
        poll_seconds=1.0,
    )
    start = time.perf_counter()
    worker.run()  # returns once stopped, with every report delivered
    seconds = time.perf_counter() - start
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": seconds, "cpu": cpu.ru_utime + cpu.ru_stime}), flush=True)


def server_cpu(server: KyuServer | None) -> float:
    """CPU seconds kyu has used so far (Linux), to tell whose CPU bounds the rate."""
    if server is None:
        return 0.0
    stat = Path(f"/proc/{server.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url")
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--prefetch", type=int, help="default: the worker's (100)")
    parser.add_argument("--handler", choices=["sync", "async"], default="sync")
    parser.add_argument("--drain", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drain:
        drain(args.url, args.n, args.concurrency, args.handler, args.prefetch)
        return
    server = None if args.url else KyuServer({TYPE: None})
    url = args.url or server.url  # type: ignore[union-attr]
    try:
        with Client(url) as client:
            for start in range(0, args.n, 1000):
                client.enqueue_many(
                    [
                        {"type": TYPE, "payload": {"i": i}}
                        for i in range(start, min(start + 1000, args.n))
                    ]
                )
        kyu_cpu = server_cpu(server)
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--drain",
                "--url",
                url,
                "-n",
                str(args.n),
                "--concurrency",
                str(args.concurrency),
                "--handler",
                args.handler,
                *(["--prefetch", str(args.prefetch)] if args.prefetch is not None else []),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        kyu_cpu = server_cpu(server) - kyu_cpu
        drained = json.loads(out.stdout.strip().splitlines()[-1])
        seconds = drained["seconds"]
        with Client(url) as client:
            left = client.list(type=TYPE, status="queued", limit=1).jobs
        print(
            json.dumps(
                {
                    "jobs": args.n,
                    "concurrency": args.concurrency,
                    "prefetch": args.prefetch,
                    "handler": args.handler,
                    "seconds": round(seconds, 3),
                    "jobs_per_s": round(args.n / seconds),
                    "worker_cpu_s": round(drained["cpu"], 3),
                    "kyu_cpu_s": round(kyu_cpu, 2) if server else None,
                    "left_queued": len(left),
                }
            )
        )
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
