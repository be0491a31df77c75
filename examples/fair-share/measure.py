#!/usr/bin/env python3
"""Fair share on a running `kyu serve`: tenant A enqueues a burst, tenant B a few jobs
right after it, at the same priority; prints one JSON line with how long B's jobs waited
to start and how fast the whole backlog drained.

    kyu serve &                      # any backend; no tokens, so `tenant` may be set
    python3 examples/fair-share/measure.py --url http://127.0.0.1:8080 --burst 100000

Standard library only. Compare with KYU_FAIR_SHARE_RATE=0 (fair share off).
"""

import argparse
import json
import time
import urllib.request
from datetime import datetime


def call(url, method="GET", body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        text = r.read().decode()
    return json.loads(text) if text.startswith(("{", "[")) else text


def finished(base):
    """kyu_jobs_finished_total summed over its labels."""
    total = 0.0
    for line in call(base + "/metrics").splitlines():
        if line.startswith("kyu_jobs_finished_total"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--burst", type=int, default=100_000)
    ap.add_argument("--few", type=int, default=10)
    a = ap.parse_args()
    base = a.url.rstrip("/")
    done_before = finished(base)

    started = time.time()
    for i in range(0, a.burst, 1000):
        jobs = [{"type": "noop", "payload": {"i": i + k}, "tenant": "a"}
                for k in range(min(1000, a.burst - i))]
        call(base + "/api/v1/jobs/batch", "POST", {"jobs": jobs})
    burst_enqueued = time.time()
    few = call(base + "/api/v1/jobs/batch", "POST",
               {"jobs": [{"type": "noop", "payload": {"b": k}, "tenant": "b"}
                         for k in range(a.few)]})
    ids = [j["job_id"] for j in few["jobs"]]
    waits = {}
    while len(waits) < len(ids):
        for i in ids:
            if i not in waits:
                j = call(f"{base}/api/v1/jobs/{i}")
                if j.get("started_at"):
                    waits[i] = ts(j["started_at"]) - ts(j["created_at"])
        time.sleep(0.01)
    b_started = time.time()
    backlog_left = a.burst + a.few - (finished(base) - done_before)
    total = a.burst + a.few
    while finished(base) - done_before < total:
        time.sleep(0.05)
    ended = time.time()
    print(json.dumps({
        "burst": a.burst,
        "few": a.few,
        "enqueue_s": round(burst_enqueued - started, 2),
        "b_wait_max_ms": round(max(waits.values()) * 1000, 1),
        "b_wait_p50_ms": round(sorted(waits.values())[len(waits) // 2] * 1000, 1),
        "a_left_when_b_started": int(backlog_left),
        "seen_b_after_s": round(b_started - burst_enqueued, 2),
        "drain_per_s": round(total / (ended - started)),
    }))


if __name__ == "__main__":
    main()
