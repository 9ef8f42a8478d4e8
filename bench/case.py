"""The child side: one contender in one scenario variant, driven by the parent over a line
protocol (``python -m bench.case``, one JSON set-up line on stdin, then one JSON command per
line; replies are JSON lines prefixed with :data:`MARK` on the original stdout, so whatever a
library prints cannot be mistaken for a reply).

A process serves one case after another (a contender's process is reused across cases
unless ``--fresh``; the memory scenario always gets a fresh one). The same
:class:`CaseServer` also runs in a thread of the parent (``--in-process``, and the smoke
test).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import traceback
from typing import Any, TextIO

from bench.common import guard_network, raise_fd_limit
from bench.contenders import load_contender
from bench.contenders.base import Contender, ContenderSpec
from bench.scenarios import load_scenario
from bench.scenarios.base import Case, Scenario
from tests.fakes.remote import ProviderServerControl

MARK = "@@BENCH@@ "


class CaseServer:
    """Builds the contender and the case from the set-up message, then answers commands:
    ``{"op": "block", "index": i}``, ``{"op": "finish"}``."""

    def __init__(self, setup: dict[str, Any]) -> None:
        self.setup = setup
        self.scenario: Scenario = load_scenario(int(setup["scenario"]))
        self.contender: Contender | None = None
        self.case: Case | None = None

    async def start(self) -> dict[str, Any]:
        setup = self.setup
        spec = ContenderSpec.from_dict(setup["spec"])
        self.contender = await load_contender(setup["contender"]).create(spec)
        fallback = setup.get("fallback")
        self.case = Case(
            contender=self.contender,
            primary=ProviderServerControl(setup["primary"], timeout=60),
            fallback=ProviderServerControl(fallback, timeout=60) if fallback else None,
            params=setup["params"],
            variant=setup["variant"],
        )
        await self.scenario.prepare(self.case)
        return {"ready": True}

    async def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.case is not None
        op = message.get("op")
        if op == "block":
            self.case.message = message
            return await self.scenario.block(self.case, int(message.get("index", 0)))
        if op == "finish":
            try:
                return await self.scenario.finish(self.case)
            finally:
                await self.aclose()
        raise ValueError(f"unknown command {op!r}")

    async def aclose(self) -> None:
        contender, self.contender = self.contender, None
        if contender is not None:
            await contender.aclose()


async def _guarded(coro: Any) -> dict[str, Any]:
    try:
        result: dict[str, Any] = await coro
    except Exception:
        return {"error": traceback.format_exc(limit=20)}
    return {"result": result}


async def serve(replies: TextIO) -> None:
    """Run cases one after another until stdin closes: a set-up line, then commands until
    ``finish`` (a host process can so be reused by the next case of the same contender)."""

    def reply(message: dict[str, Any]) -> None:
        replies.write(MARK + json.dumps(message, default=str) + "\n")
        replies.flush()

    async def read() -> dict[str, Any] | None:
        line = await asyncio.to_thread(sys.stdin.readline)
        return json.loads(line) if line else None

    while (setup := await read()) is not None:
        server = CaseServer(setup)
        started = await _guarded(server.start())
        reply(started)
        if "error" in started:
            await server.aclose()
            continue
        while (message := await read()) is not None:
            reply(await _guarded(server.handle(message)))
            if message.get("op") == "finish":
                break
        await server.aclose()
        if message is None:
            return


def main() -> int:
    guard_network()
    raise_fd_limit()
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # stray prints of libraries go to stderr, not into the protocol
    asyncio.run(serve(replies))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
