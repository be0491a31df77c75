"""Batched reports: many jobs' outcomes in one ``POST /api/v1/acks``.

One request per finished job would cap a worker at the round-trip rate; instead
outcomes pile up for a few milliseconds (or until ``max_batch``) and go together, in
one transaction on kyu's side. Reports are idempotent (a repeat answers
``duplicate``), so a batch that got no answer is simply sent again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .errors import KyuError, Unavailable

log = logging.getLogger("kyu_client.worker")

#: kyu takes at most this many acks per request.
MAX_ACKS = 1000


def encode(ack: dict[str, Any]) -> bytes:
    """One ack as JSON; a result that is not JSON becomes a non-retryable failure here,
    so one bad result cannot spoil the batch it travels in."""
    try:
        return json.dumps(ack, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        fallback = {
            "job_id": ack["job_id"],
            "lease": ack["lease"],
            "op": "fail",
            "kind": "non_retryable",
            "message": f"the handler's result is not JSON: {exc}",
        }
        return json.dumps(fallback).encode()


class AckBatcher:
    def __init__(
        self,
        send: Callable[[Sequence[bytes]], Awaitable[list[dict[str, Any]]]],
        *,
        interval: float = 0.005,
        max_batch: int = 200,
    ) -> None:
        self._send = send
        self._interval = interval
        self._max_batch = min(max_batch, MAX_ACKS)
        self._pending: list[bytes] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="kyu-acks")

    def add(self, ack: dict[str, Any]) -> None:
        self._pending.append(encode(ack))
        self._wake.set()

    async def close(self, timeout: float = 10.0) -> None:
        """Send what is pending (trying for up to ``timeout`` s), then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout)
            except TimeoutError:
                log.warning("kyu: %d report(s) not delivered at shutdown", len(self._pending))

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._pending:
                if self._closing:
                    return
                continue
            if len(self._pending) < self._max_batch and not self._closing:
                await asyncio.sleep(self._interval)
            batch = self._pending[: self._max_batch]
            del self._pending[: len(batch)]
            await self._deliver(batch)
            self._wake.set()  # look again: more may have come, or we are closing

    async def _deliver(self, batch: list[bytes]) -> None:
        delay = 0.05
        while True:
            try:
                results = await self._send(batch)
            except Unavailable as exc:
                log.warning("kyu: reports not delivered (%s), retrying in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            except KyuError as exc:
                log.error("kyu: %d report(s) refused: %s", len(batch), exc)
                return
            for result in results:
                if not result.get("ok", True):
                    log.info(
                        "kyu: report for job %s not taken: %s",
                        result.get("job_id"),
                        result.get("code"),
                    )
            return
