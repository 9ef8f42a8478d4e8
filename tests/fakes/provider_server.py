"""A fake LLM provider: a real HTTP/1.1 server on loopback speaking the OpenAI chat-completions
and Anthropic messages wire formats, with scriptable faults.

Use it in-process (it runs its own event loop in a background thread, so it works from sync
and async tests and from benchmarks)::

    from tests.fakes.provider_server import FakeProviderServer
    from tests.fakes.behaviours import reply, rate_limit, stream, fail_first, server_error

    with FakeProviderServer() as server:            # or the pytest fixture `provider_server`
        client = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="test")
        anthropic.AsyncAnthropic(base_url=server.anthropic_base_url, api_key="test")
        server.script(rate_limit(retry_after=1), reply("ok"))         # shared queue
        server.script(stream(["a", "b"], fail_after=1), provider="anthropic")
        server.script(fail_first(2, server_error(503)), provider="openai")
        server.set_default(reply("fallback answer"))                  # after the script
        server.set_latency(20)                                        # ms, every request
        ...
        assert server.count(provider="openai") == 3
        assert server.requests()[0].body["model"] == "gpt-4o-mini"

Endpoints: ``POST {openai_base_url}/chat/completions`` (``openai_base_url`` ends in ``/v1``; any
path ending in ``/chat/completions`` is accepted) and ``POST {anthropic_base_url}/v1/messages``
(any path ending in ``/messages``). A request with ``"stream": true`` gets an SSE stream.

How the script is consumed: each provider has its own queue and there is one shared queue. A
request to provider P takes the first behaviour of P's queue, else of the shared queue, else
P's default (``set_default(b, provider=P)``), else the global default (``set_default(b)``,
initially ``reply()``). So ``server.script(...)`` alone scripts "the next requests, whichever
provider gets them", and ``provider=`` scripts one provider independently (e.g. fallbacks).

Behaviours (``tests.fakes.behaviours``): ``reply(text)``, ``reply_json(obj)``,
``reply_tool(name, input)``, ``stream(chunks, fail_after=N)``, ``error(status, ...)`` in each
provider's real error format, ``hang(seconds=None)``, ``drop()``, ``garbage()``,
``latency(ms, b)`` / ``b.with_latency(ms)``, ``fail_first(n, b)`` and the error helpers
``rate_limit``, ``quota_exceeded``, ``overloaded``, ``server_error``, ``auth_error``,
``context_length``, ``content_filter``, ``model_not_found``, ``bad_request``. Faults:
``hang`` sends nothing and closes when the client gives up (or after ``seconds``); ``drop``
closes without a response; ``stream(..., fail_after=N)`` sends N content chunks then cuts the
chunked body; ``garbage`` is a 200 with a non-JSON body (both SDKs then raise
``json.JSONDecodeError``, not an SDK error; with a non-JSON content type they return the text).
Note: anthropic 2.14 lets a mid-stream transport error escape as ``httpx2.RemoteProtocolError``
/ ``httpx2.ReadTimeout``, where the OpenAI SDK raises ``APIConnectionError``/``APITimeoutError``.

Counting: every request to a non-control path is recorded (``requests()``, ``count(path,
provider=)``, ``request_count``, ``bodies()``, ``stats()``, ``wait_for_requests(n)``), with
its parsed JSON body, lower-cased headers and the behaviour it got. ``reset()`` clears the
script, the defaults, the latency and the record. An in-process server shares the GIL with the
test; for heavy benchmarks run it as a separate process (``tests.fakes.remote``).

Other processes: ``python -m tests.fakes.provider_server --port 0`` prints the port on its
first line and serves until SIGTERM/SIGINT. Control endpoints (JSON; behaviours as
``Behaviour.to_dict()``, e.g. ``{"kind": "error", "status": 503}``):
``POST /_control/script`` ``{"behaviours": [...], "provider": null|"openai"|"anthropic"}`` (or a
bare list), ``POST /_control/default`` ``{"behaviour": {...}, "provider": ...}``,
``POST /_control/latency`` ``{"ms": 5}``, ``GET /_control/stats`` (``?requests=0`` to omit the
request list), ``POST /_control/reset``. ``tests.fakes.remote`` wraps them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

from tests.fakes import http11
from tests.fakes.behaviours import (
    Behaviour,
    auth_error,
    bad_request,
    content_filter,
    context_length,
    drop,
    error,
    fail_first,
    garbage,
    hang,
    latency,
    model_not_found,
    overloaded,
    quota_exceeded,
    rate_limit,
    reply,
    reply_json,
    reply_tool,
    server_error,
    stream,
)
from tests.fakes.handlers import ConnectionHandler
from tests.fakes.state import QueueName, RecordedRequest, ScriptState
from tests.fakes.wire import Provider

__all__ = [
    "Behaviour",
    "FakeProviderServer",
    "QueueName",
    "RecordedRequest",
    "auth_error",
    "bad_request",
    "content_filter",
    "context_length",
    "drop",
    "error",
    "fail_first",
    "garbage",
    "hang",
    "latency",
    "main",
    "model_not_found",
    "overloaded",
    "quota_exceeded",
    "rate_limit",
    "reply",
    "reply_json",
    "reply_tool",
    "server_error",
    "stream",
]


class FakeProviderServer:
    """The fake OpenAI + Anthropic server. ``start()``/``stop()`` or use as a context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self.state = ScriptState()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self.errors: list[BaseException] = []  # unexpected exceptions inside the server

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("the fake provider server is already started")
        self._thread = threading.Thread(target=self._run, name="fake-provider", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._startup_error is not None:
            self.stop()
            raise RuntimeError("the fake provider server did not start") from self._startup_error
        return self

    def stop(self) -> None:
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop already finished
                loop.call_soon_threadsafe(stopping.set)
        thread.join(10)
        self._thread = self._loop = self._stopping = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start()
            self._startup_error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        tasks: set[asyncio.Task[Any]] = set()

        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            try:
                await ConnectionHandler(self.state, reader, writer, self.errors).run()
            finally:
                tasks.discard(task)

        server = await asyncio.start_server(
            on_connection,
            self.host,
            self._requested_port,
            limit=http11.MAX_HEADER_BYTES,
            backlog=1024,
        )
        self._port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await server.wait_closed()

    # --- addresses -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the fake provider server is not started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """For ``openai.OpenAI(base_url=...)``: ends in ``/v1`` like the SDK's default."""
        return f"{self.base_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """For ``anthropic.Anthropic(base_url=...)``: no ``/v1`` (the SDK adds it)."""
        return self.base_url

    # --- scripting (see the module docstring for how queues are consumed) -------------------

    def script(
        self, *behaviours: Behaviour | Iterable[Behaviour], provider: Provider | None = None
    ) -> Self:
        """Queue behaviours for the next requests (``provider=None``: the shared queue)."""
        self.state.script(behaviours, provider)
        return self

    def fail_first(self, n: int, behaviour: Behaviour, provider: Provider | None = None) -> Self:
        """The next ``n`` requests get ``behaviour``; the ones after get the default."""
        return self.script([behaviour] * n, provider=provider)

    def set_default(self, behaviour: Behaviour | None, provider: Provider | None = None) -> Self:
        """Behaviour once the queues are empty (``provider=None``: for both providers)."""
        self.state.set_default(behaviour, provider)
        return self

    def set_latency(self, ms: float) -> Self:
        """Delay added before every provider request's behaviour (on top of its own)."""
        self.state.set_latency(ms)
        return self

    def reset(self) -> None:
        """Clear the script, defaults, latency and the received requests."""
        self.state.reset()

    def pending(self) -> dict[str, int]:
        return self.state.pending()

    # --- what was received -----------------------------------------------------------------

    def requests(self, provider: Provider | None = None) -> list[RecordedRequest]:
        return self.state.requests(provider)

    @property
    def request_count(self) -> int:
        return self.state.count()

    def count(self, path: str | None = None, *, provider: Provider | None = None) -> int:
        """Requests received, optionally only for one exact path or one provider."""
        return self.state.count(path, provider)

    def bodies(self, provider: Provider | None = None) -> list[Any]:
        return [r.body for r in self.state.requests(provider)]

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> bool:
        return self.state.wait_for_requests(n, timeout)

    def stats(self, *, with_requests: bool = True) -> dict[str, Any]:
        return self.state.stats(with_requests=with_requests)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fake OpenAI/Anthropic provider server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port chosen by the OS")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with FakeProviderServer(args.host, args.port) as server:
        print(server.port, flush=True)
        while not stop.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
