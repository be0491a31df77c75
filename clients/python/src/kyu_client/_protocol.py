"""The worker protocol's calls (fetch, heartbeat, acks, stop) over one async connection
pool, as the worker loop needs them; the contract is kyu's docs/worker-protocol.md."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from . import _calls
from ._sniffio import remember_missing_sniffio


@dataclass(frozen=True)
class Heartbeat:
    cancel: bool
    stop: bool


class Protocol:
    def __init__(self, url: str, token: str | None, user_agent: str, pool_size: int) -> None:
        remember_missing_sniffio()
        self._http = httpx.AsyncClient(
            base_url=url,
            headers={**_calls.headers(token, user_agent), "content-type": "application/json"},
            timeout=httpx.Timeout(30.0),
            limits=httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _post(
        self,
        path: str,
        body: Any = None,
        *,
        content: bytes | None = None,
        timeout: float | None = None,
    ) -> Any:
        try:
            response = await self._http.post(
                path,
                json=body if content is None else None,
                content=content,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TransportError as exc:
            raise _calls.transport_error(exc) from exc
        return _calls.read(response)

    async def fetch(self, request: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
        """Long-poll for jobs; the HTTP timeout outlasts the server's ``wait_ms``."""
        wait_s = request.get("wait_ms", 0) / 1000
        data = await self._post("/api/v1/fetch", request, timeout=wait_s + 30.0)
        return list(data.get("jobs") or []), bool(data.get("stop"))

    async def heartbeat(self, job_id: str, lease: str, progress: int | None) -> Heartbeat:
        body: dict[str, Any] = {"lease": lease}
        if progress is not None:
            body["progress"] = progress
        data = await self._post(f"/api/v1/jobs/{quote(job_id, safe='')}/heartbeat", body)
        return Heartbeat(cancel=bool(data.get("cancel")), stop=bool(data.get("stop")))

    async def acks(self, encoded: Sequence[bytes]) -> list[dict[str, Any]]:
        """Send already JSON-encoded acks in one request; one result per ack, in order."""
        content = b'{"acks":[' + b",".join(encoded) + b"]}"
        data = await self._post("/api/v1/acks", content=content)
        return list(data.get("results") or [])

    async def stop_worker(self, worker_id: str) -> None:
        await self._post(f"/api/v1/workers/{quote(worker_id, safe='')}/stop", {})
