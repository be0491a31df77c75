"""The stocks screener's API (seed 004) with kyu instead of BackgroundTasks.

``POST /refresh`` enqueues ``collect_stock_data`` and answers the job id at once;
``GET /status/{job_id}`` reports kyu's status and progress, which the frontend polls.
The work itself runs in worker.py, a separate process that survives API restarts.

    KYU_URL=http://127.0.0.1:7878 uvicorn app:app --port 8000
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from kyu_client import AsyncClient, InvalidInput, NotFound

DEFAULT_SYMBOLS = ["7203", "6758", "9984", "8306", "6861", "9433"]

kyu = AsyncClient()  # KYU_URL / KYU_TOKEN from the environment


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    await kyu.aclose()


app = FastAPI(title="stocks screener", lifespan=lifespan)


class RefreshRequest(BaseModel):
    symbols: list[str] = Field(default_factory=lambda: list(DEFAULT_SYMBOLS))


@app.post("/refresh", status_code=202)
async def refresh(request: RefreshRequest | None = None) -> dict[str, Any]:
    symbols = (request or RefreshRequest()).symbols
    try:
        job = await kyu.enqueue("collect_stock_data", {"symbols": symbols})
    except InvalidInput as err:
        raise HTTPException(422, detail={"code": err.code, "field": err.field}) from err
    return {"job_id": job.job_id, "status": job.status}


@app.get("/status/{job_id}")
async def status(job_id: str) -> dict[str, Any]:
    try:
        job = await kyu.get(job_id)
    except NotFound as err:
        raise HTTPException(404, detail="no such job") from err
    return {
        "job_id": job.job_id,
        "status": job.status,
        "progress": job.progress,
        "result": job.result,
        "error": job.error.message if job.error else None,
    }
