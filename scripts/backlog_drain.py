#!/usr/bin/env python3
"""Issue 22's drain figure: N no-op jobs enqueued through `POST /api/v1/jobs/batch`
(batches of 1,000, 4 clients) into `kyu api` (no engine), left AGE seconds, then drained
by `kyu serve` with its defaults; completions read from /metrics
(kyu_jobs_finished_total{outcome="completed"}). Prints one JSON line:
drain_per_s is first-to-last completion. PostgreSQL/MariaDB: the database kyu_drain on
the given server is dropped and made anew.

  scripts/backlog_drain.py --kyu target/release/kyu --backend sqlite --jobs 1000000 --age 120
"""
import argparse, http.client, json, os, re, signal, subprocess, sys, threading, time

SERVERS = {
    "postgres": "postgres://postgres@127.0.0.1:5432",
    "mysql": "mysql://root@127.0.0.1:3306",
}


def fresh_db(backend):
    if backend == "sqlite":
        path = "/tmp/kyu_drain.db"
        for s in ("", "-wal", "-shm"):
            if os.path.exists(path + s):
                os.remove(path + s)
        return "sqlite://" + path
    if backend == "postgres":
        for sql in ("DROP DATABASE IF EXISTS kyu_drain WITH (FORCE)", "CREATE DATABASE kyu_drain"):
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc", sql], check=True)
        return SERVERS["postgres"] + "/kyu_drain"
    subprocess.run(["mysql", "-h127.0.0.1", "-uroot", "-e",
                    "DROP DATABASE IF EXISTS kyu_drain; CREATE DATABASE kyu_drain"], check=True)
    return SERVERS["mysql"] + "/kyu_drain"


def start(kyu, cmd, url, port):
    env = dict(os.environ, KYU_LOG="warn")
    p = subprocess.Popen([kyu, cmd, "--bind", f"127.0.0.1:{port}", "--database-url", url], env=env)
    for _ in range(600):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/api/v1/queues")
            if c.getresponse().status == 200:
                return p
        except OSError:
            pass
        if p.poll() is not None:
            sys.exit(f"kyu {cmd} exited with {p.returncode}")
        time.sleep(0.1)
    sys.exit(f"kyu {cmd} did not come up")


def stop(p):
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=60)


def enqueue(port, n):
    body = json.dumps({"jobs": [{"type": "noop", "payload": {}} for _ in range(1000)]})
    batches = list(range((n + 999) // 1000))
    lock = threading.Lock()

    def client():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                if not batches:
                    return
                batches.pop()
            c.request("POST", "/api/v1/jobs/batch", body, {"content-type": "application/json"})
            r = c.getresponse()
            r.read()
            if r.status >= 300:
                raise SystemExit(f"batch enqueue: HTTP {r.status}")

    t = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.monotonic() - t


COMPLETED = re.compile(r'^kyu_jobs_finished_total\{[^}]*outcome="completed"[^}]*\} (\S+)$', re.M)
WORKERS = re.compile(r'^kyu_workers(?:\{[^}]*\})? (\S+)$', re.M)


def completed(port):
    """Completed jobs so far and the pool size (None before the first sample)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    w = WORKERS.findall(text)
    return int(sum(float(v) for v in COMPLETED.findall(text))), (int(float(w[0])) if w else None)


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--kyu", default="target/release/kyu")
    a.add_argument("--backend", choices=["sqlite", "postgres", "mysql"], required=True)
    a.add_argument("--jobs", type=int, default=20_000)
    a.add_argument("--age", type=float, default=0, help="seconds between the last enqueue and the engine start")
    a.add_argument("--port", type=int, default=7979)
    args = a.parse_args()
    url = fresh_db(args.backend)
    api = start(args.kyu, "api", url, args.port)
    enq_s = enqueue(args.port, args.jobs)
    stop(api)
    enq_end = time.monotonic()
    time.sleep(max(0.0, args.age - (time.monotonic() - enq_end)))
    t0 = time.monotonic()
    srv = start(args.kyu, "serve", url, args.port)
    first = None
    last_n, last_change = 0, time.monotonic()
    pool = set()
    while True:
        n, w = completed(args.port)
        if w is not None:
            pool.add(w)
        now = time.monotonic()
        if n > 0 and first is None:
            first = (now, n)
        if n != last_n:
            last_n, last_change = n, now
        if n >= args.jobs:
            break
        if now - last_change > 60:
            stop(srv)
            sys.exit(f"drain stalled at {n} of {args.jobs}")
        time.sleep(0.2)
    stop(srv)
    (t1, n1) = first
    print(json.dumps({
        "backend": args.backend, "rows": args.jobs, "age_s": args.age,
        "enqueue_per_s": round(args.jobs / enq_s),
        "drain_per_s": round((args.jobs - n1) / max(now - t1, 1e-9)),
        "drain_from_start_per_s": round(args.jobs / (now - t0)),
        "drain_s": round(now - t0, 1),
        "workers_seen": sorted(pool),
        "autoscale": os.environ.get("KYU_AUTOSCALE", "default"),
    }), flush=True)


if __name__ == "__main__":
    main()
