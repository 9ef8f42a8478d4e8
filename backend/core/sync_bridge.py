"""Runs a blocking function so that an async caller can stop waiting for it: each call gets a
daemon thread, so an attempt that blocks past its timeout is abandoned, not waited for."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def run_in_daemon_thread(fn: Callable[[], T]) -> T:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(set_outcome: Callable[[], None]) -> None:
        if not future.done():
            set_outcome()

    def hand_over(set_outcome: Callable[[], None]) -> None:
        try:
            loop.call_soon_threadsafe(settle, set_outcome)
        except RuntimeError:
            return  # the loop is closed: the caller timed out and abandoned this attempt

    def run() -> None:
        try:
            value = fn()
        except BaseException as exc:  # handed to the awaiting task, classified there
            error = exc
            hand_over(lambda: future.set_exception(error))
        else:
            hand_over(lambda: future.set_result(value))

    threading.Thread(target=run, name="bulwark-sync-attempt", daemon=True).start()
    return await future


__all__ = ["run_in_daemon_thread"]
