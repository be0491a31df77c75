#!/usr/bin/env python3
"""The disk's floor under enqueue-to-start latency: an enqueue answers only after its
commit is on disk, so one fsync of an appended page is in every job's latency. Appends
4 KiB to a file and fsyncs it N times, PAUSE seconds apart (the bench's W2 sends one
job every 5 ms), and prints one JSON line of fsync percentiles in milliseconds.

  scripts/fsync_latency.py --dir /var/lib/kyu --n 2000 --pause 0.005
"""
import argparse, json, os, tempfile, time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="where the database lives")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--pause", type=float, default=0.005)
    a = ap.parse_args()
    page = os.urandom(4096)
    fd, path = tempfile.mkstemp(dir=a.dir, prefix="fsync-probe-")
    took = []
    try:
        for _ in range(a.n):
            os.write(fd, page)
            t = time.perf_counter()
            os.fsync(fd)
            took.append((time.perf_counter() - t) * 1000.0)
            time.sleep(a.pause)
    finally:
        os.close(fd)
        os.unlink(path)
    took.sort()
    pct = lambda p: round(took[min(len(took) - 1, int(p * len(took)))], 3)
    print(json.dumps({"n": a.n, "p50_ms": pct(0.5), "p90_ms": pct(0.9), "p99_ms": pct(0.99),
                      "max_ms": round(took[-1], 3)}))


if __name__ == "__main__":
    main()
