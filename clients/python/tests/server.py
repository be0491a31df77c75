"""Start a real ``kyu serve`` for tests and the benchmark: a free loopback port, a temp
dir as working directory (so its SQLite ``kyu.db`` is fresh), and a config file that
declares the remote job types the tests use. Nothing on the server side is faked."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

CLIENT_DIR = Path(__file__).resolve().parent.parent


def kyu_bin() -> str:
    """``$KYU_BIN``, else the repository's cargo debug build (``target/debug/kyu``, or
    ``$CARGO_TARGET_DIR/debug/kyu`` when ``CARGO_TARGET_DIR`` is set)."""
    if os.environ.get("KYU_BIN"):
        return os.environ["KYU_BIN"]
    repo = (CLIENT_DIR / "../..").resolve()
    target = Path(os.environ.get("CARGO_TARGET_DIR") or "target")
    return str(repo / target / "debug" / "kyu")


def _die_with_parent() -> None:
    """Linux: kyu gets SIGTERM if the test process dies, so no server outlives a crash."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def remote_types_toml(types: dict[str, str | None]) -> str:
    """``[[kyu_remote_type]]`` tables; the value is the type's JSON schema, if any."""
    out = []
    for name, schema in types.items():
        out.append(f'[[kyu_remote_type]]\nname = "{name}"\n')
        if schema:
            out.append(f"schema = '''{schema}'''\n")
    return "\n".join(out)


class KyuServer:
    """One ``kyu serve`` process; ``url`` once started, ``stop()`` ends it."""

    def __init__(self, types: dict[str, str | None], env: dict[str, str] | None = None):
        self.dir = Path(tempfile.mkdtemp(prefix="kyu-py-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = self.dir / "kyu-test.toml"
        config.write_text(remote_types_toml(types))
        self.log = self.dir / "kyu.log"
        full_env = {**os.environ, "KYU_LOG": os.environ.get("KYU_LOG", "warn"), **(env or {})}
        for var in ("KYU_DATABASE_URL", "DATABASE_URL", "KYU_CONFIG", "KYU_API_TOKENS"):
            if env is None or var not in env:
                full_env.pop(var, None)
        binary = kyu_bin()
        if not Path(binary).exists():
            raise RuntimeError(f"no kyu binary at {binary}: build it or set KYU_BIN")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [binary, "serve", "--bind", f"127.0.0.1:{self.port}", "--config", str(config)],
                cwd=self.dir,
                env=full_env,
                preexec_fn=_die_with_parent,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kyu exited at start:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"kyu not ready after {timeout} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
