"""The job API through Client and AsyncClient: enqueue and wait, list, cancel, retry,
and kyu's error answers as exceptions carrying code, field and status."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from conftest import running, worker_for
from server import KyuServer

from kyu_client import (
    AsyncClient,
    Client,
    Conflict,
    InvalidInput,
    Job,
    JobContext,
    KyuError,
    NotFound,
)


def echo(ctx: JobContext) -> object:
    return {"echo": ctx.payload, "attempt": ctx.attempt}


def test_enqueue_and_wait(kyu: KyuServer, client: Client) -> None:
    seen: list[str] = []
    with running(worker_for(kyu, {"py_echo": echo})):
        job = client.enqueue("py_echo", {"n": 1}, priority=7)
        assert job.status in ("queued", "running")
        done = client.wait(job.job_id, timeout=15, on_progress=lambda j: seen.append(j.status))
    assert done.status == "completed"
    assert done.result == {"echo": {"n": 1}, "attempt": 1}
    assert done.priority == 7
    assert seen[-1] == "completed"


def test_enqueue_many_and_list(kyu: KyuServer, client: Client) -> None:
    created = client.enqueue_many(
        [{"type": "py_idle", "payload": {"i": i}, "delay_seconds": 300} for i in range(3)]
    )
    assert len(created) == 3
    page = client.list(type="py_idle", status="scheduled", limit=100)
    listed = {j.job_id for j in page.jobs}
    assert {c.job_id for c in created} <= listed
    first = client.list(type="py_idle", limit=1)
    assert len(first.jobs) == 1 and first.next_cursor
    for c in created:
        client.cancel(c.job_id)


def test_cancel_and_retry(client: Client) -> None:
    job = client.enqueue("py_idle", {"x": 1}, delay_seconds=300, max_retries=0)
    assert client.get(job.job_id).status == "scheduled"
    canceled = client.cancel(job.job_id)
    assert canceled.status == "canceled"
    with pytest.raises(Conflict) as err:
        client.cancel(job.job_id)
    assert err.value.status == 409
    again = client.retry(job.job_id)
    assert again.status in ("queued", "scheduled")
    client.cancel(job.job_id)


def test_unique_key_answers_the_live_job(client: Client) -> None:
    key = f"py-{uuid.uuid4()}"
    first = client.enqueue("py_idle", None, delay_seconds=300, unique_key=key)
    second = client.enqueue("py_idle", None, delay_seconds=300, unique_key=key)
    assert second.duplicate and second.job_id == first.job_id
    client.cancel(first.job_id)


def test_bad_input_raises_kyu_errors(client: Client) -> None:
    with pytest.raises(InvalidInput) as err:
        client.enqueue("py_stock", {"symbols": "7203"})
    assert (err.value.status, err.value.code, err.value.field) == (
        422,
        "invalid_payload",
        "payload.symbols",
    )

    with pytest.raises(KyuError) as unknown:
        client.enqueue("no_such_type", {})
    assert unknown.value.code == "unknown_job_type"
    assert unknown.value.status is not None and 400 <= unknown.value.status < 500

    with pytest.raises(InvalidInput) as field:
        client.enqueue("py_idle", {}, priority=99)
    assert field.value.field == "priority"

    with pytest.raises(NotFound) as missing:
        client.get(str(uuid.uuid4()))
    assert (missing.value.status, missing.value.code) == (404, "not_found")

    with pytest.raises(TypeError):
        client.enqueue("py_idle", {}, priorty=3)


def test_unreachable_kyu_is_unavailable() -> None:
    with Client("http://127.0.0.1:9", timeout=2) as nobody, pytest.raises(KyuError) as err:
        nobody.get(str(uuid.uuid4()))
    assert err.value.code == "unreachable" and err.value.status is None


def test_async_client(kyu: KyuServer) -> None:
    async def handler(ctx: JobContext) -> object:
        await asyncio.sleep(0.01)
        return ctx.payload

    async def main() -> Job:
        async with AsyncClient(kyu.url) as kyu_async:
            job = await kyu_async.enqueue("py_async_echo", {"a": [1, 2]})
            assert (await kyu_async.get(job.job_id)).type == "py_async_echo"
            return await kyu_async.wait(job.job_id, timeout=15)

    with running(worker_for(kyu, {"py_async_echo": handler})):
        done = asyncio.run(main())
    assert done.status == "completed" and done.result == {"a": [1, 2]}
