"""A worker process for kyu: pull jobs of the types it has handlers for, run them, report.

``Worker(client, handlers={"type": fn}, concurrency=10).run()`` is the whole program.
It long-polls ``fetch`` for as many jobs as it has free slots (plus a prefetch while
jobs are short, so slots do not idle during the round trip; see ``_pacing``), runs sync
handlers in a thread pool and async ones as tasks, heartbeats each lease, and reports
outcomes in batches. SIGTERM/SIGINT
stop it gracefully: no more fetching, jobs not started are released at once, running
handlers get ``shutdown_grace`` seconds, then they are cancelled and released.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ._acks import AckBatcher
from ._config import USER_AGENT
from ._pacing import Pacing
from ._protocol import Protocol
from ._runner import Handler, JobRun, RunEnv
from ._version import __version__
from .async_client import AsyncClient
from .client import Client
from .errors import InvalidInput, KyuError, Unauthorized

log = logging.getLogger("kyu_client.worker")


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
    )


def make_worker_id() -> str:
    """A fresh id per process start: ``host-pid-random``."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Worker:
    """Runs jobs of the ``handlers``' types with at most ``concurrency`` at once.

    A handler takes a :class:`~kyu_client.JobContext` and returns the job's result (any
    JSON); raising :class:`Retryable`, :class:`NonRetryable`, :class:`RateLimited` or
    :class:`Snooze` chooses another outcome, any other exception counts as retryable.
    """

    def __init__(
        self,
        client: Client | AsyncClient,
        handlers: Mapping[str, Handler],
        concurrency: int = 10,
        *,
        queues: Iterable[str] | None = None,
        prefetch: int | None = None,
        lease_seconds: int = 30,
        poll_seconds: float = 30.0,
        shutdown_grace: float = 10.0,
        worker_id: str | None = None,
        ack_interval: float = 0.005,
        ack_batch: int = 200,
    ) -> None:
        if not handlers:
            raise ValueError("a worker needs at least one handler")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.url, self.token = client.url, client.token
        self.handlers = dict(handlers)
        self.concurrency = concurrency
        self.queues = list(queues) if queues is not None else None
        self.prefetch = 100 if prefetch is None else prefetch
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.shutdown_grace = shutdown_grace
        self.worker_id = worker_id or make_worker_id()
        self._ack_interval, self._ack_batch = ack_interval, ack_batch
        self._async = {t: _is_async(fn) for t, fn in self.handlers.items()}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._hurry_event: asyncio.Event | None = None
        self._room: asyncio.Event | None = None
        self._in_hand = 0
        self._runs: dict[JobRun, asyncio.Task[None]] = {}
        self._stop_requested = False

    # ---- control ----------------------------------------------------------------
    def run(self) -> None:
        """Run until SIGTERM/SIGINT (or :meth:`stop`); a second signal skips the grace."""
        asyncio.run(self.run_async(install_signal_handlers=True))

    def stop(self, *, hurry: bool = False) -> None:
        """Stop gracefully (from any thread); ``hurry``: do not wait for the grace."""
        self._stop_requested = True
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if _running_in(loop):
            self._signal_stop(hurry)
        else:
            loop.call_soon_threadsafe(self._signal_stop, hurry)

    def _signal_stop(self, hurry: bool) -> None:
        assert self._stop_event is not None and self._hurry_event is not None
        if hurry:
            self._hurry_event.set()
        self._stop_event.set()

    def _on_signal(self) -> None:
        """SIGTERM/SIGINT: stop gracefully; a second one skips the grace."""
        assert self._stop_event is not None
        self._signal_stop(hurry=self._stop_event.is_set())

    # ---- the loop -----------------------------------------------------------------
    async def run_async(self, *, install_signal_handlers: bool = False) -> None:
        """The worker on the running event loop; returns once it has stopped."""
        self._loop = asyncio.get_running_loop()
        self._stop_event, self._hurry_event = asyncio.Event(), asyncio.Event()
        self._room = asyncio.Event()
        if self._stop_requested:
            self._stop_event.set()
        self._pacing = Pacing(self.concurrency, self.prefetch)
        pool = self.concurrency + min(self.prefetch, 16) + 4
        protocol = Protocol(self.url, self.token, USER_AGENT, pool_size=pool)
        acks = AckBatcher(protocol.acks, interval=self._ack_interval, max_batch=self._ack_batch)
        acks.start()
        executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="kyu-handler")
        env = RunEnv(
            protocol=protocol,
            acks=acks,
            slots=asyncio.Semaphore(self.concurrency),
            executor=executor,
            lease_seconds=self.lease_seconds,
            on_stop=lambda: self._signal_stop(False),
            on_work_done=self._work_done,
        )
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, self._on_signal)
        log.info(
            "kyu worker %s: %s, concurrency %d",
            self.worker_id,
            ", ".join(self.handlers),
            self.concurrency,
        )
        try:
            await self._fetch_loop(protocol, env)
        finally:
            await self._shut_down(protocol, acks)
            executor.shutdown(wait=False, cancel_futures=True)
            await protocol.aclose()
            if install_signal_handlers:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    self._loop.remove_signal_handler(sig)

    def _work_done(self, seconds: float | None) -> None:
        self._in_hand -= 1
        if seconds is not None:
            self._pacing.job_ran(seconds)
        assert self._room is not None
        if self._pacing.fetch_size(self._in_hand):
            self._room.set()

    async def _fetch_loop(self, protocol: Protocol, env: RunEnv) -> None:
        assert self._stop_event is not None and self._room is not None
        request: dict[str, Any] = {
            "worker_id": self.worker_id,
            "types": list(self.handlers),
            "wait_ms": int(self.poll_seconds * 1000),
            "lease_seconds": self.lease_seconds,
            "host": socket.gethostname(),
            "version": f"py-{__version__}",
        }
        if self.queues is not None:
            request["queues"] = self.queues
        stopping = asyncio.ensure_future(self._stop_event.wait())
        backoff = 0.1
        try:
            while not self._stop_event.is_set():
                await asyncio.sleep(0)  # let jobs that just ended free their slots
                size = self._pacing.fetch_size(self._in_hand)
                if not size:
                    self._room.clear()
                    room = asyncio.ensure_future(self._room.wait())
                    await asyncio.wait({stopping, room}, return_when=asyncio.FIRST_COMPLETED)
                    room.cancel()
                    continue
                request["max"] = size
                asked = time.monotonic()
                fetch = asyncio.ensure_future(protocol.fetch(request))
                await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not fetch.done():
                    await self._end_fetch(protocol, fetch)
                try:
                    jobs, stop = fetch.result()
                except (InvalidInput, Unauthorized):
                    raise  # a wrong token or request: retrying cannot help
                except KyuError as exc:
                    log.warning("kyu: fetch failed (%s); again in %.1f s", exc, backoff)
                    await asyncio.wait({stopping}, timeout=backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                except asyncio.CancelledError:
                    break
                backoff = 0.1
                if jobs:
                    self._pacing.fetched(time.monotonic() - asked)
                for job in jobs:
                    self._start(job, env)
                if stop:
                    log.info("kyu: asked to stop")
                    self._stop_event.set()
        finally:
            stopping.cancel()

    async def _end_fetch(self, protocol: Protocol, fetch: asyncio.Future[Any]) -> None:
        """Stopping while a long poll waits: ask kyu to end it (jobs it hands us are
        then released like any not started); if kyu will not, drop the request."""
        try:
            await protocol.stop_worker(self.worker_id)
            await asyncio.wait({fetch}, timeout=5.0)
        except KyuError as exc:
            log.debug("kyu: could not stop our own fetch: %s", exc)
        if not fetch.done():
            fetch.cancel()
            await asyncio.wait({fetch})

    def _start(self, job: dict[str, Any], env: RunEnv) -> None:
        job_type = str(job.get("type"))
        if job_type not in self.handlers:  # kyu hands out only the types we asked for
            log.error("kyu: got a %s job without a handler; giving it back", job_type)
            env.acks.add({"job_id": job["job_id"], "lease": job["lease"], "op": "release"})
            return
        run = JobRun(job, self.handlers[job_type], self._async[job_type], env)
        self._in_hand += 1
        task = asyncio.create_task(run.run(), name=f"kyu-run-{run.job_id}")
        self._runs[run] = task
        task.add_done_callback(lambda _: self._runs.pop(run, None))
        if self._stop_event is not None and self._stop_event.is_set():
            run.release_if_waiting()

    async def _shut_down(self, protocol: Protocol, acks: AckBatcher) -> None:
        assert self._hurry_event is not None
        for run in list(self._runs):
            run.release_if_waiting()
        if self._runs:
            log.info(
                "kyu: stopping; waiting up to %.0f s for %d job(s)",
                self.shutdown_grace,
                len(self._runs),
            )
            hurry = asyncio.ensure_future(self._hurry_event.wait())
            all_done = asyncio.ensure_future(asyncio.wait(set(self._runs.values())))
            await asyncio.wait(
                {hurry, all_done}, timeout=self.shutdown_grace, return_when=asyncio.FIRST_COMPLETED
            )
            hurry.cancel()
            all_done.cancel()
        for run in list(self._runs):
            run.abandon("shutdown", op="release")
        if self._runs:
            await asyncio.wait(set(self._runs.values()), timeout=1.0)
        await acks.close()


def _running_in(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
