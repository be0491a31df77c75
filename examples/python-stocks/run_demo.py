"""The example end to end, as CI runs it: start kyu (with kyu.toml), the worker and the
API (uvicorn), ask for a refresh, and poll the status until the job is completed.

    python run_demo.py          # kyu from $KYU_BIN, else the cargo debug build
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def kyu_bin() -> str:
    """$KYU_BIN, else the repository's cargo debug build (target/debug/kyu, or
    $CARGO_TARGET_DIR/debug/kyu when CARGO_TARGET_DIR is set)."""
    if os.environ.get("KYU_BIN"):
        return os.environ["KYU_BIN"]
    target = Path(os.environ.get("CARGO_TARGET_DIR") or "target")
    return str(REPO / target / "debug" / "kyu")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            sys.exit(f"{proc.args!r} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    sys.exit(f"{url} did not come up")


def main() -> None:
    kyu_port, app_port = free_port(), free_port()
    kyu_url, app_url = f"http://127.0.0.1:{kyu_port}", f"http://127.0.0.1:{app_port}"
    env = {**os.environ, "KYU_URL": kyu_url, "KYU_LOG": os.environ.get("KYU_LOG", "warn")}
    for var in ("KYU_CONFIG", "KYU_DATABASE_URL", "DATABASE_URL", "KYU_API_TOKENS"):
        env.pop(var, None)
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="kyu-stocks-") as tmp:
        try:
            kyu = subprocess.Popen(
                [
                    kyu_bin(),
                    "serve",
                    "--bind",
                    f"127.0.0.1:{kyu_port}",
                    "--config",
                    str(HERE / "kyu.toml"),
                ],
                cwd=tmp,
                env=env,
            )
            procs.append(kyu)
            wait_until_up(f"{kyu_url}/readyz", kyu)
            procs.append(subprocess.Popen([sys.executable, "worker.py"], cwd=HERE, env=env))
            app = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "app:app",
                    "--port",
                    str(app_port),
                    "--log-level",
                    "warning",
                ],
                cwd=HERE,
                env=env,
            )
            procs.append(app)
            wait_until_up(f"{app_url}/docs", app)

            job_id = (
                httpx.post(
                    f"{app_url}/refresh", json={"symbols": ["7203", "6758", "9984", "8306", "6861"]}
                )
                .raise_for_status()
                .json()["job_id"]
            )
            print(f"POST /refresh -> job {job_id}")
            end, last = time.monotonic() + 60, None
            while time.monotonic() < end:
                state = httpx.get(f"{app_url}/status/{job_id}").raise_for_status().json()
                if (state["status"], state["progress"]) != last:
                    last = (state["status"], state["progress"])
                    print(f"GET /status: {state['status']} {state['progress']}%")
                if state["status"] in ("completed", "failed", "canceled"):
                    break
                time.sleep(0.2)
            assert state["status"] == "completed", state
            assert state["result"]["collected"] == 5, state
            bad = httpx.post(f"{app_url}/refresh", json={"symbols": "7203"})
            assert bad.status_code == 422, bad.text
            print(f"completed: {state['result']}")
        finally:
            for proc in reversed(procs):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    main()
