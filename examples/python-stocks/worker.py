"""The worker for ``collect_stock_data`` (seed 004): fetch each symbol's data and
report progress as it goes. The "fetch" is fake (short sleeps, made-up prices) so the
example runs offline.

    KYU_URL=http://127.0.0.1:7878 python worker.py
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

from kyu_client import Client, JobContext, Worker

STEP_SECONDS = 0.3


async def collect_stock_data(ctx: JobContext) -> dict[str, object]:
    symbols: list[str] = ctx.payload["symbols"]
    prices: dict[str, float] = {}
    for done, symbol in enumerate(symbols, start=1):
        await asyncio.sleep(STEP_SECONDS)  # a real worker calls the market data API here
        digest = hashlib.sha256(symbol.encode()).digest()
        prices[symbol] = round(1000 + int.from_bytes(digest[:2], "big") / 10, 1)
        ctx.progress(100 * done / len(symbols))
    return {"collected": len(prices), "prices": prices}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not every request
    Worker(Client(), {"collect_stock_data": collect_stock_data}, concurrency=10).run()
