"""A deliberately small HTTP/1.1 layer for the fake provider server.

Only what the OpenAI/Anthropic SDKs (httpx2) and ``urllib`` send is supported: a request line,
headers, and a body framed by ``Content-Length`` or ``Transfer-Encoding: chunked``; keep-alive
by default, ``Connection: close`` honoured, ``Expect: 100-continue`` answered. Responses are
written either whole (``Content-Length``) or as a chunked stream (for SSE), which lets the
server cut a stream in the middle of its body to simulate a dropped connection.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from http import HTTPStatus

MAX_HEADER_BYTES = 64 * 1024


class BadRequest(Exception):
    """The bytes on the wire are not an HTTP/1.1 request this parser understands."""


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return connection == "keep-alive"
        return connection != "close"


async def read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> Request | None:
    """Read one request; None when the client closed the connection between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise BadRequest("connection closed inside the request head") from exc
    except asyncio.LimitOverrunError as exc:
        raise BadRequest("request head too large") from exc
    lines = head[:-4].decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ", 2)
    except ValueError as exc:
        raise BadRequest(f"bad request line {lines[0]!r}") from exc
    if not version.startswith("HTTP/1."):
        raise BadRequest(f"unsupported protocol {version!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest(f"bad header line {line!r}")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    try:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = await _read_chunked(reader)
        else:
            body = await reader.readexactly(int(headers.get("content-length", "0") or "0"))
    except (asyncio.IncompleteReadError, ValueError) as exc:
        raise BadRequest("truncated or malformed request body") from exc
    return Request(
        method=method.upper(), target=target, version=version, headers=headers, body=body
    )


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            # Trailers (rare) end with an empty line.
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _status_line(status: int) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = {529: "Site is overloaded"}.get(status, "Unknown")
    return f"HTTP/1.1 {status} {reason}\r\n".encode("latin-1")


def _header_block(headers: dict[str, str]) -> bytes:
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode("latin-1")


def encode_response(
    status: int, body: bytes, headers: dict[str, str], *, keep_alive: bool = True
) -> bytes:
    """A complete response with a Content-Length body."""
    all_headers = {"content-length": str(len(body))}
    if not keep_alive:
        all_headers["connection"] = "close"
    all_headers.update(headers)
    return _status_line(status) + _header_block(all_headers) + b"\r\n" + body


def encode_stream_head(status: int, headers: dict[str, str], *, keep_alive: bool = True) -> bytes:
    """The head of a chunked response; follow with encode_chunk() calls and LAST_CHUNK."""
    all_headers = {"transfer-encoding": "chunked"}
    if not keep_alive:
        all_headers["connection"] = "close"
    all_headers.update(headers)
    return _status_line(status) + _header_block(all_headers) + b"\r\n"


def encode_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
