"""Garbage and hostile input against a running ``bulwark serve`` (SQLite, simulator, embedded
workers): oversized, deeply nested, non-UTF-8 bodies and huge headers are refused with a 4xx,
slow clients do not hold others up, and the service still works afterwards."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.chaos.helpers import Server, base_env

pytestmark = pytest.mark.slow

PROMPT_SECONDS = 2.5  # generous for a loaded 2-core CI machine; a blocked server takes > 5 s


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path, base_env(f"sqlite+aiosqlite:///{tmp_path / 'bulwark.db'}"))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def raw_request(server: Server, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` on a new connection; what the server answered, until it closed."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)  # it may refuse and close before reading everything
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
                received = b"".join(chunks)
                if b"\r\n\r\n" in received and _complete(received):
                    break
        except ConnectionResetError:
            pass
        return b"".join(chunks)


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return True


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response.split(b" ", 2)[1])


def post(server: Server, key: str, body: bytes, *extra: str) -> bytes:
    head = [
        "POST /v1/tasks HTTP/1.1",
        f"Host: 127.0.0.1:{server.port}",
        f"Authorization: Bearer {key}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *extra,
    ]
    return raw_request(server, ("\r\n".join(head) + "\r\n\r\n").encode() + body)


def submit(client: httpx.Client, text: str = "x = 1\n") -> httpx.Response:
    return client.post("/v1/tasks", json={"type": "review", "input": {"code": text}})


def test_hostile_requests_get_4xx_and_the_service_keeps_serving(server: Server) -> None:
    key = server.admin_key
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
        assert submit(client).status_code == 202

        oversized = b'{"type": "review", "input": {"code": "' + b"x" * 400_000 + b'"}}'
        answer = post(server, key, oversized)
        assert status_of(answer) == 413, answer[:300]
        assert b"payload_too_large" in answer

        nested = b"[" * 100_000 + b"]" * 100_000
        answer = post(server, key, nested)
        assert 400 <= status_of(answer) < 500, answer[:300]
        assert b"Traceback" not in answer
        deep_object = b'{"type": "review", "input": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001
        answer = post(server, key, deep_object)
        assert 400 <= status_of(answer) < 500, answer[:300]

        not_utf8 = b'{"type": "review", "input": {"code": "\xff\xfe\xc3\x28"}}'
        answer = post(server, key, not_utf8)
        assert status_of(answer) == 422, answer[:300]
        assert b"invalid_json" in answer
        assert b'{"error":{"code":' in answer

        answer = post(server, key, b"{}", "X-Huge: " + "h" * 100_000)
        assert 400 <= status_of(answer) < 500, answer[:300]  # uvicorn: 431 or 400
        many = [f"X-Many-{i}: {'m' * 100}" for i in range(2000)]
        answer = post(server, key, b"{}", *many)
        assert 400 <= status_of(answer) < 500, answer[:300]

        # Slow clients: one trickles its body over ~4 s, one never ends its headers. While
        # they dawdle, others are served promptly.
        stop = threading.Event()
        trickled: list[bytes] = []

        def trickle() -> None:
            body = b'{"type": "review", "input": {"code": "y = 2"}}'
            head = (
                f"POST /v1/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
            with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
                sock.sendall(head)
                for i in range(len(body)):
                    if stop.wait(4.0 / len(body)):
                        return
                    sock.sendall(body[i : i + 1])
                trickled.append(sock.recv(65536))

        hangers = [
            socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(5)
        ]
        thread = threading.Thread(target=trickle)
        try:
            for sock in hangers:
                sock.sendall(b"POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Len")
            thread.start()
            slowest = 0.0
            until = time.monotonic() + 3.0
            while time.monotonic() < until:
                began = time.monotonic()
                assert client.get("/healthz").status_code == 200
                assert submit(client).status_code == 202
                slowest = max(slowest, time.monotonic() - began)
                time.sleep(0.1)
            assert slowest < PROMPT_SECONDS, f"a request took {slowest:.2f} s"
            thread.join(15)
            assert not thread.is_alive()
        finally:
            stop.set()
            if thread.ident is not None:
                thread.join(15)
            for sock in hangers:
                sock.close()
        assert trickled and status_of(trickled[0]) == 202, trickled

        assert client.get("/healthz").status_code == 200
        created = submit(client, "def f():\n    return 1\n")
        assert created.status_code == 202, created.text
        task_id = created.json()["id"]
        give_up = time.monotonic() + 30
        while (task := client.get(f"/v1/tasks/{task_id}").json())["status"] != "succeeded":
            assert task["status"] in ("queued", "running"), task
            assert time.monotonic() < give_up, task
            time.sleep(0.1)
    assert server.stop() == 0
    log = server.err.read_text()
    assert "Traceback" not in log, log[-3000:]
