"""One process of a fleet sharing a breaker through PostgreSQL (driven by test_breaker_fleet).

Usage: python -m tests.e2e.breaker_fleet_worker MODE URL KEY [START_AT] [OUT_FILE]

- ``open``: fails transiently until this process's breaker opens; prints the wall time.
- ``watch``: acquires and releases until the breaker refuses; prints the wall time.
- ``probe``: at wall time START_AT, 10 concurrent callers go through the manager; each one
  that reaches the function appends a line to OUT_FILE. Prints how many were refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path

from backend.core.breaker_state import BreakerConfig, BreakerState
from backend.core.circuit_breaker import CircuitBreaker
from backend.core.error_recovery import ErrorRecoveryManager, RecoveryConfig
from backend.core.errors import CircuitOpenError, TransientError
from backend.db.breaker_store import SqlBreakerStore

CONFIG = BreakerConfig(threshold=5, open_seconds=1.5)


async def _open(breaker: CircuitBreaker, manager: ErrorRecoveryManager) -> dict[str, float]:
    async def fail() -> None:
        raise TimeoutError("provider did not answer")

    while (await breaker.snapshot()).state is not BreakerState.OPEN:
        with contextlib.suppress(TransientError, CircuitOpenError):
            await manager.execute_with_retry(fail, breaker=breaker)
    return {"opened_at": time.time()}


async def _watch(breaker: CircuitBreaker) -> dict[str, float]:
    print(json.dumps({"ready": True}), flush=True)
    give_up = time.monotonic() + 20
    while time.monotonic() < give_up:
        try:
            permit = await breaker.acquire()
        except CircuitOpenError:
            return {"refused_at": time.time()}
        await breaker.release(permit)
        await asyncio.sleep(0.01)
    return {"refused_at": -1.0}


async def _probe(
    breaker: CircuitBreaker, manager: ErrorRecoveryManager, start_at: float, out: Path
) -> dict[str, float]:
    async def call() -> str:
        with out.open("a") as handle:
            handle.write("reached\n")
        await asyncio.sleep(0.5)
        return "ok"

    await asyncio.sleep(max(0.0, start_at - time.time()))
    results = await asyncio.gather(
        *(manager.execute_with_retry(call, breaker=breaker) for _ in range(10)),
        return_exceptions=True,
    )
    refused = sum(isinstance(r, CircuitOpenError) for r in results)
    succeeded = sum(r == "ok" for r in results)
    return {"refused": refused, "succeeded": succeeded}


async def main(argv: list[str]) -> None:
    mode, url, key = argv[:3]
    store = SqlBreakerStore.from_url(url, config=CONFIG)
    breaker = CircuitBreaker(key, store=store, config=CONFIG)
    manager = ErrorRecoveryManager(RecoveryConfig(max_retries=0))
    try:
        if mode == "open":
            result = await _open(breaker, manager)
        elif mode == "watch":
            result = await _watch(breaker)
        else:
            result = await _probe(breaker, manager, float(argv[3]), Path(argv[4]))
    finally:
        await store.aclose()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
